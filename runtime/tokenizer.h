// Tokenizer: byte-level BPE as llama.cpp runs it for `tokenizer.ggml.model = gpt2`
// (src/llama-vocab.cpp, llm_tokenizer_bpe), with the qwen2 pre-tokenizer (tokenizer_pre.h).
//
// encode(text, add_special, parse_special):
//   1. parse_special: CONTROL tokens are cut out of the text as whole strings first (longest
//      match at the leftmost position). USER_DEFINED tokens are always cut out, as llama.cpp
//      does (tokenizer_st_partition skips only CONTROL/UNKNOWN when parse_special is off).
//   2. every remaining fragment is split into words by the pre-tokenizer;
//   3. each word's bytes start as byte tokens (the token whose text is the GPT-2
//      byte->unicode form of the byte) and the adjacent pair with the lowest merge rank
//      (index in tokenizer.ggml.merges) is merged until none is left (leftmost on ties).
//   add_special: BOS first when add_bos_token, EOS last when add_eos_token.
// Merges whose parts or result are not tokens are ignored (llama.cpp would still form
// such intermediate symbols; no real byte-level vocabulary has them).
//
// Ids are int32 in [0, n_vocab). Out-of-range ids decode to "" (never crash).
// token_to_piece(): NORMAL tokens -> raw bytes (byte->unicode undone); CONTROL and
// USER_DEFINED -> their text (CONTROL only when `special`); UNUSED/others -> "".
//
// End of generation (is_eog): eos, plus every CONTROL/USER_DEFINED token whose text is one
// of <|im_end|>, <|endoftext|>, <|eot_id|>, <|end|>, <end_of_turn>, <|return|>, as llama.cpp
// finds them by text (src/llama-vocab.cpp, "auto-detect special tokens by text").
//
// Thread-safety: a Tokenizer is immutable after construction; all const methods may be
// called concurrently. Copies share the tables.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "runtime/vocab_builder.h"

namespace tandem {

class GgufFile;

struct ChatMessage {
  std::string role;     // "system", "user", "assistant"
  std::string content;
};

class Tokenizer {
 public:
  // Checks: model "gpt2" (others -> unsupported, naming it), pre "qwen2" (unknown ->
  // unsupported, as llama.cpp), tokens non-empty (a repeated text maps to its last id, as
  // llama.cpp), token_types (if given) one per token, every byte has its byte token,
  // bos/eos/padding ids < n_vocab, merges of the form "a b".
  static Result<Tokenizer> from_vocab(const VocabData& vocab);
  // Reads tokenizer.ggml.{model,pre,tokens,token_type,merges,bos_token_id,eos_token_id,
  // padding_token_id,add_bos_token,add_eos_token} and tokenizer.chat_template (spec §3.5).
  // Missing model/pre/tokens/merges/bos/eos -> not_found naming the key (key of the wrong
  // type -> the GgufFile getter's error); add_bos/add_eos default to false. Errors are
  // prefixed with the file's path.
  static Result<Tokenizer> from_gguf(const GgufFile& file);

  std::vector<int32_t> encode(std::string_view text, bool add_special, bool parse_special) const;

  std::string token_to_piece(int32_t id, bool special = true) const;
  // Concatenated pieces (raw bytes; may be ill-formed UTF-8 when the ids split a character).
  std::string decode(std::span<const int32_t> ids, bool special = true) const;

  bool is_eog(int32_t id) const;
  int32_t bos() const;
  int32_t eos() const;
  std::optional<int32_t> padding() const;
  bool add_bos() const;
  bool add_eos() const;
  int32_t n_vocab() const;
  size_t n_merges() const;  // merges actually usable (see above)
  const std::string& token_text(int32_t id) const;  // stored form; "" when out of range
  TokenType token_type(int32_t id) const;            // undefined when out of range
  std::optional<int32_t> find_token(std::string_view text) const;  // by stored text
  const std::string& chat_template() const;
  const std::string& pre() const;

 private:
  struct Impl;
  explicit Tokenizer(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<const Impl> impl_;
};

// ChatML (spec §4.4; llama.cpp src/llama-chat.cpp LLM_CHAT_TEMPLATE_CHATML): per message
// "<|im_start|>" + role + "\n" + content + "<|im_end|>\n", then "<|im_start|>assistant\n"
// when add_generation_prompt. Encode the result with parse_special = true.
std::string render_chatml(std::span<const ChatMessage> messages, bool add_generation_prompt);

// Streaming detokenizer: feed one token at a time, get back only complete UTF-8.
// A trailing partial multi-byte sequence is held back until a later token completes it;
// ill-formed bytes come out as U+FFFD (one per maximal subpart, Unicode §3.9) as soon as they
// are known to be ill-formed; flush() returns what is held, a partial sequence as U+FFFD.
class Detokenizer {
 public:
  explicit Detokenizer(const Tokenizer& tokenizer, bool special = true)
      : tokenizer_(&tokenizer), special_(special) {}
  std::string push(int32_t id);
  std::string flush();
  size_t pending_bytes() const { return pending_.size(); }

 private:
  const Tokenizer* tokenizer_;
  bool special_;
  std::string pending_;
};

}  // namespace tandem
