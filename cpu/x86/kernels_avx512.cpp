// AVX-512 kernels (F, BW, VL, VNNI, VBMI). The q4_0/q8_0 dots use VNNI vpdpbusd (u8 x s8):
// weights enter as unsigned bytes (q4 nibbles 0..15; q8 xor 0x80 = q + 128) and the offset
// (8 or 128 times the activation sum) is subtracted through the dpbusd accumulator, which
// starts at a per-lane correction prepared once per activation row. One zmm covers two
// blocks; activations are re-laid out once per call so the q4 nibble halves need no shuffle.
#include <immintrin.h>

// GCC 12's AVX-512 headers seed masked builtins with `_mm512_undefined_*() { __m512 y = y; }`,
// which -Wuninitialized reports at every inlined use (GCC PR105593, fixed in GCC 13).
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ < 13
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/fp16.h"
#include "core/quant_blocks.h"
#include "cpu/kernels/isa_kernels.h"

namespace tandem::cpu::detail {
namespace {

// Two q8_0 activation blocks, ready for one vpdpbusd against two weight blocks.
struct alignas(64) PairPrep {
  int8_t qs[64];      // q4 order: b0[0:16] b1[0:16] b0[16:32] b1[16:32]; q8 order: b0 b1
  int32_t corr[16];   // -offset * (sum of the 4 activation bytes of this dword lane)
  float dx[16];       // activation scale of the block each dword lane belongs to
};

enum class WKind { q4_0, q8_0 };

// Per-thread scratch: activations are small (k/64 pairs x n_tok), weights are the stream.
std::vector<PairPrep>& prep_buffer(size_t n) {
  thread_local std::vector<PairPrep> buf;
  if (buf.size() < n) buf.resize(n);
  return buf;
}

// Vectorised: the re-layout is one qword permute, the lane sums one vpdpbusd against ones,
// so preparing costs far less than streaming the weights it is used with.
template <WKind K>
void prepare(const block_q8_0* x, int64_t nb, PairPrep* out) {
  const __m512i ones = _mm512_set1_epi8(1);
  const __m512i q4_order = _mm512_set_epi64(7, 6, 3, 2, 5, 4, 1, 0);
  const __m512i dx_q4 = _mm512_set_epi32(1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0);
  const __m512i dx_q8 = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
  for (int64_t p = 0; p < (nb + 1) / 2; ++p) {
    const bool two = 2 * p + 1 < nb;
    const block_q8_0& b0 = x[2 * p];
    const __m256i lo = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b0.qs));
    const __m256i hi = two ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[2 * p + 1].qs)) : _mm256_setzero_si256();
    __m512i q = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
    if constexpr (K == WKind::q4_0) q = _mm512_permutexvar_epi64(q4_order, q);
    const __m512i lane_sum = _mm512_dpbusd_epi32(_mm512_setzero_si512(), ones, q);
    const __m512i corr = _mm512_sub_epi32(_mm512_setzero_si512(),
                                          K == WKind::q4_0 ? _mm512_slli_epi32(lane_sum, 3) : _mm512_slli_epi32(lane_sum, 7));
    const uint32_t dd = b0.d | (two ? static_cast<uint32_t>(x[2 * p + 1].d) << 16 : 0u);
    const __m512 d2 = _mm512_castps128_ps512(_mm_cvtph_ps(_mm_cvtsi32_si128(static_cast<int>(dd))));
    _mm512_store_si512(out[p].qs, q);
    _mm512_store_si512(out[p].corr, corr);
    _mm512_store_ps(out[p].dx, _mm512_permutexvar_ps(K == WKind::q4_0 ? dx_q4 : dx_q8, d2));
  }
}

// Horizontal sum/max without _mm512_reduce_*: GCC 12 flags their _mm256_undefined_pd with
// -Wuninitialized. Halves are folded with AVX512F shuffles only.
inline __m256 fold256(__m512 v, bool max) {
  const __m512 hi = _mm512_shuffle_f32x4(v, v, 0xEE);
  return _mm512_castps512_ps256(max ? _mm512_max_ps(v, hi) : _mm512_add_ps(v, hi));
}
inline float hsum(__m512 v) {
  const __m256 h = fold256(v, false);
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
inline float hmax(__m512 v) {
  const __m256 h = fold256(v, true);
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  s = _mm_max_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

inline uint16_t load_u16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}

// Weight pair p of a row: 64 unsigned bytes in the activation order above, and the weight
// scale of each dword lane. `two` is false for a lone last block (upper block zero).
template <WKind K>
inline void load_pair(const uint8_t* row, int64_t p, bool two, __m512i& w, __m512& dw) {
  if constexpr (K == WKind::q4_0) {
    const uint8_t* b = row + p * 2 * sizeof(block_q4_0);
    const __m128i q0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 2));
    const __m128i q1 = two ? _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 20)) : _mm_setzero_si128();
    const __m256i t = _mm256_inserti128_si256(_mm256_castsi128_si256(q0), q1, 1);
    w = _mm512_and_si512(_mm512_inserti64x4(_mm512_castsi256_si512(t), _mm256_srli_epi16(t, 4), 1),
                         _mm512_set1_epi8(0x0F));
    const uint32_t dd = load_u16(b) | (two ? static_cast<uint32_t>(load_u16(b + 18)) << 16 : 0u);
    const __m512 d2 = _mm512_castps128_ps512(_mm_cvtph_ps(_mm_cvtsi32_si128(static_cast<int>(dd))));
    dw = _mm512_permutexvar_ps(_mm512_set_epi32(1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0), d2);
  } else {
    const uint8_t* b = row + p * 2 * sizeof(block_q8_0);
    const __m256i q0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 2));
    const __m256i q1 = two ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 36)) : _mm256_set1_epi8(-128);
    w = _mm512_xor_si512(_mm512_inserti64x4(_mm512_castsi256_si512(q0), q1, 1), _mm512_set1_epi8(-128));
    const uint32_t dd = load_u16(b) | (two ? static_cast<uint32_t>(load_u16(b + 34)) << 16 : 0u);
    const __m512 d2 = _mm512_castps128_ps512(_mm_cvtph_ps(_mm_cvtsi32_si128(static_cast<int>(dd))));
    dw = _mm512_permutexvar_ps(_mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0), d2);
  }
}

// Which rows a GEMM reads: rows 0..n-1 of (base, stride), or rows idx[0..n-1]; the result
// of list entry i goes to column out(i) (= the row number) of y.
struct RowList {
  const uint8_t* base;
  size_t wrb;
  const int32_t* idx;  // nullptr: consecutive rows
  int64_t n;           // rows in the list
  int64_t row(int64_t i) const { return idx ? idx[i] : i; }
};

inline constexpr int64_t k_prefetch_rows = 4;

// NR rows x NT tokens, all pairs.
template <WKind K, int NR, int NT>
inline void tile_q(int64_t nb, const RowList& rl, int64_t i0, const PairPrep* const* xp, float* y, int64_t ys) {
  const uint8_t* w[NR];
  for (int r = 0; r < NR; ++r) w[r] = rl.base + static_cast<size_t>(rl.row(i0 + r)) * rl.wrb;
  // Weight rows stream from DRAM once; the out-of-order window covers too few bytes of them
  // to hide DRAM latency, so the rows k_prefetch_rows ahead in the list are prefetched while
  // these are computed (this also covers the scattered rows of gemm_rows).
  const uint8_t* pf[NR];
  for (int r = 0; r < NR; ++r) {
    const int64_t j = i0 + k_prefetch_rows + r;
    pf[r] = j < rl.n ? rl.base + static_cast<size_t>(rl.row(j)) * rl.wrb : nullptr;
  }
  __m512 acc[NR][NT];
  for (int r = 0; r < NR; ++r)
    for (int t = 0; t < NT; ++t) acc[r][t] = _mm512_setzero_ps();
  const int64_t np = (nb + 1) / 2;
  for (int64_t p = 0; p < np; ++p) {
    const bool two = 2 * p + 1 < nb;
    __m512i wq[NR];
    __m512 dw[NR];
    for (int r = 0; r < NR; ++r) {
      if (pf[r]) _mm_prefetch(reinterpret_cast<const char*>(pf[r]) + p * 2 * (K == WKind::q4_0 ? 18 : 34), _MM_HINT_T0);
      load_pair<K>(w[r], p, two, wq[r], dw[r]);
    }
    for (int t = 0; t < NT; ++t) {
      const PairPrep& x = xp[t][p];
      const __m512i xq = _mm512_load_si512(x.qs);
      const __m512i corr = _mm512_load_si512(x.corr);
      const __m512 dx = _mm512_load_ps(x.dx);
      for (int r = 0; r < NR; ++r) {
        const __m512i s = _mm512_dpbusd_epi32(corr, wq[r], xq);
        acc[r][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(dw[r], dx), acc[r][t]);
      }
    }
  }
  for (int r = 0; r < NR; ++r)
    for (int t = 0; t < NT; ++t) y[t * ys + rl.row(i0 + r)] = hsum(acc[r][t]);
}

template <WKind K, int NT>
inline void rows_q(int64_t nb, int64_t n_rows, const RowList& rl, const PairPrep* const* xp, float* y, int64_t ys) {
  constexpr int NR = NT == 1 ? 1 : 2;  // one row at a time keeps the DRAM stream sequential
  int64_t r = 0;
  for (; r + NR <= n_rows; r += NR) tile_q<K, NR, NT>(nb, rl, r, xp, y, ys);
  for (; r < n_rows; ++r) tile_q<K, 1, NT>(nb, rl, r, xp, y, ys);
}

template <WKind K>
void gemm_list(int64_t k, int64_t n_rows, const RowList& rl, const void* x, size_t xrb, int64_t n_tok, float* y,
               int64_t ys) {
  const int64_t nb = k / QK8_0;
  const int64_t np = (nb + 1) / 2;
  std::vector<PairPrep>& buf = prep_buffer(static_cast<size_t>(np * n_tok));
  const auto* xb = static_cast<const uint8_t*>(x);
  for (int64_t t = 0; t < n_tok; ++t) {
    prepare<K>(reinterpret_cast<const block_q8_0*>(xb + t * xrb), nb, buf.data() + t * np);
  }
  const PairPrep* xp[4];
  for (int64_t t = 0; t < n_tok; t += 4) {
    const int64_t nt = std::min<int64_t>(4, n_tok - t);
    for (int i = 0; i < nt; ++i) xp[i] = buf.data() + (t + i) * np;
    switch (nt) {
      case 4: rows_q<K, 4>(nb, n_rows, rl, xp, y + t * ys, ys); break;
      case 3: rows_q<K, 3>(nb, n_rows, rl, xp, y + t * ys, ys); break;
      case 2: rows_q<K, 2>(nb, n_rows, rl, xp, y + t * ys, ys); break;
      default: rows_q<K, 1>(nb, n_rows, rl, xp, y + t * ys, ys); break;
    }
  }
}

template <WKind K>
void gemm_q(int64_t k, int64_t n_rows, const void* w, size_t wrb, const void* x, size_t xrb, int64_t n_tok, float* y,
            int64_t ys) {
  gemm_list<K>(k, n_rows, RowList{static_cast<const uint8_t*>(w), wrb, nullptr, n_rows}, x, xrb, n_tok, y, ys);
}

template <WKind K>
void gemm_rows_q(int64_t k, int64_t n_idx, const int32_t* idx, const void* w, size_t wrb, const void* x, size_t xrb,
                 int64_t n_tok, float* y, int64_t ys) {
  gemm_list<K>(k, n_idx, RowList{static_cast<const uint8_t*>(w), wrb, idx, n_idx}, x, xrb, n_tok, y, ys);
}

template <WKind K>
void gemv_q(int64_t k, int64_t n_rows, const void* w, size_t wrb, const void* x, float* y) {
  gemm_q<K>(k, n_rows, w, wrb, x, 0, 1, y, 0);
}

template <WKind K>
float vec_dot_q(int64_t k, const void* w, const void* x) {
  float y = 0.0f;
  gemm_q<K>(k, 1, w, 0, x, 0, 1, &y, 0);
  return y;
}

// ---- f16 / bf16 / f32 weights x f32 activations ----

enum class FKind { f16, bf16, f32 };

template <FKind K>
inline __m512 load_w(const uint8_t* row, int64_t i, __mmask16 m) {
  if constexpr (K == FKind::f16) {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, row + 2 * i));
  } else if constexpr (K == FKind::bf16) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, row + 2 * i)), 16));
  } else {
    return _mm512_maskz_loadu_ps(m, row + 4 * i);
  }
}

template <FKind K, int NR, int NT>
inline void tile_f(int64_t k, const uint8_t* w, size_t wrb, const float* const* x, float* y, int64_t ys) {
  __m512 acc[NR][NT];
  for (int r = 0; r < NR; ++r)
    for (int t = 0; t < NT; ++t) acc[r][t] = _mm512_setzero_ps();
  for (int64_t i = 0; i < k; i += 16) {
    const __mmask16 m = k - i >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << (k - i)) - 1);
    __m512 wv[NR];
    for (int r = 0; r < NR; ++r) wv[r] = load_w<K>(w + r * wrb, i, m);
    for (int t = 0; t < NT; ++t) {
      const __m512 xv = _mm512_maskz_loadu_ps(m, x[t] + i);
      for (int r = 0; r < NR; ++r) acc[r][t] = _mm512_fmadd_ps(wv[r], xv, acc[r][t]);
    }
  }
  for (int r = 0; r < NR; ++r)
    for (int t = 0; t < NT; ++t) y[t * ys + r] = hsum(acc[r][t]);
}

template <FKind K, int NT>
inline void rows_f(int64_t k, int64_t n_rows, const uint8_t* w, size_t wrb, const float* const* x, float* y,
                   int64_t ys) {
  constexpr int NR = NT == 1 ? 4 : 2;
  int64_t r = 0;
  for (; r + NR <= n_rows; r += NR) tile_f<K, NR, NT>(k, w + r * wrb, wrb, x, y + r, ys);
  for (; r < n_rows; ++r) tile_f<K, 1, NT>(k, w + r * wrb, wrb, x, y + r, ys);
}

template <FKind K>
void gemm_f(int64_t k, int64_t n_rows, const void* w, size_t wrb, const void* x, size_t xrb,
            int64_t n_tok, float* y, int64_t ys) {
  const auto* wb = static_cast<const uint8_t*>(w);
  const auto* xb = static_cast<const uint8_t*>(x);
  const float* xp[4];
  int64_t t = 0;
  for (; t < n_tok; t += 4) {
    const int64_t nt = std::min<int64_t>(4, n_tok - t);
    for (int i = 0; i < nt; ++i) xp[i] = reinterpret_cast<const float*>(xb + (t + i) * xrb);
    switch (nt) {
      case 4: rows_f<K, 4>(k, n_rows, wb, wrb, xp, y + t * ys, ys); break;
      case 3: rows_f<K, 3>(k, n_rows, wb, wrb, xp, y + t * ys, ys); break;
      case 2: rows_f<K, 2>(k, n_rows, wb, wrb, xp, y + t * ys, ys); break;
      default: rows_f<K, 1>(k, n_rows, wb, wrb, xp, y + t * ys, ys); break;
    }
  }
}

template <FKind K>
void gemv_f(int64_t k, int64_t n_rows, const void* w, size_t wrb, const void* x, float* y) {
  gemm_f<K>(k, n_rows, w, wrb, x, 0, 1, y, 0);
}

template <FKind K, class W>
float vec_dot_f(int64_t k, const W* w, const float* x) {
  float y = 0.0f;
  gemm_f<K>(k, 1, w, 0, x, 0, 1, &y, 0);
  return y;
}

// ---- quantize, axpy, norms ----

// roundf (half away from zero) for |v| < 2^23, exactly as the scalar reference.
inline __m512 round_away(__m512 v) {
  const __m512 t = _mm512_roundscale_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
  const __m512 frac = _mm512_abs_ps(_mm512_sub_ps(v, t));
  const __mmask16 up = _mm512_cmp_ps_mask(frac, _mm512_set1_ps(0.5f), _CMP_GE_OQ);
  const __m512 one = _mm512_or_ps(_mm512_set1_ps(1.0f), _mm512_and_ps(v, _mm512_set1_ps(-0.0f)));
  return _mm512_mask_add_ps(t, up, t, one);
}

void quantize_row_q8_0(const float* x, void* vy, int64_t k) {
  auto* y = static_cast<block_q8_0*>(vy);
  for (int64_t i = 0; i < k / QK8_0; ++i) {
    const __m512 v0 = _mm512_loadu_ps(x + i * 32);
    const __m512 v1 = _mm512_loadu_ps(x + i * 32 + 16);
    const float amax = hmax(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[i].d = fp32_to_fp16(d);
    const __m512 vid = _mm512_set1_ps(id);
    const __m512i q0 = _mm512_cvttps_epi32(round_away(_mm512_mul_ps(v0, vid)));
    const __m512i q1 = _mm512_cvttps_epi32(round_away(_mm512_mul_ps(v1, vid)));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(y[i].qs), _mm512_cvtsepi32_epi8(q0));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(y[i].qs + 16), _mm512_cvtsepi32_epi8(q1));
  }
}

template <int NT>
inline void axpy_tokens(const float* a, __m512 w0, __m512 w1, float d, float* y, int64_t ys, int64_t i) {
  for (int t = 0; t < NT; ++t) {
    const __m512 v = _mm512_set1_ps(a[t] * d);
    float* yt = y + t * ys + i;
    _mm512_storeu_ps(yt, _mm512_fmadd_ps(v, w0, _mm512_loadu_ps(yt)));
    _mm512_storeu_ps(yt + 16, _mm512_fmadd_ps(v, w1, _mm512_loadu_ps(yt + 16)));
  }
}

template <WKind K, int NT>
void axpy_q_tile(int64_t k, const float* a, const uint8_t* row, float* y, int64_t ys) {
  for (int64_t ib = 0; ib < k / QK8_0; ++ib) {
    __m512 w0, w1;
    float d;
    if constexpr (K == WKind::q4_0) {
      const uint8_t* b = row + ib * sizeof(block_q4_0);
      const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 2));
      const __m128i lo = _mm_sub_epi8(_mm_and_si128(q, _mm_set1_epi8(0x0F)), _mm_set1_epi8(8));
      const __m128i hi = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(q, 4), _mm_set1_epi8(0x0F)), _mm_set1_epi8(8));
      w0 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(lo));
      w1 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(hi));
      d = fp16_to_fp32(load_u16(b));
    } else {
      const uint8_t* b = row + ib * sizeof(block_q8_0);
      w0 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 2))));
      w1 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 18))));
      d = fp16_to_fp32(load_u16(b));
    }
    axpy_tokens<NT>(a, w0, w1, d, y, ys, ib * 32);
  }
}

template <WKind K>
void axpy_q(int64_t k, int64_t n_tok, const float* a, const void* row, float* y, int64_t ys) {
  const auto* rb = static_cast<const uint8_t*>(row);
  int64_t t = 0;
  for (; t + 4 <= n_tok; t += 4) axpy_q_tile<K, 4>(k, a + t, rb, y + t * ys, ys);
  switch (n_tok - t) {
    case 3: axpy_q_tile<K, 3>(k, a + t, rb, y + t * ys, ys); break;
    case 2: axpy_q_tile<K, 2>(k, a + t, rb, y + t * ys, ys); break;
    case 1: axpy_q_tile<K, 1>(k, a + t, rb, y + t * ys, ys); break;
    default: break;
  }
}

// Block ib of a q row dequantised to 32 floats (scale not applied) and its scale.
template <WKind K>
inline void dequant_block(const uint8_t* row, int64_t ib, __m512& w0, __m512& w1, float& d) {
  if constexpr (K == WKind::q4_0) {
    const uint8_t* b = row + ib * sizeof(block_q4_0);
    const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 2));
    const __m128i lo = _mm_sub_epi8(_mm_and_si128(q, _mm_set1_epi8(0x0F)), _mm_set1_epi8(8));
    const __m128i hi = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(q, 4), _mm_set1_epi8(0x0F)), _mm_set1_epi8(8));
    w0 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(lo));
    w1 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(hi));
    d = fp16_to_fp32(load_u16(b));
  } else {
    const uint8_t* b = row + ib * sizeof(block_q8_0);
    w0 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 2))));
    w1 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 18))));
    d = fp16_to_fp32(load_u16(b));
  }
}

// NR listed rows into one token's y: y is loaded and stored once per block for all NR rows;
// the adds happen in list order, as NR single-row axpys would.
template <WKind K, int NR>
inline void axpy_rows_tile(int64_t k, const uint8_t* const* w, const float* v, float* y) {
  for (int64_t ib = 0; ib < k / QK8_0; ++ib) {
    __m512 y0 = _mm512_loadu_ps(y + ib * 32), y1 = _mm512_loadu_ps(y + ib * 32 + 16);
    for (int r = 0; r < NR; ++r) {
      __m512 w0, w1;
      float d;
      dequant_block<K>(w[r], ib, w0, w1, d);
      const __m512 c = _mm512_set1_ps(v[r] * d);
      y0 = _mm512_fmadd_ps(c, w0, y0);
      y1 = _mm512_fmadd_ps(c, w1, y1);
    }
    _mm512_storeu_ps(y + ib * 32, y0);
    _mm512_storeu_ps(y + ib * 32 + 16, y1);
  }
}

template <WKind K>
void axpy_rows_q(int64_t k, int64_t n_idx, const int32_t* idx, const void* w, size_t wrb, const float* a,
                 int64_t a_stride, int64_t n_tok, float* y, int64_t ys) {
  const auto* wb = static_cast<const uint8_t*>(w);
  // Row groups outside, tokens inside: a group's rows stay in L1 while every token uses them.
  for (int64_t i = 0; i < n_idx; i += 4) {
    const int64_t nr = std::min<int64_t>(4, n_idx - i);
    const uint8_t* rows[4];
    for (int r = 0; r < nr; ++r) rows[r] = wb + static_cast<size_t>(idx[i + r]) * wrb;
    for (int64_t t = 0; t < n_tok; ++t) {
      float v[4];
      for (int r = 0; r < nr; ++r) v[r] = a[t * a_stride + idx[i + r]];
      if (nr == 4) {
        axpy_rows_tile<K, 4>(k, rows, v, y + t * ys);
      } else {
        for (int r = 0; r < nr; ++r) axpy_rows_tile<K, 1>(k, rows + r, v + r, y + t * ys);
      }
    }
  }
}

void axpy_f32(int64_t k, int64_t n_tok, const float* a, const void* row, float* y, int64_t ys) {
  const auto* w = static_cast<const float*>(row);
  for (int64_t t = 0; t < n_tok; ++t) {
    const __m512 v = _mm512_set1_ps(a[t]);
    float* yt = y + t * ys;
    for (int64_t i = 0; i < k; i += 16) {
      const __mmask16 m = k - i >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << (k - i)) - 1);
      _mm512_mask_storeu_ps(yt + i, m, _mm512_fmadd_ps(v, _mm512_maskz_loadu_ps(m, w + i), _mm512_maskz_loadu_ps(m, yt + i)));
    }
  }
}

inline __mmask16 tail_mask(int64_t left) {
  return left >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << left) - 1);
}

void rms_norm(int64_t n, const float* x, const float* w, float eps, float* y) {
  __m512 acc = _mm512_setzero_ps();
  for (int64_t i = 0; i < n; i += 16) {
    const __m512 v = _mm512_maskz_loadu_ps(tail_mask(n - i), x + i);
    acc = _mm512_fmadd_ps(v, v, acc);
  }
  const float mean = hsum(acc) / static_cast<float>(n);
  const __m512 s = _mm512_set1_ps(1.0f / std::sqrt(mean + eps));
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = tail_mask(n - i);
    __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), s);
    if (w) v = _mm512_mul_ps(v, _mm512_maskz_loadu_ps(m, w + i));
    _mm512_mask_storeu_ps(y + i, m, v);
  }
}

// exp(x) as Cephes expf: n = round(x log2 e), r = x - n ln2 (two-part ln2), degree-5
// polynomial, then scalef (exact 2^n scaling with gradual underflow). About 2 ulp.
inline __m512 exp_ps(__m512 x) {
  x = _mm512_max_ps(_mm512_min_ps(x, _mm512_set1_ps(88.7f)), _mm512_set1_ps(-104.0f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  return _mm512_scalef_ps(p, n);
}

void soft_max(int64_t n, const float* x, const float* mask, float scale, float* y) {
  __m512 vmax = _mm512_set1_ps(-INFINITY);
  const __m512 vs = _mm512_set1_ps(scale);
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = tail_mask(n - i);
    __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), vs);
    if (mask) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, mask + i));
    _mm512_mask_storeu_ps(y + i, m, v);
    vmax = _mm512_mask_max_ps(vmax, m, vmax, v);
  }
  const __m512 mx = _mm512_set1_ps(hmax(vmax));
  __m512 sum = _mm512_setzero_ps();
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = tail_mask(n - i);
    const __m512 e = exp_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, y + i), mx));
    _mm512_mask_storeu_ps(y + i, m, e);
    sum = _mm512_mask_add_ps(sum, m, sum, e);
  }
  const __m512 inv = _mm512_set1_ps(1.0f / hsum(sum));
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = tail_mask(n - i);
    _mm512_mask_storeu_ps(y + i, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, y + i), inv));
  }
}

void rope_neox(float* x, int64_t n_head, int64_t head_dim, int64_t n_rot, int64_t pos, float freq_base) {
  const int64_t half = n_rot / 2;
  float c[k_max_rot / 2], s[k_max_rot / 2];
  if (n_rot > k_max_rot) {
    KernelTable t;
    fill_scalar(t);
    t.rope_neox(x, n_head, head_dim, n_rot, pos, freq_base);
    return;
  }
  rope_neox_cache(n_rot, pos, freq_base, c, s);
  for (int64_t h = 0; h < n_head; ++h) {
    float* xh = x + h * head_dim;
    for (int64_t i = 0; i < half; i += 16) {
      const __mmask16 m = tail_mask(half - i);
      const __m512 vc = _mm512_maskz_loadu_ps(m, c + i), vs = _mm512_maskz_loadu_ps(m, s + i);
      const __m512 x0 = _mm512_maskz_loadu_ps(m, xh + i), x1 = _mm512_maskz_loadu_ps(m, xh + i + half);
      _mm512_mask_storeu_ps(xh + i, m, _mm512_sub_ps(_mm512_mul_ps(x0, vc), _mm512_mul_ps(x1, vs)));
      _mm512_mask_storeu_ps(xh + i + half, m, _mm512_add_ps(_mm512_mul_ps(x0, vs), _mm512_mul_ps(x1, vc)));
    }
  }
}

}  // namespace

void fill_avx512(KernelTable& t) {
  t.isa = Isa::avx512;
  t.quantize_row_q8_0 = quantize_row_q8_0;
  t.vec_dot_q4_0_q8_0 = vec_dot_q<WKind::q4_0>;
  t.vec_dot_q8_0_q8_0 = vec_dot_q<WKind::q8_0>;
  t.vec_dot_f16_f32 = vec_dot_f<FKind::f16, void>;
  t.vec_dot_bf16_f32 = vec_dot_f<FKind::bf16, void>;
  t.vec_dot_f32 = vec_dot_f<FKind::f32, float>;
  t.gemv_q4_0_q8_0 = gemv_q<WKind::q4_0>;
  t.gemv_q8_0_q8_0 = gemv_q<WKind::q8_0>;
  t.gemv_f16_f32 = gemv_f<FKind::f16>;
  t.gemv_bf16_f32 = gemv_f<FKind::bf16>;
  t.gemv_f32 = gemv_f<FKind::f32>;
  t.gemm_q4_0_q8_0 = gemm_q<WKind::q4_0>;
  t.gemm_q8_0_q8_0 = gemm_q<WKind::q8_0>;
  t.gemm_f16_f32 = gemm_f<FKind::f16>;
  t.gemm_bf16_f32 = gemm_f<FKind::bf16>;
  t.gemm_f32 = gemm_f<FKind::f32>;
  t.axpy_q4_0_f32 = axpy_q<WKind::q4_0>;
  t.axpy_q8_0_f32 = axpy_q<WKind::q8_0>;
  t.gemm_rows_q4_0_q8_0 = gemm_rows_q<WKind::q4_0>;
  t.gemm_rows_q8_0_q8_0 = gemm_rows_q<WKind::q8_0>;
  t.axpy_rows_q4_0_f32 = axpy_rows_q<WKind::q4_0>;
  t.axpy_rows_q8_0_f32 = axpy_rows_q<WKind::q8_0>;
  t.axpy_f32 = axpy_f32;
  t.rms_norm = rms_norm;
  t.soft_max = soft_max;
  t.rope_neox = rope_neox;
}

}  // namespace tandem::cpu::detail
