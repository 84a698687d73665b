// VocabData: the `tokenizer.ggml.*` content the model maker writes (spec §3.5, §4).
//
// vocab_from_tiktoken(): the real Qwen2 vocabulary from a tiktoken ranks file
//   (`base64(token bytes) rank` per line; ids = ranks), tokens in GPT-2 byte->unicode form,
//   merges derived from the ranks, `pre = qwen2`, special tokens <|endoftext|> 151643,
//   <|im_start|> 151644, <|im_end|> 151645 (CONTROL), `[PAD{i}]` (UNUSED) up to n_vocab,
//   bos 151643, eos 151645, a ChatML chat template.
// vocab_builtin(): a small byte-level BPE learned (deterministically) from text shipped
//   with Tandem: 256 byte tokens + learned merges + the same three specials at the end,
//   padded to n_vocab; `pre = qwen2`, same chat template.
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
// n_vocab >= 259 + n_merges; the BPE part has min(n_vocab - 3, 256 + max_merges) tokens.
VocabData vocab_builtin(uint32_t n_vocab);

}  // namespace tandem
