// Trace: Chrome trace-event JSON (the "JSON Object Format" of the Trace Event Format document,
// https://docs.google.com/document/d/1CvAClvFfyA5R-PhYUmn5OOQtYMH4h6I0nSsKchNAySU), loadable
// in Perfetto (ui.perfetto.dev) and chrome://tracing.
//
// Events kept in memory and written once (write()):
//   complete  "ph":"X", ts and dur in microseconds since the Trace was made (steady clock)
//   instant   "ph":"i", "s":"t" (thread scope)
// pid is this process's id; tid a small number per OS thread, in order of first use (the
// thread that made the Trace is 1), with a "thread_name" metadata event per tid when named.
// Args are integers (layer, expert, bytes, position) plus an optional text `detail`.
//
// Threading: every method may be called from any thread (one mutex around the event list).
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/status.h"

namespace tandem {

struct TraceEvent {
  std::string name;
  std::string cat;
  char ph = 'X';  // 'X' complete, 'i' instant
  int64_t ts_us = 0;
  int64_t dur_us = 0;  // 'X' only
  uint32_t tid = 0;
  std::vector<std::pair<std::string, int64_t>> args;
  std::string detail;  // written as args.detail when not empty
};

using TraceArgs = std::vector<std::pair<std::string, int64_t>>;

class Trace {
 public:
  Trace();

  // Microseconds since the Trace was made (the `ts` of events).
  int64_t now_us() const;
  // This thread's tid in the trace (assigned on first use).
  uint32_t thread_id();
  // Names this thread's track (written as a thread_name metadata event).
  void name_thread(std::string_view name);

  void complete(std::string_view name, std::string_view cat, int64_t ts_us, int64_t dur_us,
                TraceArgs args = {}, std::string detail = {});
  void instant(std::string_view name, std::string_view cat, int64_t ts_us, TraceArgs args = {});

  std::vector<TraceEvent> events() const;
  std::string to_json() const;
  // Errors: io_error naming the path.
  Status write(const std::filesystem::path& path) const;

 private:
  using Clock = std::chrono::steady_clock;
  Clock::time_point t0_;
  mutable std::mutex mu_;
  std::vector<TraceEvent> events_;
  std::vector<std::pair<std::string, uint32_t>> thread_ids_;  // (hashed std::thread::id text, tid)
  std::vector<std::pair<uint32_t, std::string>> thread_names_;
};

// How much of the storage-read time was hidden under other work: the union of the "read"
// spans (cat "io") minus its overlap with the "wait" spans (cat "wait": the executor blocked
// on a read), over the union of the read spans. 1 when there were no reads.
struct ReadOverlap {
  int64_t read_us = 0;     // |union of read spans|
  int64_t exposed_us = 0;  // |union of read spans ∩ union of wait spans|
  uint64_t n_reads = 0;
  double hidden_fraction() const {
    return read_us > 0 ? 1.0 - double(exposed_us) / double(read_us) : 1.0;
  }
};
ReadOverlap read_overlap(const std::vector<TraceEvent>& events);

}  // namespace tandem
