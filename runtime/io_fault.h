// IoFaultInjector: makes chosen reads of an AsyncReader fail, come back short or arrive late,
// so tests (the reader's, the expert cache's, the hybrid executor's) can exercise the error
// and retry paths on a healthy disk.
//
// A rule matches a read request by its index (0-based, in the order requests were submitted
// to the reader) or by a file byte offset that the request's [offset, offset + length)
// covers; a rule with neither matches every request. The reader consults the injector once
// per *attempt* (the first read and each retry of the remainder); a matching rule is applied
// to `times` attempts and then stops matching (times = 0: forever).
//
// Actions, applied to the attempt's completion (the real read still happens):
//   fail   the attempt completes with -error (errno value, e.g. EIO)
//   short  the attempt reports at most `short_bytes` bytes transferred (the reader then
//          resubmits the remainder, as it does for a real short read)
//   delay  the attempt's completion is held back `delay_ms` milliseconds (other reads keep
//          completing meanwhile)
//
// refuse_o_direct(true) makes AsyncReader::open() see its O_DIRECT probe read fail with EINVAL,
// as on a file system without O_DIRECT (tmpfs before Linux 6.6); refuse_io_uring(true) makes
// it see io_uring_queue_init fail with EPERM, as in sandboxes that forbid io_uring — both to
// exercise the fallbacks.
//
// Thread-safe: rules may be added while reads are in flight.
#pragma once

#include <cerrno>
#include <cstdint>
#include <mutex>
#include <optional>
#include <vector>

namespace tandem {

enum class IoFaultKind : uint8_t { fail, short_read, delay };

struct IoFaultRule {
  std::optional<uint64_t> request_index;  // match the request with this submission index
  std::optional<uint64_t> offset;         // or a request whose byte range covers this offset
  IoFaultKind kind = IoFaultKind::fail;
  int error = EIO;           // fail: errno reported
  uint64_t short_bytes = 0;  // short_read: bytes the attempt reports at most
  uint32_t delay_ms = 0;     // delay: milliseconds the completion is held
  uint32_t times = 1;        // attempts the rule applies to; 0 = every matching attempt

  static IoFaultRule fail_request(uint64_t index, int err = EIO, uint32_t n = 1);
  static IoFaultRule fail_offset(uint64_t off, int err = EIO, uint32_t n = 1);
  static IoFaultRule short_request(uint64_t index, uint64_t bytes, uint32_t n = 1);
  static IoFaultRule delay_request(uint64_t index, uint32_t ms, uint32_t n = 1);
};

// What the reader does to one attempt. Several rules may match one attempt: errors win over
// short reads; delays add up.
struct IoFaultAction {
  int error = 0;                          // > 0: fail the attempt with this errno
  std::optional<uint64_t> short_bytes;    // cap on the bytes reported
  uint32_t delay_ms = 0;
  bool any() const { return error != 0 || short_bytes.has_value() || delay_ms != 0; }
};

class IoFaultInjector {
 public:
  void add(const IoFaultRule& rule);
  void clear();

  // Called by the reader for each attempt of request `index`, which asked for the file bytes
  // [offset, offset + length) (retries pass the same range).
  IoFaultAction on_attempt(uint64_t index, uint64_t offset, uint64_t length);

  uint64_t n_injected() const;  // attempts that received a non-empty action

  void refuse_o_direct(bool refuse);
  bool o_direct_refused() const;
  void refuse_io_uring(bool refuse);
  bool io_uring_refused() const;

 private:
  struct Live {
    IoFaultRule rule;
    uint32_t used = 0;
  };
  mutable std::mutex mu_;
  std::vector<Live> rules_;
  uint64_t n_injected_ = 0;
  bool refuse_o_direct_ = false;
  bool refuse_io_uring_ = false;
};

}  // namespace tandem
