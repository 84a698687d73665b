// AVX2 + FMA + F16C kernels: the intrinsics behind Glue<Avx2> (cpu/kernels/glue.h). No VNNI
// here: the q4_0 dot uses vpmaddubsw (u8 nibbles x s8) + vpmaddwd, two blocks per step, with
// the -8 offset folded in as a per-lane correction prepared once per activation row; q8_0
// uses ggml's sign trick (|w| x sign(x, w)), exact for q in -127..127 (what
// quantize_row_q8_0 produces), one ymm per 32-element block.
#include <immintrin.h>

#include <cmath>

#include "cpu/kernels/glue.h"

namespace tandem::cpu::detail {
namespace {

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

struct Avx2 {
  // q4_0: one unit = 2 blocks: qs[0] = elements 0..15 of b0 | of b1, qs[1] = 16..31 of b0 | b1
  // (the order a 2-block nibble load yields); dword lanes 0..3 belong to b0, 4..7 to b1.
  // q8_0: one unit = 1 block in natural order in qs[0] (corr unused).
  struct alignas(32) Prep {
    int8_t qs[2][32];
    int32_t corr[8];  // q4_0: -8 * (sum of this dword lane's activation bytes, both halves)
    float dx[8];      // activation scale of the block each dword lane belongs to
  };
  template <WKind>
  using PrepFor = Prep;

  template <WKind K>
  static int64_t prep_units(int64_t nb) {
    return K == WKind::q4_0 ? (nb + 1) / 2 : nb;
  }

  template <WKind K>
  static void prepare(const block_q8_0* x, int64_t nb, Prep* out, bool /*single*/) {
    const __m256i ones8 = _mm256_set1_epi8(1);
    const __m256i ones16 = _mm256_set1_epi16(1);
    if constexpr (K == WKind::q4_0) {
      for (int64_t u = 0; u < (nb + 1) / 2; ++u) {
        const bool two = 2 * u + 1 < nb;
        const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[2 * u].qs));
        const __m256i b = two ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[2 * u + 1].qs)) : _mm256_setzero_si256();
        const __m256i lo = _mm256_permute2x128_si256(a, b, 0x20), hi = _mm256_permute2x128_si256(a, b, 0x31);
        // Sums of 4 consecutive activation bytes per dword lane: maddubs(1, q) then madd(1).
        const __m256i sum = _mm256_madd_epi16(
            _mm256_add_epi16(_mm256_maddubs_epi16(ones8, lo), _mm256_maddubs_epi16(ones8, hi)), ones16);
        _mm256_store_si256(reinterpret_cast<__m256i*>(out[u].qs[0]), lo);
        _mm256_store_si256(reinterpret_cast<__m256i*>(out[u].qs[1]), hi);
        _mm256_store_si256(reinterpret_cast<__m256i*>(out[u].corr), _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(sum, 3)));
        const float d0 = _cvtsh_ss(x[2 * u].d), d1 = two ? _cvtsh_ss(x[2 * u + 1].d) : 0.0f;
        _mm256_store_ps(out[u].dx, _mm256_setr_ps(d0, d0, d0, d0, d1, d1, d1, d1));
      }
    } else {
      for (int64_t b = 0; b < nb; ++b) {
        _mm256_store_si256(reinterpret_cast<__m256i*>(out[b].qs[0]),
                           _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[b].qs)));
        _mm256_store_ps(out[b].dx, _mm256_set1_ps(_cvtsh_ss(x[b].d)));
      }
    }
  }

  static constexpr int k_tok_tile = 4;
  static constexpr int q_rows(int nt) { return nt == 1 ? 1 : 2; }

  template <WKind K, int NR, int NT>
  static void dot_q(int64_t nb, const uint8_t* const* w, const uint8_t* const* pf, const Prep* const* xp,
                    float (&out)[NR][NT]) {
    __m256 acc[NR][NT];
    for (int r = 0; r < NR; ++r)
      for (int t = 0; t < NT; ++t) acc[r][t] = _mm256_setzero_ps();
    const __m256i ones = _mm256_set1_epi16(1);
    if constexpr (K == WKind::q4_0) {
      // Two blocks per step: one ymm of nibble bytes gives both blocks' low halves (and) and
      // high halves (shift, and); their maddubs products fit int16 together (2 x 2 x 15 x 127),
      // so one madd yields lanes 0..3 = block 0, 4..7 = block 1.
      const __m256i m4 = _mm256_set1_epi8(0x0F);
      const __m256i d_lanes = _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1);
      for (int64_t u = 0; u < (nb + 1) / 2; ++u) {
        const bool two = 2 * u + 1 < nb;
        __m256i lo[NR], hi[NR];
        __m256 dw[NR];
        for (int r = 0; r < NR; ++r) {
          const uint8_t* p = w[r] + u * 2 * sizeof(block_q4_0);
          if (pf[r]) _mm_prefetch(reinterpret_cast<const char*>(pf[r] + u * 2 * sizeof(block_q4_0)), _MM_HINT_T0);
          const __m128i q0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 2));
          const __m128i q1 = two ? _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 20)) : _mm_setzero_si128();
          const __m256i q = _mm256_inserti128_si256(_mm256_castsi128_si256(q0), q1, 1);
          lo[r] = _mm256_and_si256(q, m4);
          hi[r] = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
          const uint32_t dd = load_u16(p) | (two ? static_cast<uint32_t>(load_u16(p + 18)) << 16 : 0u);
          dw[r] = _mm256_permutevar8x32_ps(_mm256_castps128_ps256(_mm_cvtph_ps(_mm_cvtsi32_si128(static_cast<int>(dd)))),
                                           d_lanes);
        }
        for (int t = 0; t < NT; ++t) {
          const Prep& x = xp[t][u];
          const __m256i x0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(x.qs[0]));
          const __m256i x1 = _mm256_load_si256(reinterpret_cast<const __m256i*>(x.qs[1]));
          const __m256i corr = _mm256_load_si256(reinterpret_cast<const __m256i*>(x.corr));
          const __m256 dx = _mm256_load_ps(x.dx);
          for (int r = 0; r < NR; ++r) {
            const __m256i p16 = _mm256_add_epi16(_mm256_maddubs_epi16(lo[r], x0), _mm256_maddubs_epi16(hi[r], x1));
            const __m256i s = _mm256_add_epi32(_mm256_madd_epi16(p16, ones), corr);
            acc[r][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_mul_ps(dw[r], dx), acc[r][t]);
          }
        }
      }
    } else {
      for (int64_t b = 0; b < nb; ++b) {
        __m256i wq[NR], ws[NR];  // ws = |w| as unsigned
        __m256 dw[NR];
        for (int r = 0; r < NR; ++r) {
          const uint8_t* p = w[r] + b * sizeof(block_q8_0);
          if (pf[r]) _mm_prefetch(reinterpret_cast<const char*>(pf[r] + b * sizeof(block_q8_0)), _MM_HINT_T0);
          wq[r] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 2));
          ws[r] = _mm256_sign_epi8(wq[r], wq[r]);
          dw[r] = _mm256_set1_ps(_cvtsh_ss(load_u16(p)));
        }
        for (int t = 0; t < NT; ++t) {
          const Prep& x = xp[t][b];
          const __m256i xq = _mm256_load_si256(reinterpret_cast<const __m256i*>(x.qs[0]));
          const __m256 dx = _mm256_load_ps(x.dx);
          for (int r = 0; r < NR; ++r) {
            const __m256i s = _mm256_madd_epi16(_mm256_maddubs_epi16(ws[r], _mm256_sign_epi8(xq, wq[r])), ones);
            acc[r][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_mul_ps(dw[r], dx), acc[r][t]);
          }
        }
      }
    }
    for (int r = 0; r < NR; ++r)
      for (int t = 0; t < NT; ++t) out[r][t] = hsum(acc[r][t]);
  }

  static constexpr int f_rows(int nt) { return nt == 1 ? 4 : 2; }

  template <FKind K>
  static __m256 load_w(const uint8_t* row, int64_t i) {
    if constexpr (K == FKind::f16) {
      return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 2 * i)));
    } else if constexpr (K == FKind::bf16) {
      const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 2 * i));
      return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    } else {
      return _mm256_loadu_ps(reinterpret_cast<const float*>(row + 4 * i));
    }
  }

  // Block ib of a q row as 32 floats (scale not applied) and its scale.
  template <WKind K>
  static void dequant_block(const uint8_t* row, int64_t ib, __m256 (&w)[4], float& d) {
    __m128i lo, hi;
    const uint8_t* b = row + ib * k_block_bytes<K>;
    if constexpr (K == WKind::q4_0) {
      const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 2));
      lo = _mm_sub_epi8(_mm_and_si128(q, _mm_set1_epi8(0x0F)), _mm_set1_epi8(8));
      hi = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(q, 4), _mm_set1_epi8(0x0F)), _mm_set1_epi8(8));
    } else {
      lo = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 2));
      hi = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 18));
    }
    w[0] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo));
    w[1] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(lo, 8)));
    w[2] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi));
    w[3] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(hi, 8)));
    d = _cvtsh_ss(load_u16(b));
  }


  static float f16_to_f32(uint16_t h) { return _cvtsh_ss(h); }

  using V = __m256;
  static constexpr int64_t k_lanes = 8;
  static __m256 load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, __m256 v) { _mm256_storeu_ps(p, v); }
  static __m256 set1(float f) { return _mm256_set1_ps(f); }
  static __m256 add(__m256 a, __m256 b) { return _mm256_add_ps(a, b); }
  static __m256 sub(__m256 a, __m256 b) { return _mm256_sub_ps(a, b); }
  static __m256 mul(__m256 a, __m256 b) { return _mm256_mul_ps(a, b); }
  static __m256 fma(__m256 a, __m256 b, __m256 c) { return _mm256_fmadd_ps(a, b, c); }
  static float hsum(__m256 v) { return detail::hsum(v); }

  static __m256 round_away(__m256 v) {
    const __m256 t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    const __m256 sign = _mm256_and_ps(v, _mm256_set1_ps(-0.0f));
    const __m256 frac = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), _mm256_sub_ps(v, t));
    const __m256 up = _mm256_cmp_ps(frac, _mm256_set1_ps(0.5f), _CMP_GE_OQ);
    return _mm256_add_ps(t, _mm256_and_ps(up, _mm256_or_ps(_mm256_set1_ps(1.0f), sign)));
  }

  static void quantize_row_q8_0(const float* x, void* vy, int64_t k) {
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
      y[i].d = _cvtss_sh(d, _MM_FROUND_TO_NEAREST_INT);
      const __m256 vid = _mm256_set1_ps(id);
      __m256i q[4];
      for (int j = 0; j < 4; ++j) q[j] = _mm256_cvttps_epi32(round_away(_mm256_mul_ps(v[j], vid)));
      // packs interleave 128-bit lanes; the final permute restores element order (as ggml).
      __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
      p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(y[i].qs), p);
    }
  }

  // Cephes expf (see kernels_avx512.cpp); 2^n built in the exponent field, so inputs below
  // -87 flush to 0 (those terms are < 2^-125 of the largest one in soft_max).
  static __m256 exp_ps(__m256 x) {
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

};

// ---- down_rows (kernel_table.h DownRowsFn): the transposed down with 8-bit coefficients ----
// As kernels_avx512.cpp's, on 128-bit lanes of ymm: a unit is 2 q4_0 blocks (lane = block) or
// 1 q8_0 block (lane = half). A group's 4 rows are interleaved byte by byte so that each dword
// holds one column's 4 rows; vpmaddubsw + vpmaddwd add the 4 products against the group's
// coefficients (q4_0: u8 nibbles, offset 8 corrected per block; q8_0: ggml's sign trick).
inline __m256 lane_max(__m256 v) {
  v = _mm256_max_ps(v, _mm256_permute_ps(v, 0x4E));
  return _mm256_max_ps(v, _mm256_permute_ps(v, 0xB1));
}
inline __m256i lane_sum(__m256i v) {
  v = _mm256_add_epi32(v, _mm256_shuffle_epi32(v, 0x4E));
  return _mm256_add_epi32(v, _mm256_shuffle_epi32(v, 0xB1));
}

template <bool Q4>
void down_rows(int64_t k, int64_t n_idx, const int32_t* idx, const void* w, size_t wrb, const float* a, float* y) {
  if (n_idx == 0) {
    std::fill_n(y, k, 0.0f);
    return;
  }
  constexpr int64_t bpu = Q4 ? 2 : 1;  // blocks per unit
  constexpr int64_t bs = Q4 ? 18 : 34;
  const int64_t nb = k / QK8_0, ng = (n_idx + 3) / 4;
  const auto* wb = static_cast<const uint8_t*>(w);
  const uint8_t* rows[k_down_rows_max];
  __m256 av[k_down_rows_max / 4];  // group g: dword r of each lane = a of its row r (0 for padding)
  for (int64_t g = 0; g < ng; ++g) {
    alignas(16) float v[4];
    for (int r = 0; r < 4; ++r) {
      const int64_t i = 4 * g + r;
      rows[i] = wb + static_cast<size_t>(idx[std::min(i, n_idx - 1)]) * wrb;
      v[r] = i < n_idx ? a[idx[i]] : 0.0f;
    }
    av[g] = _mm256_broadcast_ps(reinterpret_cast<const __m128*>(v));
  }
  const __m256i m4 = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1);
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
  __m256 cbuf[k_down_rows_max / 4];
  for (int64_t u = 0; u < (nb + bpu - 1) / bpu; ++u) {
    const int64_t nbu = std::min(bpu, nb - bpu * u), off = u * bpu * bs;
    __m256 amax = _mm256_setzero_ps();
    for (int64_t g = 0; g < ng; ++g) {
      alignas(16) uint16_t h[8];
      for (int r = 0; r < 4; ++r) {
        const uint8_t* p = rows[4 * g + r] + off;
        h[r] = load_u16(p);
        h[4 + r] = !Q4 ? h[r] : nbu > 1 ? load_u16(p + bs) : uint16_t{0};
      }
      const __m256 c = _mm256_mul_ps(_mm256_cvtph_ps(_mm_load_si128(reinterpret_cast<const __m128i*>(h))), av[g]);
      cbuf[g] = c;
      amax = _mm256_max_ps(amax, _mm256_and_ps(c, abs_mask));
    }
    const __m256 s = _mm256_div_ps(lane_max(amax), _mm256_set1_ps(127.0f));
    const __m256 id = _mm256_and_ps(_mm256_div_ps(_mm256_set1_ps(1.0f), s),
                                    _mm256_cmp_ps(s, _mm256_setzero_ps(), _CMP_NEQ_OQ));
    __m256i acc[8], qsum = _mm256_setzero_si256();
    for (auto& v : acc) v = _mm256_setzero_si256();
    for (int64_t g = 0; g < ng; ++g) {
      const __m256i q = _mm256_cvtps_epi32(_mm256_mul_ps(cbuf[g], id));  // nearest, ties to even
      qsum = _mm256_add_epi32(qsum, q);
      const __m256i q16 = _mm256_packs_epi32(q, q);
      const __m256i coef = _mm256_packs_epi16(q16, q16);  // each dword of a lane: its 4 rows' bytes
      __m256i R[4];
      for (int r = 0; r < 4; ++r) {
        const uint8_t* p = rows[4 * g + r] + off + 2;
        if constexpr (Q4) {
          const __m128i b0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
          const __m128i b1 = nbu > 1 ? _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + bs)) : _mm_setzero_si128();
          R[r] = _mm256_set_m128i(b1, b0);
        } else {
          R[r] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
        }
      }
      const __m256i t0 = _mm256_unpacklo_epi8(R[0], R[1]), t1 = _mm256_unpackhi_epi8(R[0], R[1]);
      const __m256i t2 = _mm256_unpacklo_epi8(R[2], R[3]), t3 = _mm256_unpackhi_epi8(R[2], R[3]);
      const __m256i v[4] = {_mm256_unpacklo_epi16(t0, t2), _mm256_unpackhi_epi16(t0, t2), _mm256_unpacklo_epi16(t1, t3),
                            _mm256_unpackhi_epi16(t1, t3)};
      for (int m = 0; m < 4; ++m) {
        if constexpr (Q4) {
          const __m256i lo = _mm256_and_si256(v[m], m4), hi = _mm256_and_si256(_mm256_srli_epi16(v[m], 4), m4);
          acc[m] = _mm256_add_epi32(acc[m], _mm256_madd_epi16(_mm256_maddubs_epi16(lo, coef), ones));
          acc[4 + m] = _mm256_add_epi32(acc[4 + m], _mm256_madd_epi16(_mm256_maddubs_epi16(hi, coef), ones));
        } else {
          const __m256i p = _mm256_maddubs_epi16(_mm256_abs_epi8(v[m]), _mm256_sign_epi8(coef, v[m]));
          acc[m] = _mm256_add_epi32(acc[m], _mm256_madd_epi16(p, ones));
        }
      }
    }
    const __m256i corr = Q4 ? _mm256_slli_epi32(lane_sum(qsum), 3) : _mm256_setzero_si256();
    __m256 f[8];
    for (int m = 0; m < (Q4 ? 8 : 4); ++m) f[m] = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(acc[m], corr)), s);
    float* yu = y + u * bpu * QK8_0;
    if constexpr (Q4) {
      // f[4 h + m] lane L: columns 32 L + 16 h + 4 m .. + 3 (the selector must be an immediate).
      for (int h = 0; h < 2; ++h) {
        _mm256_storeu_ps(yu + 16 * h, _mm256_permute2f128_ps(f[4 * h], f[4 * h + 1], 0x20));
        _mm256_storeu_ps(yu + 16 * h + 8, _mm256_permute2f128_ps(f[4 * h + 2], f[4 * h + 3], 0x20));
        if (nbu > 1) {
          _mm256_storeu_ps(yu + 32 + 16 * h, _mm256_permute2f128_ps(f[4 * h], f[4 * h + 1], 0x31));
          _mm256_storeu_ps(yu + 32 + 16 * h + 8, _mm256_permute2f128_ps(f[4 * h + 2], f[4 * h + 3], 0x31));
        }
      }
    } else {
      // f[m] lane L: columns 16 L + 4 m .. + 3.
      _mm256_storeu_ps(yu, _mm256_permute2f128_ps(f[0], f[1], 0x20));
      _mm256_storeu_ps(yu + 8, _mm256_permute2f128_ps(f[2], f[3], 0x20));
      _mm256_storeu_ps(yu + 16, _mm256_permute2f128_ps(f[0], f[1], 0x31));
      _mm256_storeu_ps(yu + 24, _mm256_permute2f128_ps(f[2], f[3], 0x31));
    }
  }
}

}  // namespace

void fill_avx2(KernelTable& t) {
  Glue<Avx2>::fill(t, Isa::avx2);
  t.down_rows_q4_0 = down_rows<true>;
  t.down_rows_q8_0 = down_rows<false>;
}

}  // namespace tandem::cpu::detail
