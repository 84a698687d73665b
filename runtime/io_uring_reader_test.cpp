#include "runtime/io_uring_reader.h"

#include <fcntl.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstring>
#include <fstream>
#include <mutex>
#include <random>
#include <vector>

#include "support/test_support.h"

namespace fs = std::filesystem;
using namespace tandem;

namespace {

constexpr uint64_t k_file_size = (1u << 20) + 4096 * 3 + 123;  // odd tail after the last block

void write_random_file(const fs::path& p, uint64_t size, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<uint8_t> bytes(size);
  for (auto& b : bytes) b = static_cast<uint8_t>(rng());
  std::ofstream out(p, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

std::vector<uint8_t> pread_bytes(const fs::path& p, uint64_t off, uint64_t len) {
  std::vector<uint8_t> out(len);
  const int fd = ::open(p.c_str(), O_RDONLY);
  REQUIRE(fd >= 0);
  REQUIRE(::pread(fd, out.data(), len, static_cast<off_t>(off)) == static_cast<ssize_t>(len));
  ::close(fd);
  return out;
}

// A folder on a file system that may accept O_DIRECT (/tmp is tmpfs on many machines): the
// build folder first (tests run there), then /var/tmp, then the system temp dir.
struct TestFile {
  fs::path dir;
  fs::path path;
  explicit TestFile(const fs::path& d, uint64_t size = k_file_size, uint64_t seed = 7) {
    std::random_device rd;
    dir = d / ("tandem-io-test-" + std::to_string(rd()));
    fs::create_directories(dir);
    path = dir / "data.bin";
    write_random_file(path, size, seed);
  }
  ~TestFile() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
};

fs::path direct_capable_dir() {
  for (const fs::path& d : {fs::current_path(), fs::path("/var/tmp"), fs::temp_directory_path()}) {
    std::error_code ec;
    if (!fs::is_directory(d, ec)) continue;
    TestFile f(d, 8192);
    const int fd = ::open(f.path.c_str(), O_RDONLY | O_DIRECT);
    if (fd < 0) continue;
    void* buf = std::aligned_alloc(4096, 4096);
    const bool ok = ::pread(fd, buf, 4096, 0) == 4096;
    std::free(buf);
    ::close(fd);
    if (ok) return d;
  }
  return fs::temp_directory_path();
}

struct Span {
  uint64_t offset, length;
};

// Random spans over the file: unaligned, aligned (offset and length multiples of 4096),
// tiny, page-straddling and ending exactly at end of file.
std::vector<Span> random_spans(uint64_t file_size, int n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<Span> spans;
  for (int i = 0; i < n; ++i) {
    Span s{};
    switch (i % 5) {
      case 0: {  // aligned
        s.offset = (rng() % (file_size / 4096)) * 4096;
        s.length = std::min<uint64_t>(4096 * (1 + rng() % 16), file_size - s.offset);
        break;
      }
      case 1:  // tiny, anywhere
        s.offset = rng() % (file_size - 8);
        s.length = 1 + rng() % 7;
        break;
      case 2:  // straddles a page boundary
        s.offset = 4096 * (1 + rng() % (file_size / 4096 - 2)) - 1 - rng() % 50;
        s.length = 2 + rng() % 5000;
        break;
      case 3:  // ends at end of file
        s.length = 1 + rng() % 70000;
        s.offset = file_size - s.length;
        break;
      default:  // slab-like: arbitrary offset, ~tens of KB
        s.length = 1 + rng() % std::min<uint64_t>(200000, file_size / 2);
        s.offset = rng() % (file_size - s.length);
        break;
    }
    spans.push_back(s);
  }
  return spans;
}

std::unique_ptr<AsyncReader> open_reader(const fs::path& p, AsyncReaderOptions o) {
  auto r = AsyncReader::open(p, o);
  INFO(r.status().message());
  REQUIRE(r.ok());
  return std::move(r).value();
}

struct Dest {
  AlignedBuffer buf;
  uint64_t lead = 0;
  ReadRequest request(Span s) {
    const IoCover c = io_cover(s.offset, s.length);
    auto b = AlignedBuffer::allocate(c.length);
    REQUIRE(b.ok());
    buf = std::move(b).value();
    lead = c.lead;
    return ReadRequest{s.offset, s.length, buf.data(), buf.size()};
  }
  std::vector<uint8_t> bytes(uint64_t length) const {
    return std::vector<uint8_t>(buf.data() + lead, buf.data() + lead + length);
  }
};

// Submits all spans at once (more than the queue depth) and compares every result with pread.
void check_random_reads(const fs::path& path, AsyncReaderOptions o, int n_spans, uint64_t seed) {
  auto reader = open_reader(path, o);
  const auto spans = random_spans(reader->file_size(), n_spans, seed);
  std::vector<Dest> dests(spans.size());
  std::vector<Status> results(spans.size());
  std::atomic<int> n_done{0};
  for (size_t i = 0; i < spans.size(); ++i) {
    Status st = reader->submit(dests[i].request(spans[i]), [&, i](const Status& s) {
      results[i] = s;
      n_done.fetch_add(1);
    });
    REQUIRE(st.ok());
  }
  reader->drain();
  REQUIRE(n_done.load() == static_cast<int>(spans.size()));
  for (size_t i = 0; i < spans.size(); ++i) {
    INFO("span " << i << " offset " << spans[i].offset << " length " << spans[i].length << " via "
                 << reader->describe());
    REQUIRE(results[i].ok());
    REQUIRE(dests[i].bytes(spans[i].length) == pread_bytes(path, spans[i].offset, spans[i].length));
  }
  const IoStats st = reader->stats();
  REQUIRE(st.n_requests == spans.size());
  REQUIRE(st.n_failed == 0);
  REQUIRE(st.n_retries == 0);
  if (reader->mode() == IoMode::direct) {
    uint64_t covered = 0;
    for (const Span& s : spans) covered += std::min(io_cover(s.offset, s.length).length,
                                                    reader->file_size() - io_cover(s.offset, s.length).file_offset);
    REQUIRE(st.bytes_transferred == covered);
  }
}

const char* backend_label(bool uring) { return uring ? "io_uring" : "pread"; }

}  // namespace

TEST_CASE("io_cover: the aligned range around a span", "[io]") {
  const IoCover a = io_cover(0, 1);
  REQUIRE((a.file_offset == 0 && a.length == 4096 && a.lead == 0));
  const IoCover b = io_cover(4096, 4096);
  REQUIRE((b.file_offset == 4096 && b.length == 4096 && b.lead == 0));
  const IoCover c = io_cover(4095, 2);
  REQUIRE((c.file_offset == 0 && c.length == 8192 && c.lead == 4095));
  const IoCover d = io_cover(10000, 663552);  // a 4B expert matrix at a GGUF-style offset
  REQUIRE(d.file_offset == 8192);
  REQUIRE(d.lead == 1808);
  REQUIRE(d.length == io_align_up(10000 + 663552) - 8192);
}

TEST_CASE("AsyncReader: random reads equal pread at queue depths 1, 4, 32", "[io]") {
  const fs::path dir = direct_capable_dir();
  TestFile file(dir);
  for (bool uring : {true, false}) {
    for (bool direct : {true, false}) {
      for (uint32_t depth : {1u, 4u, 32u}) {
        AsyncReaderOptions o;
        o.queue_depth = depth;
        o.use_io_uring = uring;
        o.direct = direct;
        {
          auto probe = open_reader(file.path, o);
          if (depth == 32) {
            fmt::print(stderr, "[io] {} in {}: {}{}{}\n", backend_label(uring), dir.string(),
                       probe->describe(), probe->fallback_reason().empty() ? "" : " — ",
                       probe->fallback_reason());
          }
          if (!direct) REQUIRE(probe->mode() == IoMode::buffered);
        }
        check_random_reads(file.path, o, 60, depth * 31 + uring);
      }
    }
  }
}

TEST_CASE("AsyncReader: where O_DIRECT is refused the reader falls back to buffered reads", "[io]") {
  // Simulated refusal (the probe read "fails" with EINVAL): the reader reopens buffered.
  TestFile file(direct_capable_dir(), 200000, 3);
  IoFaultInjector faults;
  faults.refuse_o_direct(true);
  for (bool uring : {true, false}) {
    AsyncReaderOptions o;
    o.queue_depth = 4;
    o.use_io_uring = uring;
    o.faults = &faults;
    auto reader = open_reader(file.path, o);
    REQUIRE(reader->mode() == IoMode::buffered);
    REQUIRE_THAT(reader->fallback_reason(), Catch::Contains("refused an O_DIRECT read"));
    check_random_reads(file.path, o, 40, 11);
  }
  // A real tmpfs: refuses O_DIRECT before Linux 6.6, accepts it since. Either way the reads
  // are right and the mode says which happened.
  struct statfs sfs{};
  if (::statfs("/dev/shm", &sfs) == 0 && sfs.f_type == 0x01021994 /* TMPFS_MAGIC */) {
    TestFile shm("/dev/shm", 200000, 4);
    AsyncReaderOptions o;
    o.queue_depth = 4;
    auto reader = open_reader(shm.path, o);
    fmt::print(stderr, "[io] tmpfs /dev/shm: {}{}{}\n", reader->describe(),
               reader->fallback_reason().empty() ? "" : " — ", reader->fallback_reason());
    if (reader->mode() == IoMode::buffered) REQUIRE_THAT(reader->fallback_reason(), Catch::Contains("O_DIRECT"));
    check_random_reads(shm.path, o, 40, 12);
  }
}

TEST_CASE("AsyncReader: where io_uring is refused the reader falls back to pread", "[io]") {
  TestFile file(direct_capable_dir(), 300000, 8);
  IoFaultInjector faults;
  faults.refuse_io_uring(true);
  AsyncReaderOptions o;
  o.queue_depth = 4;
  o.faults = &faults;
  auto reader = open_reader(file.path, o);
  REQUIRE(reader->backend() == IoBackend::pread);
  REQUIRE_THAT(reader->fallback_reason(), Catch::Contains("io_uring_queue_init failed"));
  REQUIRE_THAT(reader->describe(), Catch::StartsWith("pread"));
  check_random_reads(file.path, o, 40, 13);
}

TEST_CASE("AsyncReader: synchronous read equals pread", "[io]") {
  TestFile file(direct_capable_dir());
  for (bool uring : {true, false}) {
    AsyncReaderOptions o;
    o.use_io_uring = uring;
    auto reader = open_reader(file.path, o);
    for (const Span& s : random_spans(reader->file_size(), 25, 99)) {
      Dest d;
      REQUIRE(reader->read(d.request(s)).ok());
      REQUIRE(d.bytes(s.length) == pread_bytes(file.path, s.offset, s.length));
    }
  }
}

TEST_CASE("AsyncReader: bad requests are refused without a callback", "[io]") {
  TestFile file(direct_capable_dir(), 10000);
  auto reader = open_reader(file.path, {});
  auto buf = AlignedBuffer::allocate(3 * 4096);
  REQUIRE(buf.ok());
  bool called = false;
  auto cb = [&](const Status&) { called = true; };
  Status beyond = reader->submit({9000, 1001, buf->data(), buf->size()}, cb);
  REQUIRE(beyond.code() == ErrorCode::invalid_argument);
  REQUIRE_THAT(beyond.message(), Catch::Contains("beyond the end") && Catch::Contains("10000 bytes"));
  REQUIRE(reader->submit({0, 10, buf->data() + 1, 4096}, cb).code() == ErrorCode::invalid_argument);
  REQUIRE(reader->submit({4095, 2, buf->data(), 4096}, cb).code() == ErrorCode::invalid_argument);
  REQUIRE(reader->submit({0, 0, buf->data(), 4096}, cb).code() == ErrorCode::invalid_argument);
  REQUIRE(reader->read_async({UINT64_MAX - 5, 10, buf->data(), buf->size()}).get().code() ==
          ErrorCode::invalid_argument);
  reader->drain();
  REQUIRE_FALSE(called);
  REQUIRE(AsyncReader::open(file.dir / "missing.bin").status().code() == ErrorCode::not_found);
  AsyncReaderOptions bad;
  bad.queue_depth = 0;
  REQUIRE(AsyncReader::open(file.path, bad).status().code() == ErrorCode::invalid_argument);
}

TEST_CASE("AsyncReader: injected faults are retried or reported", "[io]") {
  TestFile file(direct_capable_dir());
  const Span a{12345, 70000};
  const Span b{4096 * 9, 4096 * 3};
  for (bool uring : {true, false}) {
    DYNAMIC_SECTION(backend_label(uring)) {
      IoFaultInjector faults;
      AsyncReaderOptions o;
      o.use_io_uring = uring;
      o.faults = &faults;
      o.max_retries = 3;
      auto reader = open_reader(file.path, o);

      SECTION("a read that keeps failing names the file, offset, length and errno") {
        faults.add(IoFaultRule::fail_request(0, EIO, /*n=*/0));
        Dest d;
        Status st = reader->read_async(d.request(a)).get();
        REQUIRE(st.code() == ErrorCode::io_error);
        REQUIRE_THAT(st.message(), Catch::Contains(file.path.string()) && Catch::Contains("offset 12345") &&
                                       Catch::Contains("length 70000") && Catch::Contains("errno 5"));
        REQUIRE(reader->stats().n_retries == 3);
        REQUIRE(reader->stats().n_failed == 1);
        // The next request is unaffected.
        Dest e;
        REQUIRE(reader->read_async(e.request(b)).get().ok());
        REQUIRE(e.bytes(b.length) == pread_bytes(file.path, b.offset, b.length));
      }
      SECTION("a read that fails once is retried and correct") {
        faults.add(IoFaultRule::fail_request(0, EIO, 1));
        Dest d;
        REQUIRE(reader->read_async(d.request(a)).get().ok());
        REQUIRE(d.bytes(a.length) == pread_bytes(file.path, a.offset, a.length));
        REQUIRE(reader->stats().n_retries == 1);
      }
      SECTION("EINVAL is not retried") {
        faults.add(IoFaultRule::fail_request(0, EINVAL, 0));
        Dest d;
        Status st = reader->read_async(d.request(a)).get();
        REQUIRE_THAT(st.message(), Catch::Contains("errno 22"));
        REQUIRE(reader->stats().n_retries == 0);
      }
      SECTION("a fault by offset hits only the request covering it") {
        faults.add(IoFaultRule::fail_offset(a.offset + 5000, EIO, 0));
        Dest d, e;
        auto fa = reader->read_async(d.request(a));
        auto fb = reader->read_async(e.request(b));
        REQUIRE_THAT(fa.get().message(), Catch::Contains("offset 12345"));
        REQUIRE(fb.get().ok());
      }
      SECTION("short reads are resubmitted for the remainder and come out right") {
        for (uint64_t short_by : {0u, 100u, 5000u, 4096u * 7}) {
          faults.clear();
          faults.add(IoFaultRule::short_request(reader->stats().n_requests, short_by, 2));
          Dest d;
          REQUIRE(reader->read_async(d.request(a)).get().ok());
          REQUIRE(d.bytes(a.length) == pread_bytes(file.path, a.offset, a.length));
        }
        REQUIRE(reader->stats().n_retries == 8);
        REQUIRE(reader->stats().n_failed == 0);
      }
      SECTION("a read that stays short is reported, never returned as ok") {
        faults.add(IoFaultRule::short_request(0, 10, 0));
        Dest d;
        Status st = reader->read_async(d.request(a)).get();
        REQUIRE(st.code() == ErrorCode::io_error);
        REQUIRE_THAT(st.message(), Catch::Contains("short read") && Catch::Contains("offset 12345"));
      }
      SECTION("a delayed read arrives late with the right bytes; others are not held up") {
        faults.add(IoFaultRule::delay_request(0, 150));
        std::mutex mu;
        std::vector<int> order;
        Dest d, e;
        const auto t0 = std::chrono::steady_clock::now();
        REQUIRE(reader->submit(d.request(a), [&](const Status& s) {
          REQUIRE(s.ok());
          std::lock_guard lock(mu);
          order.push_back(0);
        }).ok());
        REQUIRE(reader->submit(e.request(b), [&](const Status& s) {
          REQUIRE(s.ok());
          std::lock_guard lock(mu);
          order.push_back(1);
        }).ok());
        reader->drain();
        REQUIRE(std::chrono::steady_clock::now() - t0 >= std::chrono::milliseconds(150));
        REQUIRE(d.bytes(a.length) == pread_bytes(file.path, a.offset, a.length));
        REQUIRE(e.bytes(b.length) == pread_bytes(file.path, b.offset, b.length));
        REQUIRE(order == std::vector<int>{1, 0});
      }
      SECTION("synchronous reads take the same faults") {
        faults.add(IoFaultRule::short_request(0, 1, 1));
        faults.add(IoFaultRule::fail_request(1, EIO, 0));
        Dest d, e;
        REQUIRE(reader->read(d.request(a)).ok());
        REQUIRE(d.bytes(a.length) == pread_bytes(file.path, a.offset, a.length));
        REQUIRE_THAT(reader->read(e.request(b)).message(), Catch::Contains("offset 36864"));
      }
    }
  }
}

TEST_CASE("AsyncReader: the destructor waits for every read and callback", "[io]") {
  TestFile file(direct_capable_dir());
  std::atomic<int> n_done{0};
  std::vector<Dest> dests(100);
  {
    AsyncReaderOptions o;
    o.queue_depth = 4;
    auto reader = open_reader(file.path, o);
    const auto spans = random_spans(reader->file_size(), 100, 5);
    for (size_t i = 0; i < spans.size(); ++i) {
      REQUIRE(reader->submit(dests[i].request(spans[i]), [&](const Status& s) {
        if (s.ok()) n_done.fetch_add(1);
      }).ok());
    }
  }
  REQUIRE(n_done.load() == 100);
}
