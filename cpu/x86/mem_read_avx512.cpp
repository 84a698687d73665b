// AVX-512 read loop for the bandwidth probe: one 64-byte cache line per load, four
// independent accumulators.
#include <immintrin.h>

#include <cstddef>
#include <cstdint>

namespace tandem::cpu::detail {

uint64_t read_sum_avx512(const uint64_t* p, size_t n_words) {
  __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
  size_t i = 0;
  for (; i + 32 <= n_words; i += 32) {
    a0 = _mm512_add_epi64(a0, _mm512_load_si512(p + i));
    a1 = _mm512_add_epi64(a1, _mm512_load_si512(p + i + 8));
    a2 = _mm512_add_epi64(a2, _mm512_load_si512(p + i + 16));
    a3 = _mm512_add_epi64(a3, _mm512_load_si512(p + i + 24));
  }
  // A store, not _mm512_reduce_add_epi64: GCC 12's version trips -Wuninitialized at -O3
  // (GCC PR105593).
  alignas(64) uint64_t lanes[8];
  _mm512_store_si512(lanes, _mm512_add_epi64(_mm512_add_epi64(a0, a1), _mm512_add_epi64(a2, a3)));
  uint64_t sum = 0;
  for (uint64_t l : lanes) sum += l;
  for (; i < n_words; ++i) sum += p[i];
  return sum;
}

}  // namespace tandem::cpu::detail
