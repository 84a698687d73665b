// AsyncReader: asynchronous reads of byte ranges of one file (expert slabs of a GGUF file,
// spec §3.3 and §5.3) through io_uring with O_DIRECT, as PowerInfer's expert cache does,
// with the fallbacks a sandbox or a file system may force.
//
// Backends and modes (chosen by open(), reported by backend()/mode()/fallback_reason()):
//   backend io_uring  one ring of `queue_depth` entries; callers submit from any thread, one
//                     completion thread reaps, retries and runs callbacks.
//   backend pread     when io_uring_queue_init fails (ENOSYS/EPERM in some sandboxes, or a
//                     kernel without IORING_FEAT_EXT_ARG) or when asked for: a few worker
//                     threads issue blocking pread()s.
//   mode direct       the file opened O_RDONLY|O_DIRECT: the page cache is bypassed, so every
//                     read is 4096-aligned in file offset, length and buffer address.
//   mode buffered     when the file system refuses O_DIRECT (tmpfs: open or the first read
//                     fails with EINVAL) or when asked for: plain reads followed by
//                     posix_fadvise(POSIX_FADV_DONTNEED) on the range, so expert bytes do not
//                     linger in the page cache behind the expert cache's back.
//
// Buffer layout (the same in both modes, so callers need not care): a request for
// [offset, offset + length) reads into a 4096-aligned `dst`, where byte `offset` of the file
// lands at dst + lead, lead = offset % 4096 (io_cover()). In direct mode the whole covering
// aligned range is transferred: up to 4095 extra bytes before the slab and up to 4095 after
// it (fewer at end of file); in buffered mode only the wanted bytes are read. `dst` must hold
// io_cover(offset, length).length bytes either way.
//
// Errors: a read that fails (errno other than EINVAL/EBADF/EFAULT) or comes back short is
// retried for its remainder up to `max_retries` times, then reported as an io_error Status
// naming the file, offset, length, the byte reached and the errno. Bad arguments (beyond end
// of file, unaligned or too small dst) are refused by submit() with invalid_argument and no
// callback. A request is never reported ok with fewer bytes than asked.
//
// Threading: submit()/read_async()/read() may be called from any thread. Callbacks run on the
// reader's completion or worker thread: keep them short, and never wait inside one for
// another read of the same reader. The destructor waits for every submitted read to complete
// and its callback to run.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <future>
#include <memory>
#include <span>
#include <string>

#include "core/status.h"
#include "runtime/io_fault.h"

namespace tandem {

// Alignment of O_DIRECT offsets, lengths and buffers used throughout (the largest logical
// block size in common use; also the page size).
inline constexpr uint64_t k_io_alignment = 4096;

inline constexpr uint64_t io_align_down(uint64_t x) { return x & ~(k_io_alignment - 1); }
inline constexpr uint64_t io_align_up(uint64_t x) {
  return (x + k_io_alignment - 1) & ~(k_io_alignment - 1);
}

// The 4096-aligned range [file_offset, file_offset + length) covering [offset, offset + n);
// the wanted bytes start at `lead` = offset - file_offset inside it.
struct IoCover {
  uint64_t file_offset = 0;
  uint64_t length = 0;
  uint64_t lead = 0;
};
inline IoCover io_cover(uint64_t offset, uint64_t n) {
  IoCover c;
  c.file_offset = io_align_down(offset);
  c.lead = offset - c.file_offset;
  c.length = io_align_up(offset + n) - c.file_offset;
  return c;
}

// An owned, 4096-aligned, zero-initialised host buffer (size rounded up to 4096).
class AlignedBuffer {
 public:
  AlignedBuffer() = default;
  static Result<AlignedBuffer> allocate(uint64_t size);
  AlignedBuffer(AlignedBuffer&& o) noexcept;
  AlignedBuffer& operator=(AlignedBuffer&& o) noexcept;
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
  ~AlignedBuffer();

  uint8_t* data() const { return data_; }
  uint64_t size() const { return size_; }

 private:
  uint8_t* data_ = nullptr;
  uint64_t size_ = 0;
};

enum class IoBackend : uint8_t { io_uring, pread };
enum class IoMode : uint8_t { direct, buffered };
const char* io_backend_name(IoBackend b);  // "io_uring", "pread"
const char* io_mode_name(IoMode m);        // "O_DIRECT", "buffered"

struct AsyncReaderOptions {
  uint32_t queue_depth = 32;     // reads in flight at most (1..4096); more wait in a queue
  bool use_io_uring = true;      // false: the pread backend
  bool direct = true;            // false: buffered mode
  bool fadvise_dontneed = true;  // buffered mode: drop the pages of each completed read
  uint32_t max_retries = 4;      // per request, for errors and short reads
  uint32_t pread_threads = 2;    // pread backend: worker threads (capped by queue_depth)
  IoFaultInjector* faults = nullptr;  // not owned; must outlive the reader
};

// One read: the file bytes [offset, offset + length) into `dst` at dst + offset % 4096.
struct ReadRequest {
  uint64_t offset = 0;
  uint64_t length = 0;
  uint8_t* dst = nullptr;     // 4096-aligned
  uint64_t dst_capacity = 0;  // >= io_cover(offset, length).length
};

using ReadCallback = std::function<void(const Status&)>;

struct IoStats {
  uint64_t n_requests = 0;         // accepted requests
  uint64_t n_attempts = 0;         // read system calls / SQEs issued (first tries + retries)
  uint64_t n_retries = 0;
  uint64_t n_failed = 0;           // requests completed with an error
  uint64_t bytes_transferred = 0;  // bytes the kernel delivered, alignment padding included
};

class AsyncReader {
 public:
  static Result<std::unique_ptr<AsyncReader>> open(const std::filesystem::path& path,
                                                   const AsyncReaderOptions& options = {});
  ~AsyncReader();
  AsyncReader(const AsyncReader&) = delete;
  AsyncReader& operator=(const AsyncReader&) = delete;

  // Queues a read; `done` runs exactly once when it completes (ok, or the error after
  // retries) — unless this returns an error, in which case it never runs.
  Status submit(const ReadRequest& request, ReadCallback done);
  // The same with a future; argument errors come back through the future too.
  std::future<Status> read_async(const ReadRequest& request);
  // Blocking read on the calling thread (pread, same retries and faults).
  Status read(const ReadRequest& request);

  // Blocks until every read submitted so far has completed and its callback has run.
  void drain();

  const std::filesystem::path& path() const { return path_; }
  uint64_t file_size() const { return file_size_; }
  IoBackend backend() const { return backend_; }
  IoMode mode() const { return mode_; }
  uint32_t queue_depth() const { return options_.queue_depth; }
  // Why the backend or mode differs from what the options asked for ("" when it does not).
  const std::string& fallback_reason() const { return fallback_reason_; }
  std::string describe() const;  // "io_uring, O_DIRECT, queue depth 32"
  IoStats stats() const;

  struct Impl;  // backend machinery (io_uring_reader.cpp)

 private:
  AsyncReader() = default;
  friend struct Impl;
  friend struct ReadOp;

  std::filesystem::path path_;
  AsyncReaderOptions options_;
  int fd_ = -1;
  uint64_t file_size_ = 0;
  IoBackend backend_ = IoBackend::io_uring;
  IoMode mode_ = IoMode::direct;
  std::string fallback_reason_;
  std::atomic<uint64_t> next_index_{0};
  std::atomic<uint64_t> n_requests_{0}, n_attempts_{0}, n_retries_{0}, n_failed_{0},
      bytes_transferred_{0};
  std::unique_ptr<Impl> impl_;
};

}  // namespace tandem
