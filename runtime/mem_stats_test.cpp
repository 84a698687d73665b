#include "runtime/mem_stats.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <fstream>
#include <vector>

#include "support/test_support.h"

using namespace tandem;

TEST_CASE("mem_stats: parses /proc/<pid>/status fields", "[mem_stats]") {
  const char* text =
      "Name:\ttandem\nVmPeak:\t  900 kB\nVmHWM:\t    5000 kB\nVmRSS:\t    4000 kB\n"
      "RssAnon:\t    2500 kB\nRssFile:\t    1400 kB\nRssShmem:\t     100 kB\nThreads:\t3\n";
  auto s = parse_proc_status(text, "sample");
  REQUIRE(s.ok());
  REQUIRE(s->rss_bytes == 4000 * 1024);
  REQUIRE(s->rss_anon_bytes == 2500 * 1024);
  REQUIRE(s->rss_file_bytes == 1400 * 1024);
  REQUIRE(s->rss_shmem_bytes == 100 * 1024);
  REQUIRE(s->peak_rss_bytes == 5000 * 1024);

  auto missing = parse_proc_status("VmRSS:\t1 kB\nVmHWM:\t1 kB\nRssFile:\t1 kB\nRssShmem:\t0 kB\n", "sample");
  REQUIRE(missing.status().code() == ErrorCode::invalid_file);
  REQUIRE_THAT(missing.status().message(), Catch::Contains("RssAnon"));
  auto malformed = parse_proc_status(
      "VmRSS:\tx kB\nRssAnon:\t1 kB\nVmHWM:\t1 kB\nRssFile:\t1 kB\nRssShmem:\t0 kB\n", "sample");
  REQUIRE_THAT(malformed.status().message(), Catch::Contains("VmRSS"));
  // A field whose name is a prefix of another's is not mistaken for it.
  auto prefix = parse_proc_status("VmRSSx:\t1 kB\nRssAnon:\t1 kB\nVmHWM:\t1 kB\nRssFile:\t1 kB\nRssShmem:\t0 kB\n", "s");
  REQUIRE_FALSE(prefix.ok());
}

TEST_CASE("mem_stats: anonymous and file-backed growth show up in their own fields", "[mem_stats]") {
  auto before = read_mem_stats();
  REQUIRE(before.ok());
  REQUIRE(before->rss_bytes == before->rss_anon_bytes + before->rss_file_bytes + before->rss_shmem_bytes);
  REQUIRE(before->peak_rss_bytes >= before->rss_bytes);

  MemPeakTracker tracker;
  REQUIRE(tracker.sample().ok());

  constexpr size_t k_bytes = 64u << 20;
  void* anon = ::mmap(nullptr, k_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  REQUIRE(anon != MAP_FAILED);
  std::memset(anon, 1, k_bytes);
  auto with_anon = tracker.sample();
  REQUIRE(with_anon.ok());
  REQUIRE(with_anon->rss_anon_bytes >= before->rss_anon_bytes + k_bytes * 3 / 4);
  ::munmap(anon, k_bytes);

  test::TempDir dir("tandem-mem-stats");
  const auto path = dir / "file.bin";
  {
    std::vector<char> data(k_bytes / 2, 7);
    std::ofstream(path, std::ios::binary).write(data.data(), static_cast<std::streamsize>(data.size()));
  }
  const int fd = ::open(path.c_str(), O_RDONLY);
  REQUIRE(fd >= 0);
  void* map = ::mmap(nullptr, k_bytes / 2, PROT_READ, MAP_SHARED, fd, 0);
  REQUIRE(map != MAP_FAILED);
  volatile uint64_t sum = 0;
  for (size_t i = 0; i < k_bytes / 2; i += 4096) sum = sum + static_cast<const uint8_t*>(map)[i];
  REQUIRE(sum == 7 * (k_bytes / 2 / 4096));
  auto with_file = tracker.sample();
  REQUIRE(with_file.ok());
  REQUIRE(with_file->rss_file_bytes >= before->rss_file_bytes + k_bytes / 2 * 3 / 4);
  ::munmap(map, k_bytes / 2);
  ::close(fd);

  auto after = tracker.sample();
  REQUIRE(after.ok());
  REQUIRE(after->rss_anon_bytes < with_anon->rss_anon_bytes);
  // The tracker remembers each part's peak although both have shrunk since.
  REQUIRE(tracker.peak().rss_anon_bytes >= with_anon->rss_anon_bytes);
  REQUIRE(tracker.peak().rss_file_bytes >= with_file->rss_file_bytes);
  REQUIRE(tracker.peak().rss_bytes >= with_anon->rss_bytes);
  // VmHWM comes from per-thread batched counters: allow it to lag by a little.
  REQUIRE(tracker.peak().peak_rss_bytes >= before->rss_bytes + k_bytes * 3 / 4);
}
