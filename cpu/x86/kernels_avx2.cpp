// AVX2 + FMA + F16C kernels: the intrinsics behind Glue<Avx2> (cpu/kernels/glue.h). No VNNI
// here: the q4_0 dot uses vpmaddubsw (u8 nibbles x s8) + vpmaddwd, with the -8 offset folded in
// as a per-lane correction prepared once per activation row, 16 blocks at a time with one dword
// lane per block (ggml's rows and cpu/quants.h's q4_0x16 rows, the same bits; see sum_quads);
// q8_0 uses ggml's sign trick (|w| x sign(x, w)), exact for q in -127..127 (what
// quantize_row_q8_0 produces), one ymm per 32-element block.
#include <immintrin.h>

#include <cmath>

#include "cpu/kernels/glue.h"
#include "cpu/quants.h"

namespace tandem::cpu::detail {
namespace {

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// q4_0 in units of 16 blocks (512 elements, 288 bytes of a row) as two ymm halves of 8 dword
// lanes: lane l (half l / 8) holds block q4_0x16_block(l) = 4 (l % 4) + l / 4 of the unit, the
// order of cpu/quants.h's q4_0x16 rows (as kernels_avx512.cpp's lanes). Each lane gets its
// block's exact integer dot, then one convert and one fma with d_w * d_x per half and token:
// * q4_0x16 rows: bytes 64 q + 32 h .. + 31 of the unit are half h's 8 lanes' bytes 4q..4q+3
//   (low nibbles: elements 4q..4q+3, high: 16+4q..), so 4 loads and 12 nibble ops make a half's
//   8 weight registers; per token 8 vpmaddubsw into one int16 sum (|sum| <= 16 x 15 x 128, no
//   overflow), one vpmaddwd, the correction, convert, fma.
// * ggml's q4_0 rows: blocks 4j + 2h and 4j + 2h + 1 (j < 4) are one two-block register (as
//   they sit in memory), vpmaddubsw + vpmaddwd leave 4 partial dwords per block in its 128-bit
//   lane, and an unpack/add tree over the half's 4 registers sums them into one dword per block:
//   128-bit lane i of the result holds blocks 2h + i, 4 + 2h + i, 8 + 2h + i, 12 + 2h + i, which
//   is q4_0x16_block's order. The integer sums are exact and the float steps the same, so both
//   layouts give the same bits (kernel_table.h), and every (row, token) pair the same bits in
//   any tile.
inline __m256i sum_quads(const __m256i (&P)[4]) {
  const __m256i a = _mm256_add_epi32(_mm256_unpacklo_epi32(P[0], P[1]), _mm256_unpackhi_epi32(P[0], P[1]));
  const __m256i b = _mm256_add_epi32(_mm256_unpacklo_epi32(P[2], P[3]), _mm256_unpackhi_epi32(P[2], P[3]));
  return _mm256_add_epi32(_mm256_unpacklo_epi64(a, b), _mm256_unpackhi_epi64(a, b));
}

struct Avx2 {
  // q4_0 and q4_0x16: one unit = 16 blocks; corr and dx in lane order (lane l: block
  // q4_0x16_block(l) of the unit; 0 for blocks past the row). qs by layout:
  //   q4_0 (ggml rows):  qs[p] = [elements 0..15 of block 2p | of 2p + 1][16..31 of 2p | 2p + 1]
  //   q4_0x16 rows:      qs[g] dword l = bytes 4g..4g+3 of lane l's block (g < 4 meet the
  //                      weights' low nibbles, 4..7 the high ones)
  struct alignas(32) PrepQ4 {
    int8_t qs[8][64];
    int32_t corr[16];  // -8 * (sum of lane l's block's 32 activation bytes)
    float dx[16];      // lane l's block's activation scale
  };
  // q8_0: one unit = 1 block in natural order.
  struct alignas(32) PrepQ8 {
    int8_t qs[32];
    float dx[8];  // the block's activation scale, 8 times
  };
  template <WKind K>
  using PrepFor = std::conditional_t<K == WKind::q8_0, PrepQ8, PrepQ4>;

  template <WKind K>
  static int64_t prep_units(int64_t nb) {
    return K == WKind::q8_0 ? nb : (nb + 15) / 16;
  }

  template <WKind K>
  static void prepare(const block_q8_0* x, int64_t nb, PrepFor<K>* out, bool /*single*/) {
    const __m256i ones8 = _mm256_set1_epi8(1);
    const __m256i ones16 = _mm256_set1_epi16(1);
    if constexpr (K == WKind::q8_0) {
      for (int64_t b = 0; b < nb; ++b) {
        _mm256_store_si256(reinterpret_cast<__m256i*>(out[b].qs),
                           _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[b].qs)));
        _mm256_store_ps(out[b].dx, _mm256_set1_ps(_cvtsh_ss(x[b].d)));
      }
    } else {
      for (int64_t u = 0; u < (nb + 15) / 16; ++u) {
        const int64_t n = std::min<int64_t>(16, nb - 16 * u);
        const block_q8_0* xb = x + 16 * u;
        PrepQ4& o = out[u];
        const auto blk = [&](int64_t b) {
          return b < n ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb[b].qs)) : _mm256_setzero_si256();
        };
        for (int l = 0; l < 16; ++l) {
          const int b = q4_0x16_block(l);
          o.dx[l] = b < n ? _cvtsh_ss(xb[b].d) : 0.0f;
        }
        for (int h = 0; h < 2; ++h) {
          __m256i sum;
          if constexpr (K == WKind::q4_0) {
            // The dot's own reduction against ones gives the block sums in lane order.
            __m256i P[4];
            for (int j = 0; j < 4; ++j) {
              const int p = 2 * j + h;
              const __m256i a = blk(2 * p), b = blk(2 * p + 1);
              const __m256i lo = _mm256_permute2x128_si256(a, b, 0x20), hi = _mm256_permute2x128_si256(a, b, 0x31);
              _mm256_store_si256(reinterpret_cast<__m256i*>(o.qs[p]), lo);
              _mm256_store_si256(reinterpret_cast<__m256i*>(o.qs[p] + 32), hi);
              P[j] = _mm256_madd_epi16(
                  _mm256_add_epi16(_mm256_maddubs_epi16(ones8, lo), _mm256_maddubs_epi16(ones8, hi)), ones16);
            }
            sum = sum_quads(P);
          } else {
            // An 8 x 8 dword transpose of the half's blocks (row i = lane 8h + i's block).
            __m256i r[8], t[8], v[8];
            for (int i = 0; i < 8; ++i) r[i] = blk(q4_0x16_block(8 * h + i));
            for (int i = 0; i < 4; ++i) {
              t[2 * i] = _mm256_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
              t[2 * i + 1] = _mm256_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
            }
            for (int i = 0; i < 2; ++i) {  // rows 4i..4i+3: 128-bit lane c holds dwords c, c + 4
              const __m256i* a = t + 4 * i;
              v[4 * i + 0] = _mm256_unpacklo_epi64(a[0], a[2]);  // dword 0 | 4 of 4 rows
              v[4 * i + 1] = _mm256_unpackhi_epi64(a[0], a[2]);  // 1 | 5
              v[4 * i + 2] = _mm256_unpacklo_epi64(a[1], a[3]);  // 2 | 6
              v[4 * i + 3] = _mm256_unpackhi_epi64(a[1], a[3]);  // 3 | 7
            }
            __m256i s16 = _mm256_setzero_si256();
            for (int g = 0; g < 4; ++g) {
              const __m256i q0 = _mm256_permute2x128_si256(v[g], v[4 + g], 0x20);  // dword g of rows 0..7
              const __m256i q1 = _mm256_permute2x128_si256(v[g], v[4 + g], 0x31);  // dword 4 + g
              _mm256_store_si256(reinterpret_cast<__m256i*>(o.qs[g] + 32 * h), q0);
              _mm256_store_si256(reinterpret_cast<__m256i*>(o.qs[4 + g] + 32 * h), q1);
              const __m256i pair = _mm256_add_epi16(_mm256_maddubs_epi16(ones8, q0), _mm256_maddubs_epi16(ones8, q1));
              s16 = _mm256_add_epi16(s16, pair);
            }
            sum = _mm256_madd_epi16(s16, ones16);
          }
          _mm256_store_si256(reinterpret_cast<__m256i*>(o.corr + 8 * h),
                             _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(sum, 3)));
        }
      }
    }
  }

  static constexpr int k_tok_tile = 4;
  static constexpr int q_rows(int nt) { return nt == 1 ? 1 : 2; }

  // Half h of a q4 unit against one token: s = the lanes' exact integer dots plus the
  // correction; acc += float(s) * (d_w * d_x). Both layouts end here (the same bits).
  static __m256 q4_step(__m256i s_unc, const PrepQ4& x, int h, __m256 dw, __m256 acc) {
    const __m256i s = _mm256_add_epi32(s_unc, _mm256_load_si256(reinterpret_cast<const __m256i*>(x.corr + 8 * h)));
    return _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_mul_ps(dw, _mm256_load_ps(x.dx + 8 * h)), acc);
  }

  template <int NT>
  static void q4x16_row(int64_t nb, const uint8_t* w, const uint8_t* pf, const PrepQ4* const* xp, __m256 (&acc)[NT]) {
    const __m256i m4 = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1);
    for (int64_t u = 0; u < nb / 16; ++u) {
      const uint8_t* p = w + u * 288;
      if (pf) {
        for (int l = 0; l < 5; ++l) _mm_prefetch(reinterpret_cast<const char*>(pf + u * 288 + 64 * l), _MM_HINT_T0);
      }
      for (int h = 0; h < 2; ++h) {
        const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 256 + 16 * h)));
        __m256i W[8];
        for (int q = 0; q < 4; ++q) {
          const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 64 * q + 32 * h));
          W[q] = _mm256_and_si256(v, m4);
          W[4 + q] = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
        }
        for (int t = 0; t < NT; ++t) {
          const PrepQ4& x = xp[t][u];
          const auto xq = [&](int g) { return _mm256_load_si256(reinterpret_cast<const __m256i*>(x.qs[g] + 32 * h)); };
          __m256i s0 = _mm256_maddubs_epi16(W[0], xq(0)), s1 = _mm256_maddubs_epi16(W[4], xq(4));
          for (int q = 1; q < 4; ++q) {
            s0 = _mm256_add_epi16(s0, _mm256_maddubs_epi16(W[q], xq(q)));
            s1 = _mm256_add_epi16(s1, _mm256_maddubs_epi16(W[4 + q], xq(4 + q)));
          }
          acc[t] = q4_step(_mm256_madd_epi16(_mm256_add_epi16(s0, s1), ones), x, h, dw, acc[t]);
        }
      }
    }
  }

  // Unit u of a ggml q4_0 row at p (n of its blocks are in the row; Full: all 16, no checks).
  template <int NT, bool Full>
  static void q4_unit(const uint8_t* p, int64_t n, const PrepQ4* const* xp, int64_t u, __m256 (&acc)[NT]) {
    const __m256i m4 = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1);
    const auto in = [&](int b) { return Full || b < n; };
    // Half h's scales in lane order (blocks 2h, 4 + 2h, 8 + 2h, 12 + 2h, then each + 1), inserted
    // as halves: narrow stores then a vector load of them would stall on store forwarding.
    const auto d = [&](int b) { return static_cast<short>(in(b) ? load_u16(p + 18 * b) : 0); };
    for (int h = 0; h < 2; ++h) {
      const __m256 dw = _mm256_cvtph_ps(_mm_setr_epi16(d(2 * h), d(4 + 2 * h), d(8 + 2 * h), d(12 + 2 * h),
                                                       d(2 * h + 1), d(5 + 2 * h), d(9 + 2 * h), d(13 + 2 * h)));
      __m256i lo[4], hi[4];
      for (int j = 0; j < 4; ++j) {
        const int b = 4 * j + 2 * h;  // blocks b, b + 1
        const auto qs = [&](int i) {  // block i's 16 quant bytes
          return in(i) ? _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 18 * i + 2)) : _mm_setzero_si128();
        };
        const __m128i q0 = qs(b), q1 = qs(b + 1);
        const __m256i q = _mm256_inserti128_si256(_mm256_castsi128_si256(q0), q1, 1);
        lo[j] = _mm256_and_si256(q, m4);
        hi[j] = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
      }
      for (int t = 0; t < NT; ++t) {
        const PrepQ4& x = xp[t][u];
        __m256i P[4];
        for (int j = 0; j < 4; ++j) {
          const auto* xq = reinterpret_cast<const __m256i*>(x.qs[2 * j + h]);
          P[j] = _mm256_madd_epi16(_mm256_add_epi16(_mm256_maddubs_epi16(lo[j], _mm256_load_si256(xq)),
                                                    _mm256_maddubs_epi16(hi[j], _mm256_load_si256(xq + 1))),
                                   ones);
        }
        acc[t] = q4_step(sum_quads(P), x, h, dw, acc[t]);
      }
    }
  }

  template <int NT>
  static void q4_row(int64_t nb, const uint8_t* w, const uint8_t* pf, const PrepQ4* const* xp, __m256 (&acc)[NT]) {
    for (int64_t u = 0; u < (nb + 15) / 16; ++u) {
      const int64_t n = std::min<int64_t>(16, nb - 16 * u);
      if (pf) {
        const int64_t lines = (n * 18 + 63) / 64;
        for (int64_t l = 0; l < lines; ++l) {
          _mm_prefetch(reinterpret_cast<const char*>(pf + u * 288 + 64 * l), _MM_HINT_T0);
        }
      }
      if (n == 16) {
        q4_unit<NT, true>(w + u * 288, n, xp, u, acc);
      } else {
        q4_unit<NT, false>(w + u * 288, n, xp, u, acc);
      }
    }
  }

  template <WKind K, int NR, int NT>
  static void dot_q(int64_t nb, const uint8_t* const* w, const uint8_t* const* pf, const PrepFor<K>* const* xp,
                    float (&out)[NR][NT]) {
    if constexpr (K != WKind::q8_0) {
      // Row by row (a row's unit is unpacked once for the tile's tokens).
      for (int r = 0; r < NR; ++r) {
        __m256 acc[NT];
        for (int t = 0; t < NT; ++t) acc[t] = _mm256_setzero_ps();
        if constexpr (K == WKind::q4_0x16) {
          q4x16_row<NT>(nb, w[r], pf[r], xp, acc);
        } else {
          q4_row<NT>(nb, w[r], pf[r], xp, acc);
        }
        for (int t = 0; t < NT; ++t) out[r][t] = hsum(acc[t]);
      }
    } else {
      __m256 acc[NR][NT];
      for (int r = 0; r < NR; ++r)
        for (int t = 0; t < NT; ++t) acc[r][t] = _mm256_setzero_ps();
      const __m256i ones = _mm256_set1_epi16(1);
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
          const PrepQ8& x = xp[t][b];
          const __m256i xq = _mm256_load_si256(reinterpret_cast<const __m256i*>(x.qs));
          const __m256 dx = _mm256_load_ps(x.dx);
          for (int r = 0; r < NR; ++r) {
            const __m256i s = _mm256_madd_epi16(_mm256_maddubs_epi16(ws[r], _mm256_sign_epi8(xq, wq[r])), ones);
            acc[r][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_mul_ps(dw[r], dx), acc[r][t]);
          }
        }
      }
      for (int r = 0; r < NR; ++r)
        for (int t = 0; t < NT; ++t) out[r][t] = hsum(acc[r][t]);
    }
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
// Split (q4_0 only): rows repacked as cpu/quants.h q4_0_split, so a unit's quants are one 32-byte
// load and its scales one 4-byte load; the same numbers, so the same bits.
inline __m256 lane_max(__m256 v) {
  v = _mm256_max_ps(v, _mm256_permute_ps(v, 0x4E));
  return _mm256_max_ps(v, _mm256_permute_ps(v, 0xB1));
}
inline __m256i lane_sum(__m256i v) {
  v = _mm256_add_epi32(v, _mm256_shuffle_epi32(v, 0x4E));
  return _mm256_add_epi32(v, _mm256_shuffle_epi32(v, 0xB1));
}

template <bool Q4, bool Split = false>
void down_rows(int64_t k, int64_t n_idx, const int32_t* idx, const void* w, size_t wrb, const float* a, float* y) {
  static_assert(Q4 || !Split);
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
        if constexpr (Split) {
          const uint8_t* p = rows[4 * g + r] + 16 * nb + 2 * bpu * u;
          h[r] = load_u16(p);
          h[4 + r] = nbu > 1 ? load_u16(p + 2) : uint16_t{0};
        } else {
          const uint8_t* p = rows[4 * g + r] + off;
          h[r] = load_u16(p);
          h[4 + r] = !Q4 ? h[r] : nbu > 1 ? load_u16(p + bs) : uint16_t{0};
        }
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
        if constexpr (Split) {
          const uint8_t* qs = rows[4 * g + r] + 16 * bpu * u;
          R[r] = nbu > 1 ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qs))
                         : _mm256_set_m128i(_mm_setzero_si128(), _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs)));
        } else if constexpr (Q4) {
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
  Glue<Avx2>::fill_q4_0x16(t);
  t.down_rows_q4_0 = down_rows<true>;
  t.down_rows_q8_0 = down_rows<false>;
  t.down_rows_q4_0_split = down_rows<true, true>;
}

}  // namespace tandem::cpu::detail
