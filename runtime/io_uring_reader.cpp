#include "runtime/io_uring_reader.h"

#include <fcntl.h>
#include <liburing.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "core/log.h"

namespace tandem {

namespace {

// io_uring_prep_read takes an unsigned length; expert slabs are ~1 MB, so a cap far above
// any slab keeps a request to one SQE per attempt.
constexpr uint64_t k_max_request_bytes = uint64_t{1} << 30;

std::string errno_text(int e) { return fmt::format("{} (errno {})", std::strerror(e), e); }

// Errors that another attempt cannot fix: a bad descriptor, buffer or alignment.
bool retryable(int e) { return e != EINVAL && e != EBADF && e != EFAULT; }

}  // namespace

// ---------------------------------------------------------------------------------------
// AlignedBuffer

Result<AlignedBuffer> AlignedBuffer::allocate(uint64_t size) {
  AlignedBuffer b;
  const uint64_t rounded = io_align_up(std::max<uint64_t>(size, 1));
  void* p = std::aligned_alloc(k_io_alignment, rounded);
  if (!p) return make_error(ErrorCode::out_of_memory, "cannot allocate {} aligned bytes", rounded);
  std::memset(p, 0, rounded);
  b.data_ = static_cast<uint8_t*>(p);
  b.size_ = rounded;
  return b;
}

AlignedBuffer::AlignedBuffer(AlignedBuffer&& o) noexcept
    : data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)) {}

AlignedBuffer& AlignedBuffer::operator=(AlignedBuffer&& o) noexcept {
  if (this != &o) {
    std::free(data_);
    data_ = std::exchange(o.data_, nullptr);
    size_ = std::exchange(o.size_, 0);
  }
  return *this;
}

AlignedBuffer::~AlignedBuffer() { std::free(data_); }

const char* io_backend_name(IoBackend b) { return b == IoBackend::io_uring ? "io_uring" : "pread"; }
const char* io_mode_name(IoMode m) { return m == IoMode::direct ? "O_DIRECT" : "buffered"; }

// ---------------------------------------------------------------------------------------
// ReadOp: one request's progress through its attempts, shared by both backends.

struct ReadOp {
  AsyncReader* reader = nullptr;
  ReadRequest req;
  ReadCallback done;
  uint64_t index = 0;
  uint64_t base = 0;      // file offset of req.dst[0]
  uint64_t pos = 0;       // file offset the next attempt starts at
  uint64_t need_end = 0;  // end of the wanted bytes
  uint64_t read_end = 0;  // end of the bytes transferred (aligned in direct mode)
  uint32_t retries = 0;
  Status status;
  IoFaultAction fault;  // of the current attempt
  uint64_t attempt_len = 0;

  ReadOp(AsyncReader* r, const ReadRequest& q, ReadCallback cb) : reader(r), req(q), done(std::move(cb)) {
    const IoCover cover = io_cover(q.offset, q.length);
    base = cover.file_offset;
    need_end = q.offset + q.length;
    if (r->mode_ == IoMode::direct) {
      pos = cover.file_offset;
      read_end = cover.file_offset + cover.length;
    } else {
      pos = q.offset;
      read_end = need_end;
    }
    index = r->next_index_.fetch_add(1);
  }

  uint8_t* attempt_dst() const { return req.dst + (pos - base); }

  void prepare_attempt() {
    attempt_len = read_end - pos;
    fault = reader->options_.faults ? reader->options_.faults->on_attempt(index, req.offset, req.length)
                                    : IoFaultAction{};
    reader->n_attempts_.fetch_add(1, std::memory_order_relaxed);
  }

  // `res`: bytes transferred or -errno. Returns true when the request is finished (status set).
  bool on_result(int64_t res) {
    if (fault.error) res = -fault.error;
    else if (res > 0 && fault.short_bytes) res = std::min<int64_t>(res, static_cast<int64_t>(*fault.short_bytes));
    if (res > 0) reader->bytes_transferred_.fetch_add(static_cast<uint64_t>(res), std::memory_order_relaxed);
    const uint32_t max_retries = reader->options_.max_retries;
    if (res < 0) {
      const int e = static_cast<int>(-res);
      if (!retryable(e) || retries >= max_retries) {
        status = make_error(ErrorCode::io_error,
                            "read of {} failed: offset {}, length {} (at byte {}, {} mode, after {} retries): {}",
                            reader->path_.string(), req.offset, req.length, pos,
                            io_mode_name(reader->mode_), retries, errno_text(e));
        return true;
      }
    } else {
      const uint64_t got_end = pos + static_cast<uint64_t>(res);
      if (got_end >= need_end) {
        status = Status::success();
        return true;
      }
      if (retries >= max_retries) {
        status = make_error(ErrorCode::io_error,
                            "short read of {}: offset {}, length {}: only {} of the bytes arrived "
                            "(reached byte {}, file size {}) after {} retries",
                            reader->path_.string(), req.offset, req.length,
                            got_end > req.offset ? got_end - req.offset : 0, got_end,
                            reader->file_size_, retries);
        return true;
      }
      // O_DIRECT resumes from an aligned offset: the few bytes re-read land where they were.
      pos = reader->mode_ == IoMode::direct ? io_align_down(got_end) : got_end;
    }
    ++retries;
    reader->n_retries_.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
};

// ---------------------------------------------------------------------------------------
// Backends

struct AsyncReader::Impl {
  explicit Impl(AsyncReader* r) : reader(r) {}
  virtual ~Impl() = default;
  virtual void enqueue(ReadOp* op) = 0;

  void started() {
    std::lock_guard lock(count_mu);
    ++outstanding;
  }
  // Runs the callback, then frees the op and wakes drain().
  void finish(ReadOp* op) {
    if (!op->status.ok()) {
      reader->n_failed_.fetch_add(1, std::memory_order_relaxed);
    } else if (reader->mode_ == IoMode::buffered && reader->options_.fadvise_dontneed) {
      ::posix_fadvise(reader->fd_, static_cast<off_t>(op->req.offset),
                      static_cast<off_t>(op->req.length), POSIX_FADV_DONTNEED);
    }
    ReadCallback cb = std::move(op->done);
    Status st = std::move(op->status);
    delete op;
    if (cb) cb(st);
    std::lock_guard lock(count_mu);
    if (--outstanding == 0) count_cv.notify_all();
  }
  void drain() {
    std::unique_lock lock(count_mu);
    count_cv.wait(lock, [&] { return outstanding == 0; });
  }

  // The blocking attempt loop (pread backend workers and AsyncReader::read).
  void run_sync(ReadOp& op) {
    for (;;) {
      op.prepare_attempt();
      if (op.fault.delay_ms) std::this_thread::sleep_for(std::chrono::milliseconds(op.fault.delay_ms));
      const ssize_t n = ::pread(reader->fd_, op.attempt_dst(), op.attempt_len, static_cast<off_t>(op.pos));
      const int64_t res = n < 0 ? -static_cast<int64_t>(errno) : static_cast<int64_t>(n);
      if (op.on_result(res)) return;
    }
  }

  int fd() const { return reader->fd_; }
  IoFaultInjector* faults() const { return reader->options_.faults; }

  AsyncReader* reader;
  std::mutex count_mu;
  std::condition_variable count_cv;
  uint64_t outstanding = 0;
};

namespace {

class PreadBackend final : public AsyncReader::Impl {
 public:
  PreadBackend(AsyncReader* r, uint32_t n_threads) : Impl(r) {
    for (uint32_t i = 0; i < n_threads; ++i) workers_.emplace_back([this] { work(); });
  }
  ~PreadBackend() override {
    drain();
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
  }
  void enqueue(ReadOp* op) override {
    {
      std::lock_guard lock(mu_);
      queue_.push_back(op);
    }
    cv_.notify_one();
  }

 private:
  void work() {
    for (;;) {
      ReadOp* op = nullptr;
      {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
        if (queue_.empty()) return;
        op = queue_.front();
        queue_.pop_front();
      }
      run_sync(*op);
      finish(op);
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<ReadOp*> queue_;
  bool stopping_ = false;
  std::vector<std::thread> workers_;
};

// Callers fill the submission queue under mu_; one thread reaps completions, applies the
// fault actions (holding delayed completions in a list and waiting with a timeout until the
// earliest is due), resubmits remainders and runs callbacks. Kernel reads in flight never
// exceed the queue depth, so the SQ always has room and the CQ (twice the SQ) never overflows.
class UringBackend final : public AsyncReader::Impl {
 public:
  // Sets up the ring in place; on failure says why (and the backend must not be used).
  UringBackend(AsyncReader* r, uint32_t depth, std::string* why) : Impl(r), depth_(depth) {
    if (faults() && faults()->io_uring_refused()) {
      *why = fmt::format("io_uring_queue_init failed: {} (injected)", errno_text(EPERM));
      return;
    }
    const int rc = io_uring_queue_init(depth + 1, &ring_, 0);
    if (rc < 0) {
      *why = fmt::format("io_uring_queue_init failed: {}", errno_text(-rc));
      return;
    }
    if (!(ring_.features & IORING_FEAT_EXT_ARG)) {
      // Waiting with a timeout would otherwise post a timeout SQE from the completion thread,
      // racing with submitters.
      io_uring_queue_exit(&ring_);
      *why = "the kernel's io_uring lacks IORING_FEAT_EXT_ARG (Linux < 5.11)";
      return;
    }
    ready_ = true;
    thread_ = std::thread([this] { loop(); });
  }
  bool ready() const { return ready_; }
  ~UringBackend() override {
    if (!ready_) return;
    drain();
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
      // Wakes the completion thread: a no-op whose user data is null.
      io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
      if (sqe) {
        io_uring_prep_nop(sqe);
        io_uring_sqe_set_data(sqe, nullptr);
        submit_locked();
      }
    }
    thread_.join();
    io_uring_queue_exit(&ring_);
  }
  void enqueue(ReadOp* op) override {
    std::lock_guard lock(mu_);
    pending_.push_back(op);
    fill_locked();
  }

 private:
  using Clock = std::chrono::steady_clock;
  struct Delayed {
    Clock::time_point due;
    ReadOp* op;
    int64_t res;
  };

  void submit_locked() {
    for (int attempt = 0; attempt < 1000; ++attempt) {
      const int rc = io_uring_submit(&ring_);
      if (rc >= 0) return;
      if (rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) {
        log_error("io_uring_submit on {} failed: {}", reader->path().string(), errno_text(-rc));
        return;
      }
      std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
  }

  void fill_locked() {
    bool any = false;
    while (in_flight_ < depth_ && !pending_.empty()) {
      io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
      if (!sqe) break;
      ReadOp* op = pending_.front();
      pending_.pop_front();
      op->prepare_attempt();
      io_uring_prep_read(sqe, fd(), op->attempt_dst(), static_cast<unsigned>(op->attempt_len),
                         op->pos);
      io_uring_sqe_set_data(sqe, op);
      ++in_flight_;
      any = true;
    }
    if (any) submit_locked();
  }

  void loop() {
    std::vector<std::pair<ReadOp*, int64_t>> ready, reaped;
    std::vector<ReadOp*> again;
    std::vector<ReadOp*> finished;
    for (;;) {
      io_uring_cqe* cqe = nullptr;
      if (delayed_.empty()) {
        (void)io_uring_wait_cqe(&ring_, &cqe);
      } else {
        auto due = std::min_element(delayed_.begin(), delayed_.end(),
                                    [](const Delayed& a, const Delayed& b) { return a.due < b.due; })->due;
        const auto wait_ns = std::max<int64_t>(
            0, std::chrono::duration_cast<std::chrono::nanoseconds>(due - Clock::now()).count());
        __kernel_timespec ts{};
        ts.tv_sec = wait_ns / 1000000000;
        ts.tv_nsec = wait_ns % 1000000000;
        (void)io_uring_wait_cqe_timeout(&ring_, &cqe, &ts);
      }
      ready.clear();
      again.clear();
      finished.clear();
      reaped.clear();
      unsigned head = 0;
      unsigned n_cqe = 0;
      io_uring_for_each_cqe(&ring_, head, cqe) {
        ++n_cqe;
        if (auto* op = static_cast<ReadOp*>(io_uring_cqe_get_data(cqe))) reaped.emplace_back(op, cqe->res);
      }
      io_uring_cq_advance(&ring_, n_cqe);
      {
        // Besides the count, taking mu_ orders this thread's reads of the ops after the
        // submitter's writes (made under mu_ before the SQE went out): the kernel's ordering
        // of SQE -> CQE is invisible to the C++ memory model and to ThreadSanitizer.
        std::lock_guard lock(mu_);
        in_flight_ -= static_cast<uint32_t>(reaped.size());
      }
      for (auto& [op, res] : reaped) {
        if (op->fault.delay_ms) {
          delayed_.push_back({Clock::now() + std::chrono::milliseconds(op->fault.delay_ms), op, res});
          op->fault.delay_ms = 0;
        } else {
          ready.emplace_back(op, res);
        }
      }
      const auto now = Clock::now();
      for (size_t i = 0; i < delayed_.size();) {
        if (delayed_[i].due <= now) {
          ready.emplace_back(delayed_[i].op, delayed_[i].res);
          delayed_[i] = delayed_.back();
          delayed_.pop_back();
        } else {
          ++i;
        }
      }
      for (auto& [op, res] : ready) (op->on_result(res) ? finished : again).push_back(op);
      bool stop = false;
      {
        std::lock_guard lock(mu_);
        for (auto it = again.rbegin(); it != again.rend(); ++it) pending_.push_front(*it);
        fill_locked();
        stop = stopping_ && in_flight_ == 0 && pending_.empty() && delayed_.empty();
      }
      for (ReadOp* op : finished) finish(op);
      if (stop) return;
    }
  }

  io_uring ring_{};
  uint32_t depth_;
  bool ready_ = false;
  std::mutex mu_;
  std::deque<ReadOp*> pending_;  // guarded by mu_
  uint32_t in_flight_ = 0;       // guarded by mu_
  bool stopping_ = false;        // guarded by mu_
  std::vector<Delayed> delayed_;  // completion thread only
  std::thread thread_;
};

}  // namespace

// ---------------------------------------------------------------------------------------
// AsyncReader

Result<std::unique_ptr<AsyncReader>> AsyncReader::open(const std::filesystem::path& path,
                                                       const AsyncReaderOptions& options) {
  if (options.queue_depth < 1 || options.queue_depth > 4096) {
    return make_error(ErrorCode::invalid_argument, "reader for {}: queue depth {} is outside 1..4096",
                      path.string(), options.queue_depth);
  }
  std::unique_ptr<AsyncReader> r(new AsyncReader());
  r->path_ = path;
  r->options_ = options;

  auto open_error = [&](int e) {
    return make_error(e == ENOENT ? ErrorCode::not_found : ErrorCode::io_error, "cannot open {}: {}",
                      path.string(), errno_text(e));
  };
  r->mode_ = IoMode::buffered;
  if (options.direct) {
    r->fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_DIRECT);
    if (r->fd_ >= 0) {
      r->mode_ = IoMode::direct;
    } else if (errno == EINVAL) {
      r->fallback_reason_ = "the file system refused O_DIRECT at open (EINVAL)";
    } else {
      return open_error(errno);
    }
  }
  if (r->fd_ < 0) {
    r->fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (r->fd_ < 0) return open_error(errno);
  }
  struct stat st{};
  if (::fstat(r->fd_, &st) != 0) {
    const int e = errno;  // the destructor closes fd_
    return make_error(ErrorCode::io_error, "cannot stat {}: {}", path.string(), errno_text(e));
  }
  r->file_size_ = static_cast<uint64_t>(st.st_size);

  // Some file systems accept O_DIRECT at open and refuse it at the first read.
  if (r->mode_ == IoMode::direct && r->file_size_ > 0) {
    TANDEM_ASSIGN_OR_RETURN(AlignedBuffer probe, AlignedBuffer::allocate(k_io_alignment));
    const bool injected = options.faults && options.faults->o_direct_refused();
    if (injected || (::pread(r->fd_, probe.data(), k_io_alignment, 0) < 0 && errno == EINVAL)) {
      ::close(r->fd_);
      r->fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
      if (r->fd_ < 0) return open_error(errno);
      r->mode_ = IoMode::buffered;
      r->fallback_reason_ = injected ? "the file system refused an O_DIRECT read (EINVAL, injected)"
                                     : "the file system refused an O_DIRECT read (EINVAL)";
    }
  }
  if (!r->fallback_reason_.empty()) {
    log_info("{}: {}; using buffered reads with POSIX_FADV_DONTNEED", path.string(), r->fallback_reason_);
  }

  r->backend_ = IoBackend::pread;
  if (options.use_io_uring) {
    std::string why;
    auto uring = std::make_unique<UringBackend>(r.get(), options.queue_depth, &why);
    if (uring->ready()) {
      r->backend_ = IoBackend::io_uring;
      r->impl_ = std::move(uring);
    }
    if (!why.empty()) {
      if (!r->fallback_reason_.empty()) r->fallback_reason_ += "; ";
      r->fallback_reason_ += why;
      log_warn("{}: {}; falling back to pread", path.string(), why);
    }
  }
  if (!r->impl_) {
    const uint32_t n = std::max<uint32_t>(1, std::min(options.pread_threads, options.queue_depth));
    r->impl_ = std::make_unique<PreadBackend>(r.get(), n);
  }
  return r;
}

AsyncReader::~AsyncReader() {
  impl_.reset();  // waits for every read and callback
  if (fd_ >= 0) ::close(fd_);
}

namespace {

Status check_request(const AsyncReader& r, const ReadRequest& q) {
  const std::string path = r.path().string();
  if (q.length == 0 || q.length > k_max_request_bytes) {
    return make_error(ErrorCode::invalid_argument, "read of {} at offset {}: length {} is outside 1..{}",
                      path, q.offset, q.length, k_max_request_bytes);
  }
  if (q.offset > r.file_size() || q.length > r.file_size() - q.offset) {
    return make_error(ErrorCode::invalid_argument,
                      "read of {}: bytes [{}, {}) lie beyond the end of the file ({} bytes)", path,
                      q.offset, q.offset + q.length, r.file_size());
  }
  if (!q.dst || reinterpret_cast<uintptr_t>(q.dst) % k_io_alignment != 0) {
    return make_error(ErrorCode::invalid_argument, "read of {} at offset {}: destination is not {}-aligned",
                      path, q.offset, k_io_alignment);
  }
  const uint64_t need = io_cover(q.offset, q.length).length;
  if (q.dst_capacity < need) {
    return make_error(ErrorCode::invalid_argument,
                      "read of {} at offset {}, length {}: destination holds {} bytes, needs {}", path,
                      q.offset, q.length, q.dst_capacity, need);
  }
  return Status::success();
}

}  // namespace

Status AsyncReader::submit(const ReadRequest& request, ReadCallback done) {
  TANDEM_RETURN_IF_ERROR(check_request(*this, request));
  n_requests_.fetch_add(1, std::memory_order_relaxed);
  auto* op = new ReadOp(this, request, std::move(done));
  impl_->started();
  impl_->enqueue(op);
  return Status::success();
}

std::future<Status> AsyncReader::read_async(const ReadRequest& request) {
  auto promise = std::make_shared<std::promise<Status>>();
  std::future<Status> f = promise->get_future();
  Status st = submit(request, [promise](const Status& s) { promise->set_value(s); });
  if (!st.ok()) promise->set_value(std::move(st));
  return f;
}

Status AsyncReader::read(const ReadRequest& request) {
  TANDEM_RETURN_IF_ERROR(check_request(*this, request));
  n_requests_.fetch_add(1, std::memory_order_relaxed);
  ReadOp op(this, request, {});
  impl_->run_sync(op);
  if (!op.status.ok()) {
    n_failed_.fetch_add(1, std::memory_order_relaxed);
  } else if (mode_ == IoMode::buffered && options_.fadvise_dontneed) {
    ::posix_fadvise(fd_, static_cast<off_t>(request.offset), static_cast<off_t>(request.length),
                    POSIX_FADV_DONTNEED);
  }
  return op.status;
}

void AsyncReader::drain() { impl_->drain(); }

std::string AsyncReader::describe() const {
  return fmt::format("{}, {}, queue depth {}", io_backend_name(backend_), io_mode_name(mode_),
                     options_.queue_depth);
}

IoStats AsyncReader::stats() const {
  IoStats s;
  s.n_requests = n_requests_.load();
  s.n_attempts = n_attempts_.load();
  s.n_retries = n_retries_.load();
  s.n_failed = n_failed_.load();
  s.bytes_transferred = bytes_transferred_.load();
  return s;
}

}  // namespace tandem
