// Expert-slab read benchmark: random expert reads through AsyncReader (io_uring + O_DIRECT,
// as the expert cache issues them) at queue depths 1, 4, 16, 64, beside a sequential-read
// reference measured on the same file in the same run.
//
// The file (default 1 GiB, in the current folder — run it from the build folder) is filled
// with pseudo-random bytes, fsynced and dropped from the page cache, and removed at the end.
// Slabs sit back to back from an unaligned start, as a GGUF's ffn_*_exps slabs do (spec §3.3),
// each `--slab` bytes (default 663552 = one SmallThinker-4B q4_0 expert matrix, spec §5.2),
// so every read covers its slab plus alignment padding (io_cover).
//
// Rows: MB/s = slab bytes delivered / wall time (1 MB = 1e6 bytes); xfer MB/s counts the
// bytes the kernel moved (padding included); latency percentiles are submit -> callback per
// read, in microseconds; pct_seq = MB/s / sequential MB/s * 100.
//
// Usage: expert_io_bench [--dir=PATH] [--file-mib=1024] [--slab=663552] [--reads=1500]
//                        [--buffered] [--pread]
#include <fcntl.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include "core/status.h"
#include "runtime/io_uring_reader.h"

namespace {

using namespace tandem;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

struct Args {
  fs::path dir = fs::current_path();
  uint64_t file_mib = 1024;
  uint64_t slab = 663552;
  uint64_t reads = 1500;
  bool buffered = false;
  bool pread = false;
};

bool parse_u64(const std::string& a, const char* key, uint64_t* out) {
  const std::string k = std::string(key) + "=";
  if (a.rfind(k, 0) != 0) return false;
  *out = std::stoull(a.substr(k.size()));
  return true;
}

uint64_t splitmix(uint64_t& s) {
  uint64_t z = (s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

Status write_file(const fs::path& path, uint64_t bytes) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return make_error(ErrorCode::io_error, "cannot create {}: {}", path.string(), std::strerror(errno));
  std::vector<uint64_t> chunk((8u << 20) / sizeof(uint64_t));
  uint64_t seed = 42;
  for (uint64_t done = 0; done < bytes;) {
    for (auto& w : chunk) w = splitmix(seed);
    const uint64_t n = std::min<uint64_t>(bytes - done, chunk.size() * sizeof(uint64_t));
    if (::write(fd, chunk.data(), n) != static_cast<ssize_t>(n)) {
      ::close(fd);
      return make_error(ErrorCode::io_error, "short write to {} at {}", path.string(), done);
    }
    done += n;
  }
  ::fsync(fd);
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  ::close(fd);
  return Status::success();
}

struct Figures {
  double seconds = 0;
  uint64_t payload = 0;
  uint64_t transferred = 0;
  std::vector<double> latency_us;
};

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t i = std::min(v.size() - 1, static_cast<size_t>(p / 100.0 * static_cast<double>(v.size())));
  return v[i];
}

// Keeps `depth` reads in flight until `n_reads` have completed; offsets from `next_offset`.
template <class NextOffset>
Result<Figures> run(AsyncReader& reader, uint32_t depth, uint64_t n_reads, uint64_t length, NextOffset next_offset) {
  std::vector<AlignedBuffer> buffers;
  for (uint32_t i = 0; i < depth; ++i) {
    TANDEM_ASSIGN_OR_RETURN(AlignedBuffer b, AlignedBuffer::allocate(io_align_up(length) + k_io_alignment));
    buffers.push_back(std::move(b));
  }
  Figures f;
  f.latency_us.reserve(n_reads);
  std::mutex mu;
  std::condition_variable cv;
  uint64_t issued = 0, completed = 0;
  Status first_error;
  const uint64_t xfer_before = reader.stats().bytes_transferred;

  std::function<void(uint32_t)> issue = [&](uint32_t slot) {
    // Called with mu held.
    const uint64_t off = next_offset();
    const auto t0 = Clock::now();
    ++issued;
    Status st = reader.submit({off, length, buffers[slot].data(), buffers[slot].size()},
                              [&, slot, t0](const Status& s) {
                                const double us =
                                    std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
                                std::lock_guard lock(mu);
                                f.latency_us.push_back(us);
                                ++completed;
                                if (!s.ok() && first_error.ok()) first_error = s;
                                if (issued < n_reads && first_error.ok()) issue(slot);
                                cv.notify_all();
                              });
    if (!st.ok() && first_error.ok()) {
      first_error = st;
      ++completed;
    }
  };
  const auto t0 = Clock::now();
  {
    std::unique_lock lock(mu);
    for (uint32_t i = 0; i < depth && issued < n_reads; ++i) issue(i);
    cv.wait(lock, [&] { return completed == issued && (issued == n_reads || !first_error.ok()); });
  }
  f.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  reader.drain();
  if (!first_error.ok()) return first_error;
  f.payload = n_reads * length;
  f.transferred = reader.stats().bytes_transferred - xfer_before;
  return f;
}

void print_row(const char* what, uint32_t depth, const Figures& f, double seq_mbs) {
  const double mbs = static_cast<double>(f.payload) / f.seconds / 1e6;
  std::printf("%-22s %5u %10.1f %10.1f %9.0f %9.0f %9.0f %9.0f %8.1f\n", what, depth, mbs,
              static_cast<double>(f.transferred) / f.seconds / 1e6, percentile(f.latency_us, 50),
              percentile(f.latency_us, 90), percentile(f.latency_us, 99),
              static_cast<double>(f.latency_us.size()) / f.seconds, seq_mbs > 0 ? mbs / seq_mbs * 100 : 100.0);
}

}  // namespace

int main(int argc, char** argv) {
  Args args;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a.rfind("--dir=", 0) == 0) args.dir = a.substr(6);
    else if (parse_u64(a, "--file-mib", &args.file_mib) || parse_u64(a, "--slab", &args.slab) ||
             parse_u64(a, "--reads", &args.reads)) {
    } else if (a == "--buffered") args.buffered = true;
    else if (a == "--pread") args.pread = true;
    else {
      std::fprintf(stderr, "usage: %s [--dir=PATH] [--file-mib=N] [--slab=BYTES] [--reads=N] [--buffered] [--pread]\n",
                   argv[0]);
      return 2;
    }
  }
  const uint64_t file_bytes = args.file_mib << 20;
  const uint64_t base = 3 * 4096 + 1760;  // an unaligned "data section" start
  if (args.slab == 0 || file_bytes < base + 4 * args.slab) {
    std::fprintf(stderr, "file too small for the slab size\n");
    return 2;
  }
  const fs::path path = args.dir / fmt::format("expert_io_bench-{}.bin", ::getpid());
  std::fprintf(stderr, "writing %llu MiB to %s ...\n", static_cast<unsigned long long>(args.file_mib), path.c_str());
  if (Status st = write_file(path, file_bytes); !st.ok()) {
    std::fprintf(stderr, "%s\n", st.message().c_str());
    return 1;
  }
  struct Cleanup {
    fs::path p;
    ~Cleanup() {
      std::error_code ec;
      fs::remove(p, ec);
    }
  } cleanup{path};

  utsname un{};
  ::uname(&un);
  std::printf("expert_io_bench: file %llu MiB in %s, slab %llu bytes from offset %llu, %llu reads per row\n",
              static_cast<unsigned long long>(args.file_mib), args.dir.c_str(),
              static_cast<unsigned long long>(args.slab), static_cast<unsigned long long>(base),
              static_cast<unsigned long long>(args.reads));
  std::printf("host: %s %s, %ld CPUs\n", un.sysname, un.release, ::sysconf(_SC_NPROCESSORS_ONLN));

  auto open = [&](uint32_t depth) -> std::unique_ptr<AsyncReader> {
    AsyncReaderOptions o;
    o.queue_depth = depth;
    o.direct = !args.buffered;
    o.use_io_uring = !args.pread;
    o.pread_threads = depth;
    auto r = AsyncReader::open(path, o);
    if (!r.ok()) {
      std::fprintf(stderr, "%s\n", r.status().message().c_str());
      return nullptr;
    }
    return std::move(r).value();
  };

  // Sequential reference: 4 MiB aligned reads over the file, 8 in flight.
  constexpr uint64_t k_seq_chunk = 4u << 20;
  double seq_mbs = 0;
  Figures seq;
  {
    auto reader = open(8);
    if (!reader) return 1;
    std::printf("reader: %s%s%s\n", reader->describe().c_str(), reader->fallback_reason().empty() ? "" : " — ",
                reader->fallback_reason().c_str());
    const uint64_t n_chunks = file_bytes / k_seq_chunk;
    uint64_t next = 0;
    auto r = run(*reader, 8, n_chunks, k_seq_chunk, [&] { return (next++ % n_chunks) * k_seq_chunk; });
    if (!r.ok()) {
      std::fprintf(stderr, "%s\n", r.status().message().c_str());
      return 1;
    }
    seq = *r;
    seq_mbs = static_cast<double>(seq.payload) / seq.seconds / 1e6;
  }
  std::printf("\n%-22s %5s %10s %10s %9s %9s %9s %9s %8s\n", "row", "qd", "MB/s", "xfer_MB/s", "p50_us",
              "p90_us", "p99_us", "reads/s", "pct_seq");
  print_row("sequential_4MiB", 8, seq, seq_mbs);

  const uint64_t n_slabs = (file_bytes - base) / args.slab;
  for (uint32_t depth : {1u, 4u, 16u, 64u}) {
    auto reader = open(depth);
    if (!reader) return 1;
    uint64_t rng = 1000 + depth;
    // Warm-up (not measured): a few reads to start the ring and touch the buffers.
    (void)run(*reader, depth, std::min<uint64_t>(args.reads, 2 * depth), args.slab,
              [&] { return base + (splitmix(rng) % n_slabs) * args.slab; });
    auto r = run(*reader, depth, args.reads, args.slab, [&] { return base + (splitmix(rng) % n_slabs) * args.slab; });
    if (!r.ok()) {
      std::fprintf(stderr, "%s\n", r.status().message().c_str());
      return 1;
    }
    print_row("random_expert_slab", depth, *r, seq_mbs);
  }
  return 0;
}
