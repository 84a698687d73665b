// NEON kernels for armv8.2-a + dotprod + fp16 (flags from cmake/TandemModule.cmake). The
// q4_0/q8_0 dots use sdot (vdotq_s32) on signed bytes: q4 nibbles are re-centred to -8..7
// first, so no offset correction is needed (unlike the x86 vpdpbusd path).
#include <arm_neon.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/fp16.h"
#include "core/quant_blocks.h"
#include "cpu/kernels/isa_kernels.h"

namespace tandem::cpu::detail {
namespace {

enum class WKind { q4_0, q8_0 };

inline uint16_t load_u16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}

// Block b of a row as two signed 16-byte halves (elements 0..15, 16..31) and its scale.
template <WKind K>
inline void load_block(const uint8_t* row, int64_t b, int8x16_t& lo, int8x16_t& hi, float& d) {
  if constexpr (K == WKind::q4_0) {
    const uint8_t* p = row + b * sizeof(block_q4_0);
    const uint8x16_t q = vld1q_u8(p + 2);
    lo = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(q, vdupq_n_u8(0x0F))), vdupq_n_s8(8));
    hi = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(q, 4)), vdupq_n_s8(8));
    d = fp16_to_fp32(load_u16(p));
  } else {
    const uint8_t* p = row + b * sizeof(block_q8_0);
    lo = vld1q_s8(reinterpret_cast<const int8_t*>(p + 2));
    hi = vld1q_s8(reinterpret_cast<const int8_t*>(p + 18));
    d = fp16_to_fp32(load_u16(p));
  }
}

template <WKind K, int NR, int NT>
inline void tile_q(int64_t nb, const uint8_t* w, size_t wrb, const uint8_t* const* x, float* y, int64_t ys) {
  float32x4_t acc[NR][NT];
  for (int r = 0; r < NR; ++r)
    for (int t = 0; t < NT; ++t) acc[r][t] = vdupq_n_f32(0.0f);
  for (int64_t b = 0; b < nb; ++b) {
    int8x16_t lo[NR], hi[NR];
    float dw[NR];
    for (int r = 0; r < NR; ++r) load_block<K>(w + r * wrb, b, lo[r], hi[r], dw[r]);
    for (int t = 0; t < NT; ++t) {
      const uint8_t* xb = x[t] + b * sizeof(block_q8_0);
      const int8x16_t x0 = vld1q_s8(reinterpret_cast<const int8_t*>(xb + 2));
      const int8x16_t x1 = vld1q_s8(reinterpret_cast<const int8_t*>(xb + 18));
      const float dx = fp16_to_fp32(load_u16(xb));
      for (int r = 0; r < NR; ++r) {
        const int32x4_t s = vdotq_s32(vdotq_s32(vdupq_n_s32(0), lo[r], x0), hi[r], x1);
        acc[r][t] = vfmaq_n_f32(acc[r][t], vcvtq_f32_s32(s), dw[r] * dx);
      }
    }
  }
  for (int r = 0; r < NR; ++r)
    for (int t = 0; t < NT; ++t) y[t * ys + r] = vaddvq_f32(acc[r][t]);
}

template <WKind K, int NT>
inline void rows_q(int64_t nb, int64_t n_rows, const uint8_t* w, size_t wrb, const uint8_t* const* x, float* y,
                   int64_t ys) {
  constexpr int NR = NT == 1 ? 4 : 2;
  int64_t r = 0;
  for (; r + NR <= n_rows; r += NR) tile_q<K, NR, NT>(nb, w + r * wrb, wrb, x, y + r, ys);
  for (; r < n_rows; ++r) tile_q<K, 1, NT>(nb, w + r * wrb, wrb, x, y + r, ys);
}

template <WKind K>
void gemm_q(int64_t k, int64_t n_rows, const void* w, size_t wrb, const void* x, size_t xrb, int64_t n_tok,
            float* y, int64_t ys) {
  const int64_t nb = k / QK8_0;
  const auto* wb = static_cast<const uint8_t*>(w);
  const auto* xb = static_cast<const uint8_t*>(x);
  const uint8_t* xp[4];
  for (int64_t t = 0; t < n_tok; t += 4) {
    const int64_t nt = std::min<int64_t>(4, n_tok - t);
    for (int i = 0; i < nt; ++i) xp[i] = xb + (t + i) * xrb;
    switch (nt) {
      case 4: rows_q<K, 4>(nb, n_rows, wb, wrb, xp, y + t * ys, ys); break;
      case 3: rows_q<K, 3>(nb, n_rows, wb, wrb, xp, y + t * ys, ys); break;
      case 2: rows_q<K, 2>(nb, n_rows, wb, wrb, xp, y + t * ys, ys); break;
      default: rows_q<K, 1>(nb, n_rows, wb, wrb, xp, y + t * ys, ys); break;
    }
  }
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
inline float32x4_t load_w(const uint8_t* row, int64_t i) {
  if constexpr (K == FKind::f16) {
    return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(reinterpret_cast<const uint16_t*>(row + 2 * i))));
  } else if constexpr (K == FKind::bf16) {
    return vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(reinterpret_cast<const uint16_t*>(row + 2 * i)), 16));
  } else {
    return vld1q_f32(reinterpret_cast<const float*>(row + 4 * i));
  }
}

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
  float32x4_t acc[NR][NT];
  for (int r = 0; r < NR; ++r)
    for (int t = 0; t < NT; ++t) acc[r][t] = vdupq_n_f32(0.0f);
  int64_t i = 0;
  for (; i + 4 <= k; i += 4) {
    float32x4_t wv[NR];
    for (int r = 0; r < NR; ++r) wv[r] = load_w<K>(w + r * wrb, i);
    for (int t = 0; t < NT; ++t) {
      const float32x4_t xv = vld1q_f32(x[t] + i);
      for (int r = 0; r < NR; ++r) acc[r][t] = vfmaq_f32(acc[r][t], wv[r], xv);
    }
  }
  for (int r = 0; r < NR; ++r) {
    for (int t = 0; t < NT; ++t) {
      float s = vaddvq_f32(acc[r][t]);
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
void gemm_f(int64_t k, int64_t n_rows, const void* w, size_t wrb, const void* x, size_t xrb, int64_t n_tok,
            float* y, int64_t ys) {
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

void quantize_row_q8_0(const float* x, void* vy, int64_t k) {
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
    y[i].d = fp32_to_fp16(d);
    for (int j = 0; j < 8; j += 2) {
      // vrndaq: round to nearest, ties away from zero = roundf.
      const int32x4_t a = vcvtq_s32_f32(vrndaq_f32(vmulq_n_f32(v[j], id)));
      const int32x4_t b = vcvtq_s32_f32(vrndaq_f32(vmulq_n_f32(v[j + 1], id)));
      const int8x8_t q = vqmovn_s16(vcombine_s16(vqmovn_s32(a), vqmovn_s32(b)));
      vst1_s8(y[i].qs + 4 * j, q);
    }
  }
}

template <WKind K>
void axpy_q(int64_t k, int64_t n_tok, const float* a, const void* row, float* y, int64_t ys) {
  const auto* rb = static_cast<const uint8_t*>(row);
  for (int64_t b = 0; b < k / QK8_0; ++b) {
    int8x16_t lo, hi;
    float d;
    load_block<K>(rb, b, lo, hi, d);
    float32x4_t w[8];
    const int16x8_t h[4] = {vmovl_s8(vget_low_s8(lo)), vmovl_s8(vget_high_s8(lo)), vmovl_s8(vget_low_s8(hi)),
                            vmovl_s8(vget_high_s8(hi))};
    for (int j = 0; j < 4; ++j) {
      w[2 * j] = vcvtq_f32_s32(vmovl_s16(vget_low_s16(h[j])));
      w[2 * j + 1] = vcvtq_f32_s32(vmovl_s16(vget_high_s16(h[j])));
    }
    for (int64_t t = 0; t < n_tok; ++t) {
      const float v = a[t] * d;
      float* yt = y + t * ys + b * 32;
      for (int j = 0; j < 8; ++j) vst1q_f32(yt + 4 * j, vfmaq_n_f32(vld1q_f32(yt + 4 * j), w[j], v));
    }
  }
}

void axpy_f32(int64_t k, int64_t n_tok, const float* a, const void* row, float* y, int64_t ys) {
  const auto* w = static_cast<const float*>(row);
  for (int64_t t = 0; t < n_tok; ++t) {
    float* yt = y + t * ys;
    int64_t i = 0;
    for (; i + 4 <= k; i += 4) vst1q_f32(yt + i, vfmaq_n_f32(vld1q_f32(yt + i), vld1q_f32(w + i), a[t]));
    for (; i < k; ++i) yt[i] += a[t] * w[i];
  }
}

// Gathered forms: NEON needs no per-call activation preparation, so a loop over the
// single-row kernels costs no more than a fused version would.
template <WKind K>
void gemm_rows_q(int64_t k, int64_t n_idx, const int32_t* idx, const void* w, size_t wrb, const void* x, size_t xrb,
                 int64_t n_tok, float* y, int64_t ys) {
  for (int64_t i = 0; i < n_idx; ++i) {
    gemm_q<K>(k, 1, static_cast<const uint8_t*>(w) + static_cast<size_t>(idx[i]) * wrb, wrb, x, xrb, n_tok, y + idx[i], ys);
  }
}

template <WKind K>
void axpy_rows_q(int64_t k, int64_t n_idx, const int32_t* idx, const void* w, size_t wrb, const float* a,
                 int64_t a_stride, int64_t n_tok, float* y, int64_t ys) {
  for (int64_t i = 0; i < n_idx; ++i) {
    const void* row = static_cast<const uint8_t*>(w) + static_cast<size_t>(idx[i]) * wrb;
    for (int64_t t = 0; t < n_tok; ++t) axpy_q<K>(k, 1, &a[t * a_stride + idx[i]], row, y + t * ys, ys);
  }
}

void rms_norm(int64_t n, const float* x, const float* w, float eps, float* y) {
  float32x4_t acc = vdupq_n_f32(0.0f);
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    const float32x4_t v = vld1q_f32(x + i);
    acc = vfmaq_f32(acc, v, v);
  }
  float sum = vaddvq_f32(acc);
  for (; i < n; ++i) sum += x[i] * x[i];
  const float scale = 1.0f / std::sqrt(sum / static_cast<float>(n) + eps);
  for (i = 0; i + 4 <= n; i += 4) {
    float32x4_t v = vmulq_n_f32(vld1q_f32(x + i), scale);
    if (w) v = vmulq_f32(v, vld1q_f32(w + i));
    vst1q_f32(y + i, v);
  }
  for (; i < n; ++i) y[i] = w ? (x[i] * scale) * w[i] : x[i] * scale;
}

// Cephes expf as in the x86 files; inputs below -87 flush to 0.
inline float32x4_t exp_ps(float32x4_t x) {
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

void soft_max(int64_t n, const float* x, const float* mask, float scale, float* y) {
  float max = -INFINITY;
  for (int64_t i = 0; i < n; ++i) {
    y[i] = x[i] * scale + (mask ? mask[i] : 0.0f);
    max = std::max(max, y[i]);
  }
  float32x4_t acc = vdupq_n_f32(0.0f);
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    const float32x4_t e = exp_ps(vsubq_f32(vld1q_f32(y + i), vdupq_n_f32(max)));
    vst1q_f32(y + i, e);
    acc = vaddq_f32(acc, e);
  }
  float sum = vaddvq_f32(acc);
  for (; i < n; ++i) {
    y[i] = std::exp(y[i] - max);
    sum += y[i];
  }
  const float inv = 1.0f / sum;
  for (i = 0; i + 4 <= n; i += 4) vst1q_f32(y + i, vmulq_n_f32(vld1q_f32(y + i), inv));
  for (; i < n; ++i) y[i] *= inv;
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
    for (; i + 4 <= half; i += 4) {
      const float32x4_t vc = vld1q_f32(c + i), vs = vld1q_f32(s + i);
      const float32x4_t x0 = vld1q_f32(xh + i), x1 = vld1q_f32(xh + i + half);
      vst1q_f32(xh + i, vsubq_f32(vmulq_f32(x0, vc), vmulq_f32(x1, vs)));
      vst1q_f32(xh + i + half, vaddq_f32(vmulq_f32(x0, vs), vmulq_f32(x1, vc)));
    }
    for (; i < half; ++i) {
      const float x0 = xh[i], x1 = xh[i + half];
      xh[i] = x0 * c[i] - x1 * s[i];
      xh[i + half] = x0 * s[i] + x1 * c[i];
    }
  }
}

}  // namespace

void fill_neon(KernelTable& t) {
  t.isa = Isa::neon;
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
