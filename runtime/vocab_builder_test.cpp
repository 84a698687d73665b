#include "runtime/vocab_builder.h"

#include <catch2/catch.hpp>

#include <fstream>
#include <set>

#include "runtime/builtin_corpus.h"
#include "runtime/unicode_bytes.h"
#include "runtime/unicode_utf8.h"
#include "runtime/tokenizer_test_data.h"
#include "support/test_support.h"

using namespace tandem;

namespace {

std::string base64(std::string_view bytes) {
  static const char* a = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  size_t i = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    const uint32_t v = (uint8_t(bytes[i]) << 16) | (uint8_t(bytes[i + 1]) << 8) | uint8_t(bytes[i + 2]);
    for (int s = 18; s >= 0; s -= 6) out += a[(v >> s) & 63];
  }
  if (bytes.size() - i == 1) {
    const uint32_t v = uint8_t(bytes[i]) << 16;
    out += a[(v >> 18) & 63];
    out += a[(v >> 12) & 63];
    out += "==";
  } else if (bytes.size() - i == 2) {
    const uint32_t v = (uint8_t(bytes[i]) << 16) | (uint8_t(bytes[i + 1]) << 8);
    out += a[(v >> 18) & 63];
    out += a[(v >> 12) & 63];
    out += a[(v >> 6) & 63];
    out += '=';
  }
  return out;
}

// A tiktoken file: the 256 single bytes (rank = byte) followed by `extra` in order.
std::string tiktoken_text(const std::vector<std::string>& extra) {
  std::string t;
  for (int b = 0; b < 256; ++b) t += base64(std::string(1, char(b))) + " " + std::to_string(b) + "\n";
  for (size_t i = 0; i < extra.size(); ++i) t += base64(extra[i]) + " " + std::to_string(256 + i) + "\n";
  return t;
}

std::filesystem::path write_file(const test::TempDir& dir, const std::string& name, const std::string& text) {
  const auto p = dir / name;
  std::ofstream(p, std::ios::binary) << text;
  return p;
}

}  // namespace

TEST_CASE("builtin corpus is sizeable valid UTF-8", "[vocab]") {
  const std::string_view c = builtin_corpus();
  CHECK(c.size() >= 20000);
  CHECK(c.size() <= 40000);
  for (size_t pos = 0; pos < c.size();) {
    const Utf8Scan sc = utf8_scan(c, pos);
    REQUIRE(sc.kind == Utf8Kind::complete);
    pos += sc.length;
  }
}

TEST_CASE("vocab_builtin layout, determinism and prefix property", "[vocab]") {
  const VocabData a = vocab_builtin(2048);
  const VocabData b = vocab_builtin(2048);
  CHECK(a.tokens == b.tokens);
  CHECK(a.merges == b.merges);
  CHECK(a.token_types == b.token_types);

  REQUIRE(a.tokens.size() == 2048);
  REQUIRE(a.token_types.size() == 2048);
  for (int i = 0; i < 256; ++i) CHECK(a.tokens[i] == bytes_to_unicode(std::string(1, char(i))));
  CHECK(a.tokens[2045] == "<|endoftext|>");
  CHECK(a.tokens[2046] == "<|im_start|>");
  CHECK(a.tokens[2047] == "<|im_end|>");
  CHECK(a.token_types[2046] == int32_t(TokenType::control));
  CHECK(a.token_types[100] == int32_t(TokenType::normal));
  CHECK(a.bos_token_id == 2045);
  CHECK(a.eos_token_id == 2047);
  CHECK(a.model == "gpt2");
  CHECK(a.pre == "qwen2");
  CHECK_FALSE(a.add_bos_token);
  CHECK(a.chat_template.find("<|im_start|>") != std::string::npos);
  // Every learned token (a merge result) is distinct; every merge joins two tokens into one.
  CHECK(std::set<std::string>(a.tokens.begin(), a.tokens.end()).size() == a.tokens.size());
  REQUIRE(a.merges.size() >= 2045 - 256);
  std::set<std::string> known(a.tokens.begin(), a.tokens.end());
  for (const std::string& m : a.merges) {
    const size_t sp = m.find(' ');
    REQUIRE(sp != std::string::npos);
    CHECK(known.count(m.substr(0, sp)));
    CHECK(known.count(m.substr(sp + 1)));
    CHECK(known.count(m.substr(0, sp) + m.substr(sp + 1)));
  }
  // The most frequent pair in English prose is learned early.
  const auto first = std::vector<std::string>(a.merges.begin(), a.merges.begin() + 20);
  CHECK(std::find(first.begin(), first.end(), "Ġ t") != first.end());

  // Greedy training: a smaller vocabulary is a prefix of a larger one.
  const VocabData s = vocab_builtin(300);
  REQUIRE(s.tokens.size() == 300);
  CHECK(std::equal(s.tokens.begin(), s.tokens.begin() + 297, a.tokens.begin()));
  CHECK(std::equal(s.merges.begin(), s.merges.end(), a.merges.begin()));
  CHECK(s.tokens[297] == "<|endoftext|>");
}

TEST_CASE("vocab_builtin pads beyond what the corpus can teach", "[vocab]") {
  // The corpus teaches about 3,800 tokens before every word is a single token.
  const VocabData v = vocab_builtin(4096);
  REQUIRE(v.tokens.size() == 4096);
  const auto eot = std::find(v.tokens.begin(), v.tokens.end(), "<|endoftext|>") - v.tokens.begin();
  REQUIRE(eot < 4093);
  CHECK(eot > 2048);
  CHECK(v.tokens[eot + 3] == "[PAD" + std::to_string(eot + 3) + "]");
  CHECK(v.tokens.back() == "[PAD4095]");
  CHECK(v.token_types.back() == int32_t(TokenType::unused));
  CHECK(v.eos_token_id == eot + 2);
}

TEST_CASE("vocab_from_tiktoken derives merges from ranks", "[vocab]") {
  test::TempDir dir;
  // "ab" then "abc"; "bc" ranks after "abc", so BPE builds "abc" as ab + c.
  const auto p = write_file(dir, "t.tiktoken", tiktoken_text({"ab", "abc", "bc", "  ", "bcbc"}));
  auto r = vocab_from_tiktoken(p, 270);
  REQUIRE(r.ok());
  const VocabData& v = *r;
  REQUIRE(v.tokens.size() == 270);
  CHECK(v.tokens[256] == "ab");
  CHECK(v.tokens[259] == "ĠĠ");
  REQUIRE(v.merges.size() == 5);
  CHECK(v.merges[0] == "a b");
  CHECK(v.merges[1] == "ab c");
  CHECK(v.merges[2] == "b c");
  CHECK(v.merges[3] == "Ġ Ġ");
  CHECK(v.merges[4] == "bc bc");
  CHECK(v.tokens[261] == "<|endoftext|>");
  CHECK(v.tokens[262] == "<|im_start|>");
  CHECK(v.tokens[263] == "<|im_end|>");
  CHECK(v.tokens[264] == "[PAD264]");
  CHECK(v.token_types[263] == int32_t(TokenType::control));
  CHECK(v.token_types[264] == int32_t(TokenType::unused));
  CHECK(v.bos_token_id == 261);
  CHECK(v.eos_token_id == 263);
}

TEST_CASE("vocab_from_tiktoken reports malformed files with line numbers", "[vocab]") {
  test::TempDir dir;
  const std::string good = tiktoken_text({"ab"});
  const auto err = [&](const std::string& text, uint32_t n_vocab = 300) {
    auto r = vocab_from_tiktoken(write_file(dir, "bad.tiktoken", text), n_vocab);
    REQUIRE_FALSE(r.ok());
    return r.status().message();
  };
  CHECK_THAT(err(good + "YWJj\n"), Catch::Contains("bad.tiktoken:258") && Catch::Contains("no space"));
  CHECK_THAT(err(good + "!!!! 257\n"), Catch::Contains(":258") && Catch::Contains("base64"));
  CHECK_THAT(err(good + "YWJj 25x\n"), Catch::Contains(":258") && Catch::Contains("rank '25x'"));
  CHECK_THAT(err(good + "YWJj 256\n"), Catch::Contains(":258") && Catch::Contains("already given on line 257"));
  CHECK_THAT(err(good + "YWJj 258\n"), Catch::Contains("rank 257 is missing"));
  CHECK_THAT(err(good + "YWI= 257\n"), Catch::Contains("repeat those of rank 256"));
  CHECK_THAT(err(good, 258), Catch::Contains("do not fit in n_vocab 258"));
  CHECK_THAT(err("YQ== 0\n"), Catch::Contains("single byte 0x00"));
  auto missing = vocab_from_tiktoken(dir / "absent.tiktoken", 300);
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.status().code() == ErrorCode::not_found);
}

TEST_CASE("vocab_from_tiktoken on qwen.tiktoken", "[vocab][data]") {
  const VocabData& v = test::qwen_vocab();
  REQUIRE(v.tokens.size() == 151936);
  CHECK(v.merges.size() == 151387);
  CHECK(v.merges[0] == "Ġ Ġ");  // rank 256 is two spaces
  CHECK(v.tokens[151643] == "<|endoftext|>");
  CHECK(v.tokens[151644] == "<|im_start|>");
  CHECK(v.tokens[151645] == "<|im_end|>");
  CHECK(v.tokens[151646] == "[PAD151646]");
  CHECK(v.tokens[151935] == "[PAD151935]");
  CHECK(v.bos_token_id == 151643);
  CHECK(v.eos_token_id == 151645);
  CHECK(v.tokens[9707] == "Hello");
  CHECK(v.tokens[21927] == "ĠHello");
}
