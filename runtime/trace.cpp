#include "runtime/trace.h"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

namespace tandem {

Trace::Trace() : t0_(Clock::now()) {
  thread_id();
}

int64_t Trace::now_us() const {
  return std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t0_).count();
}

uint32_t Trace::thread_id() {
  std::ostringstream os;
  os << std::this_thread::get_id();
  const std::string key = os.str();
  std::lock_guard lock(mu_);
  for (const auto& [k, id] : thread_ids_) {
    if (k == key) return id;
  }
  const uint32_t id = uint32_t(thread_ids_.size()) + 1;
  thread_ids_.emplace_back(key, id);
  return id;
}

void Trace::name_thread(std::string_view name) {
  const uint32_t tid = thread_id();
  std::lock_guard lock(mu_);
  for (auto& [t, n] : thread_names_) {
    if (t == tid) {
      n = name;
      return;
    }
  }
  thread_names_.emplace_back(tid, std::string(name));
}

void Trace::complete(std::string_view name, std::string_view cat, int64_t ts_us, int64_t dur_us,
                     TraceArgs args, std::string detail) {
  TraceEvent e{
      std::string(name), std::string(cat), 'X', ts_us, std::max<int64_t>(0, dur_us), thread_id(),
      std::move(args),   std::move(detail)};
  std::lock_guard lock(mu_);
  events_.push_back(std::move(e));
}

void Trace::instant(std::string_view name, std::string_view cat, int64_t ts_us, TraceArgs args) {
  TraceEvent e{std::string(name), std::string(cat), 'i', ts_us, 0,
               thread_id(),       std::move(args),  {}};
  std::lock_guard lock(mu_);
  events_.push_back(std::move(e));
}

std::vector<TraceEvent> Trace::events() const {
  std::lock_guard lock(mu_);
  return events_;
}

std::string Trace::to_json() const {
  using J = nlohmann::json;
  const int pid = int(::getpid());
  J list = J::array();
  {
    std::lock_guard lock(mu_);
    for (const auto& [tid, name] : thread_names_) {
      list.push_back(J{{"name", "thread_name"},
                       {"ph", "M"},
                       {"pid", pid},
                       {"tid", tid},
                       {"args", {{"name", name}}}});
    }
    for (const TraceEvent& e : events_) {
      J j{{"name", e.name}, {"cat", e.cat}, {"ph", std::string(1, e.ph)},
          {"ts", e.ts_us},  {"pid", pid},   {"tid", e.tid}};
      if (e.ph == 'X') j["dur"] = e.dur_us;
      if (e.ph == 'i') j["s"] = "t";
      J args = J::object();
      for (const auto& [k, v] : e.args) args[k] = v;
      if (!e.detail.empty()) args["detail"] = e.detail;
      if (!args.empty()) j["args"] = std::move(args);
      list.push_back(std::move(j));
    }
  }
  J doc{{"traceEvents", std::move(list)}, {"displayTimeUnit", "ms"}};
  return doc.dump();
}

Status Trace::write(const std::filesystem::path& path) const {
  const std::string text = to_json();
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return make_error(ErrorCode::io_error, "trace: cannot create {}", path.string());
  out.write(text.data(), std::streamsize(text.size()));
  out.close();
  if (!out)
    return make_error(ErrorCode::io_error, "trace: writing {} bytes to {} failed", text.size(),
                      path.string());
  return Status::success();
}

namespace {

using Interval = std::pair<int64_t, int64_t>;

std::vector<Interval> merged(std::vector<Interval> v) {
  std::sort(v.begin(), v.end());
  std::vector<Interval> out;
  for (const Interval& i : v) {
    if (!out.empty() && i.first <= out.back().second) {
      out.back().second = std::max(out.back().second, i.second);
    } else {
      out.push_back(i);
    }
  }
  return out;
}

}  // namespace

ReadOverlap read_overlap(const std::vector<TraceEvent>& events) {
  std::vector<Interval> reads, waits;
  ReadOverlap r;
  for (const TraceEvent& e : events) {
    if (e.ph != 'X') continue;
    if (e.cat == "io") {
      reads.emplace_back(e.ts_us, e.ts_us + e.dur_us);
      ++r.n_reads;
    } else if (e.cat == "wait") {
      waits.emplace_back(e.ts_us, e.ts_us + e.dur_us);
    }
  }
  reads = merged(std::move(reads));
  waits = merged(std::move(waits));
  for (const Interval& i : reads) r.read_us += i.second - i.first;
  // Both lists are sorted and disjoint: one sweep.
  size_t w = 0;
  for (const Interval& i : reads) {
    while (w < waits.size() && waits[w].second <= i.first) ++w;
    for (size_t k = w; k < waits.size() && waits[k].first < i.second; ++k) {
      r.exposed_us += std::min(i.second, waits[k].second) - std::max(i.first, waits[k].first);
    }
  }
  return r;
}

}  // namespace tandem
