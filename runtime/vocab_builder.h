// VocabData: the `tokenizer.ggml.*` content the model maker writes (spec §3.5, §4).
//
// vocab_from_tiktoken(): the real Qwen2 vocabulary from a tiktoken ranks file
//   (`base64(token bytes) rank` per line; ids = ranks, which must be exactly 0..N-1; blank
//   lines skipped), tokens in GPT-2 byte->unicode form, `pre = qwen2`, special tokens
//   <|endoftext|> N, <|im_start|> N+1, <|im_end|> N+2 (CONTROL; N = 151643 for qwen.tiktoken),
//   `[PAD{id}]` (UNUSED) up to n_vocab, bos N, eos N+2, padding N, add_bos false, ChatML template.
//   Merges are derived from the ranks: for each multi-byte token, rank-BPE over its bytes that
//   may only form tokens of lower rank leaves exactly two parts, its merge (as HF's
//   TikTokenConverter), listed in the rank order of the tokens they make (151,387 merges
//   for qwen.tiktoken; with them, merge-rank BPE reproduces llama.cpp's qwen2 test vectors). Errors name the file and line: no space,
//   bad base64, bad/duplicate/missing rank, repeated bytes, a missing single byte, too small
//   an n_vocab.
// vocab_builtin(): a small byte-level BPE learned (deterministically) from builtin_corpus():
//   classic BPE training over qwen2-pre-tokenized words (merge the most frequent adjacent
//   pair, ties to the smallest (left id, right id); pairs seen once still merge), ids 0..255 =
//   bytes 0..255, then one token per merge whose bytes are new, up to n_vocab - 3 tokens; the
//   same three specials follow, then `[PAD{id}]` when the corpus runs out (about 3,800 tokens).
//   A smaller n_vocab gives a prefix of a larger one's tokens and merges. n_vocab < 259 is
//   raised to 259.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "core/status.h"

namespace tandem {

// llama.cpp's llama_token_type values stored in tokenizer.ggml.token_type.
enum class TokenType : int32_t { undefined = 0, normal = 1, unknown = 2, control = 3,
                                 user_defined = 4, unused = 5, byte = 6 };

struct VocabData {
  std::string model = "gpt2";                 // tokenizer.ggml.model
  std::string pre = "qwen2";                  // tokenizer.ggml.pre
  std::vector<std::string> tokens;            // tokenizer.ggml.tokens (byte->unicode form)
  std::vector<int32_t> token_types;           // tokenizer.ggml.token_type
  std::vector<std::string> merges;            // tokenizer.ggml.merges ("left right")
  uint32_t bos_token_id = 0;
  uint32_t eos_token_id = 0;
  std::optional<uint32_t> padding_token_id;
  bool add_bos_token = false;
  bool add_eos_token = false;                 // tokenizer.ggml.add_eos_token (absent = false)
  std::string chat_template;                  // tokenizer.chat_template (jinja, ChatML)
};

Result<VocabData> vocab_from_tiktoken(const std::filesystem::path& ranks_file, uint32_t n_vocab);
VocabData vocab_builtin(uint32_t n_vocab);

}  // namespace tandem
