#include "runtime/tokenizer.h"

#include <algorithm>
#include <array>
#include <queue>
#include <unordered_map>

#include "core/log.h"
#include "runtime/tokenizer_pre.h"
#include "runtime/unicode_bytes.h"
#include "runtime/unicode_utf8.h"

namespace tandem {
namespace {

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

uint64_t pair_key(int32_t left, int32_t right) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
}

struct Merge {
  int32_t rank;
  int32_t result;
};

struct Special {
  std::string text;
  int32_t id;
  bool control;
};

}  // namespace

struct Tokenizer::Impl {
  std::vector<std::string> tokens;
  std::vector<TokenType> types;
  std::vector<std::string> pieces;  // token_to_piece(id, special=true)
  std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>> token_to_id;
  std::array<int32_t, 256> byte_token{};
  std::unordered_map<uint64_t, Merge> merges;
  std::vector<Special> specials;  // longest first
  std::array<std::vector<uint32_t>, 256> specials_by_byte;  // indices into specials, by first byte
  std::vector<bool> eog;
  PreTokenizer pre;
  int32_t bos = -1, eos = -1;
  std::optional<int32_t> pad;
  bool add_bos = false, add_eos = false;
  std::string chat_template;

  explicit Impl(PreTokenizer p) : pre(std::move(p)) {}

  void bpe_word(std::string_view word, std::vector<int32_t>& out) const;
  void encode_fragment(std::string_view text, std::vector<int32_t>& out) const;
};

void Tokenizer::Impl::bpe_word(std::string_view word, std::vector<int32_t>& out) const {
  if (word.size() == 1) {
    out.push_back(byte_token[static_cast<uint8_t>(word[0])]);
    return;
  }
  // Linked list of symbols plus a min-heap of candidate merges (rank, then leftmost), the
  // usual O(n log n) BPE; stale heap entries are recognised by re-checking the pair.
  struct Symbol {
    int32_t id;
    int32_t prev, next;
  };
  struct Candidate {
    int32_t rank, left, right, result;
    bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : left > o.left; }
  };
  std::vector<Symbol> sym(word.size());
  for (size_t i = 0; i < word.size(); ++i) {
    sym[i] = {byte_token[static_cast<uint8_t>(word[i])], static_cast<int32_t>(i) - 1,
              i + 1 < word.size() ? static_cast<int32_t>(i + 1) : -1};
  }
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> heap;
  const auto consider = [&](int32_t left, int32_t right) {
    if (left < 0 || right < 0) return;
    auto it = merges.find(pair_key(sym[left].id, sym[right].id));
    if (it != merges.end()) heap.push({it->second.rank, left, right, it->second.result});
  };
  for (int32_t i = 0; i + 1 < static_cast<int32_t>(word.size()); ++i) consider(i, i + 1);
  while (!heap.empty()) {
    const Candidate c = heap.top();
    heap.pop();
    Symbol& l = sym[c.left];
    if (l.id < 0 || l.next != c.right || sym[c.right].id < 0) continue;
    auto it = merges.find(pair_key(l.id, sym[c.right].id));
    if (it == merges.end() || it->second.rank != c.rank) continue;  // one side changed meanwhile
    l.id = c.result;
    sym[c.right].id = -1;
    l.next = sym[c.right].next;
    if (l.next >= 0) sym[l.next].prev = c.left;
    consider(l.prev, c.left);
    consider(c.left, l.next);
  }
  for (int32_t i = 0; i >= 0; i = sym[i].next) out.push_back(sym[i].id);
}

void Tokenizer::Impl::encode_fragment(std::string_view text, std::vector<int32_t>& out) const {
  std::vector<std::string_view> words;
  pre.split(text, words);
  for (std::string_view w : words) bpe_word(w, out);
}

Result<Tokenizer> Tokenizer::from_vocab(const VocabData& v) {
  if (v.model != "gpt2") {
    return make_error(ErrorCode::unsupported,
                      "unsupported tokenizer.ggml.model '{}' (supported: gpt2, byte-level BPE)", v.model);
  }
  TANDEM_ASSIGN_OR_RETURN(PreTokenizer pre, PreTokenizer::create(v.pre));
  if (v.tokens.empty()) return make_error(ErrorCode::invalid_file, "tokenizer.ggml.tokens is empty");
  if (v.tokens.size() > static_cast<size_t>(INT32_MAX)) {
    return make_error(ErrorCode::invalid_file, "tokenizer.ggml.tokens has {} entries (too many)", v.tokens.size());
  }
  if (!v.token_types.empty() && v.token_types.size() != v.tokens.size()) {
    return make_error(ErrorCode::invalid_file, "tokenizer.ggml.token_type has {} entries, tokenizer.ggml.tokens {}",
                      v.token_types.size(), v.tokens.size());
  }
  const auto n = static_cast<int32_t>(v.tokens.size());
  auto impl = std::make_shared<Impl>(std::move(pre));
  impl->tokens = v.tokens;
  impl->types.resize(v.tokens.size(), TokenType::normal);
  impl->pieces.resize(v.tokens.size());
  impl->token_to_id.reserve(v.tokens.size());
  for (int32_t i = 0; i < n; ++i) {
    if (!v.token_types.empty()) {
      const int32_t t = v.token_types[i];
      if (t < 0 || t > static_cast<int32_t>(TokenType::byte)) {
        return make_error(ErrorCode::invalid_file, "tokenizer.ggml.token_type[{}] = {} is not a llama_token_type", i, t);
      }
      impl->types[i] = static_cast<TokenType>(t);
    }
    const std::string& text = v.tokens[i];
    impl->token_to_id[text] = i;
    switch (impl->types[i]) {
      case TokenType::normal:
      case TokenType::undefined:
      case TokenType::byte:
        impl->pieces[i] = unicode_to_bytes(text);
        break;
      case TokenType::control:
      case TokenType::user_defined:
        impl->pieces[i] = text;
        if (!text.empty()) impl->specials.push_back({text, i, impl->types[i] == TokenType::control});
        break;
      default:
        break;  // unused / unknown: no piece
    }
  }
  for (int b = 0; b < 256; ++b) {
    auto it = impl->token_to_id.find(byte_to_unicode(static_cast<uint8_t>(b)));
    if (it == impl->token_to_id.end()) {
      return make_error(ErrorCode::invalid_file,
                        "tokenizer.ggml.tokens lacks the byte token '{}' for byte 0x{:02X} (not a byte-level BPE vocabulary)",
                        byte_to_unicode(static_cast<uint8_t>(b)), b);
    }
    impl->byte_token[b] = it->second;
  }
  std::stable_sort(impl->specials.begin(), impl->specials.end(),
                   [](const Special& a, const Special& b) { return a.text.size() > b.text.size(); });
  for (uint32_t i = 0; i < impl->specials.size(); ++i) {
    impl->specials_by_byte[static_cast<uint8_t>(impl->specials[i].text[0])].push_back(i);
  }

  impl->merges.reserve(v.merges.size());
  size_t skipped = 0;
  std::string joined;
  for (size_t r = 0; r < v.merges.size(); ++r) {
    const std::string& m = v.merges[r];
    // llama.cpp splits at the first space after the first character.
    const size_t sp = m.size() > 1 ? m.find(' ', 1) : std::string::npos;
    if (sp == std::string::npos) {
      return make_error(ErrorCode::invalid_file, "tokenizer.ggml.merges[{}] = '{}' is not of the form 'left right'", r, m);
    }
    const std::string_view left(m.data(), sp), right(m.data() + sp + 1, m.size() - sp - 1);
    joined.assign(left);
    joined.append(right);
    auto l = impl->token_to_id.find(left), rt = impl->token_to_id.find(right), res = impl->token_to_id.find(joined);
    if (l == impl->token_to_id.end() || rt == impl->token_to_id.end() || res == impl->token_to_id.end()) {
      ++skipped;
      continue;
    }
    // A repeated pair keeps its first (lowest) rank.
    impl->merges.try_emplace(pair_key(l->second, rt->second), Merge{static_cast<int32_t>(r), res->second});
  }
  if (skipped) log_debug("tokenizer: ignored {} merges whose parts or result are not tokens", skipped);

  const auto check_id = [&](uint32_t id, const char* key) -> Status {
    if (id >= static_cast<uint32_t>(n)) {
      return make_error(ErrorCode::invalid_file, "tokenizer.ggml.{} = {} is not below n_vocab {}", key, id, n);
    }
    return Status::success();
  };
  TANDEM_RETURN_IF_ERROR(check_id(v.bos_token_id, "bos_token_id"));
  TANDEM_RETURN_IF_ERROR(check_id(v.eos_token_id, "eos_token_id"));
  if (v.padding_token_id) TANDEM_RETURN_IF_ERROR(check_id(*v.padding_token_id, "padding_token_id"));
  impl->bos = static_cast<int32_t>(v.bos_token_id);
  impl->eos = static_cast<int32_t>(v.eos_token_id);
  if (v.padding_token_id) impl->pad = static_cast<int32_t>(*v.padding_token_id);
  impl->add_bos = v.add_bos_token;
  impl->add_eos = v.add_eos_token;
  impl->chat_template = v.chat_template;

  impl->eog.assign(v.tokens.size(), false);
  impl->eog[impl->eos] = true;
  for (std::string_view t : {"<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|end|>", "<end_of_turn>", "<|return|>"}) {
    auto it = impl->token_to_id.find(t);
    if (it == impl->token_to_id.end()) continue;
    const TokenType ty = impl->types[it->second];
    if (ty == TokenType::control || ty == TokenType::user_defined) impl->eog[it->second] = true;
  }
  return Tokenizer(std::move(impl));
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special, bool parse_special) const {
  const Impl& im = *impl_;
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 2);
  if (add_special && im.add_bos) out.push_back(im.bos);
  size_t frag_start = 0, pos = 0;
  bool any_special = false;
  for (const Special& s : im.specials) any_special |= parse_special || !s.control;
  while (any_special && pos < text.size()) {
    const Special* hit = nullptr;
    for (uint32_t si : im.specials_by_byte[static_cast<uint8_t>(text[pos])]) {  // longest first
      const Special& s = im.specials[si];
      if ((s.control && !parse_special) || s.text.size() > text.size() - pos) continue;
      if (text.compare(pos, s.text.size(), s.text) == 0) {
        hit = &s;
        break;
      }
    }
    if (!hit) {
      ++pos;
      continue;
    }
    if (pos > frag_start) im.encode_fragment(text.substr(frag_start, pos - frag_start), out);
    out.push_back(hit->id);
    pos += hit->text.size();
    frag_start = pos;
  }
  if (frag_start < text.size()) im.encode_fragment(text.substr(frag_start), out);
  if (add_special && im.add_eos) out.push_back(im.eos);
  return out;
}

std::string Tokenizer::token_to_piece(int32_t id, bool special) const {
  if (id < 0 || id >= n_vocab()) return {};
  if (!special && impl_->types[id] == TokenType::control) return {};
  return impl_->pieces[id];
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool special) const {
  std::string out;
  for (int32_t id : ids) out += token_to_piece(id, special);
  return out;
}

bool Tokenizer::is_eog(int32_t id) const { return id >= 0 && id < n_vocab() && impl_->eog[id]; }
int32_t Tokenizer::bos() const { return impl_->bos; }
int32_t Tokenizer::eos() const { return impl_->eos; }
std::optional<int32_t> Tokenizer::padding() const { return impl_->pad; }
bool Tokenizer::add_bos() const { return impl_->add_bos; }
bool Tokenizer::add_eos() const { return impl_->add_eos; }
int32_t Tokenizer::n_vocab() const { return static_cast<int32_t>(impl_->tokens.size()); }
size_t Tokenizer::n_merges() const { return impl_->merges.size(); }
const std::string& Tokenizer::chat_template() const { return impl_->chat_template; }
const std::string& Tokenizer::pre() const { return impl_->pre.name(); }

const std::string& Tokenizer::token_text(int32_t id) const {
  static const std::string k_empty;
  return id >= 0 && id < n_vocab() ? impl_->tokens[id] : k_empty;
}

TokenType Tokenizer::token_type(int32_t id) const {
  return id >= 0 && id < n_vocab() ? impl_->types[id] : TokenType::undefined;
}

std::optional<int32_t> Tokenizer::find_token(std::string_view text) const {
  auto it = impl_->token_to_id.find(text);
  if (it == impl_->token_to_id.end()) return std::nullopt;
  return it->second;
}

std::string render_chatml(std::span<const ChatMessage> messages, bool add_generation_prompt) {
  std::string out;
  for (const ChatMessage& m : messages) {
    out += "<|im_start|>";
    out += m.role;
    out += '\n';
    out += m.content;
    out += "<|im_end|>\n";
  }
  if (add_generation_prompt) out += "<|im_start|>assistant\n";
  return out;
}

std::string Detokenizer::push(int32_t id) {
  pending_ += tokenizer_->token_to_piece(id, special_);
  std::string out;
  size_t pos = 0;
  while (pos < pending_.size()) {
    const Utf8Scan sc = utf8_scan(pending_, pos);
    if (sc.kind == Utf8Kind::incomplete) break;  // may complete with the next token
    if (sc.kind == Utf8Kind::complete) {
      out.append(pending_, pos, sc.length);
    } else {
      out += k_utf8_replacement;
    }
    pos += sc.length;
  }
  pending_.erase(0, pos);
  return out;
}

std::string Detokenizer::flush() {
  std::string out = pending_.empty() ? std::string() : std::string(k_utf8_replacement);
  pending_.clear();
  return out;
}

}  // namespace tandem
