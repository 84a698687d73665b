// Whole-file text reads and writes for the planner's JSON files, errors as Status (internal).
#pragma once

#include <filesystem>
#include <string>
#include <string_view>

#include "core/status.h"

namespace tandem::planner_json {

Result<std::string> read_text_file(const std::filesystem::path& path);
Status write_text_file(const std::filesystem::path& path, std::string_view text);

}  // namespace tandem::planner_json
