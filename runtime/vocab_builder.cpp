#include "runtime/vocab_builder.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <fstream>
#include <map>
#include <sstream>
#include <unordered_map>

#include "runtime/builtin_corpus.h"
#include "runtime/tokenizer_pre.h"
#include "runtime/unicode_bytes.h"

namespace tandem {
namespace {

// The usual Qwen2 ChatML template (tokenizer_config.json of Qwen2 models without tools).
constexpr std::string_view k_chatml_template =
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
    "'<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

constexpr std::array<std::string_view, 3> k_specials = {"<|endoftext|>", "<|im_start|>", "<|im_end|>"};

// Appends <|endoftext|> <|im_start|> <|im_end|> (CONTROL) and [PAD{id}] (UNUSED) up to n_vocab,
// and the ids, flags and template that go with them.
void add_specials_and_padding(VocabData& v, uint32_t n_vocab) {
  const auto first = static_cast<uint32_t>(v.tokens.size());
  for (std::string_view s : k_specials) {
    v.tokens.emplace_back(s);
    v.token_types.push_back(static_cast<int32_t>(TokenType::control));
  }
  for (uint32_t id = first + 3; id < n_vocab; ++id) {
    v.tokens.push_back("[PAD" + std::to_string(id) + "]");
    v.token_types.push_back(static_cast<int32_t>(TokenType::unused));
  }
  v.bos_token_id = first;      // <|endoftext|>, Qwen2's config bos_token_id
  v.eos_token_id = first + 2;  // <|im_end|>, the end of a ChatML turn
  v.padding_token_id = first;  // Qwen2's tokenizer_config pad_token is <|endoftext|>
  v.add_bos_token = false;
  v.chat_template = std::string(k_chatml_template);
}

// RFC 4648 base64 with '=' padding; false on any other character or a bad length.
bool base64_decode(std::string_view in, std::string& out) {
  static const std::array<int8_t, 256> table = [] {
    std::array<int8_t, 256> t{};
    t.fill(-1);
    const char* a = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (int i = 0; i < 64; ++i) t[static_cast<uint8_t>(a[i])] = static_cast<int8_t>(i);
    return t;
  }();
  out.clear();
  if (in.empty() || in.size() % 4 != 0) return false;
  size_t pad = 0;
  if (in.back() == '=') pad = in[in.size() - 2] == '=' ? 2 : 1;
  const size_t n = in.size() - pad;
  uint32_t acc = 0;
  int bits = 0;
  for (size_t i = 0; i < n; ++i) {
    const int8_t d = table[static_cast<uint8_t>(in[i])];
    if (d < 0) return false;
    acc = (acc << 6) | static_cast<uint32_t>(d);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xFF));
    }
  }
  return true;
}

struct ViewHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

}  // namespace

Result<VocabData> vocab_from_tiktoken(const std::filesystem::path& ranks_file, uint32_t n_vocab) {
  const std::string name = ranks_file.string();
  std::ifstream in(ranks_file, std::ios::binary);
  if (!in) return make_error(ErrorCode::not_found, "{}: cannot open tiktoken ranks file", name);
  std::stringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return make_error(ErrorCode::io_error, "{}: read failed", name);
  const std::string text = std::move(ss).str();

  // by_rank[rank] = token bytes; ranks must be exactly 0..N-1, each once.
  std::vector<std::string> by_rank;
  std::vector<size_t> line_of_rank;
  size_t line_no = 0;
  std::string bytes;
  for (size_t pos = 0; pos < text.size();) {
    size_t eol = text.find('\n', pos);
    if (eol == std::string::npos) eol = text.size();
    std::string_view line(text.data() + pos, eol - pos);
    pos = eol + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) continue;
    const size_t sp = line.find(' ');
    if (sp == std::string_view::npos) {
      return make_error(ErrorCode::invalid_file, "{}:{}: expected 'base64 rank', found no space", name, line_no);
    }
    if (!base64_decode(line.substr(0, sp), bytes) || bytes.empty()) {
      return make_error(ErrorCode::invalid_file, "{}:{}: '{}' is not valid base64", name, line_no, line.substr(0, sp));
    }
    const std::string_view rank_text = line.substr(sp + 1);
    uint32_t rank = 0;
    auto [end, ec] = std::from_chars(rank_text.data(), rank_text.data() + rank_text.size(), rank);
    if (ec != std::errc() || end != rank_text.data() + rank_text.size() || rank_text.empty()) {
      return make_error(ErrorCode::invalid_file, "{}:{}: rank '{}' is not an unsigned integer", name, line_no, rank_text);
    }
    if (rank >= n_vocab) {
      return make_error(ErrorCode::invalid_file, "{}:{}: rank {} is not below n_vocab {}", name, line_no, rank, n_vocab);
    }
    if (rank >= by_rank.size()) {
      by_rank.resize(rank + 1);
      line_of_rank.resize(rank + 1, 0);
    }
    if (line_of_rank[rank] != 0) {
      return make_error(ErrorCode::invalid_file, "{}:{}: rank {} already given on line {}", name, line_no, rank,
                        line_of_rank[rank]);
    }
    by_rank[rank] = bytes;
    line_of_rank[rank] = line_no;
  }
  const auto n_bpe = static_cast<uint32_t>(by_rank.size());
  for (uint32_t r = 0; r < n_bpe; ++r) {
    if (line_of_rank[r] == 0) return make_error(ErrorCode::invalid_file, "{}: rank {} is missing", name, r);
  }
  if (static_cast<uint64_t>(n_bpe) + k_specials.size() > n_vocab) {
    return make_error(ErrorCode::invalid_argument, "{}: {} ranks + {} special tokens do not fit in n_vocab {}", name,
                      n_bpe, k_specials.size(), n_vocab);
  }

  std::unordered_map<std::string_view, uint32_t, ViewHash, std::equal_to<>> rank_of;
  rank_of.reserve(n_bpe);
  for (uint32_t r = 0; r < n_bpe; ++r) {
    if (!rank_of.emplace(by_rank[r], r).second) {
      return make_error(ErrorCode::invalid_file, "{}:{}: token bytes repeat those of rank {}", name, line_of_rank[r],
                        rank_of[by_rank[r]]);
    }
  }
  for (int b = 0; b < 256; ++b) {
    if (!rank_of.count(std::string_view(std::string(1, static_cast<char>(b))))) {
      return make_error(ErrorCode::invalid_file, "{}: no token for the single byte 0x{:02X} (not a byte-level BPE file)",
                        name, b);
    }
  }

  VocabData v;
  v.tokens.reserve(n_vocab);
  v.token_types.reserve(n_vocab);
  for (uint32_t r = 0; r < n_bpe; ++r) {
    v.tokens.push_back(bytes_to_unicode(by_rank[r]));
    v.token_types.push_back(static_cast<int32_t>(TokenType::normal));
  }

  // The merge that makes token r: run rank-BPE on its bytes allowing only merges into tokens of
  // lower rank; what remains is the last pair BPE joins (HF's TikTokenConverter does the same).
  // Listing them in order of r makes a merge's rank follow the rank of the token it makes.
  struct Part {
    uint32_t start, len;
  };
  std::vector<Part> parts;
  for (uint32_t r = 0; r < n_bpe; ++r) {
    const std::string_view tok = by_rank[r];
    if (tok.size() < 2) continue;
    parts.clear();
    for (uint32_t i = 0; i < tok.size(); ++i) parts.push_back({i, 1});
    while (parts.size() > 2) {
      uint32_t best_rank = r;
      size_t best = parts.size();
      for (size_t i = 0; i + 1 < parts.size(); ++i) {
        auto it = rank_of.find(tok.substr(parts[i].start, parts[i].len + parts[i + 1].len));
        if (it != rank_of.end() && it->second < best_rank) {
          best_rank = it->second;
          best = i;
        }
      }
      if (best == parts.size()) break;
      parts[best].len += parts[best + 1].len;
      parts.erase(parts.begin() + static_cast<ptrdiff_t>(best) + 1);
    }
    if (parts.size() != 2) continue;  // BPE can never produce this token: it needs no merge
    const uint32_t left = rank_of.find(tok.substr(parts[0].start, parts[0].len))->second;
    const uint32_t right = rank_of.find(tok.substr(parts[1].start, parts[1].len))->second;
    v.merges.push_back(v.tokens[left] + " " + v.tokens[right]);
  }
  add_specials_and_padding(v, n_vocab);
  return v;
}

VocabData vocab_builtin(uint32_t n_vocab) {
  n_vocab = std::max<uint32_t>(n_vocab, 256 + k_specials.size());
  const uint32_t max_bpe = n_vocab - static_cast<uint32_t>(k_specials.size());

  // Word frequencies of the corpus after the qwen2 split; std::map keeps the order portable.
  auto pre = PreTokenizer::create("qwen2");
  std::map<std::string_view, int64_t> freq;
  {
    std::vector<std::string_view> words;
    if (pre.ok()) pre->split(builtin_corpus(), words);
    for (std::string_view w : words) ++freq[w];
  }
  struct Word {
    std::vector<int32_t> sym;
    int64_t count;
  };
  std::vector<Word> words;
  words.reserve(freq.size());
  for (auto& [w, c] : freq) {
    Word word{{}, c};
    for (char ch : w) word.sym.push_back(static_cast<uint8_t>(ch));
    words.push_back(std::move(word));
  }

  std::vector<std::string> token_bytes(256);
  for (int b = 0; b < 256; ++b) token_bytes[b] = std::string(1, static_cast<char>(b));
  std::unordered_map<std::string, int32_t> id_of_bytes;
  for (int b = 0; b < 256; ++b) id_of_bytes[token_bytes[b]] = b;

  const auto key = [](int32_t l, int32_t r) { return (static_cast<uint64_t>(l) << 32) | static_cast<uint32_t>(r); };
  std::unordered_map<uint64_t, int64_t> pairs;
  const auto add_pairs = [&](const Word& w, int64_t sign) {
    for (size_t i = 0; i + 1 < w.sym.size(); ++i) {
      auto& c = pairs[key(w.sym[i], w.sym[i + 1])];
      c += sign * w.count;
      if (c == 0) pairs.erase(key(w.sym[i], w.sym[i + 1]));
    }
  };
  for (const Word& w : words) add_pairs(w, +1);

  std::vector<std::pair<int32_t, int32_t>> merges;
  while (token_bytes.size() < max_bpe) {
    // Most frequent pair; ties go to the smallest (left id, right id) so the result is portable.
    // Pairs seen once still merge (a 30 KB text would otherwise stop short of 2048 tokens);
    // training ends when every word is a single token.
    uint64_t best_key = 0;
    int64_t best_count = 0;
    for (const auto& [k, c] : pairs) {
      if (c > best_count || (c == best_count && k < best_key)) {
        best_count = c;
        best_key = k;
      }
    }
    if (best_count < 1) break;
    const auto l = static_cast<int32_t>(best_key >> 32), r = static_cast<int32_t>(best_key & 0xFFFFFFFFu);
    std::string joined = token_bytes[l] + token_bytes[r];
    int32_t id;
    if (auto it = id_of_bytes.find(joined); it != id_of_bytes.end()) {
      id = it->second;  // the same bytes were already built from another pair
    } else {
      id = static_cast<int32_t>(token_bytes.size());
      token_bytes.push_back(joined);
      id_of_bytes.emplace(std::move(joined), id);
    }
    merges.emplace_back(l, r);
    for (Word& w : words) {
      bool has = false;
      for (size_t i = 0; i + 1 < w.sym.size() && !has; ++i) has = w.sym[i] == l && w.sym[i + 1] == r;
      if (!has) continue;
      add_pairs(w, -1);
      std::vector<int32_t> next;
      next.reserve(w.sym.size());
      for (size_t i = 0; i < w.sym.size(); ++i) {
        if (i + 1 < w.sym.size() && w.sym[i] == l && w.sym[i + 1] == r) {
          next.push_back(id);
          ++i;
        } else {
          next.push_back(w.sym[i]);
        }
      }
      w.sym = std::move(next);
      add_pairs(w, +1);
    }
  }

  VocabData v;
  for (const std::string& b : token_bytes) {
    v.tokens.push_back(bytes_to_unicode(b));
    v.token_types.push_back(static_cast<int32_t>(TokenType::normal));
  }
  for (auto [l, r] : merges) v.merges.push_back(v.tokens[l] + " " + v.tokens[r]);
  add_specials_and_padding(v, n_vocab);
  return v;
}

}  // namespace tandem
