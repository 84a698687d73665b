// GPT-2 byte-level BPE "bytes_to_unicode" mapping (spec §4.2; llama.cpp src/unicode.cpp
// unicode_byte_to_utf8_map, from OpenAI's gpt-2 encoder.py): bytes '!'..'~', '¡'..'¬',
// '®'..'ÿ' map to the code point of the same value; the other 68 bytes map, in byte order,
// to U+0100, U+0101, ... (so ' ' -> 'Ġ' U+0120, '\n' -> 'Ċ' U+010A).
// Token strings of byte-level BPE vocabularies (tokenizer.ggml.tokens) are stored in this form.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace tandem {

// The UTF-8 text of the code point that byte b maps to (1 or 2 bytes).
std::string_view byte_to_unicode(uint8_t b);

// Maps every byte of `bytes` to its code point (the form stored in GGUF vocabularies).
std::string bytes_to_unicode(std::string_view bytes);

// Inverse: each code point of `text` that is in the mapping becomes its byte; code points
// outside it (and ill-formed UTF-8) are copied through unchanged, so decoding never fails.
std::string unicode_to_bytes(std::string_view text);

}  // namespace tandem
