#include "runtime/tokenizer.h"

#include <catch2/catch.hpp>

#include <fstream>
#include <map>
#include <random>
#include <set>
#include <sstream>

#include "runtime/builtin_corpus.h"
#include "runtime/tokenizer_pre.h"
#include "runtime/unicode_bytes.h"
#include "runtime/unicode_utf8.h"
#include "runtime/tokenizer_test_data.h"
#include "support/test_support.h"

using namespace tandem;

namespace {

const VocabData& builtin_vocab() {
  static const VocabData v = vocab_builtin(2048);
  return v;
}

const Tokenizer& builtin_tokenizer() {
  static const Tokenizer t = [] {
    auto r = Tokenizer::from_vocab(builtin_vocab());
    REQUIRE(r.ok());
    return std::move(r).value();
  }();
  return t;
}

std::vector<std::string> split_words(std::string_view text) {
  auto pre = PreTokenizer::create("qwen2");
  REQUIRE(pre.ok());
  std::vector<std::string_view> w;
  pre->split(text, w);
  return {w.begin(), w.end()};
}

// Plain BPE, the obvious O(n^2) way: repeatedly merge the leftmost adjacent pair of lowest
// merge rank, over strings in byte->unicode form. The reference for Tokenizer::encode.
struct ReferenceBpe {
  std::map<std::pair<std::string, std::string>, size_t> rank;
  std::map<std::string, int32_t> id;

  explicit ReferenceBpe(const VocabData& v) {
    for (size_t i = 0; i < v.merges.size(); ++i) {
      const size_t sp = v.merges[i].find(' ', 1);
      rank.emplace(std::make_pair(v.merges[i].substr(0, sp), v.merges[i].substr(sp + 1)), i);
    }
    for (size_t i = 0; i < v.tokens.size(); ++i) id[v.tokens[i]] = int32_t(i);
  }

  std::vector<int32_t> encode(std::string_view text) const {
    std::vector<int32_t> out;
    for (const std::string& word : split_words(text)) {
      std::vector<std::string> parts;
      for (char c : word) parts.emplace_back(byte_to_unicode(uint8_t(c)));
      for (;;) {
        size_t best = SIZE_MAX, best_i = 0;
        for (size_t i = 0; i + 1 < parts.size(); ++i) {
          auto it = rank.find({parts[i], parts[i + 1]});
          if (it != rank.end() && it->second < best) {
            best = it->second;
            best_i = i;
          }
        }
        if (best == SIZE_MAX) break;
        parts[best_i] += parts[best_i + 1];
        parts.erase(parts.begin() + ptrdiff_t(best_i) + 1);
      }
      for (const std::string& p : parts) out.push_back(id.at(p));
    }
    return out;
  }
};

std::string random_text(std::mt19937& rng, size_t n_pieces) {
  static const std::vector<std::string> pieces = {
      "the", " the", " machine", "ing", " ", "  ", "\n", "\n\n", "\t", "  \n ", "3", "42", "1,024", ".", "!!",
      "'s", "'LL", " don't", "é", "ü", "ñ", "—", "°C", "你好", "世界", "こんにちは", "🚀", "😀", "🦙", "👍🏽",
      "\xff", "\xc3", "\x80", "\xe4\xbd", "\xf0\x9f", "\xed\xa0\x80", "\x00", "A", "Zq", "[", "]", "(x)", "->"};
  std::string t;
  for (size_t i = 0; i < n_pieces; ++i) t += pieces[rng() % pieces.size()];
  return t;
}

}  // namespace

TEST_CASE("GPT-2 byte to unicode map", "[tokenizer]") {
  CHECK(byte_to_unicode(' ') == "Ġ");
  CHECK(byte_to_unicode('\n') == "Ċ");
  CHECK(byte_to_unicode('\t') == "ĉ");
  CHECK(byte_to_unicode('!') == "!");
  CHECK(byte_to_unicode(0xAD) == "Ń");  // soft hyphen is not printable
  CHECK(byte_to_unicode(0xFF) == "ÿ");
  CHECK(byte_to_unicode(0x00) == "Ā");
  std::set<std::string> seen;
  std::string all;
  for (int b = 0; b < 256; ++b) {
    seen.emplace(byte_to_unicode(uint8_t(b)));
    all.push_back(char(b));
  }
  CHECK(seen.size() == 256);
  CHECK(unicode_to_bytes(bytes_to_unicode(all)) == all);
  CHECK(unicode_to_bytes("<|im_end|>") == "<|im_end|>");  // outside the map: unchanged
  CHECK(unicode_to_bytes("你Ġ") == "你 ");
}

TEST_CASE("utf8_scan classifies sequences", "[tokenizer]") {
  const auto scan = [](std::string_view s) { return utf8_scan(s, 0); };
  CHECK(scan("a").kind == Utf8Kind::complete);
  CHECK(scan("é").length == 2);
  CHECK(scan("你").length == 3);
  CHECK(scan("🚀").length == 4);
  CHECK(scan("\xe4\xbd").kind == Utf8Kind::incomplete);
  CHECK(scan("\xf0\x9f\x9a").kind == Utf8Kind::incomplete);
  CHECK(scan("\x80").kind == Utf8Kind::invalid);
  CHECK(scan("\xc0\xaf").kind == Utf8Kind::invalid);  // overlong
  CHECK(scan("\xed\xa0\x80").kind == Utf8Kind::invalid);  // surrogate
  CHECK(scan("\xed\xa0\x80").length == 1);
  CHECK(scan("\xf4\x90\x80\x80").kind == Utf8Kind::invalid);  // above U+10FFFF
  CHECK(scan("\xe4\xbd" "a").kind == Utf8Kind::invalid);
  CHECK(scan("\xe4\xbd" "a").length == 2);  // maximal subpart
  std::string s;
  utf8_append(s, 0x1F680);
  CHECK(s == "🚀");
  CHECK(utf8_decode(s, 0, 4) == 0x1F680);
}

TEST_CASE("qwen2 pre-tokenizer splits like llama.cpp", "[tokenizer]") {
  using V = std::vector<std::string>;
  CHECK(split_words("Hello world") == V{"Hello", " world"});
  CHECK(split_words("  Hello") == V{" ", " Hello"});
  CHECK(split_words("333 4") == V{"3", "3", "3", " ", "4"});
  CHECK(split_words("Hello, y'all!") == V{"Hello", ",", " y", "'all", "!"});
  CHECK(split_words("I'LL DON'T") == V{"I", "'LL", " DON", "'T"});
  CHECK(split_words("\n \n\n") == V{"\n \n\n"});
  CHECK(split_words("a\n\n  b") == V{"a", "\n\n", " ", " b"});
  CHECK(split_words(" (normal)") == V{" (", "normal", ")"});
  CHECK(split_words("Führer über") == V{"Führer", " über"});
  CHECK(split_words("").empty());
  CHECK(split_words("a\xff" "b") == V{"a", "\xff", "b"});  // ill-formed bytes become a word
  // Every byte lands in exactly one word, whatever the input.
  std::mt19937 rng(7);
  for (int i = 0; i < 200; ++i) {
    std::string t = random_text(rng, 1 + rng() % 40);
    std::string joined;
    for (auto& w : split_words(t)) {
      CHECK_FALSE(w.empty());
      joined += w;
    }
    REQUIRE(joined == t);
  }
  auto bad = PreTokenizer::create("llama3");
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.status().code() == ErrorCode::unsupported);
  CHECK_THAT(bad.status().message(), Catch::Contains("'llama3'"));
}

TEST_CASE("encode matches the plain reference BPE", "[tokenizer]") {
  const Tokenizer& tok = builtin_tokenizer();
  const ReferenceBpe ref(builtin_vocab());
  std::mt19937 rng(11);
  for (int i = 0; i < 150; ++i) {
    const std::string t = random_text(rng, 1 + rng() % 30);
    REQUIRE(tok.encode(t, false, false) == ref.encode(t));
  }
  const std::string_view corpus = builtin_corpus().substr(0, 3000);
  CHECK(tok.encode(corpus, false, false) == ref.encode(corpus));
  // Long runs with many equal pairs exercise the heap's tie order (leftmost first).
  for (size_t n : {2u, 3u, 4u, 5u, 63u, 64u, 65u, 1001u}) {
    const std::string a(n, 'a'), dots(n, '.');
    CHECK(tok.encode(a, false, false) == ref.encode(a));
    CHECK(tok.encode(dots, false, false) == ref.encode(dots));
  }
}

TEST_CASE("builtin vocabulary round-trips arbitrary bytes", "[tokenizer]") {
  const Tokenizer& tok = builtin_tokenizer();
  CHECK(tok.n_vocab() == 2048);
  const std::vector<std::string> texts = {
      "", " ", "Hello world", "The machine reads the file.\n\n", "你好，世界", "こんにちは", "🚀 (normal) 😶‍🌫️",
      "crème brûlée", "\xff\xfe invalid \xc3 bytes \xed\xa0\x80", std::string("nul\0byte", 8), "1234567890",
      "<|im_start|>user\nhi<|im_end|>"};
  for (const std::string& t : texts) {
    const auto ids = tok.encode(t, true, false);
    for (int32_t id : ids) CHECK(tok.token_type(id) == TokenType::normal);
    CHECK(tok.decode(ids) == t);
  }
  std::mt19937 rng(3);
  for (int i = 0; i < 100; ++i) {
    std::string t(rng() % 64, '\0');
    for (char& c : t) c = char(rng());
    REQUIRE(tok.decode(tok.encode(t, false, true)) == t);
  }
  // Learned merges compress English: the corpus takes well under half a token per byte.
  const auto ids = tok.encode(builtin_corpus(), false, false);
  CHECK(ids.size() * 3 < builtin_corpus().size());
}

TEST_CASE("special tokens are parsed only with parse_special", "[tokenizer]") {
  const Tokenizer& tok = builtin_tokenizer();
  const int32_t im_start = *tok.find_token("<|im_start|>");
  const int32_t im_end = *tok.find_token("<|im_end|>");
  const std::string text = "<|im_start|>user\nhi<|im_end|>\n";
  const auto with = tok.encode(text, false, true);
  REQUIRE(with.size() >= 4);
  CHECK(with.front() == im_start);
  CHECK(std::count(with.begin(), with.end(), im_end) == 1);
  CHECK(tok.decode(with) == text);
  CHECK(tok.decode(with, /*special=*/false) == "user\nhi\n");
  const auto without = tok.encode(text, false, false);
  CHECK(std::count(without.begin(), without.end(), im_start) == 0);
  CHECK(std::count(without.begin(), without.end(), im_end) == 0);
  CHECK(tok.decode(without) == text);
  // Adjacent and partial specials.
  const auto two = tok.encode("<|im_end|><|im_end|><|im_end", false, true);
  CHECK(std::count(two.begin(), two.end(), im_end) == 2);
  CHECK(tok.decode(two) == "<|im_end|><|im_end|><|im_end");

  CHECK(tok.is_eog(im_end));
  CHECK(tok.is_eog(*tok.find_token("<|endoftext|>")));
  CHECK_FALSE(tok.is_eog(im_start));
  CHECK_FALSE(tok.is_eog(-1));
  CHECK_FALSE(tok.is_eog(1 << 30));
  CHECK(tok.eos() == im_end);
  CHECK(tok.bos() == *tok.find_token("<|endoftext|>"));
  CHECK(tok.token_to_piece(-5).empty());
  CHECK(tok.token_to_piece(2047 + 1).empty());
}

TEST_CASE("add_special follows add_bos_token and add_eos_token", "[tokenizer]") {
  VocabData v = builtin_vocab();
  v.add_bos_token = true;
  v.add_eos_token = true;
  auto tok = Tokenizer::from_vocab(v);
  REQUIRE(tok.ok());
  const auto ids = tok->encode("hi", true, false);
  REQUIRE(ids.size() >= 3);
  CHECK(ids.front() == int32_t(v.bos_token_id));
  CHECK(ids.back() == int32_t(v.eos_token_id));
  CHECK(tok->encode("hi", false, false).size() == ids.size() - 2);
}

TEST_CASE("user-defined tokens are always cut out; unused ones never", "[tokenizer]") {
  VocabData v = builtin_vocab();
  const auto tool = int32_t(v.tokens.size()), pad = tool + 1;
  v.tokens.push_back("<tool>");
  v.token_types.push_back(int32_t(TokenType::user_defined));
  v.tokens.push_back("[PAD" + std::to_string(pad) + "]");
  v.token_types.push_back(int32_t(TokenType::unused));
  auto tok = Tokenizer::from_vocab(v);
  REQUIRE(tok.ok());
  const std::string text = "a<tool>b " + v.tokens[pad];
  const auto ids = tok->encode(text, false, false);
  CHECK(std::count(ids.begin(), ids.end(), tool) == 1);
  CHECK(std::count(ids.begin(), ids.end(), pad) == 0);
  CHECK(tok->decode(ids) == text);
  CHECK(tok->token_to_piece(pad).empty());
  CHECK(tok->token_to_piece(tool, /*special=*/false) == "<tool>");
}

TEST_CASE("from_vocab rejects what it cannot run", "[tokenizer]") {
  VocabData v = builtin_vocab();
  v.model = "llama";
  auto r = Tokenizer::from_vocab(v);
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().code() == ErrorCode::unsupported);
  CHECK_THAT(r.status().message(), Catch::Contains("'llama'"));

  v = builtin_vocab();
  v.pre = "deepseek-llm";
  r = Tokenizer::from_vocab(v);
  REQUIRE_FALSE(r.ok());
  CHECK_THAT(r.status().message(), Catch::Contains("tokenizer.ggml.pre 'deepseek-llm'"));

  v = builtin_vocab();
  v.tokens[32] = "not a space";
  r = Tokenizer::from_vocab(v);
  REQUIRE_FALSE(r.ok());
  CHECK_THAT(r.status().message(), Catch::Contains("0x20"));

  v = builtin_vocab();
  v.eos_token_id = 5000;
  r = Tokenizer::from_vocab(v);
  REQUIRE_FALSE(r.ok());
  CHECK_THAT(r.status().message(), Catch::Contains("eos_token_id = 5000"));

  v = builtin_vocab();
  v.merges[3] = "nospace";
  r = Tokenizer::from_vocab(v);
  REQUIRE_FALSE(r.ok());
  CHECK_THAT(r.status().message(), Catch::Contains("merges[3]"));

  v = builtin_vocab();
  v.token_types.pop_back();
  CHECK_FALSE(Tokenizer::from_vocab(v).ok());
  v = builtin_vocab();
  v.token_types[9] = 42;
  CHECK_FALSE(Tokenizer::from_vocab(v).ok());
}

TEST_CASE("streaming detokenizer holds back split characters", "[tokenizer]") {
  const Tokenizer& tok = builtin_tokenizer();
  // "你" (E4 BD A0) is not in the small vocabulary: three byte tokens.
  const auto ids = tok.encode("a你b", false, false);
  REQUIRE(ids.size() == 5);
  Detokenizer d(tok);
  CHECK(d.push(ids[0]) == "a");
  CHECK(d.push(ids[1]).empty());
  CHECK(d.pending_bytes() == 1);
  CHECK(d.push(ids[2]).empty());
  CHECK(d.push(ids[3]) == "你");
  CHECK(d.push(ids[4]) == "b");
  CHECK(d.flush().empty());

  // A 4-byte emoji fed byte by byte, then an ill-formed byte and a dangling lead at the end.
  std::string out;
  Detokenizer e(tok);
  for (int32_t id : tok.encode("🚀", false, false)) out += e.push(id);
  CHECK(out == "🚀");
  CHECK(e.push(tok.encode("\xff", false, false).at(0)) == "\xEF\xBF\xBD");
  CHECK(e.push(tok.encode("\xe4", false, false).at(0)).empty());
  CHECK(e.flush() == "\xEF\xBF\xBD");
  CHECK(e.pending_bytes() == 0);
  // A lead followed by a non-continuation: the lead is replaced, the next byte survives.
  CHECK(e.push(tok.encode("\xe4", false, false).at(0)).empty());
  CHECK(e.push(tok.encode("x", false, false).at(0)) == "\xEF\xBF\xBDx");

  // Whatever the split, the stream equals the decoded text when that is valid UTF-8.
  std::mt19937 rng(5);
  for (int i = 0; i < 50; ++i) {
    std::string t;
    for (int j = 0; j < 20; ++j) t += std::vector<std::string>{"é", "你", "🦙", " x", "\n", "—"}[rng() % 6];
    Detokenizer s(tok);
    std::string streamed;
    for (int32_t id : tok.encode(t, false, false)) streamed += s.push(id);
    streamed += s.flush();
    REQUIRE(streamed == t);
  }
}

TEST_CASE("ChatML rendering", "[tokenizer]") {
  const std::vector<ChatMessage> msgs = {{"system", "You are a helpful assistant."}, {"user", "Hi"}};
  CHECK(render_chatml(msgs, true) ==
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\n");
  CHECK(render_chatml(std::span(msgs).subspan(1), false) == "<|im_start|>user\nHi<|im_end|>\n");
  CHECK(render_chatml({}, true) == "<|im_start|>assistant\n");
}

namespace {

std::string read_all(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<std::string> split_on(const std::string& s, const std::string& sep) {
  std::vector<std::string> out;
  size_t pos = 0;
  for (size_t at; (at = s.find(sep, pos)) != std::string::npos; pos = at + sep.size()) out.push_back(s.substr(pos, at - pos));
  out.push_back(s.substr(pos));
  return out;
}

}  // namespace

TEST_CASE("qwen2 vocabulary reproduces llama.cpp's test vectors", "[tokenizer][data]") {
  const auto data = test::shared_data_dir();
  REQUIRE(data);
  const Tokenizer* tok = &test::qwen_tokenizer();
  CHECK(tok->n_vocab() == 151936);
  CHECK(tok->n_merges() == 151387);

  // Both files end with their separator, so the last piece of each is the empty case "" -> "".
  const auto inputs = split_on(read_all(*data / "qwen2-vocab-test.inp"), "\n__ggml_vocab_test__\n");
  const auto outputs = split_on(read_all(*data / "qwen2-vocab-test.out"), "\n");
  REQUIRE(inputs.size() == 47);
  REQUIRE(outputs.size() == 47);
  for (size_t i = 0; i < inputs.size(); ++i) {
    std::vector<int32_t> expected;
    std::istringstream ss(outputs[i]);
    for (int32_t id; ss >> id;) expected.push_back(id);
    INFO("case " << i << ": '" << inputs[i] << "'");
    const auto ids = tok->encode(inputs[i], false, false);
    CHECK(ids == expected);
    CHECK(tok->decode(ids) == inputs[i]);
  }

  const std::string chat = render_chatml(std::vector<ChatMessage>{{"user", "What is 2+2?"}}, true);
  CHECK(chat == "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n");
  CHECK(tok->encode(chat, true, true) ==
        std::vector<int32_t>{151644, 872, 198, 3838, 374, 220, 17, 10, 17, 30, 151645, 198, 151644, 77091, 198});
  CHECK(tok->is_eog(151645));
  CHECK(tok->is_eog(151643));
  CHECK_FALSE(tok->is_eog(151644));
  CHECK(tok->token_to_piece(151644) == "<|im_start|>");
  CHECK(tok->token_to_piece(151700).empty());  // [PAD151700] is UNUSED
}
