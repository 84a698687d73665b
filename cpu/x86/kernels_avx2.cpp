// AVX2 + FMA + F16C kernels. No VNNI here: the q4_0 dot uses vpmaddubsw (u8 nibbles x s8)
// + vpmaddwd, with the -8 offset folded in as a per-lane correction prepared once per
// activation row; q8_0 uses ggml's sign trick (|w| x sign(x, w)), exact for q in -127..127
// (what quantize_row_q8_0 produces). One ymm per 32-element block.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/fp16.h"
#include "core/quant_blocks.h"
#include "cpu/kernels/isa_kernels.h"

namespace tandem::cpu::detail {
namespace {

struct alignas(32) BlockPrep {
  int8_t qs[32];     // activation quants, natural order
  int32_t corr[8];   // q4 weights: -8 * (sum of the 4 activation bytes of this dword lane)
  float dx[8];       // activation scale, broadcast
};

enum class WKind { q4_0, q8_0 };

std::vector<BlockPrep>& prep_buffer(size_t n) {
  thread_local std::vector<BlockPrep> buf;
  if (buf.size() < n) buf.resize(n);
  return buf;
}

void prepare(const block_q8_0* x, int64_t nb, BlockPrep* out) {
  const __m256i ones8 = _mm256_set1_epi8(1);
  const __m256i ones16 = _mm256_set1_epi16(1);
  for (int64_t b = 0; b < nb; ++b) {
    const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[b].qs));
    // Sums of 4 consecutive activation bytes per dword lane: maddubs(1, q) then madd(1).
    const __m256i sum = _mm256_madd_epi16(_mm256_maddubs_epi16(ones8, q), ones16);
    _mm256_store_si256(reinterpret_cast<__m256i*>(out[b].qs), q);
    _mm256_store_si256(reinterpret_cast<__m256i*>(out[b].corr), _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(sum, 3)));
    _mm256_store_ps(out[b].dx, _mm256_set1_ps(_cvtsh_ss(x[b].d)));
  }
}

inline uint16_t load_u16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// Which rows a GEMM reads: rows 0..n-1 of (base, stride), or rows idx[0..n-1]; list entry i
// writes column row(i) of y.
struct RowList {
  const uint8_t* base;
  size_t wrb;
  const int32_t* idx;  // nullptr: consecutive rows
  int64_t n;           // rows in the list
  int64_t row(int64_t i) const { return idx ? idx[i] : i; }
};

inline constexpr int64_t k_prefetch_rows = 4;

template <WKind K, int NR, int NT>
inline void tile_q(int64_t nb, const RowList& rl, int64_t i0, const BlockPrep* const* xp, float* y, int64_t ys) {
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
  __m256 acc[NR][NT];
  for (int r = 0; r < NR; ++r)
    for (int t = 0; t < NT; ++t) acc[r][t] = _mm256_setzero_ps();
  const __m256i ones = _mm256_set1_epi16(1);
  for (int64_t b = 0; b < nb; ++b) {
    __m256i wq[NR];
    __m256i ws[NR];  // q8: |w| as unsigned; q4: unused
    __m256 dw[NR];
    for (int r = 0; r < NR; ++r) {
      if (pf[r]) _mm_prefetch(reinterpret_cast<const char*>(pf[r]) + b * (K == WKind::q4_0 ? 18 : 34), _MM_HINT_T0);
      if constexpr (K == WKind::q4_0) {
        const uint8_t* p = w[r] + b * sizeof(block_q4_0);
        const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 2));
        wq[r] = _mm256_and_si256(_mm256_inserti128_si256(_mm256_castsi128_si256(q), _mm_srli_epi16(q, 4), 1),
                                 _mm256_set1_epi8(0x0F));
        ws[r] = wq[r];
        dw[r] = _mm256_set1_ps(_cvtsh_ss(load_u16(p)));
      } else {
        const uint8_t* p = w[r] + b * sizeof(block_q8_0);
        wq[r] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 2));
        ws[r] = _mm256_sign_epi8(wq[r], wq[r]);
        dw[r] = _mm256_set1_ps(_cvtsh_ss(load_u16(p)));
      }
    }
    for (int t = 0; t < NT; ++t) {
      const BlockPrep& x = xp[t][b];
      const __m256i xq = _mm256_load_si256(reinterpret_cast<const __m256i*>(x.qs));
      const __m256 dx = _mm256_load_ps(x.dx);
      for (int r = 0; r < NR; ++r) {
        __m256i s;
        if constexpr (K == WKind::q4_0) {
          s = _mm256_add_epi32(_mm256_madd_epi16(_mm256_maddubs_epi16(wq[r], xq), ones),
                               _mm256_load_si256(reinterpret_cast<const __m256i*>(x.corr)));
        } else {
          s = _mm256_madd_epi16(_mm256_maddubs_epi16(ws[r], _mm256_sign_epi8(xq, wq[r])), ones);
        }
        acc[r][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_mul_ps(dw[r], dx), acc[r][t]);
      }
    }
  }
  for (int r = 0; r < NR; ++r)
    for (int t = 0; t < NT; ++t) y[t * ys + rl.row(i0 + r)] = hsum(acc[r][t]);
}

template <WKind K, int NT>
inline void rows_q(int64_t nb, int64_t n_rows, const RowList& rl, const BlockPrep* const* xp, float* y, int64_t ys) {
  constexpr int NR = NT == 1 ? 1 : 2;  // one row at a time keeps the DRAM stream sequential
  int64_t r = 0;
  for (; r + NR <= n_rows; r += NR) tile_q<K, NR, NT>(nb, rl, r, xp, y, ys);
  for (; r < n_rows; ++r) tile_q<K, 1, NT>(nb, rl, r, xp, y, ys);
}

template <WKind K>
void gemm_list(int64_t k, int64_t n_rows, const RowList& rl, const void* x, size_t xrb, int64_t n_tok, float* y,
               int64_t ys) {
  const int64_t nb = k / QK8_0;
  std::vector<BlockPrep>& buf = prep_buffer(static_cast<size_t>(nb * n_tok));
  const auto* xb = static_cast<const uint8_t*>(x);
  for (int64_t t = 0; t < n_tok; ++t) {
    prepare(reinterpret_cast<const block_q8_0*>(xb + t * xrb), nb, buf.data() + t * nb);
  }
  const BlockPrep* xp[4];
  for (int64_t t = 0; t < n_tok; t += 4) {
    const int64_t nt = std::min<int64_t>(4, n_tok - t);
    for (int i = 0; i < nt; ++i) xp[i] = buf.data() + (t + i) * nb;
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

// ---- f16 / bf16 / f32 weights ----

enum class FKind { f16, bf16, f32 };

template <FKind K>
inline __m256 load_w(const uint8_t* row, int64_t i) {
  if constexpr (K == FKind::f16) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 2 * i)));
  } else if constexpr (K == FKind::bf16) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 2 * i));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  } else {
    return _mm256_loadu_ps(reinterpret_cast<const float*>(row + 4 * i));
  }
}

// Element i of a weight row as f32 (tails).
template <FKind K>
inline float w_at(const uint8_t* row, int64_t i) {
  if constexpr (K == FKind::f16) return fp16_to_fp32(load_u16(row + 2 * i));
  if constexpr (K == FKind::bf16) return bf16_to_fp32(load_u16(row + 2 * i));
  float v;
  std::memcpy(&v, row + 4 * i, 4);
  return v;
}

template <FKind K, int NR, int NT>
inline void tile_f(int64_t k, const uint8_t* w, size_t wrb, const float* const* x, float* y, int64_t ys) {
  __m256 acc[NR][NT];
  for (int r = 0; r < NR; ++r)
    for (int t = 0; t < NT; ++t) acc[r][t] = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= k; i += 8) {
    __m256 wv[NR];
    for (int r = 0; r < NR; ++r) wv[r] = load_w<K>(w + r * wrb, i);
    for (int t = 0; t < NT; ++t) {
      const __m256 xv = _mm256_loadu_ps(x[t] + i);
      for (int r = 0; r < NR; ++r) acc[r][t] = _mm256_fmadd_ps(wv[r], xv, acc[r][t]);
    }
  }
  for (int r = 0; r < NR; ++r) {
    for (int t = 0; t < NT; ++t) {
      float s = hsum(acc[r][t]);
      for (int64_t j = i; j < k; ++j) s += w_at<K>(w + r * wrb, j) * x[t][j];
      y[t * ys + r] = s;
    }
  }
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
  for (int64_t t = 0; t < n_tok; t += 4) {
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

inline __m256 round_away(__m256 v) {
  const __m256 t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
  const __m256 sign = _mm256_and_ps(v, _mm256_set1_ps(-0.0f));
  const __m256 frac = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), _mm256_sub_ps(v, t));
  const __m256 up = _mm256_cmp_ps(frac, _mm256_set1_ps(0.5f), _CMP_GE_OQ);
  return _mm256_add_ps(t, _mm256_and_ps(up, _mm256_or_ps(_mm256_set1_ps(1.0f), sign)));
}

void quantize_row_q8_0(const float* x, void* vy, int64_t k) {
  auto* y = static_cast<block_q8_0*>(vy);
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  for (int64_t i = 0; i < k / QK8_0; ++i) {
    __m256 v[4];
    for (int j = 0; j < 4; ++j) v[j] = _mm256_loadu_ps(x + i * 32 + 8 * j);
    __m256 m = _mm256_max_ps(_mm256_max_ps(_mm256_and_ps(v[0], abs_mask), _mm256_and_ps(v[1], abs_mask)),
                             _mm256_max_ps(_mm256_and_ps(v[2], abs_mask), _mm256_and_ps(v[3], abs_mask)));
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
    const float amax = _mm_cvtss_f32(m4);
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[i].d = fp32_to_fp16(d);
    const __m256 vid = _mm256_set1_ps(id);
    __m256i q[4];
    for (int j = 0; j < 4; ++j) q[j] = _mm256_cvttps_epi32(round_away(_mm256_mul_ps(v[j], vid)));
    // packs interleave 128-bit lanes; the final permute restores element order (as ggml).
    __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
    p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(y[i].qs), p);
  }
}

template <WKind K, int NT>
void axpy_q_tile(int64_t k, const float* a, const uint8_t* row, float* y, int64_t ys) {
  for (int64_t ib = 0; ib < k / QK8_0; ++ib) {
    __m128i lo, hi;  // the block's 32 signed values, 16 per register
    const uint8_t* b;
    if constexpr (K == WKind::q4_0) {
      b = row + ib * sizeof(block_q4_0);
      const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 2));
      lo = _mm_sub_epi8(_mm_and_si128(q, _mm_set1_epi8(0x0F)), _mm_set1_epi8(8));
      hi = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(q, 4), _mm_set1_epi8(0x0F)), _mm_set1_epi8(8));
    } else {
      b = row + ib * sizeof(block_q8_0);
      lo = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 2));
      hi = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 18));
    }
    const __m256 w0 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo));
    const __m256 w1 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(lo, 8)));
    const __m256 w2 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi));
    const __m256 w3 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(hi, 8)));
    const float d = _cvtsh_ss(load_u16(b));
    for (int t = 0; t < NT; ++t) {
      const __m256 v = _mm256_set1_ps(a[t] * d);
      float* yt = y + t * ys + ib * 32;
      _mm256_storeu_ps(yt, _mm256_fmadd_ps(v, w0, _mm256_loadu_ps(yt)));
      _mm256_storeu_ps(yt + 8, _mm256_fmadd_ps(v, w1, _mm256_loadu_ps(yt + 8)));
      _mm256_storeu_ps(yt + 16, _mm256_fmadd_ps(v, w2, _mm256_loadu_ps(yt + 16)));
      _mm256_storeu_ps(yt + 24, _mm256_fmadd_ps(v, w3, _mm256_loadu_ps(yt + 24)));
    }
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

// Block ib of a q row as 32 floats (scale not applied) and its scale.
template <WKind K>
inline void dequant_block(const uint8_t* row, int64_t ib, __m256 (&w)[4], float& d) {
  __m128i lo, hi;
  const uint8_t* b;
  if constexpr (K == WKind::q4_0) {
    b = row + ib * sizeof(block_q4_0);
    const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 2));
    lo = _mm_sub_epi8(_mm_and_si128(q, _mm_set1_epi8(0x0F)), _mm_set1_epi8(8));
    hi = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(q, 4), _mm_set1_epi8(0x0F)), _mm_set1_epi8(8));
  } else {
    b = row + ib * sizeof(block_q8_0);
    lo = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 2));
    hi = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 18));
  }
  w[0] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo));
  w[1] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(lo, 8)));
  w[2] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi));
  w[3] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(hi, 8)));
  d = _cvtsh_ss(load_u16(b));
}

// NR listed rows into one token's y, y loaded/stored once per block; adds in list order.
template <WKind K, int NR>
inline void axpy_rows_tile(int64_t k, const uint8_t* const* rows, const float* v, float* y) {
  for (int64_t ib = 0; ib < k / QK8_0; ++ib) {
    __m256 acc[4];
    for (int j = 0; j < 4; ++j) acc[j] = _mm256_loadu_ps(y + ib * 32 + 8 * j);
    for (int r = 0; r < NR; ++r) {
      __m256 w[4];
      float d;
      dequant_block<K>(rows[r], ib, w, d);
      const __m256 c = _mm256_set1_ps(v[r] * d);
      for (int j = 0; j < 4; ++j) acc[j] = _mm256_fmadd_ps(c, w[j], acc[j]);
    }
    for (int j = 0; j < 4; ++j) _mm256_storeu_ps(y + ib * 32 + 8 * j, acc[j]);
  }
}

template <WKind K>
void axpy_rows_q(int64_t k, int64_t n_idx, const int32_t* idx, const void* w, size_t wrb, const float* a,
                 int64_t a_stride, int64_t n_tok, float* y, int64_t ys) {
  const auto* wb = static_cast<const uint8_t*>(w);
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
    const __m256 v = _mm256_set1_ps(a[t]);
    float* yt = y + t * ys;
    int64_t i = 0;
    for (; i + 8 <= k; i += 8) _mm256_storeu_ps(yt + i, _mm256_fmadd_ps(v, _mm256_loadu_ps(w + i), _mm256_loadu_ps(yt + i)));
    for (; i < k; ++i) yt[i] += a[t] * w[i];
  }
}

void rms_norm(int64_t n, const float* x, const float* w, float eps, float* y) {
  __m256 acc = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(x + i), acc);
  float sum = hsum(acc);
  for (; i < n; ++i) sum += x[i] * x[i];
  const float scale = 1.0f / std::sqrt(sum / static_cast<float>(n) + eps);
  const __m256 s = _mm256_set1_ps(scale);
  for (i = 0; i + 8 <= n; i += 8) {
    __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x + i), s);
    if (w) v = _mm256_mul_ps(v, _mm256_loadu_ps(w + i));
    _mm256_storeu_ps(y + i, v);
  }
  for (; i < n; ++i) y[i] = w ? (x[i] * scale) * w[i] : x[i] * scale;
}

// Cephes expf (see kernels_avx512.cpp); 2^n built in the exponent field, so inputs below
// -87 flush to 0 (those terms are < 2^-125 of the largest one in soft_max).
inline __m256 exp_ps(__m256 x) {
  const __m256 tiny = _mm256_cmp_ps(x, _mm256_set1_ps(-87.0f), _CMP_LT_OQ);
  x = _mm256_max_ps(_mm256_min_ps(x, _mm256_set1_ps(88.0f)), _mm256_set1_ps(-87.0f));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_andnot_ps(tiny, _mm256_mul_ps(p, _mm256_castsi256_ps(e)));
}

void soft_max(int64_t n, const float* x, const float* mask, float scale, float* y) {
  float max = -INFINITY;
  for (int64_t i = 0; i < n; ++i) {
    y[i] = x[i] * scale + (mask ? mask[i] : 0.0f);
    max = std::max(max, y[i]);
  }
  const __m256 mx = _mm256_set1_ps(max);
  __m256 acc = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 e = exp_ps(_mm256_sub_ps(_mm256_loadu_ps(y + i), mx));
    _mm256_storeu_ps(y + i, e);
    acc = _mm256_add_ps(acc, e);
  }
  float sum = hsum(acc);
  for (; i < n; ++i) {
    y[i] = std::exp(y[i] - max);
    sum += y[i];
  }
  const __m256 inv = _mm256_set1_ps(1.0f / sum);
  for (i = 0; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_loadu_ps(y + i), inv));
  for (; i < n; ++i) y[i] *= 1.0f / sum;
}

void rope_neox(float* x, int64_t n_head, int64_t head_dim, int64_t n_rot, int64_t pos, float freq_base) {
  if (n_rot > k_max_rot) {
    KernelTable t;
    fill_scalar(t);
    t.rope_neox(x, n_head, head_dim, n_rot, pos, freq_base);
    return;
  }
  const int64_t half = n_rot / 2;
  float c[k_max_rot / 2], s[k_max_rot / 2];
  rope_neox_cache(n_rot, pos, freq_base, c, s);
  for (int64_t h = 0; h < n_head; ++h) {
    float* xh = x + h * head_dim;
    int64_t i = 0;
    for (; i + 8 <= half; i += 8) {
      const __m256 vc = _mm256_loadu_ps(c + i), vs = _mm256_loadu_ps(s + i);
      const __m256 x0 = _mm256_loadu_ps(xh + i), x1 = _mm256_loadu_ps(xh + i + half);
      _mm256_storeu_ps(xh + i, _mm256_sub_ps(_mm256_mul_ps(x0, vc), _mm256_mul_ps(x1, vs)));
      _mm256_storeu_ps(xh + i + half, _mm256_add_ps(_mm256_mul_ps(x0, vs), _mm256_mul_ps(x1, vc)));
    }
    for (; i < half; ++i) {
      const float x0 = xh[i], x1 = xh[i + half];
      xh[i] = x0 * c[i] - x1 * s[i];
      xh[i + half] = x0 * s[i] + x1 * c[i];
    }
  }
}

}  // namespace

void fill_avx2(KernelTable& t) {
  t.isa = Isa::avx2;
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
