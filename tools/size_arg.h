// Size arguments (--mem-limit, --gpu-mem, --ram): "8G", "512M", "1.5G", "4096K" (binary
// units, an optional trailing B), or plain bytes.
#pragma once

#include <cctype>
#include <cmath>
#include <cstdint>
#include <string>

#include "core/status.h"

namespace tandem::tools {

inline Result<uint64_t> parse_size(const std::string& text, const char* flag) {
  size_t pos = 0;
  double value = 0;
  try {
    value = std::stod(text, &pos);
  } catch (...) {
    pos = 0;
  }
  std::string suffix = text.substr(pos);
  for (auto& c : suffix) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  if (suffix.size() == 2 && suffix[1] == 'B') suffix.pop_back();  // "GB", "MiB"-less spellings
  double scale = 1;
  if (suffix == "K") scale = 1024.0;
  else if (suffix == "M") scale = 1024.0 * 1024.0;
  else if (suffix == "G") scale = 1024.0 * 1024.0 * 1024.0;
  else if (suffix == "T") scale = 1024.0 * 1024.0 * 1024.0 * 1024.0;
  else if (!suffix.empty()) pos = 0;
  if (pos == 0 || !std::isfinite(value) || value < 0 || value * scale > 1.8e19) {
    return make_error(ErrorCode::invalid_argument, "{}: '{}' is not a size (bytes, or a number with K, M, G or T)",
                      flag, text);
  }
  return static_cast<uint64_t>(value * scale);
}

}  // namespace tandem::tools
