#include "runtime/mem_stats.h"

#include <algorithm>
#include <charconv>
#include <fstream>
#include <sstream>
#include <string>

namespace tandem {

namespace {

// "VmRSS:\t  123456 kB" -> bytes.
bool parse_kb_field(std::string_view text, std::string_view name, uint64_t* bytes) {
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(pos, end - pos);
    pos = end + 1;
    if (line.size() <= name.size() || line.substr(0, name.size()) != name || line[name.size()] != ':') continue;
    line.remove_prefix(name.size() + 1);
    while (!line.empty() && (line.front() == ' ' || line.front() == '\t')) line.remove_prefix(1);
    uint64_t kb = 0;
    auto [ptr, ec] = std::from_chars(line.data(), line.data() + line.size(), kb);
    if (ec != std::errc() || ptr == line.data()) return false;
    std::string_view unit(ptr, static_cast<size_t>(line.data() + line.size() - ptr));
    while (!unit.empty() && unit.front() == ' ') unit.remove_prefix(1);
    if (unit != "kB") return false;
    *bytes = kb * 1024;
    return true;
  }
  return false;
}

}  // namespace

Result<MemStats> parse_proc_status(std::string_view text, std::string_view source) {
  MemStats s;
  const std::pair<std::string_view, uint64_t*> fields[] = {
      {"VmRSS", &s.rss_bytes},           {"RssAnon", &s.rss_anon_bytes}, {"RssFile", &s.rss_file_bytes},
      {"RssShmem", &s.rss_shmem_bytes}, {"VmHWM", &s.peak_rss_bytes},
  };
  for (const auto& [name, out] : fields) {
    if (!parse_kb_field(text, name, out)) {
      return make_error(ErrorCode::invalid_file, "{}: field {} is missing or not '<n> kB'", source, name);
    }
  }
  return s;
}

Result<MemStats> read_mem_stats() {
  std::ifstream in("/proc/self/status");
  if (!in) return make_error(ErrorCode::io_error, "cannot read /proc/self/status");
  std::ostringstream text;
  text << in.rdbuf();
  return parse_proc_status(text.str(), "/proc/self/status");
}

Result<MemStats> MemPeakTracker::sample() {
  TANDEM_ASSIGN_OR_RETURN(MemStats now, read_mem_stats());
  peak_.rss_bytes = std::max(peak_.rss_bytes, now.rss_bytes);
  peak_.rss_anon_bytes = std::max(peak_.rss_anon_bytes, now.rss_anon_bytes);
  peak_.rss_file_bytes = std::max(peak_.rss_file_bytes, now.rss_file_bytes);
  peak_.rss_shmem_bytes = std::max(peak_.rss_shmem_bytes, now.rss_shmem_bytes);
  peak_.peak_rss_bytes = now.peak_rss_bytes;
  return now;
}

}  // namespace tandem
