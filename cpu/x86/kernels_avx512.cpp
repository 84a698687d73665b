// AVX-512 kernels (F, BW, VL, VNNI, VBMI): the intrinsics behind Glue<Avx512>
// (cpu/kernels/glue.h). The q4_0/q8_0 dots use VNNI vpdpbusd (u8 x s8): weights enter as
// unsigned bytes (q4 nibbles 0..15; q8 xor 0x80 = q + 128) and the offset (8 or 128 times the
// activation sum) is subtracted through the dpbusd accumulator, which starts at a per-lane
// correction prepared once per activation row.
// q4_0 goes 16 blocks (288 bytes) at a time with one dword lane per block (see q4u_block):
// in a tile of tokens, per row ~30 instructions regroup the unit (shared by the tile's tokens),
// then per token 8 vpdpbusd and 3 float instructions per 512 weights, against 8 + 12 when lanes
// held quarter blocks (4 blocks per zmm, each needing its own convert, scale and fma). One
// token keeps 72-byte loads and sums each block's partial dwords into the same lanes.
#include <immintrin.h>

// GCC 12's AVX-512 headers seed masked builtins with `_mm512_undefined_*() { __m512 y = y; }`,
// which -Wuninitialized reports at every inlined use (GCC PR105593, fixed in GCC 13).
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ < 13
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

#include <cmath>
#include <type_traits>

#include "cpu/kernels/glue.h"
#include "cpu/quants.h"

namespace tandem::cpu::detail {
namespace {

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
inline __mmask64 byte_mask(int64_t n) {
  return n >= 64 ? ~__mmask64{0} : n <= 0 ? __mmask64{0} : (__mmask64{1} << n) - 1;
}

// vpermt2b indices over a 128-byte window (bytes 0..63 in the first register, 64..127 in
// the second) starting at four consecutive q4_0 blocks (18 bytes each).
// qs: byte 16b + j <- block b's qs[j]: nibble pairs of elements j and j + 16 (down_rows).
inline __m512i q4_qs_index() {
  alignas(64) int8_t v[64];
  for (int i = 0; i < 64; ++i) v[i] = static_cast<int8_t>(18 * (i / 16) + 2 + i % 16);
  return _mm512_load_si512(v);
}

// d: half l (bytes 2l, 2l + 1) <- block l / 4's scale, for l < 16 (each 128-bit lane of the
// converted floats holds its block's scale 4 times).
inline __m512i q4_d_index() {
  alignas(64) int8_t v[64];
  for (int i = 0; i < 64; ++i) v[i] = static_cast<int8_t>(i < 32 ? 18 * (i / 8) + i % 2 : 0);
  return _mm512_load_si512(v);
}

// q4_0 in units of 16 blocks (288 bytes of a row), one dword lane per block. Lane l holds block
// q4u_block(l) = 4 (l % 4) + l / 4 (a 4 x 4 transpose: the order in which the one-token path's
// lane reduction leaves the blocks, see dot_q). Two ways to a lane's exact integer dot:
// * Tiles of several tokens regroup the unit once per row: register Q_q holds bytes 4q..4q+3
//   of the lane's block's qs (q = 0..3); its low nibbles are elements 4q..4q+3, its high ones
//   16+4q..16+4q+3, so eight vpdpbusd against activations laid out the same way give each lane
//   its block's dot. The 288 bytes are read as 5 registers: blocks 0..6 sit in bytes 0..127,
//   7..13 in 128..255 and 14..15 in 192..319 of the unit, so three two-register byte permutes
//   and two blends build each Q_q, and the same windows give the 16 scales.
// * One token takes 4 blocks at a time as 4 x 16 nibble bytes in 128-bit lanes (one byte
//   permute, as ggml's layout allows), two vpdpbusd leave 4 partial dwords per block, and an
//   unpack/add tree over the 4 groups sums them into one dword per block, in q4u_block order.
// Either way one convert, multiply and fma then apply both scales to 16 blocks (per token), and
// every (row, token) pair gets the same bits in any tile (integer sums are exact).
constexpr int q4u_block(int l) { return 4 * (l % 4) + l / 4; }
// The repacked rows (cpu/quants.h q4_0x16) store their lanes in this order.
constexpr bool q4u_matches_q4_0x16() {
  for (int l = 0; l < 16; ++l)
    if (q4u_block(l) != q4_0x16_block(l)) return false;
  return true;
}
static_assert(q4u_matches_q4_0x16(), "q4_0x16 lanes must be the q4_0 kernels' lane order");
constexpr int q4u_window(int b) { return b <= 6 ? 0 : b <= 13 ? 1 : 2; }   // qs of block b
constexpr int q4u_d_window(int b) { return b <= 7 ? 0 : b <= 14 ? 1 : 2; }  // scale of block b
constexpr int q4u_base(int w) { return w == 0 ? 0 : w == 1 ? 128 : 192; }
// Bytes of a zmm of 16 dwords (qs) or of 16 halves (scales) that window w fills.
constexpr __mmask64 q4u_mask(int w, bool scales) {
  __mmask64 m = 0;
  for (int i = 0; i < 64; ++i) {
    const int l = scales ? i / 2 : i / 4;
    if (l < 16 && (scales ? q4u_d_window(q4u_block(l)) : q4u_window(q4u_block(l))) == w) m |= __mmask64{1} << i;
  }
  return m;
}
inline __m512i q4u_qs_index(int w) {  // window w: 0 = bytes 0..127, 1 = 128..255, 2 = 192..319
  alignas(64) int8_t v[64];
  for (int i = 0; i < 64; ++i) {
    const int b = q4u_block(i / 4);
    v[i] = static_cast<int8_t>(q4u_window(b) == w ? 18 * b + 2 + i % 4 - q4u_base(w) : 0);
  }
  return _mm512_load_si512(v);
}
inline __m512i q4u_d_index(int w) {  // half l <- the scale of block q4u_block(l)
  alignas(64) int8_t v[64];
  for (int i = 0; i < 64; ++i) {
    const int b = q4u_block((i / 2) % 16);
    v[i] = static_cast<int8_t>(i < 32 && q4u_d_window(b) == w ? 18 * b + i % 2 - q4u_base(w) : 0);
  }
  return _mm512_load_si512(v);
}
// Dword l <- dword q4u_block(l) (the natural block order to the lane order; an involution).
inline __m512i q4u_lane_perm() {
  alignas(64) int32_t v[16];
  for (int l = 0; l < 16; ++l) v[l] = q4u_block(l);
  return _mm512_load_si512(v);
}
// Sum of each dword lane group: P[j] holds 4 partial dwords of block 4 j + i in 128-bit lane i;
// the result holds block 4 j + i's total in dword 4 i + j (= lane l of block q4u_block(l)).
inline __m512i q4u_reduce(const __m512i (&P)[4]) {
  const __m512i a = _mm512_add_epi32(_mm512_unpacklo_epi32(P[0], P[1]), _mm512_unpackhi_epi32(P[0], P[1]));
  const __m512i b = _mm512_add_epi32(_mm512_unpacklo_epi32(P[2], P[3]), _mm512_unpackhi_epi32(P[2], P[3]));
  return _mm512_add_epi32(_mm512_unpacklo_epi64(a, b), _mm512_unpackhi_epi64(a, b));
}
constexpr __mmask64 k_q4u_mid = q4u_mask(1, false), k_q4u_end = q4u_mask(2, false);
constexpr __mmask64 k_q4u_d_mid = q4u_mask(1, true), k_q4u_d_end = q4u_mask(2, true);

struct Avx512 {
  // q4_0: one unit = 16 blocks; lane l = block 16 u + q4u_block(l). A call fills one of the two
  // layouts: one[] for a call with one token, qs[] otherwise (has_one says which).
  struct alignas(64) PrepQ4 {
    int8_t qs[8][64];     // tiles (calls with several tokens): qs[g] dword l = bytes 4g..4g+3 of
                          // lane l's block (g < 4 pair with the weights' low nibbles, 4..7 with
                          // the high ones)
    int8_t one[4][2][64];  // one token: group j, 128-bit lane i = block 4 j + i: [0] its bytes
                           // 0..15 (low nibbles' elements), [1] bytes 16..31
    int32_t corr[16];     // -8 * (sum of lane l's block's 32 activation bytes)
    float dx[16];         // lane l's block's activation scale
    int32_t has_one;      // one[][] filled, not qs (a call with one token), or the reverse
  };
  // q8_0: one unit = 2 blocks: qs[0] = b0 | b1. Lanes of an absent block are 0.
  struct alignas(64) PrepQ8 {
    int8_t qs[1][64];
    int32_t corr[16];  // -128 * (sum of this dword lane's activation bytes)
    float dx[16];      // activation scale of the block each dword lane belongs to
  };
  // q4_0x16 rows (cpu/quants.h) take PrepQ4's tile layout for any number of tokens.
  template <WKind K>
  using PrepFor = std::conditional_t<K == WKind::q8_0, PrepQ8, PrepQ4>;

  template <WKind K>
  static int64_t prep_units(int64_t nb) {
    return K == WKind::q8_0 ? (nb + 1) / 2 : (nb + 15) / 16;
  }

  template <WKind K>
  static void prepare(const block_q8_0* x, int64_t nb, PrepFor<K>* out, bool single_call) {
    const __m512i ones = _mm512_set1_epi8(1);
    const bool single = single_call && K == WKind::q4_0;  // q4_0x16 dots use the tile layout only
    if constexpr (K != WKind::q8_0) {
      // Scales by gather, in q4u order. A call with one token: the one-token layout only (the
      // blocks' bytes as they are). Otherwise the tile layout: an 8 x 8 dword transpose in each
      // 256-bit half (row r holds block r's 32 bytes in its low half and block r + 8's in its
      // high half; absent blocks 0), then the lanes to q4u order.
      const __m512i lane34 = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                                _mm512_set1_epi32(34));
      const __m512i lo_idx = _mm512_set_epi64(13, 12, 5, 4, 9, 8, 1, 0);  // d0..d3 of blocks 0..15
      const __m512i hi_idx = _mm512_set_epi64(15, 14, 7, 6, 11, 10, 3, 2);  // d4..d7
      const __m512i lperm = q4u_lane_perm();
      for (int64_t u = 0; u < (nb + 15) / 16; ++u) {
        const int64_t n = std::min<int64_t>(16, nb - 16 * u);
        const block_q8_0* xb = x + 16 * u;
        const auto blk = [&](int64_t L) {
          return L < n ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb[L].qs)) : _mm256_setzero_si256();
        };
        const auto m = static_cast<__mmask16>(n >= 16 ? 0xFFFFu : (1u << n) - 1u);
        const __m512i d = _mm512_permutexvar_epi32(lperm, _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), m, lane34, xb, 1));
        _mm512_store_ps(out[u].dx, _mm512_cvtph_ps(_mm512_cvtepi32_epi16(d)));  // low half of each dword
        out[u].has_one = single;
        __m512i sum = _mm512_setzero_si512();
        if (single) {
          // Group j: 128-bit lane i = block 4 j + i's bytes 0..15 ([0]) and 16..31 ([1]); the
          // block sums come through the dot's own lane reduction (q4u_reduce).
          __m512i P[4];
          for (int j = 0; j < 4; ++j) {
            __m512i h[2];
            for (int k = 0; k < 2; ++k) {
              const auto half = [&](int i) {
                const __m256i q = blk(4 * j + i);
                return k == 0 ? _mm256_castsi256_si128(q) : _mm256_extracti128_si256(q, 1);
              };
              h[k] = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set_m128i(half(1), half(0))),
                                        _mm256_set_m128i(half(3), half(2)), 1);
              _mm512_store_si512(out[u].one[j][k], h[k]);
            }
            P[j] = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), ones, h[0]), ones, h[1]);
          }
          sum = q4u_reduce(P);
        } else {
          __m512i r[8], t[8], v[8];
          for (int L = 0; L < 8; ++L) r[L] = _mm512_inserti64x4(_mm512_castsi256_si512(blk(L)), blk(L + 8), 1);
          for (int i = 0; i < 4; ++i) {
            t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
            t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
          }
          for (int hh = 0; hh < 2; ++hh) {  // rows 4hh..4hh+3
            const __m512i* a = t + 4 * hh;
            v[4 * hh + 0] = _mm512_unpacklo_epi64(a[0], a[2]);  // 128-bit lanes: dword 0 | 4 of 4 blocks
            v[4 * hh + 1] = _mm512_unpackhi_epi64(a[0], a[2]);  // 1 | 5
            v[4 * hh + 2] = _mm512_unpacklo_epi64(a[1], a[3]);  // 2 | 6
            v[4 * hh + 3] = _mm512_unpackhi_epi64(a[1], a[3]);  // 3 | 7
          }
          for (int g = 0; g < 4; ++g) {
            const __m512i q0 = _mm512_permutexvar_epi32(lperm, _mm512_permutex2var_epi64(v[g], lo_idx, v[4 + g]));
            const __m512i q1 = _mm512_permutexvar_epi32(lperm, _mm512_permutex2var_epi64(v[g], hi_idx, v[4 + g]));
            _mm512_store_si512(out[u].qs[g], q0);
            _mm512_store_si512(out[u].qs[4 + g], q1);
            sum = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(sum, ones, q0), ones, q1);
          }
        }
        _mm512_store_si512(out[u].corr, _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(sum, 3)));
      }
    } else {
      for (int64_t p = 0; p < (nb + 1) / 2; ++p) {
        const bool two = 2 * p + 1 < nb;
        const __m256i lo = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[2 * p].qs));
        const __m256i hi =
            two ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[2 * p + 1].qs)) : _mm256_setzero_si256();
        const __m512i q = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
        const __m512i sum = _mm512_dpbusd_epi32(_mm512_setzero_si512(), ones, q);
        const float d0 = _cvtsh_ss(x[2 * p].d), d1 = two ? _cvtsh_ss(x[2 * p + 1].d) : 0.0f;
        _mm512_store_si512(out[p].qs[0], q);
        _mm512_store_si512(out[p].corr, _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(sum, 7)));
        _mm512_store_ps(out[p].dx, _mm512_insertf32x8(_mm512_set1_ps(d0), _mm256_set1_ps(d1), 1));
      }
    }
  }

  // One row per tile, with up to 8 tokens: q4_0's regrouped unit is made once per row and
  // tile; the activations are L1-resident loads either way.
  static constexpr int k_tok_tile = 8;
  static constexpr int q_rows(int) { return 1; }

  template <int NR>
  static void q4_one(int64_t nb, const uint8_t* const* w, const uint8_t* const* pf, const PrepQ4* const* xp,
                     __m512 (&acc)[NR][1]) {
    // One token, 4 blocks (72 bytes) at a time as ggml's layout allows: one byte permute
    // gathers their nibble bytes into 128-bit lanes, two vpdpbusd leave 4 partial dwords per
    // block, q4u_reduce sums a unit's 4 groups into one dword per block (q4u_block order),
    // and the group's scales land in lanes j, 4 + j, 8 + j, 12 + j by a masked move.
    const __m512i qs_idx = q4_qs_index(), d_idx = q4_d_index(), m4 = _mm512_set1_epi8(0x0F);
    for (int64_t u = 0; u < (nb + 15) / 16; ++u) {
      for (int r = 0; r < NR; ++r) {
        const PrepQ4& x = xp[0][u];
        __m512i P[4];
        __m512 dw = _mm512_setzero_ps();
        for (int j = 0; j < 4; ++j) {
          const int64_t off = u * 288 + j * 72, bytes = std::min<int64_t>(72, (nb - 16 * u - 4 * j) * 18);
          if (bytes <= 0) {
            P[j] = _mm512_setzero_si512();
            continue;
          }
          if (pf[r]) {
            _mm_prefetch(reinterpret_cast<const char*>(pf[r] + off), _MM_HINT_T0);
            _mm_prefetch(reinterpret_cast<const char*>(pf[r] + off + 64), _MM_HINT_T0);
          }
          // Masked loads never touch bytes past the row (the last group may hold 1..3 blocks).
          const __m512i a = bytes == 72 ? _mm512_loadu_si512(w[r] + off)
                                        : _mm512_maskz_loadu_epi8(byte_mask(bytes), w[r] + off);
          const __m512i b = _mm512_maskz_loadu_epi8(byte_mask(bytes - 64), w[r] + off + 64);
          const __m512i q = _mm512_permutex2var_epi8(a, qs_idx, b);
          const __m512i lo = _mm512_and_si512(q, m4), hi = _mm512_and_si512(_mm512_srli_epi16(q, 4), m4);
          P[j] = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), lo, _mm512_load_si512(x.one[j][0])),
                                     hi, _mm512_load_si512(x.one[j][1]));
          const __m512 d4 = _mm512_cvtph_ps(_mm512_castsi512_si256(_mm512_permutex2var_epi8(a, d_idx, b)));
          dw = _mm512_mask_mov_ps(dw, static_cast<__mmask16>(0x1111u << j), d4);
        }
        const __m512i s = _mm512_add_epi32(q4u_reduce(P), _mm512_load_si512(x.corr));
        acc[r][0] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(dw, _mm512_load_ps(x.dx)), acc[r][0]);
      }
    }
  }

  // One row's unit (W: the 8 nibble registers of q4u lanes, dw: its 16 scales) against NT
  // tokens' unit u: eight vpdpbusd from the correction (two chains of four), one convert and
  // one fma with d_w * d_x per token. q4_tiles and q4x16_tiles share it, so their bits agree.
  template <int NT>
  static void q4u_tokens(const __m512i (&W)[8], __m512 dw, const PrepQ4* const* xp, int64_t u, __m512 (&acc)[NT]) {
    for (int t = 0; t < NT; ++t) {
      const PrepQ4& x = xp[t][u];
      __m512i s0 = _mm512_load_si512(x.corr), s1 = _mm512_setzero_si512();
      for (int g = 0; g < 4; ++g) {
        s0 = _mm512_dpbusd_epi32(s0, W[g], _mm512_load_si512(x.qs[g]));
        s1 = _mm512_dpbusd_epi32(s1, W[4 + g], _mm512_load_si512(x.qs[4 + g]));
      }
      const __m512i s = _mm512_add_epi32(s0, s1);
      acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(dw, _mm512_load_ps(x.dx)), acc[t]);
    }
  }

  template <int NR, int NT>
  static void q4_tiles(int64_t nb, const uint8_t* const* w, const uint8_t* const* pf, const PrepQ4* const* xp,
                       __m512 (&acc)[NR][NT]) {
    // Tiles: per unit and row the scales and the regrouped unit (q4u_*), then per token eight
    // vpdpbusd from the correction (two chains of four), one convert and one fma with
    // d_w * d_x: lane l sums its block's exact integer dot times the scales over the units;
    // hsum at the end.
    const __m512i m4 = _mm512_set1_epi8(0x0F), four = _mm512_set1_epi8(4);
    __m512i iq[4][3];  // [q][window]: the windows' indices + 4 q
    for (int l = 0; l < 3; ++l) {
      iq[0][l] = q4u_qs_index(l);
      for (int q = 1; q < 4; ++q) iq[q][l] = _mm512_add_epi8(iq[q - 1][l], four);
    }
    const __m512i id0 = q4u_d_index(0), id1 = q4u_d_index(1), id2 = q4u_d_index(2);
    const int64_t nu = (nb + 15) / 16;
    for (int64_t u = 0; u < nu; ++u) {
      const int64_t off = u * 288, bytes = std::min<int64_t>(288, (nb - 16 * u) * 18);
      for (int r = 0; r < NR; ++r) {
        const uint8_t* p = w[r] + off;
        if (pf[r]) {
          for (int l = 0; l < 5; ++l) _mm_prefetch(reinterpret_cast<const char*>(pf[r] + off + 64 * l), _MM_HINT_T0);
        }
        __m512i X[5];
        if (bytes == 288) {
          for (int l = 0; l < 4; ++l) X[l] = _mm512_loadu_si512(p + 64 * l);
          X[4] = _mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 256)));
        } else {  // masked loads never touch bytes past the row
          for (int l = 0; l < 5; ++l) X[l] = _mm512_maskz_loadu_epi8(byte_mask(bytes - 64 * l), p + 64 * l);
        }
        __m512i dv = _mm512_permutex2var_epi8(X[0], id0, X[1]);
        dv = _mm512_mask_blend_epi8(k_q4u_d_mid, dv, _mm512_permutex2var_epi8(X[2], id1, X[3]));
        dv = _mm512_mask_blend_epi8(k_q4u_d_end, dv, _mm512_permutex2var_epi8(X[3], id2, X[4]));
        const __m512 dw = _mm512_cvtph_ps(_mm512_castsi512_si256(dv));
        __m512i W[8];
        for (int q = 0; q < 4; ++q) {
          __m512i v = _mm512_permutex2var_epi8(X[0], iq[q][0], X[1]);
          v = _mm512_mask_blend_epi8(k_q4u_mid, v, _mm512_permutex2var_epi8(X[2], iq[q][1], X[3]));
          v = _mm512_mask_blend_epi8(k_q4u_end, v, _mm512_permutex2var_epi8(X[3], iq[q][2], X[4]));
          W[q] = _mm512_and_si512(v, m4);
          W[4 + q] = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
        }
        q4u_tokens<NT>(W, dw, xp, u, acc[r]);
      }
    }
  }

  // q4_0x16 rows (cpu/quants.h, nb % 16 == 0): the unit's four 64-byte registers are q4_tiles'
  // Q_0..Q_3 as they sit in memory and its scales follow them, so per unit and row: 4 loads,
  // 12 nibble ops and one convert; per token the same 8 vpdpbusd and float steps as q4_tiles
  // (the same bits).
  template <int NR, int NT>
  static void q4x16_tiles(int64_t nb, const uint8_t* const* w, const uint8_t* const* pf, const PrepQ4* const* xp,
                          __m512 (&acc)[NR][NT]) {
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    for (int64_t u = 0; u < nb / 16; ++u) {
      const int64_t off = u * 288;
      for (int r = 0; r < NR; ++r) {
        const uint8_t* p = w[r] + off;
        if (pf[r]) {
          for (int l = 0; l < 5; ++l) _mm_prefetch(reinterpret_cast<const char*>(pf[r] + off + 64 * l), _MM_HINT_T0);
        }
        const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 256)));
        __m512i W[8];
        for (int q = 0; q < 4; ++q) {
          const __m512i v = _mm512_loadu_si512(p + 64 * q);
          W[q] = _mm512_and_si512(v, m4);
          W[4 + q] = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
        }
        q4u_tokens<NT>(W, dw, xp, u, acc[r]);
      }
    }
  }

  template <WKind K, int NR, int NT>
  static void dot_q(int64_t nb, const uint8_t* const* w, const uint8_t* const* pf, const PrepFor<K>* const* xp,
                    float (&out)[NR][NT]) {
    __m512 acc[NR][NT];
    for (int r = 0; r < NR; ++r)
      for (int t = 0; t < NT; ++t) acc[r][t] = _mm512_setzero_ps();
    if constexpr (K == WKind::q4_0) {
      // One token takes the 72-byte path when its activations carry that layout (a call with
      // one token); a lone token of a bigger call takes the tile path: the same bits.
      if constexpr (NT == 1) {
        if (xp[0][0].has_one) {
          q4_one<NR>(nb, w, pf, xp, acc);
        } else {
          q4_tiles<NR, 1>(nb, w, pf, xp, acc);
        }
      } else {
        q4_tiles<NR, NT>(nb, w, pf, xp, acc);
      }
    } else if constexpr (K == WKind::q4_0x16) {
      q4x16_tiles<NR, NT>(nb, w, pf, xp, acc);
    } else {
      const __m512i d_lanes = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
      for (int64_t p = 0; p < (nb + 1) / 2; ++p) {
        const bool two = 2 * p + 1 < nb;
        __m512i wq[NR];
        __m512 dw[NR];
        for (int r = 0; r < NR; ++r) {
          const uint8_t* b = w[r] + p * 2 * sizeof(block_q8_0);
          if (pf[r]) _mm_prefetch(reinterpret_cast<const char*>(pf[r] + p * 2 * sizeof(block_q8_0)), _MM_HINT_T0);
          const __m256i q0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 2));
          const __m256i q1 = two ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 36)) : _mm256_set1_epi8(-128);
          wq[r] = _mm512_xor_si512(_mm512_inserti64x4(_mm512_castsi256_si512(q0), q1, 1), _mm512_set1_epi8(-128));
          const uint32_t dd = load_u16(b) | (two ? static_cast<uint32_t>(load_u16(b + 34)) << 16 : 0u);
          const __m512 d2 = _mm512_castps128_ps512(_mm_cvtph_ps(_mm_cvtsi32_si128(static_cast<int>(dd))));
          dw[r] = _mm512_permutexvar_ps(d_lanes, d2);
        }
        for (int t = 0; t < NT; ++t) {
          const PrepQ8& x = xp[t][p];
          const __m512i xq = _mm512_load_si512(x.qs[0]);
          const __m512i corr = _mm512_load_si512(x.corr);
          const __m512 dx = _mm512_load_ps(x.dx);
          for (int r = 0; r < NR; ++r) {
            const __m512i s = _mm512_dpbusd_epi32(corr, wq[r], xq);
            acc[r][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(dw[r], dx), acc[r][t]);
          }
        }
      }
    }
    for (int r = 0; r < NR; ++r)
      for (int t = 0; t < NT; ++t) out[r][t] = hsum(acc[r][t]);
  }

  static constexpr int f_rows(int nt) { return nt == 1 ? 4 : 2; }

  template <FKind K>
  static __m512 load_w(const uint8_t* row, int64_t i) {
    if constexpr (K == FKind::f16) {
      return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + 2 * i)));
    } else if constexpr (K == FKind::bf16) {
      return _mm512_castsi512_ps(
          _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + 2 * i))), 16));
    } else {
      return _mm512_loadu_ps(row + 4 * i);
    }
  }

  // Block ib of a q row as 32 floats (scale not applied) and its scale. q4_0 maps nibbles
  // through a 16-float table (vpermps reads only the index's low 4 bits, so the high nibble
  // needs a shift but no mask).
  template <WKind K>
  static void dequant_block(const uint8_t* row, int64_t ib, __m512 (&w)[2], float& d) {
    if constexpr (K == WKind::q4_0) {
      const uint8_t* b = row + ib * sizeof(block_q4_0);
      const __m512 table = _mm512_set_ps(7.f, 6.f, 5.f, 4.f, 3.f, 2.f, 1.f, 0.f, -1.f, -2.f, -3.f, -4.f, -5.f, -6.f, -7.f, -8.f);
      const __m512i q = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 2)));
      w[0] = _mm512_permutexvar_ps(q, table);
      w[1] = _mm512_permutexvar_ps(_mm512_srli_epi32(q, 4), table);
      d = _cvtsh_ss(load_u16(b));
    } else {
      const uint8_t* b = row + ib * sizeof(block_q8_0);
      w[0] = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 2))));
      w[1] = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 18))));
      d = _cvtsh_ss(load_u16(b));
    }
  }

  static float f16_to_f32(uint16_t h) { return _cvtsh_ss(h); }

  using V = __m512;
  static constexpr int64_t k_lanes = 16;
  static __m512 load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, __m512 v) { _mm512_storeu_ps(p, v); }
  static __m512 set1(float f) { return _mm512_set1_ps(f); }
  static __m512 add(__m512 a, __m512 b) { return _mm512_add_ps(a, b); }
  static __m512 sub(__m512 a, __m512 b) { return _mm512_sub_ps(a, b); }
  static __m512 mul(__m512 a, __m512 b) { return _mm512_mul_ps(a, b); }
  static __m512 fma(__m512 a, __m512 b, __m512 c) { return _mm512_fmadd_ps(a, b, c); }
  static float hsum(__m512 v) { return detail::hsum(v); }

  // roundf (half away from zero) for |v| < 2^23, exactly as the scalar reference.
  static __m512 round_away(__m512 v) {
    const __m512 t = _mm512_roundscale_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    const __m512 frac = _mm512_abs_ps(_mm512_sub_ps(v, t));
    const __mmask16 up = _mm512_cmp_ps_mask(frac, _mm512_set1_ps(0.5f), _CMP_GE_OQ);
    const __m512 one = _mm512_or_ps(_mm512_set1_ps(1.0f), _mm512_and_ps(v, _mm512_set1_ps(-0.0f)));
    return _mm512_mask_add_ps(t, up, t, one);
  }

  static void quantize_row_q8_0(const float* x, void* vy, int64_t k) {
    auto* y = static_cast<block_q8_0*>(vy);
    for (int64_t i = 0; i < k / QK8_0; ++i) {
      const __m512 v0 = _mm512_loadu_ps(x + i * 32);
      const __m512 v1 = _mm512_loadu_ps(x + i * 32 + 16);
      const float amax = hmax(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
      const float d = amax / 127.0f;
      const float id = d != 0.0f ? 1.0f / d : 0.0f;
      y[i].d = _cvtss_sh(d, _MM_FROUND_TO_NEAREST_INT);
      const __m512 vid = _mm512_set1_ps(id);
      const __m512i q0 = _mm512_cvttps_epi32(round_away(_mm512_mul_ps(v0, vid)));
      const __m512i q1 = _mm512_cvttps_epi32(round_away(_mm512_mul_ps(v1, vid)));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(y[i].qs), _mm512_cvtsepi32_epi8(q0));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(y[i].qs + 16), _mm512_cvtsepi32_epi8(q1));
    }
  }

  // exp(x) as Cephes expf: n = round(x log2 e), r = x - n ln2 (two-part ln2), degree-5
  // polynomial, then scalef (exact 2^n scaling with gradual underflow). About 2 ulp.
  static __m512 exp_ps(__m512 x) {
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

};

// ---- down_rows (kernel_table.h DownRowsFn): the transposed down with 8-bit coefficients ----
//
// Rows go in groups of 4 and columns in units of 4 q4_0 blocks (128 columns) or 2 q8_0 blocks
// (64). A unit's 4 x 16-byte slices of a row sit in the 4 128-bit lanes of a zmm (vpermt2b);
// two unpack stages interleave a group's 4 rows so that each dword holds one column's 4 rows,
// and vpdpbusd adds the 4 products against the group's 4 coefficients (one dword broadcast per
// lane: lane = block). Coefficients are made per unit in lanes [block][row] (the scales come
// from the same loads through a byte permute), so the block's max is a reduction within a lane.
// Per 512 weights: ~40 integer ops for the products and ~20 for the coefficients, against
// ~190 for dequantising to floats and an fma per weight.

inline __m512i lane_bcast_index() { return _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0); }

// q8_0 over two blocks (68 bytes): lane L = block L / 2, bytes 16 (L % 2) .. + 15 of its qs.
inline __m512i q8_qs_index() {
  alignas(64) int8_t v[64];
  for (int i = 0; i < 64; ++i) v[i] = static_cast<int8_t>(34 * (i / 32) + 2 + i % 32);
  return _mm512_load_si512(v);
}
// Halves 4L + r <- the scale of the block lane L holds (q4_0: block L; q8_0: block L / 2).
inline __m512i down_d_index(bool q4) {
  alignas(64) int8_t v[64];
  for (int i = 0; i < 64; ++i) v[i] = static_cast<int8_t>(i < 32 ? (q4 ? 18 * (i / 8) : 34 * (i / 16)) + i % 2 : 0);
  return _mm512_load_si512(v);
}

// Sum or max of the 4 dwords of each 128-bit lane, broadcast within the lane.
inline __m512 lane_max(__m512 v) {
  v = _mm512_max_ps(v, _mm512_permute_ps(v, 0x4E));
  return _mm512_max_ps(v, _mm512_permute_ps(v, 0xB1));
}
inline __m512i lane_sum(__m512i v) {
  v = _mm512_add_epi32(v, _mm512_shuffle_epi32(v, _MM_PERM_BADC));
  return _mm512_add_epi32(v, _mm512_shuffle_epi32(v, _MM_PERM_CDAB));
}

// out[L] = lane L of f0, f1, f2, f3 (a 4 x 4 transpose of 128-bit lanes).
inline void lane_transpose(const __m512 (&f)[4], __m512 (&out)[4]) {
  const __m512 t0 = _mm512_shuffle_f32x4(f[0], f[1], 0x44), t1 = _mm512_shuffle_f32x4(f[0], f[1], 0xEE);
  const __m512 t2 = _mm512_shuffle_f32x4(f[2], f[3], 0x44), t3 = _mm512_shuffle_f32x4(f[2], f[3], 0xEE);
  out[0] = _mm512_shuffle_f32x4(t0, t2, 0x88);
  out[1] = _mm512_shuffle_f32x4(t0, t2, 0xDD);
  out[2] = _mm512_shuffle_f32x4(t1, t3, 0x88);
  out[3] = _mm512_shuffle_f32x4(t1, t3, 0xDD);
}

// Split (q4_0 only): rows repacked as cpu/quants.h q4_0_split, so a unit's quants are one
// 64-byte load without a permute, and a group's 4 x 4 scales come from 8-byte loads (one
// convert and one transposing permute per group instead of a load, permute and convert per row).
// The coefficients and sums are the same numbers, so the same bits.
template <bool Q4, bool Split = false>
void down_rows(int64_t k, int64_t n_idx, const int32_t* idx, const void* w, size_t wrb, const float* a, float* y) {
  static_assert(Q4 || !Split);
  if (n_idx == 0) {
    std::fill_n(y, k, 0.0f);
    return;
  }
  constexpr int64_t bpu = Q4 ? 4 : 2;  // blocks per unit
  constexpr int64_t bs = Q4 ? 18 : 34;
  const int64_t nb = k / QK8_0, ng = (n_idx + 3) / 4;
  const DownRowGroups grp(n_idx, idx, w, wrb, a);
  const uint8_t* const* rows = grp.rows;
  __m512 av[k_down_rows_max / 4];  // group g: lane dword r = a of its row r
  for (int64_t g = 0; g < ng; ++g) av[g] = _mm512_broadcast_f32x4(_mm_load_ps(grp.a + 4 * g));
  const __m512i qs_idx = Q4 ? q4_qs_index() : q8_qs_index(), d_idx = down_d_index(Q4);
  const __m512i bcast = lane_bcast_index(), m4 = _mm512_set1_epi8(0x0F), sign = _mm512_set1_epi8(-128);
  const __m512i d_tr = _mm512_set_epi32(15, 11, 7, 3, 14, 10, 6, 2, 13, 9, 5, 1, 12, 8, 4, 0);  // lane 4 L + r <- 4 r + L
  __m512 cbuf[k_down_rows_max / 4];
  for (int64_t u = 0; u < (nb + bpu - 1) / bpu; ++u) {
    const int64_t nbu = std::min(bpu, nb - bpu * u), off = u * bpu * bs, bytes = nbu * bs;
    const __mmask64 m_lo = byte_mask(bytes), m_hi = byte_mask(bytes - 64);
    // Coefficients c = a * d in lanes [block][row], and each block's max |c|.
    __m512 amax = _mm512_setzero_ps();
    for (int64_t g = 0; g < ng; ++g) {
      __m512 c = _mm512_setzero_ps();
      if constexpr (Split) {
        // Halves 4 r + L (row r's scales of the unit's blocks L) -> floats, then lane 4 L + r.
        const auto m_d = static_cast<__mmask8>((1u << nbu) - 1u);
        __m128i dr[4];
        for (int r = 0; r < 4; ++r) dr[r] = _mm_maskz_loadu_epi16(m_d, rows[4 * g + r] + 16 * nb + 8 * u);
        const __m256i h = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_unpacklo_epi64(dr[0], dr[1])),
                                                  _mm_unpacklo_epi64(dr[2], dr[3]), 1);
        c = _mm512_mul_ps(_mm512_permutexvar_ps(d_tr, _mm512_cvtph_ps(h)), av[g]);
      } else {
        for (int r = 0; r < 4; ++r) {
          const __m512i raw = _mm512_maskz_loadu_epi8(m_lo, rows[4 * g + r] + off);
          const __m512 d = _mm512_cvtph_ps(_mm512_castsi512_si256(_mm512_permutexvar_epi8(d_idx, raw)));
          c = _mm512_mask_mul_ps(c, static_cast<__mmask16>(0x1111u << r), d, av[g]);
        }
      }
      cbuf[g] = c;
      amax = _mm512_max_ps(amax, _mm512_abs_ps(c));
    }
    const __m512 s = _mm512_div_ps(lane_max(amax), _mm512_set1_ps(127.0f));
    const __m512 id = _mm512_maskz_div_ps(_mm512_cmp_ps_mask(s, _mm512_setzero_ps(), _CMP_NEQ_OQ), _mm512_set1_ps(1.0f), s);
    __m512i acc[8], qsum = _mm512_setzero_si512();
    for (auto& v : acc) v = _mm512_setzero_si512();
    for (int64_t g = 0; g < ng; ++g) {
      const __m512i q = _mm512_cvtps_epi32(_mm512_mul_ps(cbuf[g], id));  // nearest, ties to even
      qsum = _mm512_add_epi32(qsum, q);
      const __m512i coef = _mm512_permutexvar_epi32(bcast, _mm512_castsi128_si512(_mm512_cvtepi32_epi8(q)));
      __m512i R[4];
      for (int r = 0; r < 4; ++r) {
        if constexpr (Split) {
          const uint8_t* p = rows[4 * g + r] + 64 * u;
          R[r] = nbu == 4 ? _mm512_loadu_si512(p) : _mm512_maskz_loadu_epi8(byte_mask(16 * nbu), p);
        } else {
          const uint8_t* p = rows[4 * g + r] + off;
          R[r] = _mm512_permutex2var_epi8(_mm512_maskz_loadu_epi8(m_lo, p), qs_idx, _mm512_maskz_loadu_epi8(m_hi, p + 64));
        }
        if constexpr (!Q4) R[r] = _mm512_xor_si512(R[r], sign);  // q + 128 as unsigned
      }
      const __m512i t0 = _mm512_unpacklo_epi8(R[0], R[1]), t1 = _mm512_unpackhi_epi8(R[0], R[1]);
      const __m512i t2 = _mm512_unpacklo_epi8(R[2], R[3]), t3 = _mm512_unpackhi_epi8(R[2], R[3]);
      const __m512i v[4] = {_mm512_unpacklo_epi16(t0, t2), _mm512_unpackhi_epi16(t0, t2), _mm512_unpacklo_epi16(t1, t3),
                            _mm512_unpackhi_epi16(t1, t3)};
      for (int m = 0; m < 4; ++m) {
        if constexpr (Q4) {
          acc[m] = _mm512_dpbusd_epi32(acc[m], _mm512_and_si512(v[m], m4), coef);
          acc[4 + m] = _mm512_dpbusd_epi32(acc[4 + m], _mm512_and_si512(_mm512_srli_epi16(v[m], 4), m4), coef);
        } else {
          acc[m] = _mm512_dpbusd_epi32(acc[m], v[m], coef);
        }
      }
    }
    // Unsigned weights carry an offset (8 or 128) times the block's coefficient sum.
    const __m512i corr = _mm512_slli_epi32(lane_sum(qsum), Q4 ? 3 : 7);
    for (int h = 0; h < (Q4 ? 2 : 1); ++h) {
      __m512 f[4], o[4];
      for (int m = 0; m < 4; ++m) f[m] = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(acc[4 * h + m], corr)), s);
      lane_transpose(f, o);
      // Lane L: q4_0 columns 32 L + 16 h .. + 15; q8_0 columns 16 L .. + 15 (block L / 2).
      for (int L = 0; L < 4; ++L) {
        if (Q4 ? L >= nbu : L / 2 >= nbu) break;
        _mm512_storeu_ps(y + u * bpu * QK8_0 + (Q4 ? 32 * L + 16 * h : 16 * L), o[L]);
      }
    }
  }
}

}  // namespace

void fill_avx512(KernelTable& t) {
  Glue<Avx512>::fill(t, Isa::avx512);
  Glue<Avx512>::fill_q4_0x16(t);
  t.down_rows_q4_0 = down_rows<true>;
  t.down_rows_q8_0 = down_rows<false>;
  t.down_rows_q4_0_split = down_rows<true, true>;
}

}  // namespace tandem::cpu::detail
