// The scalar kernels: the plain reference for every KernelTable entry. Written as ggml's
// generic C code (ggml-quants.c, ggml-cpu/quants.c, vec.cpp, ops.cpp) so that it is the spec,
// not a fast path: double accumulation where ggml uses ggml_float.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "core/fp16.h"
#include "core/quant_blocks.h"
#include "cpu/kernels/isa_kernels.h"
#include "cpu/quants.h"

namespace tandem::cpu::detail {
namespace {

void quantize_row_q8_0(const float* x, void* vy, int64_t k) {
  auto* y = static_cast<block_q8_0*>(vy);
  for (int64_t i = 0; i < k / QK8_0; ++i) {
    float amax = 0.0f;
    for (int j = 0; j < QK8_0; ++j) amax = std::max(amax, std::fabs(x[i * QK8_0 + j]));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[i].d = fp32_to_fp16(d);
    for (int j = 0; j < QK8_0; ++j) {
      y[i].qs[j] = static_cast<int8_t>(std::round(x[i * QK8_0 + j] * id));
    }
  }
}

float vec_dot_q4_0_q8_0(int64_t k, const void* vw, const void* vx) {
  const auto* w = static_cast<const block_q4_0*>(vw);
  const auto* x = static_cast<const block_q8_0*>(vx);
  float sumf = 0.0f;
  for (int64_t ib = 0; ib < k / QK4_0; ++ib) {
    int sumi0 = 0, sumi1 = 0;
    for (int j = 0; j < QK4_0 / 2; ++j) {
      sumi0 += ((w[ib].qs[j] & 0x0F) - 8) * x[ib].qs[j];
      sumi1 += ((w[ib].qs[j] >> 4) - 8) * x[ib].qs[j + QK4_0 / 2];
    }
    sumf += static_cast<float>(sumi0 + sumi1) * fp16_to_fp32(w[ib].d) * fp16_to_fp32(x[ib].d);
  }
  return sumf;
}

float vec_dot_q8_0_q8_0(int64_t k, const void* vw, const void* vx) {
  const auto* w = static_cast<const block_q8_0*>(vw);
  const auto* x = static_cast<const block_q8_0*>(vx);
  float sumf = 0.0f;
  for (int64_t ib = 0; ib < k / QK8_0; ++ib) {
    int sumi = 0;
    for (int j = 0; j < QK8_0; ++j) sumi += w[ib].qs[j] * x[ib].qs[j];
    sumf += static_cast<float>(sumi) * (fp16_to_fp32(w[ib].d) * fp16_to_fp32(x[ib].d));
  }
  return sumf;
}

// Half-precision rows may sit at any byte address: read through memcpy.
uint16_t load_u16(const void* p, int64_t i) {
  uint16_t v;
  std::memcpy(&v, static_cast<const uint8_t*>(p) + 2 * i, 2);
  return v;
}

float vec_dot_f16_f32(int64_t k, const void* w, const float* x) {
  double sum = 0.0;
  for (int64_t i = 0; i < k; ++i) sum += static_cast<double>(fp16_to_fp32(load_u16(w, i)) * x[i]);
  return static_cast<float>(sum);
}

float vec_dot_bf16_f32(int64_t k, const void* w, const float* x) {
  double sum = 0.0;
  for (int64_t i = 0; i < k; ++i) sum += static_cast<double>(bf16_to_fp32(load_u16(w, i)) * x[i]);
  return static_cast<float>(sum);
}

// Weight rows may sit at any byte offset (kernel_table.h): read them through memcpy.
float load_f32(const void* p, int64_t i) {
  float v;
  std::memcpy(&v, static_cast<const uint8_t*>(p) + 4 * i, 4);
  return v;
}

float vec_dot_f32(int64_t k, const float* w, const float* x) {
  double sum = 0.0;
  for (int64_t i = 0; i < k; ++i) sum += static_cast<double>(load_f32(w, i) * x[i]);
  return static_cast<float>(sum);
}

template <class Dot, class X>
void gemm_with(Dot dot, int64_t k, int64_t n_rows, const void* w, size_t w_row_bytes,
               const void* x, size_t x_row_bytes, int64_t n_tok, float* y, int64_t y_stride) {
  const auto* wb = static_cast<const uint8_t*>(w);
  const auto* xb = static_cast<const uint8_t*>(x);
  for (int64_t t = 0; t < n_tok; ++t) {
    for (int64_t r = 0; r < n_rows; ++r) {
      y[t * y_stride + r] = dot(k, wb + static_cast<size_t>(r) * w_row_bytes,
                                reinterpret_cast<const X*>(xb + static_cast<size_t>(t) * x_row_bytes));
    }
  }
}

#define TANDEM_SCALAR_GEMM(name, dot, X)                                                      \
  void gemm_##name(int64_t k, int64_t n_rows, const void* w, size_t wrb, const void* x,       \
                   size_t xrb, int64_t n_tok, float* y, int64_t ys) {                         \
    gemm_with<decltype(&dot), X>(dot, k, n_rows, w, wrb, x, xrb, n_tok, y, ys);               \
  }                                                                                           \
  void gemv_##name(int64_t k, int64_t n_rows, const void* w, size_t wrb, const void* x,       \
                   float* y) {                                                                \
    gemm_with<decltype(&dot), X>(dot, k, n_rows, w, wrb, x, 0, 1, y, 0);                      \
  }

float dot_f32_v(int64_t k, const void* w, const float* x) {
  return vec_dot_f32(k, static_cast<const float*>(w), x);
}

TANDEM_SCALAR_GEMM(q4_0_q8_0, vec_dot_q4_0_q8_0, void)
TANDEM_SCALAR_GEMM(q8_0_q8_0, vec_dot_q8_0_q8_0, void)
TANDEM_SCALAR_GEMM(f16_f32, vec_dot_f16_f32, float)
TANDEM_SCALAR_GEMM(bf16_f32, vec_dot_bf16_f32, float)
TANDEM_SCALAR_GEMM(f32, dot_f32_v, float)
#undef TANDEM_SCALAR_GEMM

void axpy_q4_0_f32(int64_t k, int64_t n_tok, const float* a, const void* row, float* y,
                   int64_t y_stride) {
  const auto* w = static_cast<const block_q4_0*>(row);
  for (int64_t t = 0; t < n_tok; ++t) {
    float* yt = y + t * y_stride;
    for (int64_t ib = 0; ib < k / QK4_0; ++ib) {
      const float v = a[t] * fp16_to_fp32(w[ib].d);
      for (int j = 0; j < QK4_0 / 2; ++j) {
        yt[ib * QK4_0 + j] += v * static_cast<float>((w[ib].qs[j] & 0x0F) - 8);
        yt[ib * QK4_0 + j + QK4_0 / 2] += v * static_cast<float>((w[ib].qs[j] >> 4) - 8);
      }
    }
  }
}

void axpy_q8_0_f32(int64_t k, int64_t n_tok, const float* a, const void* row, float* y,
                   int64_t y_stride) {
  const auto* w = static_cast<const block_q8_0*>(row);
  for (int64_t t = 0; t < n_tok; ++t) {
    float* yt = y + t * y_stride;
    for (int64_t ib = 0; ib < k / QK8_0; ++ib) {
      const float v = a[t] * fp16_to_fp32(w[ib].d);
      for (int j = 0; j < QK8_0; ++j) yt[ib * QK8_0 + j] += v * static_cast<float>(w[ib].qs[j]);
    }
  }
}

void axpy_f32(int64_t k, int64_t n_tok, const float* a, const void* row, float* y,
              int64_t y_stride) {
  for (int64_t t = 0; t < n_tok; ++t) {
    for (int64_t i = 0; i < k; ++i) y[t * y_stride + i] += a[t] * load_f32(row, i);
  }
}

// q4_0x16 rows: each unpacked to q4_0 (cpu/quants.h), then the q4_0 kernel.
void gemm_q4_0x16_q8_0(int64_t k, int64_t n_rows, const void* w, size_t wrb, const void* x, size_t xrb, int64_t n_tok,
                       float* y, int64_t ys) {
  std::vector<uint8_t> row(static_cast<size_t>(k / QK4_0) * sizeof(block_q4_0));
  for (int64_t r = 0; r < n_rows; ++r) {
    unpack_row_q4_0x16(static_cast<const uint8_t*>(w) + static_cast<size_t>(r) * wrb, row.data(), k);
    gemm_q4_0_q8_0(k, 1, row.data(), 0, x, xrb, n_tok, y + r, ys);
  }
}
void gemv_q4_0x16_q8_0(int64_t k, int64_t n_rows, const void* w, size_t wrb, const void* x, float* y) {
  gemm_q4_0x16_q8_0(k, n_rows, w, wrb, x, 0, 1, y, 0);
}

template <GemmFn Gemm>
void gemm_rows(int64_t k, int64_t n_idx, const int32_t* idx, const void* w, size_t wrb, const void* x, size_t xrb,
               int64_t n_tok, float* y, int64_t ys) {
  for (int64_t i = 0; i < n_idx; ++i) {
    Gemm(k, 1, static_cast<const uint8_t*>(w) + static_cast<size_t>(idx[i]) * wrb, wrb, x, xrb, n_tok, y + idx[i], ys);
  }
}

template <GemmFn Gemm>
void gemm_pairs(int64_t k, int64_t n_idx, const int32_t* idx, const int32_t* tok_off, const int32_t* tok,
                const void* w, size_t wrb, const void* x, size_t xrb, int64_t /*n_tok*/, float* y, int64_t ys) {
  for (int64_t i = 0; i < n_idx; ++i) {
    const auto* row = static_cast<const uint8_t*>(w) + static_cast<size_t>(idx[i]) * wrb;
    for (int32_t j = tok_off[i]; j < tok_off[i + 1]; ++j) {
      Gemm(k, 1, row, wrb, static_cast<const uint8_t*>(x) + static_cast<size_t>(tok[j]) * xrb, xrb, 1,
           y + tok[j] * ys + idx[i], ys);
    }
  }
}

void rms_norm(int64_t n, const float* x, const float* w, float eps, float* y) {
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(x[i] * x[i]);
  const float mean = static_cast<float>(sum / static_cast<double>(n));
  const float scale = 1.0f / std::sqrt(mean + eps);
  for (int64_t i = 0; i < n; ++i) y[i] = w ? (x[i] * scale) * w[i] : x[i] * scale;
}

void soft_max(int64_t n, const float* x, const float* mask, float scale, float* y) {
  float max = -std::numeric_limits<float>::infinity();
  for (int64_t i = 0; i < n; ++i) {
    y[i] = x[i] * scale + (mask ? mask[i] : 0.0f);
    max = std::max(max, y[i]);
  }
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    y[i] = std::exp(y[i] - max);
    sum += static_cast<double>(y[i]);
  }
  const float inv = static_cast<float>(1.0 / sum);
  for (int64_t i = 0; i < n; ++i) y[i] *= inv;
}

void rope_neox(float* x, int64_t n_head, int64_t head_dim, int64_t n_rot, int64_t pos,
               float freq_base) {
  const float theta_scale = std::pow(freq_base, -2.0f / static_cast<float>(n_rot));
  const int64_t half = n_rot / 2;
  for (int64_t h = 0; h < n_head; ++h) {
    float* xh = x + h * head_dim;
    float theta = static_cast<float>(pos);
    for (int64_t i = 0; i < half; ++i) {
      const float c = std::cos(theta), s = std::sin(theta);
      const float x0 = xh[i], x1 = xh[i + half];
      xh[i] = x0 * c - x1 * s;
      xh[i + half] = x0 * s + x1 * c;
      theta *= theta_scale;
    }
  }
}

// kernel_table.h DownRowsFn, written as its definition: per block, the coefficients' scale,
// their 8-bit rounding, one exact integer sum per column, one multiply.
template <bool Q4>
void down_rows(int64_t k, int64_t n_idx, const int32_t* idx, const void* w, size_t wrb, const float* a, float* y) {
  const size_t bs = Q4 ? sizeof(block_q4_0) : sizeof(block_q8_0);
  const auto* wb = static_cast<const uint8_t*>(w);
  for (int64_t b = 0; b < k / QK8_0; ++b) {
    const auto block = [&](int64_t i) { return wb + static_cast<size_t>(idx[i]) * wrb + static_cast<size_t>(b) * bs; };
    const auto coef = [&](int64_t i) { return a[idx[i]] * fp16_to_fp32(load_u16(block(i), 0)); };
    float amax = 0.0f;
    for (int64_t i = 0; i < n_idx; ++i) amax = std::max(amax, std::fabs(coef(i)));
    const float s = amax / 127.0f;
    const float id = s != 0.0f ? 1.0f / s : 0.0f;
    int32_t acc[QK8_0] = {};
    for (int64_t i = 0; i < n_idx; ++i) {
      const auto q = static_cast<int32_t>(std::nearbyint(coef(i) * id));
      const uint8_t* qs = block(i) + 2;
      for (int j = 0; j < QK8_0; ++j) {
        const int32_t wj = Q4 ? (j < 16 ? qs[j] & 0x0F : qs[j - 16] >> 4) - 8 : static_cast<int8_t>(qs[j]);
        acc[j] += q * wj;
      }
    }
    for (int j = 0; j < QK8_0; ++j) y[b * QK8_0 + j] = static_cast<float>(acc[j]) * s;
  }
}

}  // namespace

void rope_neox_cache(int64_t n_rot, int64_t pos, float freq_base, float* c, float* s) {
  const float theta_scale = std::pow(freq_base, -2.0f / static_cast<float>(n_rot));
  float theta = static_cast<float>(pos);
  for (int64_t i = 0; i < n_rot / 2; ++i) {
    c[i] = std::cos(theta);
    s[i] = std::sin(theta);
    theta *= theta_scale;
  }
}

// q4_0_split rows: the listed rows unpacked to q4_0 (cpu/quants.h), then down_rows<true> (its
// result does not depend on the rows' order or where they sit).
void down_rows_q4_0_split(int64_t k, int64_t n_idx, const int32_t* idx, const void* w, size_t wrb, const float* a,
                          float* y) {
  const size_t rb = static_cast<size_t>(k / QK4_0) * sizeof(block_q4_0);
  std::vector<uint8_t> rows(rb * static_cast<size_t>(n_idx));
  std::vector<int32_t> seq(static_cast<size_t>(n_idx));
  std::vector<float> as(static_cast<size_t>(n_idx));
  for (int64_t i = 0; i < n_idx; ++i) {
    unpack_row_q4_0_split(static_cast<const uint8_t*>(w) + static_cast<size_t>(idx[i]) * wrb,
                          rows.data() + static_cast<size_t>(i) * rb, k);
    seq[static_cast<size_t>(i)] = static_cast<int32_t>(i);
    as[static_cast<size_t>(i)] = a[idx[i]];
  }
  down_rows<true>(k, n_idx, seq.data(), rows.data(), rb, as.data(), y);
}

void fill_scalar(KernelTable& t) {
  t.isa = Isa::scalar;
  t.quantize_row_q8_0 = quantize_row_q8_0;
  t.vec_dot_q4_0_q8_0 = vec_dot_q4_0_q8_0;
  t.vec_dot_q8_0_q8_0 = vec_dot_q8_0_q8_0;
  t.vec_dot_f16_f32 = vec_dot_f16_f32;
  t.vec_dot_bf16_f32 = vec_dot_bf16_f32;
  t.vec_dot_f32 = vec_dot_f32;
  t.gemv_q4_0_q8_0 = gemv_q4_0_q8_0;
  t.gemv_q8_0_q8_0 = gemv_q8_0_q8_0;
  t.gemv_f16_f32 = gemv_f16_f32;
  t.gemv_bf16_f32 = gemv_bf16_f32;
  t.gemv_f32 = gemv_f32;
  t.gemm_q4_0_q8_0 = gemm_q4_0_q8_0;
  t.gemm_q8_0_q8_0 = gemm_q8_0_q8_0;
  t.gemm_f16_f32 = gemm_f16_f32;
  t.gemm_bf16_f32 = gemm_bf16_f32;
  t.gemm_f32 = gemm_f32;
  t.axpy_q4_0_f32 = axpy_q4_0_f32;
  t.axpy_q8_0_f32 = axpy_q8_0_f32;
  t.gemm_rows_q4_0_q8_0 = gemm_rows<gemm_q4_0_q8_0>;
  t.gemm_rows_q8_0_q8_0 = gemm_rows<gemm_q8_0_q8_0>;
  t.gemm_pairs_q4_0_q8_0 = gemm_pairs<gemm_q4_0_q8_0>;
  t.gemm_pairs_q8_0_q8_0 = gemm_pairs<gemm_q8_0_q8_0>;
  t.down_rows_q4_0 = down_rows<true>;
  t.down_rows_q8_0 = down_rows<false>;
  t.gemv_q4_0x16_q8_0 = gemv_q4_0x16_q8_0;
  t.gemm_q4_0x16_q8_0 = gemm_q4_0x16_q8_0;
  t.gemm_rows_q4_0x16_q8_0 = gemm_rows<gemm_q4_0x16_q8_0>;
  t.gemm_pairs_q4_0x16_q8_0 = gemm_pairs<gemm_q4_0x16_q8_0>;
  t.down_rows_q4_0_split = down_rows_q4_0_split;
  t.axpy_f32 = axpy_f32;
  t.rms_norm = rms_norm;
  t.soft_max = soft_max;
  t.rope_neox = rope_neox;
}

}  // namespace tandem::cpu::detail
