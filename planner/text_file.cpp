#include "planner/text_file.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

namespace tandem::planner_json {

Result<std::string> read_text_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return make_error(errno == ENOENT ? ErrorCode::not_found : ErrorCode::io_error,
                      "{}: cannot open ({})", path.string(), std::strerror(errno));
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return make_error(ErrorCode::io_error, "{}: read failed", path.string());
  return ss.str();
}

Status write_text_file(const std::filesystem::path& path, std::string_view text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) {
    return make_error(ErrorCode::io_error, "{}: cannot create ({})", path.string(),
                      std::strerror(errno));
  }
  out.write(text.data(), static_cast<std::streamsize>(text.size()));
  out.close();
  if (!out) return make_error(ErrorCode::io_error, "{}: write failed", path.string());
  return Status::success();
}

}  // namespace tandem::planner_json
