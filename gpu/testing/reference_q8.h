// Test-only: the CPU's activation quantization (cpu/quants.cpp quantize_row_q8_0, ggml's
// quantize_row_q8_0_ref: d = amax / 127, id = d ? 1 / d : 0, q = roundf(x * id), d stored as
// f16), rewritten here because gpu/ cannot see cpu/. References for quantize_q8_1 and the
// integer-dot mat-vecs.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "core/fp16.h"

namespace tandem::gpu::testing {

struct Q8Block {
  float d = 0;      // the f16-rounded scale, as an f32
  int32_t sum = 0;  // sum of qs
  int8_t qs[32] = {};
};

// x.size() must be a multiple of 32.
inline std::vector<Q8Block> quantize_q8(const std::vector<float>& x) {
  std::vector<Q8Block> out(x.size() / 32);
  for (size_t b = 0; b < out.size(); ++b) {
    const float* v = x.data() + 32 * b;
    float amax = 0.0f;
    for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(v[j]));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    out[b].d = fp16_to_fp32(fp32_to_fp16(d));
    for (int j = 0; j < 32; ++j) {
      const float r = std::clamp(std::roundf(v[j] * id), -128.0f, 127.0f);
      out[b].qs[j] = static_cast<int8_t>(r);
      out[b].sum += out[b].qs[j];
    }
  }
  return out;
}

// The activations the integer-dot kernels effectively multiply by: q * d.
inline std::vector<float> q8_values(const std::vector<float>& x) {
  const auto blocks = quantize_q8(x);
  std::vector<float> y(x.size());
  for (size_t b = 0; b < blocks.size(); ++b) {
    for (int j = 0; j < 32; ++j) y[32 * b + j] = static_cast<float>(blocks[b].qs[j]) * blocks[b].d;
  }
  return y;
}

}  // namespace tandem::gpu::testing
