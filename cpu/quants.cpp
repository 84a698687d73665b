// Scalar quantize/dequantize rows, transcribed from ggml's reference C code
// (ggml/src/ggml-quants.c: quantize_row_q4_0_ref, quantize_row_q8_0_ref, dequantize_row_*).
// The order of float operations follows ggml's exactly (e.g. (d * sc) * q for q6_K), because
// bit-exactness with ggml is the contract: every fast kernel is tested against these.
#include "cpu/quants.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/fp16.h"
#include "core/quant_blocks.h"

namespace tandem::cpu {
namespace {

// ggml writes `(int8_t)(x0 + 8.5f)`: a truncating float->int8 conversion. For finite inputs
// the value lies in [0.5, 16.5] and the cast is exact truncation; non-finite inputs (which
// ggml leaves undefined) are pinned so bad data cannot trigger undefined behaviour here.
inline int trunc_to_i8(float v) {
  if (!(v > -129.0f)) return v != v ? 0 : -128;  // NaN or very negative
  if (v >= 128.0f) return 127;
  return static_cast<int8_t>(v);
}

// roundf() to int8 for q8_0; |x*id| <= 127 for finite data, clamp keeps NaN/inf defined.
inline int8_t round_to_i8(float v) {
  if (v != v) return 0;
  const float r = std::roundf(v);
  if (r > 127.0f) return 127;
  if (r < -128.0f) return -128;
  return static_cast<int8_t>(r);
}

// ggml-quants.c get_scale_min_k4: unpacks the 6-bit scale and min of sub-block j (0..7).
inline void get_scale_min_k4(int j, const uint8_t* q, uint8_t* d, uint8_t* m) {
  if (j < 4) {
    *d = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *d = static_cast<uint8_t>((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
    *m = static_cast<uint8_t>((q[j + 4] >> 4) | ((q[j - 0] >> 6) << 4));
  }
}

}  // namespace

void quantize_row_q8_0(const float* x, void* dst, int64_t k) {
  auto* y = static_cast<block_q8_0*>(dst);
  const int64_t nb = k / QK8_0;
  for (int64_t i = 0; i < nb; ++i) {
    float amax = 0.0f;
    for (int j = 0; j < QK8_0; ++j) {
      const float a = std::fabs(x[i * QK8_0 + j]);
      amax = amax > a ? amax : a;  // ggml's MAX(amax, fabsf(v))
    }
    const float d = amax / ((1 << 7) - 1);
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[i].d = fp32_to_fp16(d);
    for (int j = 0; j < QK8_0; ++j) y[i].qs[j] = round_to_i8(x[i * QK8_0 + j] * id);
  }
}

void quantize_row_q4_0(const float* x, void* dst, int64_t k) {
  auto* y = static_cast<block_q4_0*>(dst);
  constexpr int qk = QK4_0;
  const int64_t nb = k / qk;
  for (int64_t i = 0; i < nb; ++i) {
    // The signed value of the first element with the largest magnitude (strict <, as ggml).
    float amax = 0.0f;
    float max = 0.0f;
    for (int j = 0; j < qk; ++j) {
      const float v = x[i * qk + j];
      if (amax < std::fabs(v)) {
        amax = std::fabs(v);
        max = v;
      }
    }
    const float d = max / -8;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[i].d = fp32_to_fp16(d);
    for (int j = 0; j < qk / 2; ++j) {
      const float x0 = x[i * qk + 0 + j] * id;
      const float x1 = x[i * qk + qk / 2 + j] * id;
      const int xi0 = std::min(15, trunc_to_i8(x0 + 8.5f));
      const int xi1 = std::min(15, trunc_to_i8(x1 + 8.5f));
      y[i].qs[j] = static_cast<uint8_t>((xi0 & 0xFF) | ((xi1 & 0xFF) << 4));
    }
  }
}

void dequantize_row_q8_0(const void* src, float* y, int64_t k) {
  const auto* x = static_cast<const block_q8_0*>(src);
  const int64_t nb = k / QK8_0;
  for (int64_t i = 0; i < nb; ++i) {
    const float d = fp16_to_fp32(x[i].d);
    for (int j = 0; j < QK8_0; ++j) y[i * QK8_0 + j] = x[i].qs[j] * d;
  }
}

void dequantize_row_q4_0(const void* src, float* y, int64_t k) {
  const auto* x = static_cast<const block_q4_0*>(src);
  constexpr int qk = QK4_0;
  const int64_t nb = k / qk;
  for (int64_t i = 0; i < nb; ++i) {
    const float d = fp16_to_fp32(x[i].d);
    for (int j = 0; j < qk / 2; ++j) {
      const int x0 = (x[i].qs[j] & 0x0F) - 8;
      const int x1 = (x[i].qs[j] >> 4) - 8;
      y[i * qk + j + 0] = static_cast<float>(x0) * d;
      y[i * qk + j + qk / 2] = static_cast<float>(x1) * d;
    }
  }
}

void repack_row_q4_0x16(const void* src, void* dst, int64_t k) {
  const auto* x = static_cast<const block_q4_0*>(src);
  auto* y = static_cast<uint8_t*>(dst);
  for (int64_t u = 0; u < k / k_q4_0x16_elems; ++u, x += 16, y += 16 * sizeof(block_q4_0)) {
    for (int l = 0; l < 16; ++l) {
      const block_q4_0& b = x[q4_0x16_block(l)];
      for (int q = 0; q < 4; ++q)
        for (int i = 0; i < 4; ++i) y[64 * q + 4 * l + i] = b.qs[4 * q + i];
      std::memcpy(y + 256 + 2 * l, &b.d, 2);
    }
  }
}

void unpack_row_q4_0x16(const void* src, void* dst, int64_t k) {
  const auto* x = static_cast<const uint8_t*>(src);
  auto* y = static_cast<block_q4_0*>(dst);
  for (int64_t u = 0; u < k / k_q4_0x16_elems; ++u, x += 16 * sizeof(block_q4_0), y += 16) {
    for (int l = 0; l < 16; ++l) {
      block_q4_0& b = y[q4_0x16_block(l)];
      for (int q = 0; q < 4; ++q)
        for (int i = 0; i < 4; ++i) b.qs[4 * q + i] = x[64 * q + 4 * l + i];
      std::memcpy(&b.d, x + 256 + 2 * l, 2);
    }
  }
}

void repack_row_q4_0_split(const void* src, void* dst, int64_t k) {
  const auto* x = static_cast<const block_q4_0*>(src);
  auto* y = static_cast<uint8_t*>(dst);
  const int64_t nb = k / QK4_0;
  for (int64_t b = 0; b < nb; ++b) {
    std::memcpy(y + 16 * b, x[b].qs, 16);
    std::memcpy(y + 16 * nb + 2 * b, &x[b].d, 2);
  }
}

void unpack_row_q4_0_split(const void* src, void* dst, int64_t k) {
  const auto* x = static_cast<const uint8_t*>(src);
  auto* y = static_cast<block_q4_0*>(dst);
  const int64_t nb = k / QK4_0;
  for (int64_t b = 0; b < nb; ++b) {
    std::memcpy(y[b].qs, x + 16 * b, 16);
    std::memcpy(&y[b].d, x + 16 * nb + 2 * b, 2);
  }
}

void dequantize_row_q4_K(const void* src, float* y, int64_t k) {
  const auto* x = static_cast<const block_q4_K*>(src);
  const int64_t nb = k / QK_K;
  for (int64_t i = 0; i < nb; ++i) {
    const uint8_t* q = x[i].qs;
    const float d = fp16_to_fp32(x[i].d);
    const float min = fp16_to_fp32(x[i].dmin);
    int is = 0;
    uint8_t sc = 0;
    uint8_t m = 0;
    for (int j = 0; j < QK_K; j += 64) {
      get_scale_min_k4(is + 0, x[i].scales, &sc, &m);
      const float d1 = d * sc;
      const float m1 = min * m;
      get_scale_min_k4(is + 1, x[i].scales, &sc, &m);
      const float d2 = d * sc;
      const float m2 = min * m;
      for (int l = 0; l < 32; ++l) *y++ = d1 * static_cast<float>(q[l] & 0xF) - m1;
      for (int l = 0; l < 32; ++l) *y++ = d2 * static_cast<float>(q[l] >> 4) - m2;
      q += 32;
      is += 2;
    }
  }
}

void dequantize_row_q6_K(const void* src, float* y, int64_t k) {
  const auto* x = static_cast<const block_q6_K*>(src);
  const int64_t nb = k / QK_K;
  for (int64_t i = 0; i < nb; ++i) {
    const float d = fp16_to_fp32(x[i].d);
    const uint8_t* ql = x[i].ql;
    const uint8_t* qh = x[i].qh;
    const int8_t* sc = x[i].scales;
    for (int n = 0; n < QK_K; n += 128) {
      for (int l = 0; l < 32; ++l) {
        const int is = l / 16;
        const int q1 = ((ql[l + 0] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
        const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
        const int q3 = ((ql[l + 0] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
        const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
        y[l + 0] = d * sc[is + 0] * static_cast<float>(q1);
        y[l + 32] = d * sc[is + 2] * static_cast<float>(q2);
        y[l + 64] = d * sc[is + 4] * static_cast<float>(q3);
        y[l + 96] = d * sc[is + 6] * static_cast<float>(q4);
      }
      y += 128;
      ql += 64;
      qh += 32;
      sc += 8;
    }
  }
}

void convert_row_f16_to_f32(const void* src, float* y, int64_t k) {
  const auto* x = static_cast<const uint8_t*>(src);
  for (int64_t i = 0; i < k; ++i) {
    uint16_t h;
    std::memcpy(&h, x + 2 * i, 2);  // rows inside a GGUF mapping need not be 2-aligned
    y[i] = fp16_to_fp32(h);
  }
}

void convert_row_bf16_to_f32(const void* src, float* y, int64_t k) {
  const auto* x = static_cast<const uint8_t*>(src);
  for (int64_t i = 0; i < k; ++i) {
    uint16_t h;
    std::memcpy(&h, x + 2 * i, 2);
    y[i] = bf16_to_fp32(h);
  }
}

void convert_row_f32_to_f16(const float* x, void* dst, int64_t k) {
  auto* y = static_cast<uint8_t*>(dst);
  for (int64_t i = 0; i < k; ++i) {
    const uint16_t h = fp32_to_fp16(x[i]);
    std::memcpy(y + 2 * i, &h, 2);
  }
}

void convert_row_f32_to_bf16(const float* x, void* dst, int64_t k) {
  auto* y = static_cast<uint8_t*>(dst);
  for (int64_t i = 0; i < k; ++i) {
    const uint16_t h = fp32_to_bf16(x[i]);
    std::memcpy(y + 2 * i, &h, 2);
  }
}

void dequantize_row(DType dtype, const void* src, float* y, int64_t k) {
  switch (dtype) {
    case DType::f32: std::memcpy(y, src, static_cast<size_t>(k) * sizeof(float)); return;
    case DType::f16: convert_row_f16_to_f32(src, y, k); return;
    case DType::bf16: convert_row_bf16_to_f32(src, y, k); return;
    case DType::q8_0: dequantize_row_q8_0(src, y, k); return;
    case DType::q4_0: dequantize_row_q4_0(src, y, k); return;
    case DType::q4_K: dequantize_row_q4_K(src, y, k); return;
    case DType::q6_K: dequantize_row_q6_K(src, y, k); return;
  }
}

Status quantize_row(DType dtype, const float* x, void* dst, int64_t k) {
  const int64_t bs = dtype_block_size(dtype);
  if (k < 0 || k % bs != 0) {
    return make_error(ErrorCode::invalid_argument, "quantize_row {}: row length {} is not a multiple of {}",
                      dtype_name(dtype), k, bs);
  }
  switch (dtype) {
    case DType::f32: std::memcpy(dst, x, static_cast<size_t>(k) * sizeof(float)); return {};
    case DType::f16: convert_row_f32_to_f16(x, dst, k); return {};
    case DType::bf16: convert_row_f32_to_bf16(x, dst, k); return {};
    case DType::q8_0: quantize_row_q8_0(x, dst, k); return {};
    case DType::q4_0: quantize_row_q4_0(x, dst, k); return {};
    case DType::q4_K:
    case DType::q6_K: break;
  }
  return make_error(ErrorCode::unsupported, "quantize_row: Tandem does not quantize to {} (it only reads it)",
                    dtype_name(dtype));
}

}  // namespace tandem::cpu
