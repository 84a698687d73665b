// UTF-8 scanning for the tokenizer and the streaming detokenizer.
//
// Validity follows Unicode 15 §3.9 table 3-7 (well-formed byte sequences): no overlongs,
// no surrogates (U+D800..U+DFFF), nothing above U+10FFFF. An ill-formed sequence is reported
// as its "maximal subpart" (Unicode §3.9 U+FFFD substitution of maximal subparts, also what
// WHATWG's decoder does), so that each one becomes exactly one U+FFFD when replaced.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace tandem {

enum class Utf8Kind {
  complete,    // s[pos, pos+length) is one well-formed code point
  incomplete,  // s[pos, end) is a proper prefix of a well-formed sequence (more bytes may fix it)
  invalid,     // s[pos, pos+length) is ill-formed (length >= 1, its maximal subpart)
};

struct Utf8Scan {
  Utf8Kind kind;
  size_t length;
};

// Classifies the sequence starting at s[pos] (pos < s.size()).
Utf8Scan utf8_scan(std::string_view s, size_t pos);

// Decodes the well-formed sequence s[pos, pos+length) (precondition: utf8_scan said complete).
uint32_t utf8_decode(std::string_view s, size_t pos, size_t length);

// Appends the UTF-8 encoding of code point cp (cp <= 0x10FFFF).
void utf8_append(std::string& out, uint32_t cp);

// U+FFFD REPLACEMENT CHARACTER in UTF-8.
inline constexpr std::string_view k_utf8_replacement = "\xEF\xBF\xBD";

}  // namespace tandem
