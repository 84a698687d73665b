// Storage part of calibrate (runtime/calibrate.h): random reads of one expert slab through
// AsyncReader at several queue depths.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <random>
#include <system_error>

#include "runtime/calibrate_probes.h"
#include "runtime/io_uring_reader.h"

namespace tandem::calibrate_detail {
namespace {

using Clock = std::chrono::steady_clock;
constexpr uint32_t k_depths[] = {1, 4, 16, 32};

// The block device holding `path` ("vda", "nvme0n1") from /sys/dev/block, else "unknown".
std::string block_device_name(const std::filesystem::path& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return "unknown";
  std::error_code ec;
  const auto link = std::filesystem::read_symlink(
      fmt::format("/sys/dev/block/{}:{}", major(st.st_dev), minor(st.st_dev)), ec);
  return ec ? "unknown" : link.filename().string();
}

// Removes the temporary file on every path out of the probe.
struct TempFile {
  std::filesystem::path path;
  ~TempFile() {
    if (!path.empty()) ::unlink(path.c_str());
  }
};

// Writes `bytes` of non-repeating data (so no layer can compress or dedupe it) and fsyncs, so
// the reads hit the device and not dirty pages; fallocate alone would leave unwritten extents
// that read back as zeros without touching the disk.
Status write_temp_file(const CalibrateOptions& o, TempFile& tmp) {
  const std::filesystem::path dir = o.storage_dir.empty() ? std::filesystem::path(".") : o.storage_dir;
  struct statvfs vfs {};
  if (::statvfs(dir.c_str(), &vfs) != 0) {
    return make_error(ErrorCode::io_error, "calibrate: storage directory {}: {}", dir.string(), std::strerror(errno));
  }
  const uint64_t free_bytes = static_cast<uint64_t>(vfs.f_bavail) * vfs.f_frsize;
  // Keep a margin so the probe never fills the disk.
  if (free_bytes < o.storage_temp_bytes + (256ull << 20)) {
    return make_error(ErrorCode::io_error,
                      "calibrate: no space for the {} MiB storage test file in {} ({} MiB free); use --dir or a smaller "
                      "--storage-size",
                      o.storage_temp_bytes >> 20, dir.string(), free_bytes >> 20);
  }
  std::string templ = (dir / "tandem-calibrate-XXXXXX").string();
  const int fd = ::mkstemp(templ.data());
  if (fd < 0) {
    return make_error(ErrorCode::io_error, "calibrate: cannot create a storage test file in {}: {}", dir.string(),
                      std::strerror(errno));
  }
  tmp.path = templ;
  constexpr uint64_t k_chunk = 8ull << 20;
  std::vector<uint64_t> buf(k_chunk / sizeof(uint64_t));
  std::mt19937_64 rng(1);
  Status status;
  for (uint64_t done = 0; done < o.storage_temp_bytes && status.ok();) {
    for (auto& w : buf) w = rng();
    const uint64_t n = std::min(k_chunk, o.storage_temp_bytes - done);
    const ssize_t wrote = ::write(fd, buf.data(), n);
    if (wrote <= 0) {
      status = make_error(ErrorCode::io_error, "calibrate: writing {} at byte {}: {}", tmp.path.string(), done,
                          wrote < 0 ? std::strerror(errno) : "no progress");
    } else {
      done += static_cast<uint64_t>(wrote);
    }
  }
  if (status.ok() && ::fsync(fd) != 0) {
    status = make_error(ErrorCode::io_error, "calibrate: fsync {}: {}", tmp.path.string(), std::strerror(errno));
  }
  ::close(fd);
  return status;
}

struct DepthResult {
  double gbps = 0;
  double mean_latency_us = 0;
  uint64_t n_reads = 0;
};

// Keeps `depth` reads of `slab` bytes at random 4096-aligned offsets in flight for `seconds`.
Result<DepthResult> run_depth(const std::filesystem::path& file, uint32_t depth, uint64_t slab, double seconds,
                              std::string& mode_out) {
  AsyncReaderOptions ro;
  ro.queue_depth = depth;
  ro.pread_threads = depth;
  TANDEM_ASSIGN_OR_RETURN(std::unique_ptr<AsyncReader> reader, AsyncReader::open(file, ro));
  mode_out = reader->describe();
  if (reader->file_size() < slab + k_io_alignment) {
    return make_error(ErrorCode::invalid_argument, "calibrate: {} ({} bytes) is smaller than one expert slab ({} bytes)",
                      file.string(), reader->file_size(), slab);
  }
  const uint64_t cover = slab + 2 * k_io_alignment;
  std::vector<AlignedBuffer> bufs;
  for (uint32_t i = 0; i < depth; ++i) {
    TANDEM_ASSIGN_OR_RETURN(AlignedBuffer b, AlignedBuffer::allocate(cover));
    bufs.push_back(std::move(b));
  }
  std::mutex mu;
  std::condition_variable cv;
  std::vector<uint32_t> free_bufs;
  for (uint32_t i = 0; i < depth; ++i) free_bufs.push_back(i);
  double latency_sum_us = 0;
  uint64_t completed = 0, bytes = 0;
  Status failed;
  std::mt19937_64 rng(depth);
  const uint64_t n_offsets = (reader->file_size() - slab) / k_io_alignment;
  const auto t0 = Clock::now();
  uint64_t submitted = 0;
  while (seconds_since(t0) < seconds || submitted < 2ull * depth) {
    uint32_t slot = 0;
    {
      std::unique_lock lock(mu);
      cv.wait(lock, [&] { return !free_bufs.empty() || !failed.ok(); });
      if (!failed.ok()) break;
      slot = free_bufs.back();
      free_bufs.pop_back();
    }
    ReadRequest req;
    req.offset = (rng() % n_offsets) * k_io_alignment;
    req.length = slab;
    req.dst = bufs[slot].data();
    req.dst_capacity = bufs[slot].size();
    const auto start = Clock::now();
    Status s = reader->submit(req, [&, slot, start](const Status& st) {
      const double us = seconds_since(start) * 1e6;
      std::lock_guard lock(mu);
      if (!st.ok() && failed.ok()) failed = st;
      latency_sum_us += us;
      bytes += slab;
      ++completed;
      free_bufs.push_back(slot);
      cv.notify_all();
    });
    if (!s.ok()) {
      std::lock_guard lock(mu);
      if (failed.ok()) failed = s;
      break;
    }
    ++submitted;
  }
  // Callbacks touch the locals above: every read completes before any of them goes away.
  reader->drain();
  const double elapsed = seconds_since(t0);
  if (!failed.ok()) return failed;
  DepthResult r;
  r.n_reads = completed;
  r.gbps = static_cast<double>(bytes) / elapsed / 1e9;
  r.mean_latency_us = completed ? latency_sum_us / static_cast<double>(completed) : 0;
  return r;
}

}  // namespace

Status probe_storage(const CalibrateOptions& o, HardwareProfile& hw) {
  const uint64_t slab = expert_slab_bytes(o);
  TempFile tmp;
  std::filesystem::path file = o.storage_file;
  if (file.empty()) {
    progress(o, fmt::format("storage: writing a {} MiB test file in {}", o.storage_temp_bytes >> 20,
                            o.storage_dir.string()));
    TANDEM_RETURN_IF_ERROR(write_temp_file(o, tmp));
    file = tmp.path;
  }
  const double seconds = o.quick ? 0.25 : 4.0;
  std::string mode;
  hw.storage.random_read.clear();
  std::string latencies;
  for (uint32_t depth : k_depths) {
    TANDEM_ASSIGN_OR_RETURN(DepthResult r, run_depth(file, depth, slab, seconds, mode));
    progress(o, fmt::format("storage qd {}: {:.3f} GB/s, mean latency {:.0f} us ({} reads of {} bytes, {})", depth,
                            r.gbps, r.mean_latency_us, r.n_reads, slab, mode));
    hw.storage.random_read.push_back({slab, depth, r.gbps});
    if (depth == 1) hw.storage.latency_us = r.mean_latency_us;
    latencies += fmt::format("{}qd {}: {:.0f} us", latencies.empty() ? "" : ", ", depth, r.mean_latency_us);
  }
  hw.storage.name = fmt::format("{} ({})", block_device_name(file), mode.substr(0, mode.find(", queue depth")));
  hw.notes.push_back(fmt::format("storage: random reads of {} bytes (one expert slab) at 4096-aligned offsets of {}, "
                                 "{:.2f} s per queue depth; mean latency per read {}",
                                 slab, o.storage_file.empty() ? std::string("a temporary file") : file.string(),
                                 seconds, latencies));
  return Status::success();
}

}  // namespace tandem::calibrate_detail
