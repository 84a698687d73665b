// Logging to stderr. Level from TANDEM_LOG=error|warn|info|debug (default info);
// set_log_level() overrides. Thread-safe (one line per call).
#pragma once

#include <fmt/format.h>

#include <string_view>

namespace tandem {

enum class LogLevel { error = 0, warn = 1, info = 2, debug = 3 };

LogLevel log_level();
void set_log_level(LogLevel level);
void log_write(LogLevel level, std::string_view message);

template <class... Args>
void log_error(fmt::format_string<Args...> f, Args&&... a) {
  log_write(LogLevel::error, fmt::format(f, std::forward<Args>(a)...));
}
template <class... Args>
void log_warn(fmt::format_string<Args...> f, Args&&... a) {
  if (log_level() >= LogLevel::warn) log_write(LogLevel::warn, fmt::format(f, std::forward<Args>(a)...));
}
template <class... Args>
void log_info(fmt::format_string<Args...> f, Args&&... a) {
  if (log_level() >= LogLevel::info) log_write(LogLevel::info, fmt::format(f, std::forward<Args>(a)...));
}
template <class... Args>
void log_debug(fmt::format_string<Args...> f, Args&&... a) {
  if (log_level() >= LogLevel::debug) log_write(LogLevel::debug, fmt::format(f, std::forward<Args>(a)...));
}

}  // namespace tandem
