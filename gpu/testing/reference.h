// Test-only plain references for the GPU conformance tests (cpu/ is not visible to gpu/):
// ggml dequantization (spec §3.6) and each op in f64 accumulation, plus random inputs.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "core/dtype.h"
#include "core/fp16.h"
#include "core/quant_blocks.h"

namespace tandem::gpu::testing {

// Element k of a row of `ne0` elements of dtype t starting at `row`. Spec §3.6:
//   q8_0: y[j] = qs[j] * d;  q4_0: y[j] = ((qs[j] & 0xF) - 8) * d, y[j+16] = ((qs[j] >> 4) - 8) * d.
inline double dequant(DType t, const uint8_t* row, int64_t k) {
  switch (t) {
    case DType::f32: {
      float f;
      std::memcpy(&f, row + 4 * k, 4);
      return f;
    }
    case DType::f16: {
      uint16_t h;
      std::memcpy(&h, row + 2 * k, 2);
      return fp16_to_fp32(h);
    }
    case DType::q8_0: {
      block_q8_0 b;
      std::memcpy(&b, row + (k / 32) * sizeof(b), sizeof(b));
      return static_cast<double>(b.qs[k % 32]) * fp16_to_fp32(b.d);
    }
    case DType::q4_0: {
      block_q4_0 b;
      std::memcpy(&b, row + (k / 32) * sizeof(b), sizeof(b));
      const int j = static_cast<int>(k % 32);
      const int q = j < 16 ? (b.qs[j] & 0xF) : (b.qs[j - 16] >> 4);
      return static_cast<double>(q - 8) * fp16_to_fp32(b.d);
    }
    default: return NAN;
  }
}

// Random weights: `nrows` rows of `ncols` elements, row_size bytes each. Quant scales d are
// random f16 in [0.005, 0.05), quants uniform; floats uniform in [-1, 1).
inline std::vector<uint8_t> random_weights(DType t, int64_t ncols, int64_t nrows, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> uni(-1.f, 1.f), scale(0.005f, 0.05f);
  const size_t row = dtype_row_size(t, ncols);
  std::vector<uint8_t> w(row * static_cast<size_t>(nrows));
  for (int64_t r = 0; r < nrows; ++r) {
    uint8_t* p = w.data() + row * static_cast<size_t>(r);
    if (t == DType::f32) {
      for (int64_t k = 0; k < ncols; ++k) {
        const float f = uni(rng);
        std::memcpy(p + 4 * k, &f, 4);
      }
    } else if (t == DType::f16) {
      for (int64_t k = 0; k < ncols; ++k) {
        const uint16_t h = fp32_to_fp16(uni(rng));
        std::memcpy(p + 2 * k, &h, 2);
      }
    } else {
      const size_t bs = dtype_type_size(t);
      for (int64_t b = 0; b < ncols / 32; ++b) {
        uint8_t* blk = p + bs * static_cast<size_t>(b);
        const uint16_t d = fp32_to_fp16(scale(rng));
        std::memcpy(blk, &d, 2);
        for (size_t i = 2; i < bs; ++i) blk[i] = static_cast<uint8_t>(rng());
      }
    }
  }
  return w;
}

inline std::vector<float> random_f32(size_t n, uint32_t seed, float lo = -1.f, float hi = 1.f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> uni(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = uni(rng);
  return v;
}

// dst[j][i] = sum_k W[i][k] * x[j][k] in f64; W rows `row_stride` bytes apart.
inline std::vector<float> ref_mul_mat(DType t, const uint8_t* w, size_t row_stride, int64_t K, int64_t M,
                                      const std::vector<float>& x, int64_t N) {
  std::vector<float> out(static_cast<size_t>(M * N));
  std::vector<double> wrow(static_cast<size_t>(K));
  for (int64_t i = 0; i < M; ++i) {
    for (int64_t k = 0; k < K; ++k) wrow[k] = dequant(t, w + row_stride * static_cast<size_t>(i), k);
    for (int64_t j = 0; j < N; ++j) {
      double s = 0;
      for (int64_t k = 0; k < K; ++k) s += wrow[k] * x[static_cast<size_t>(j * K + k)];
      out[static_cast<size_t>(j * M + i)] = static_cast<float>(s);
    }
  }
  return out;
}

}  // namespace tandem::gpu::testing
