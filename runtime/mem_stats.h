// MemStats: this process's resident memory, split as the kernel accounts it, read from
// /proc/self/status (Linux proc(5): VmRSS = RssAnon + RssFile + RssShmem; VmHWM = peak VmRSS).
// Anonymous memory is what Tandem allocated (expert cache slots, KV cache, activations);
// file-backed memory is the model file's mapped pages, which the kernel may drop and re-read
// — the memory-limited mode budgets the first and watches the second.
//
// The kernel keeps only the peak of the total (VmHWM); MemPeakTracker keeps the peaks of the
// anonymous and file-backed parts over the samples it is given.
#pragma once

#include <cstdint>
#include <string_view>

#include "core/status.h"

namespace tandem {

struct MemStats {
  uint64_t rss_bytes = 0;        // VmRSS
  uint64_t rss_anon_bytes = 0;   // RssAnon
  uint64_t rss_file_bytes = 0;   // RssFile
  uint64_t rss_shmem_bytes = 0;  // RssShmem
  uint64_t peak_rss_bytes = 0;   // VmHWM
};

// Reads /proc/self/status. Errors: io_error when it cannot be read (not Linux, no /proc),
// invalid_file when a field is missing or malformed.
Result<MemStats> read_mem_stats();
// Parses the text of a /proc/<pid>/status file (fields in kB); `source` names it in errors.
Result<MemStats> parse_proc_status(std::string_view text, std::string_view source);

class MemPeakTracker {
 public:
  // Reads the current figures and folds them into the peaks; returns the current figures.
  Result<MemStats> sample();
  // Peaks over the samples taken: rss_* fields are per-field maxima (not necessarily from the
  // same sample); peak_rss_bytes is the kernel's VmHWM at the last sample.
  const MemStats& peak() const { return peak_; }

 private:
  MemStats peak_;
};

}  // namespace tandem
