// NEON kernels for armv8.2-a + dotprod + fp16 (flags from cmake/TandemModule.cmake): the
// intrinsics behind Glue<Neon> (cpu/kernels/glue.h). The q4_0/q8_0 dots use sdot
// (vdotq_s32) on signed bytes: q4 nibbles are re-centred to -8..7 first, so no offset
// correction is needed (unlike the x86 vpdpbusd path) and the prepared activation row is the
// q8_0 row itself, copied to aligned storage.
#include <arm_neon.h>

#include <cmath>

#include "cpu/kernels/glue.h"

namespace tandem::cpu::detail {
namespace {

struct Neon {
  struct alignas(16) Prep {
    int8_t qs[32];
    float dx;
  };
  template <WKind>
  using PrepFor = Prep;

  template <WKind>
  static int64_t prep_units(int64_t nb) {
    return nb;
  }

  template <WKind>
  static void prepare(const block_q8_0* x, int64_t nb, Prep* out, bool /*single*/) {
    for (int64_t b = 0; b < nb; ++b) {
      vst1q_s8(out[b].qs, vld1q_s8(x[b].qs));
      vst1q_s8(out[b].qs + 16, vld1q_s8(x[b].qs + 16));
      out[b].dx = f16_to_f32(x[b].d);
    }
  }

  static float f16_to_f32(uint16_t h) {
    return vgetq_lane_f32(vcvt_f32_f16(vreinterpret_f16_u16(vdup_n_u16(h))), 0);
  }

  using V = float32x4_t;
  static constexpr int64_t k_lanes = 4;
  static float32x4_t load(const float* p) { return vld1q_f32(p); }
  static void store(float* p, float32x4_t v) { vst1q_f32(p, v); }
  static float32x4_t set1(float f) { return vdupq_n_f32(f); }
  static float32x4_t add(float32x4_t a, float32x4_t b) { return vaddq_f32(a, b); }
  static float32x4_t sub(float32x4_t a, float32x4_t b) { return vsubq_f32(a, b); }
  static float32x4_t mul(float32x4_t a, float32x4_t b) { return vmulq_f32(a, b); }
  static float32x4_t fma(float32x4_t a, float32x4_t b, float32x4_t c) { return vfmaq_f32(c, a, b); }
  static float hsum(float32x4_t v) { return vaddvq_f32(v); }

  // Block b of a row as two signed 16-byte halves (elements 0..15, 16..31) and its scale.
  template <WKind K>
  static void load_block(const uint8_t* row, int64_t b, int8x16_t& lo, int8x16_t& hi, float& d) {
    const uint8_t* p = row + b * k_block_bytes<K>;
    if constexpr (K == WKind::q4_0) {
      const uint8x16_t q = vld1q_u8(p + 2);
      lo = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(q, vdupq_n_u8(0x0F))), vdupq_n_s8(8));
      hi = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(q, 4)), vdupq_n_s8(8));
    } else {
      lo = vld1q_s8(reinterpret_cast<const int8_t*>(p + 2));
      hi = vld1q_s8(reinterpret_cast<const int8_t*>(p + 18));
    }
    d = f16_to_f32(load_u16(p));
  }

  static constexpr int k_tok_tile = 4;
  static constexpr int q_rows(int nt) { return nt == 1 ? 4 : 2; }

  template <WKind K, int NR, int NT>
  static void dot_q(int64_t nb, const uint8_t* const* w, const uint8_t* const* pf, const Prep* const* xp,
                    float (&out)[NR][NT]) {
    float32x4_t acc[NR][NT];
    for (int r = 0; r < NR; ++r)
      for (int t = 0; t < NT; ++t) acc[r][t] = vdupq_n_f32(0.0f);
    for (int64_t b = 0; b < nb; ++b) {
      int8x16_t lo[NR], hi[NR];
      float dw[NR];
      for (int r = 0; r < NR; ++r) {
        if (pf[r]) __builtin_prefetch(pf[r] + b * k_block_bytes<K>);
        load_block<K>(w[r], b, lo[r], hi[r], dw[r]);
      }
      for (int t = 0; t < NT; ++t) {
        const Prep& x = xp[t][b];
        const int8x16_t x0 = vld1q_s8(x.qs), x1 = vld1q_s8(x.qs + 16);
        for (int r = 0; r < NR; ++r) {
          const int32x4_t s = vdotq_s32(vdotq_s32(vdupq_n_s32(0), lo[r], x0), hi[r], x1);
          acc[r][t] = vfmaq_n_f32(acc[r][t], vcvtq_f32_s32(s), dw[r] * x.dx);
        }
      }
    }
    for (int r = 0; r < NR; ++r)
      for (int t = 0; t < NT; ++t) out[r][t] = vaddvq_f32(acc[r][t]);
  }

  static constexpr int f_rows(int nt) { return nt == 1 ? 4 : 2; }

  template <FKind K>
  static float32x4_t load_w(const uint8_t* row, int64_t i) {
    if constexpr (K == FKind::f16) {
      return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(reinterpret_cast<const uint16_t*>(row + 2 * i))));
    } else if constexpr (K == FKind::bf16) {
      return vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(reinterpret_cast<const uint16_t*>(row + 2 * i)), 16));
    } else {
      return vld1q_f32(reinterpret_cast<const float*>(row + 4 * i));
    }
  }

  // Block b of a q row as 32 floats (scale not applied) and its scale.
  template <WKind K>
  static void dequant_block(const uint8_t* row, int64_t b, float32x4_t (&w)[8], float& d) {
    int8x16_t lo, hi;
    load_block<K>(row, b, lo, hi, d);
    const int16x8_t h[4] = {vmovl_s8(vget_low_s8(lo)), vmovl_s8(vget_high_s8(lo)), vmovl_s8(vget_low_s8(hi)),
                            vmovl_s8(vget_high_s8(hi))};
    for (int j = 0; j < 4; ++j) {
      w[2 * j] = vcvtq_f32_s32(vmovl_s16(vget_low_s16(h[j])));
      w[2 * j + 1] = vcvtq_f32_s32(vmovl_s16(vget_high_s16(h[j])));
    }
  }


  static void quantize_row_q8_0(const float* x, void* vy, int64_t k) {
    auto* y = static_cast<block_q8_0*>(vy);
    for (int64_t i = 0; i < k / QK8_0; ++i) {
      float32x4_t v[8];
      float32x4_t m = vdupq_n_f32(0.0f);
      for (int j = 0; j < 8; ++j) {
        v[j] = vld1q_f32(x + i * 32 + 4 * j);
        m = vmaxq_f32(m, vabsq_f32(v[j]));
      }
      const float amax = vmaxvq_f32(m);
      const float d = amax / 127.0f;
      const float id = d != 0.0f ? 1.0f / d : 0.0f;
      // vcvt_f16_f32 rounds to nearest even, as ggml's reference conversion.
      y[i].d = vget_lane_u16(vreinterpret_u16_f16(vcvt_f16_f32(vdupq_n_f32(d))), 0);
      for (int j = 0; j < 8; j += 2) {
        // vrndaq: round to nearest, ties away from zero = roundf.
        const int32x4_t a = vcvtq_s32_f32(vrndaq_f32(vmulq_n_f32(v[j], id)));
        const int32x4_t b = vcvtq_s32_f32(vrndaq_f32(vmulq_n_f32(v[j + 1], id)));
        const int8x8_t q = vqmovn_s16(vcombine_s16(vqmovn_s32(a), vqmovn_s32(b)));
        vst1_s8(y[i].qs + 4 * j, q);
      }
    }
  }

  // Cephes expf as in the x86 files; inputs below -87 flush to 0.
  static float32x4_t exp_ps(float32x4_t x) {
    const uint32x4_t tiny = vcltq_f32(x, vdupq_n_f32(-87.0f));
    x = vmaxq_f32(vminq_f32(x, vdupq_n_f32(88.0f)), vdupq_n_f32(-87.0f));
    const float32x4_t n = vrndnq_f32(vmulq_n_f32(x, 1.44269504088896341f));
    float32x4_t r = vfmsq_f32(x, n, vdupq_n_f32(0.693359375f));
    r = vfmsq_f32(r, n, vdupq_n_f32(-2.12194440e-4f));
    float32x4_t p = vdupq_n_f32(1.9875691500e-4f);
    p = vfmaq_f32(vdupq_n_f32(1.3981999507e-3f), p, r);
    p = vfmaq_f32(vdupq_n_f32(8.3334519073e-3f), p, r);
    p = vfmaq_f32(vdupq_n_f32(4.1665795894e-2f), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.6666665459e-1f), p, r);
    p = vfmaq_f32(vdupq_n_f32(5.0000001201e-1f), p, r);
    p = vfmaq_f32(vaddq_f32(r, vdupq_n_f32(1.0f)), p, vmulq_f32(r, r));
    const int32x4_t e = vshlq_n_s32(vaddq_s32(vcvtq_s32_f32(n), vdupq_n_s32(127)), 23);
    const float32x4_t v = vmulq_f32(p, vreinterpretq_f32_s32(e));
    return vreinterpretq_f32_u32(vbicq_u32(vreinterpretq_u32_f32(v), tiny));
  }

};

// ---- down_rows (kernel_table.h DownRowsFn): the transposed down with 8-bit coefficients ----
// As the x86 files', one 32-column block at a time. Rows go in groups of 4; two zip stages
// interleave a group's 4 rows so that each 32-bit lane holds one column's 4 rows' weights
// (lanes stay in column order: vector m = columns 4m .. 4m + 3), and one sdot adds the 4
// products against the group's 4 coefficient bytes (repeated in every lane). Weights are
// signed (q4_0 nibbles re-centred to -8..7), so the integer sums need no offset correction.

// Interleave 4 rows' 16 bytes: v[m] lane j = column 4m + j of rows 0..3 (byte r = row r).
inline void zip4(const uint8x16_t (&R)[4], uint8x16_t (&v)[4]) {
  const uint16x8_t t0 = vreinterpretq_u16_u8(vzip1q_u8(R[0], R[1])), t1 = vreinterpretq_u16_u8(vzip2q_u8(R[0], R[1]));
  const uint16x8_t t2 = vreinterpretq_u16_u8(vzip1q_u8(R[2], R[3])), t3 = vreinterpretq_u16_u8(vzip2q_u8(R[2], R[3]));
  v[0] = vreinterpretq_u8_u16(vzip1q_u16(t0, t2));
  v[1] = vreinterpretq_u8_u16(vzip2q_u16(t0, t2));
  v[2] = vreinterpretq_u8_u16(vzip1q_u16(t1, t3));
  v[3] = vreinterpretq_u8_u16(vzip2q_u16(t1, t3));
}

template <bool Q4>
void down_rows(int64_t k, int64_t n_idx, const int32_t* idx, const void* w, size_t wrb, const float* a, float* y) {
  if (n_idx == 0) {
    std::fill_n(y, k, 0.0f);
    return;
  }
  constexpr int64_t bs = Q4 ? 18 : 34;
  const int64_t nb = k / QK8_0, ng = (n_idx + 3) / 4;
  const DownRowGroups grp(n_idx, idx, w, wrb, a);
  const uint8_t* const* rows = grp.rows;
  float32x4_t av[k_down_rows_max / 4];  // group g: lane r = a of its row r (0 for padding)
  for (int64_t g = 0; g < ng; ++g) av[g] = vld1q_f32(grp.a + 4 * g);
  // Low byte of each int32 lane, repeated: the group's 4 coefficients in every lane.
  static constexpr uint8_t k_pack[16] = {0, 4, 8, 12, 0, 4, 8, 12, 0, 4, 8, 12, 0, 4, 8, 12};
  const uint8x16_t pack = vld1q_u8(k_pack), m4 = vdupq_n_u8(0x0F);
  const int8x16_t eight = vdupq_n_s8(8);
  float32x4_t cbuf[k_down_rows_max / 4];
  for (int64_t b = 0; b < nb; ++b) {
    const int64_t off = b * bs;
    // Coefficients c = a * d per group (lane = row), and the block's max |c| over all rows.
    float32x4_t amax = vdupq_n_f32(0.0f);
    for (int64_t g = 0; g < ng; ++g) {
      uint16_t h[4];
      for (int r = 0; r < 4; ++r) h[r] = load_u16(rows[4 * g + r] + off);
      const float32x4_t c = vmulq_f32(vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(h))), av[g]);
      cbuf[g] = c;
      amax = vmaxq_f32(amax, vabsq_f32(c));
    }
    const float s = vmaxvq_f32(amax) / 127.0f;
    const float id = s != 0.0f ? 1.0f / s : 0.0f;
    int32x4_t acc[8];  // acc[m]: columns 4m .. 4m + 3
    for (auto& v : acc) v = vdupq_n_s32(0);
    for (int64_t g = 0; g < ng; ++g) {
      const int32x4_t q = vcvtnq_s32_f32(vmulq_n_f32(cbuf[g], id));  // nearest, ties to even
      const int8x16_t coef = vreinterpretq_s8_u8(vqtbl1q_u8(vreinterpretq_u8_s32(q), pack));
      uint8x16_t R[4], v[4];
      for (int r = 0; r < 4; ++r) R[r] = vld1q_u8(rows[4 * g + r] + off + 2);
      zip4(R, v);
      if constexpr (Q4) {
        // Low nibbles: columns 0..15, high: 16..31.
        for (int m = 0; m < 4; ++m) {
          const int8x16_t lo = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(v[m], m4)), eight);
          const int8x16_t hi = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(v[m], 4)), eight);
          acc[m] = vdotq_s32(acc[m], lo, coef);
          acc[4 + m] = vdotq_s32(acc[4 + m], hi, coef);
        }
      } else {
        for (int m = 0; m < 4; ++m) acc[m] = vdotq_s32(acc[m], vreinterpretq_s8_u8(v[m]), coef);
        for (int r = 0; r < 4; ++r) R[r] = vld1q_u8(rows[4 * g + r] + off + 18);
        zip4(R, v);
        for (int m = 0; m < 4; ++m) acc[4 + m] = vdotq_s32(acc[4 + m], vreinterpretq_s8_u8(v[m]), coef);
      }
    }
    for (int m = 0; m < 8; ++m) vst1q_f32(y + b * QK8_0 + 4 * m, vmulq_n_f32(vcvtq_f32_s32(acc[m]), s));
  }
}

}  // namespace

void fill_neon(KernelTable& t) {
  Glue<Neon>::fill(t, Isa::neon);
  t.down_rows_q4_0 = down_rows<true>;
  t.down_rows_q8_0 = down_rows<false>;
}

}  // namespace tandem::cpu::detail
