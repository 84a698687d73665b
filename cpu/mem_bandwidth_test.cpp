#include "cpu/mem_bandwidth.h"

#include <catch2/catch.hpp>

#include <cstdlib>
#include <memory>
#include <random>
#include <vector>

namespace tandem::cpu {
namespace {

struct FreeDeleter {
  void operator()(void* p) const { std::free(p); }
};

TEST_CASE("read_sum of every host isa equals the plain sum, tails included", "[cpu][bandwidth]") {
  constexpr size_t k_max_words = 1024;
  std::unique_ptr<uint64_t, FreeDeleter> buf(
      static_cast<uint64_t*>(std::aligned_alloc(64, k_max_words * sizeof(uint64_t))));
  REQUIRE(buf);
  std::mt19937_64 rng(7);
  for (size_t i = 0; i < k_max_words; ++i) buf.get()[i] = rng();  // sums wrap mod 2^64
  int n_isas = 0;
  for (Isa isa : k_all_isas) {
    const ReadSumFn fn = read_sum_for(isa);
    if (!fn) continue;
    ++n_isas;
    // Below, at and above the 16- and 32-word unrolled bodies; odd sizes.
    for (size_t n : {size_t{0}, size_t{1}, size_t{3}, size_t{4}, size_t{15}, size_t{16}, size_t{17},
                     size_t{31}, size_t{32}, size_t{33}, size_t{63}, size_t{64}, size_t{65},
                     size_t{999}, k_max_words}) {
      uint64_t expected = 0;
      for (size_t i = 0; i < n; ++i) expected += buf.get()[i];
      INFO("isa " << isa_name(isa) << " n_words " << n);
      CHECK(fn(buf.get(), n) == expected);
    }
  }
  CHECK(n_isas >= 1);
  CHECK(read_sum_for(Isa::scalar) != nullptr);
}

TEST_CASE("measure_read_bandwidth reports a plausible figure per host isa", "[cpu][bandwidth]") {
  for (Isa isa : k_all_isas) {
    if (!read_sum_for(isa)) continue;
    INFO("isa " << isa_name(isa));
    auto r = measure_read_bandwidth(isa, 2, 16ull << 20, 2);
    REQUIRE(r.ok());
    CHECK(r->n_threads == 2);
    CHECK(r->bytes == 16ull << 20);
    CHECK(r->seconds > 0);
    CHECK(r->gbps == Approx(static_cast<double>(r->bytes) / r->seconds / 1e9));
    // 0.1 GB/s is slower than any RAM of this century; 1000 GB/s faster than any CPU socket.
    CHECK(r->gbps > 0.1);
    CHECK(r->gbps < 1000);
  }
}

TEST_CASE("measure_read_bandwidth: 0 threads means all, odd sizes round to whole lines",
          "[cpu][bandwidth]") {
  auto r = measure_read_bandwidth(0, (3ull << 20) + 123, 1);
  REQUIRE(r.ok());
  CHECK(r->n_threads >= 1);
  CHECK(r->bytes % 64 == 0);
  CHECK(r->bytes <= (3ull << 20) + 123);
  CHECK(r->bytes + 64ull * static_cast<uint64_t>(r->n_threads) > (3ull << 20) + 123);
  CHECK(r->gbps > 0);
}

TEST_CASE("measure_read_bandwidth rejects bad arguments with named errors", "[cpu][bandwidth]") {
  auto neg = measure_read_bandwidth(-1, 1 << 20, 1);
  REQUIRE_FALSE(neg.ok());
  CHECK(neg.status().code() == ErrorCode::invalid_argument);
  CHECK(neg.status().message().find("n_threads") != std::string::npos);

  auto reps = measure_read_bandwidth(1, 1 << 20, 0);
  REQUIRE_FALSE(reps.ok());
  CHECK(reps.status().code() == ErrorCode::invalid_argument);

  auto tiny = measure_read_bandwidth(4, 4096, 1);
  REQUIRE_FALSE(tiny.ok());
  CHECK(tiny.status().code() == ErrorCode::invalid_argument);

  // More than any machine's RAM: refused before touching a page.
  auto huge = measure_read_bandwidth(1, 1ull << 60, 1);
  REQUIRE_FALSE(huge.ok());
  CHECK(huge.status().code() == ErrorCode::out_of_memory);

  for (Isa isa : k_all_isas) {
    if (read_sum_for(isa)) continue;
    auto r = measure_read_bandwidth(isa, 1, 1 << 20, 1);
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().code() == ErrorCode::unsupported);
  }
}

}  // namespace
}  // namespace tandem::cpu
