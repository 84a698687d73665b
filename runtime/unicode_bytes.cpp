#include "runtime/unicode_bytes.h"

#include <array>

#include "runtime/unicode_utf8.h"

namespace tandem {
namespace {

struct ByteMaps {
  std::array<uint32_t, 256> cp_of_byte{};
  std::array<std::string, 256> utf8_of_byte;
  std::array<int16_t, 512> byte_of_cp{};  // every mapped code point is below U+0200; -1 = none

  ByteMaps() {
    byte_of_cp.fill(-1);
    uint32_t next = 256;
    for (uint32_t b = 0; b < 256; ++b) {
      const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
      cp_of_byte[b] = printable ? b : next++;
      utf8_append(utf8_of_byte[b], cp_of_byte[b]);
      byte_of_cp[cp_of_byte[b]] = static_cast<int16_t>(b);
    }
  }
};

const ByteMaps& maps() {
  static const ByteMaps m;
  return m;
}

}  // namespace

std::string_view byte_to_unicode(uint8_t b) { return maps().utf8_of_byte[b]; }

std::string bytes_to_unicode(std::string_view bytes) {
  const auto& m = maps();
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char c : bytes) out += m.utf8_of_byte[static_cast<uint8_t>(c)];
  return out;
}

std::string unicode_to_bytes(std::string_view text) {
  const auto& m = maps();
  std::string out;
  out.reserve(text.size());
  size_t pos = 0;
  while (pos < text.size()) {
    const Utf8Scan sc = utf8_scan(text, pos);
    const size_t len = sc.kind == Utf8Kind::incomplete ? text.size() - pos : sc.length;
    if (sc.kind == Utf8Kind::complete) {
      const uint32_t cp = utf8_decode(text, pos, len);
      if (cp < m.byte_of_cp.size() && m.byte_of_cp[cp] >= 0) {
        out.push_back(static_cast<char>(m.byte_of_cp[cp]));
        pos += len;
        continue;
      }
    }
    out.append(text.substr(pos, len));
    pos += len;
  }
  return out;
}

}  // namespace tandem
