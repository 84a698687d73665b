// Tokenizer::from_gguf over files written by GgufWriter with the tokenizer.ggml.* keys of
// spec §3.5 (the same keys and types the model maker writes).
#include <catch2/catch.hpp>

#include <functional>

#include "runtime/gguf_file.h"
#include "runtime/gguf_writer.h"
#include "runtime/tokenizer.h"
#include "runtime/tokenizer_test_data.h"
#include "support/test_support.h"

using namespace tandem;
using Catch::Matchers::Contains;

namespace {

// `edit` may change or add keys before the file is finished.
std::filesystem::path write_vocab(const test::TempDir& dir, const VocabData& v, const std::string& name,
                                  const std::function<void(GgufWriter&)>& extra = {}, bool with_tokens = true) {
  const auto path = dir / name;
  auto w = GgufWriter::create(path);
  REQUIRE(w.ok());
  REQUIRE(w->set_string("general.architecture", "smallthinker").ok());
  REQUIRE(w->set_string("tokenizer.ggml.model", v.model).ok());
  REQUIRE(w->set_string("tokenizer.ggml.pre", v.pre).ok());
  if (with_tokens) REQUIRE(w->set_string_array("tokenizer.ggml.tokens", v.tokens).ok());
  REQUIRE(w->set_i32_array("tokenizer.ggml.token_type", v.token_types).ok());
  REQUIRE(w->set_string_array("tokenizer.ggml.merges", v.merges).ok());
  REQUIRE(w->set_u32("tokenizer.ggml.bos_token_id", v.bos_token_id).ok());
  if (v.padding_token_id) REQUIRE(w->set_u32("tokenizer.ggml.padding_token_id", *v.padding_token_id).ok());
  REQUIRE(w->set_bool("tokenizer.ggml.add_bos_token", v.add_bos_token).ok());
  REQUIRE(w->set_string("tokenizer.chat_template", v.chat_template).ok());
  if (extra) {
    extra(*w);
  } else {
    REQUIRE(w->set_u32("tokenizer.ggml.eos_token_id", v.eos_token_id).ok());
  }
  REQUIRE(w->begin_data().ok());
  REQUIRE(w->finish().ok());
  return path;
}

void check_same(const Tokenizer& a, const Tokenizer& b) {
  CHECK(a.n_vocab() == b.n_vocab());
  CHECK(a.n_merges() == b.n_merges());
  CHECK(a.bos() == b.bos());
  CHECK(a.eos() == b.eos());
  CHECK(a.padding() == b.padding());
  CHECK(a.add_bos() == b.add_bos());
  CHECK(a.chat_template() == b.chat_template());
  for (const char* t : {"Hello world", "<|im_start|>user\nWhat is 2+2?<|im_end|>\n", "你好 🚀 \xff", "  \n\n 333"}) {
    CHECK(a.encode(t, true, true) == b.encode(t, true, true));
  }
}

}  // namespace

TEST_CASE("from_gguf reads the builtin vocabulary back", "[tokenizer]") {
  test::TempDir dir;
  VocabData v = vocab_builtin(512);
  const auto path = write_vocab(dir, v, "builtin.gguf");
  auto file = GgufFile::open(path);
  REQUIRE(file.ok());
  auto from_file = Tokenizer::from_gguf(*file);
  REQUIRE(from_file.ok());
  auto direct = Tokenizer::from_vocab(v);
  REQUIRE(direct.ok());
  check_same(*from_file, *direct);
  CHECK(from_file->pre() == "qwen2");
  CHECK(from_file->token_type(v.eos_token_id) == TokenType::control);
  CHECK_FALSE(from_file->add_eos());

  // add_eos_token present and true
  auto p2 = write_vocab(dir, v, "eos.gguf", [&](GgufWriter& w) {
    REQUIRE(w.set_u32("tokenizer.ggml.eos_token_id", v.eos_token_id).ok());
    REQUIRE(w.set_bool("tokenizer.ggml.add_eos_token", true).ok());
  });
  auto f2 = GgufFile::open(p2);
  REQUIRE(f2.ok());
  auto t2 = Tokenizer::from_gguf(*f2);
  REQUIRE(t2.ok());
  CHECK(t2->add_eos());
  CHECK(t2->encode("x", true, false).back() == int32_t(v.eos_token_id));
}

TEST_CASE("from_gguf names the key or value it cannot use", "[tokenizer]") {
  test::TempDir dir;
  VocabData v = vocab_builtin(300);
  const auto load = [&](const std::filesystem::path& p) {
    auto f = GgufFile::open(p);
    REQUIRE(f.ok());
    auto t = Tokenizer::from_gguf(*f);
    REQUIRE_FALSE(t.ok());
    return t.status();
  };
  {
    VocabData spm = v;
    spm.model = "llama";
    const Status s = load(write_vocab(dir, spm, "spm.gguf"));
    CHECK(s.code() == ErrorCode::unsupported);
    CHECK_THAT(s.message(), Contains("tokenizer.ggml.model 'llama'") && Contains("spm.gguf"));
  }
  {
    VocabData pre = v;
    pre.pre = "llama-bpe";
    CHECK_THAT(load(write_vocab(dir, pre, "pre.gguf")).message(), Contains("tokenizer.ggml.pre 'llama-bpe'"));
  }
  {
    const Status s = load(write_vocab(dir, v, "no_tokens.gguf", {}, /*with_tokens=*/false));
    CHECK(s.code() == ErrorCode::not_found);
    CHECK_THAT(s.message(), Contains("tokenizer.ggml.tokens"));
  }
  {
    const Status s = load(write_vocab(dir, v, "no_eos.gguf", [](GgufWriter&) {}));
    CHECK(s.code() == ErrorCode::not_found);
    CHECK_THAT(s.message(), Contains("tokenizer.ggml.eos_token_id"));
  }
  {
    const Status s = load(write_vocab(dir, v, "i32_eos.gguf", [](GgufWriter& w) {
      REQUIRE(w.set_i32("tokenizer.ggml.eos_token_id", 5).ok());
    }));
    CHECK_THAT(s.message(), Contains("tokenizer.ggml.eos_token_id"));
  }
  {
    const Status s = load(write_vocab(dir, v, "big_eos.gguf", [](GgufWriter& w) {
      REQUIRE(w.set_u32("tokenizer.ggml.eos_token_id", 300).ok());
    }));
    CHECK_THAT(s.message(), Contains("eos_token_id = 300"));
  }
}

TEST_CASE("from_gguf reads the qwen2 vocabulary back", "[tokenizer][data]") {
  const auto data = test::shared_data_dir();
  REQUIRE(data);
  test::TempDir dir;
  const auto path = write_vocab(dir, test::qwen_vocab(), "qwen2.gguf");
  auto file = GgufFile::open(path);
  REQUIRE(file.ok());
  auto from_file = Tokenizer::from_gguf(*file);
  REQUIRE(from_file.ok());
  check_same(*from_file, test::qwen_tokenizer());
  CHECK(from_file->encode("<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n", false, true) ==
        std::vector<int32_t>{151644, 872, 198, 3838, 374, 220, 17, 10, 17, 30, 151645, 198, 151644, 77091, 198});
}
