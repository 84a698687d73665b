// Status and Result<T>: how errors cross folder boundaries (no exceptions, no exits).
//
// A Status is ok or carries an ErrorCode plus a message that names what is wrong:
// the file, the key or tensor, the byte offset. Result<T> holds a T or a non-ok Status.
// Assertions (assert) are for Tandem's own bugs only; bad input always yields a Status.
#pragma once

#include <fmt/format.h>

#include <cassert>
#include <string>
#include <utility>
#include <variant>

namespace tandem {

enum class ErrorCode {
  ok = 0,
  invalid_argument,  // a caller or user passed something malformed or inconsistent
  invalid_file,      // a file's content is malformed (GGUF, JSON, ...)
  unsupported,       // valid but not supported (dtype, version, architecture)
  not_found,         // a file, key, tensor or device that must exist does not
  io_error,          // read/write/mmap failed or came back short
  out_of_memory,     // an allocation (host or device) failed, or a budget cannot be met
  device_error,      // a Vulkan call failed
  cancelled,
  internal,          // a bug in Tandem
};

const char* error_code_name(ErrorCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(ErrorCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status success() { return {}; }
  bool ok() const { return code_ == ErrorCode::ok; }
  ErrorCode code() const { return code_; }
  const std::string& message() const { return message_; }

  // Prefixes context ("while loading model.gguf: ") to the message; no-op when ok.
  Status with_context(std::string_view context) const {
    if (ok()) return *this;
    return Status(code_, fmt::format("{}: {}", context, message_));
  }

 private:
  ErrorCode code_ = ErrorCode::ok;
  std::string message_;
};

template <class... Args>
Status make_error(ErrorCode code, fmt::format_string<Args...> f, Args&&... args) {
  return Status(code, fmt::format(f, std::forward<Args>(args)...));
}

template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT(google-explicit-constructor)
  Result(Status status) : v_(std::move(status)) {  // NOLINT(google-explicit-constructor)
    assert(!std::get<Status>(v_).ok() && "Result constructed from an ok Status");
  }

  bool ok() const { return std::holds_alternative<T>(v_); }
  const Status& status() const {
    static const Status k_ok;
    return ok() ? k_ok : std::get<Status>(v_);
  }
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace tandem

#define TANDEM_CONCAT_INNER(a, b) a##b
#define TANDEM_CONCAT(a, b) TANDEM_CONCAT_INNER(a, b)

// Returns the Status from the enclosing function when `expr` (a Status) is not ok.
#define TANDEM_RETURN_IF_ERROR(expr)                     \
  do {                                                   \
    ::tandem::Status tandem_status_ = (expr);            \
    if (!tandem_status_.ok()) return tandem_status_;     \
  } while (0)

// `TANDEM_ASSIGN_OR_RETURN(auto x, make_x());` — unwraps a Result or returns its Status.
#define TANDEM_ASSIGN_OR_RETURN(lhs, expr)                                        \
  auto TANDEM_CONCAT(tandem_result_, __LINE__) = (expr);                          \
  if (!TANDEM_CONCAT(tandem_result_, __LINE__).ok())                              \
    return TANDEM_CONCAT(tandem_result_, __LINE__).status();                      \
  lhs = std::move(TANDEM_CONCAT(tandem_result_, __LINE__)).value()
