#include "core/log.h"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>

namespace tandem {
namespace {

LogLevel level_from_env() {
  const char* e = std::getenv("TANDEM_LOG");
  if (e == nullptr) return LogLevel::info;
  if (std::strcmp(e, "error") == 0) return LogLevel::error;
  if (std::strcmp(e, "warn") == 0) return LogLevel::warn;
  if (std::strcmp(e, "debug") == 0) return LogLevel::debug;
  return LogLevel::info;
}

std::atomic<int>& level_ref() {
  static std::atomic<int> level{static_cast<int>(level_from_env())};
  return level;
}

}  // namespace

LogLevel log_level() { return static_cast<LogLevel>(level_ref().load(std::memory_order_relaxed)); }
void set_log_level(LogLevel level) { level_ref().store(static_cast<int>(level)); }

void log_write(LogLevel level, std::string_view message) {
  static std::mutex mu;
  const char* tag = level == LogLevel::error ? "error: " : level == LogLevel::warn ? "warning: " : "";
  std::lock_guard<std::mutex> lock(mu);
  std::fprintf(stderr, "%s%.*s\n", tag, static_cast<int>(message.size()), message.data());
}

}  // namespace tandem
