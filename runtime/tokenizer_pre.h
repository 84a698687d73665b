// PreTokenizer: splits text into the "words" that byte-level BPE merges within
// (tokenizer.ggml.pre; llama.cpp src/llama-vocab.cpp, LLAMA_VOCAB_PRE_TYPE_QWEN2).
//
// Supported: "qwen2", the regex of spec §4.2 in llama.cpp form
//   (?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}
//   | ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
// compiled with PCRE2 in UTF + UCP mode (JIT when available). Anything else is an
// `unsupported` error naming it, as llama.cpp refuses unknown pre-tokenizers.
//
// Ill-formed UTF-8 never matches (PCRE2_MATCH_INVALID_UTF); each maximal run of bytes that
// no match covers becomes a word of its own, so every input byte lands in exactly one word
// and BPE turns unknown bytes into byte tokens. (llama.cpp instead replaces such bytes by
// U+FFFD before splitting, which loses them.)
// Thread-safe: split() is const and allocates its own match state.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace tandem {

class PreTokenizer {
 public:
  static Result<PreTokenizer> create(std::string_view pre_name);

  // Appends the words of `text`, in order, as views into `text`; their concatenation is `text`.
  void split(std::string_view text, std::vector<std::string_view>& words) const;

  const std::string& name() const;

 private:
  struct Impl;
  explicit PreTokenizer(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<const Impl> impl_;
};

}  // namespace tandem
