#include "cpu/mem_bandwidth.h"

#include <sys/mman.h>
#include <sys/sysinfo.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace tandem::cpu {
namespace detail {
uint64_t read_sum_avx2(const uint64_t* p, size_t n_words);
uint64_t read_sum_avx512(const uint64_t* p, size_t n_words);
}  // namespace detail

namespace {

// Four accumulators break the add dependency chain; built with the baseline flags, so on
// x86-64 the compiler may use SSE2 but nothing wider: the "scalar" level means "no opt-in ISA".
uint64_t read_sum_scalar(const uint64_t* p, size_t n_words) {
  uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  size_t i = 0;
  for (; i + 4 <= n_words; i += 4) {
    s0 += p[i];
    s1 += p[i + 1];
    s2 += p[i + 2];
    s3 += p[i + 3];
  }
  for (; i < n_words; ++i) s0 += p[i];
  return s0 + s1 + s2 + s3;
}

constexpr uint64_t k_line = 64;
constexpr uint64_t k_min_bytes_per_thread = 4096;

// The buffer is its own mapping, unmapped on return: its pages leave the process at once
// (a malloc'd block may linger, e.g. in a sanitizer's quarantine), so a caller that resets
// its peak RSS after a probe does not keep the probe in it.
struct Unmap {
  size_t bytes = 0;
  void operator()(void* p) const { munmap(p, bytes); }
};

}  // namespace

ReadSumFn read_sum_for(Isa isa) {
  if (!cpu_features().supports(isa)) return nullptr;
  switch (isa) {
    case Isa::scalar:
      return read_sum_scalar;
#if defined(__x86_64__)
    case Isa::avx2:
      return detail::read_sum_avx2;
    case Isa::avx512:
      return detail::read_sum_avx512;
#endif
#if defined(__aarch64__)
    // NEON is the aarch64 baseline: the plain loop compiles to 128-bit loads already.
    case Isa::neon:
      return read_sum_scalar;
#endif
    default:
      return nullptr;
  }
}

Result<BandwidthResult> measure_read_bandwidth(int n_threads, uint64_t bytes, int reps) {
  return measure_read_bandwidth(best_isa(), n_threads, bytes, reps);
}

Result<BandwidthResult> measure_read_bandwidth(Isa isa, int n_threads, uint64_t bytes, int reps) {
  const ReadSumFn sum_fn = read_sum_for(isa);
  if (!sum_fn) {
    return make_error(ErrorCode::unsupported, "read bandwidth: this host or build cannot run isa {}",
                      isa_name(isa));
  }
  if (n_threads < 0) {
    return make_error(ErrorCode::invalid_argument, "read bandwidth: n_threads {} < 0", n_threads);
  }
  if (n_threads > 4096) {
    return make_error(ErrorCode::invalid_argument, "read bandwidth: n_threads {} > 4096", n_threads);
  }
  if (reps < 1) return make_error(ErrorCode::invalid_argument, "read bandwidth: reps {} < 1", reps);
  const int nt = n_threads == 0 ? std::max(1, static_cast<int>(std::thread::hardware_concurrency()))
                                : n_threads;
  // Whole cache lines per thread keep every share 64-byte aligned for the aligned loads.
  const uint64_t share = bytes / static_cast<uint64_t>(nt) / k_line * k_line;
  if (share < k_min_bytes_per_thread) {
    return make_error(ErrorCode::invalid_argument,
                      "read bandwidth: {} bytes over {} threads is under {} bytes per thread", bytes,
                      nt, k_min_bytes_per_thread);
  }
  const uint64_t total = share * static_cast<uint64_t>(nt);
  // Linux overcommits: an allocation beyond RAM succeeds and the first touch kills the
  // process, so refuse up front.
  struct sysinfo si {};
  if (sysinfo(&si) == 0 && total > static_cast<uint64_t>(si.totalram) * si.mem_unit) {
    return make_error(ErrorCode::out_of_memory,
                      "read bandwidth: {} byte buffer exceeds physical RAM ({} bytes)", total,
                      static_cast<uint64_t>(si.totalram) * si.mem_unit);
  }
  void* map = mmap(nullptr, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);  // page aligned
  if (map == MAP_FAILED) {
    return make_error(ErrorCode::out_of_memory, "read bandwidth: cannot map {} bytes: {}", total,
                      std::strerror(errno));
  }
  std::unique_ptr<uint64_t, Unmap> buf(static_cast<uint64_t*>(map), Unmap{total});

  const size_t words = share / sizeof(uint64_t);
  // Each worker stamps its own pass start and end; a pass lasts from the first start to the
  // last end, so how fast the main thread wakes up never enters the figure.
  using Clock = std::chrono::steady_clock;
  struct Stamp {
    Clock::time_point start, end;
  };
  std::vector<Stamp> stamps(static_cast<size_t>(nt));
  std::mutex mu;
  std::condition_variable cv;
  int released = 0;  // passes the main thread has started
  int finished = 0;  // worker-passes done
  std::atomic<uint64_t> sink{0};
  std::vector<std::thread> workers;
  workers.reserve(static_cast<size_t>(nt));
  for (int t = 0; t < nt; ++t) {
    workers.emplace_back([&, t] {
      uint64_t* mine = buf.get() + static_cast<size_t>(t) * words;
      // First touch by the owner; a nonzero pattern so pages are real, not the shared zero page.
      for (size_t i = 0; i < words; ++i) mine[i] = i ^ static_cast<uint64_t>(t);
      uint64_t acc = 0;
      for (int pass = 0; pass < reps + 1; ++pass) {
        {
          std::unique_lock lock(mu);
          cv.wait(lock, [&] { return released > pass; });
        }
        const auto t0 = Clock::now();
        acc += sum_fn(mine, words);
        const auto t1 = Clock::now();
        std::lock_guard lock(mu);
        stamps[static_cast<size_t>(t)] = {t0, t1};
        ++finished;
        cv.notify_all();
      }
      // Consuming the sums keeps the compiler from dropping the loads.
      sink.fetch_add(acc, std::memory_order_relaxed);
    });
  }
  double best = 0;
  for (int pass = 0; pass < reps + 1; ++pass) {
    std::unique_lock lock(mu);
    released = pass + 1;
    cv.notify_all();
    cv.wait(lock, [&] { return finished == nt * (pass + 1); });
    Clock::time_point first = stamps[0].start, last = stamps[0].end;
    for (const Stamp& st : stamps) {
      first = std::min(first, st.start);
      last = std::max(last, st.end);
    }
    const double s = std::chrono::duration<double>(last - first).count();
    if (pass > 0 && (best == 0 || s < best)) best = s;  // pass 0 is the warm-up
  }
  for (auto& w : workers) w.join();
  volatile uint64_t observed = sink.load();
  (void)observed;

  BandwidthResult r;
  r.bytes = total;
  r.seconds = best;
  r.n_threads = nt;
  r.gbps = best > 0 ? static_cast<double>(total) / best / 1e9 : 0;
  return r;
}

}  // namespace tandem::cpu
