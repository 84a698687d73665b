// Row quantization and dequantization, bit-exact with ggml's reference C code
// (ggml/src/ggml-quants.c; spec §3.6). Plain scalar code: the spec for every fast kernel.
//
// Rows are `k` elements (k % block_size == 0, checked by the caller); `dst`/`src` point to
// k / block_size blocks of the dtype's layout (core/quant_blocks.h).
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/dtype.h"
#include "core/status.h"

namespace tandem::cpu {

// ggml quantize_row_q8_0_ref: d = amax/127, q = roundf(x/d).
void quantize_row_q8_0(const float* x, void* dst, int64_t k);
// ggml quantize_row_q4_0_ref: d = max/-8 (max = signed value of largest |x|),
// q = min(15, (int8)(x/d + 8.5)).
void quantize_row_q4_0(const float* x, void* dst, int64_t k);

void dequantize_row_q8_0(const void* src, float* y, int64_t k);
void dequantize_row_q4_0(const void* src, float* y, int64_t k);
void dequantize_row_q4_K(const void* src, float* y, int64_t k);
void dequantize_row_q6_K(const void* src, float* y, int64_t k);
void convert_row_f16_to_f32(const void* src, float* y, int64_t k);
void convert_row_bf16_to_f32(const void* src, float* y, int64_t k);
void convert_row_f32_to_f16(const float* x, void* dst, int64_t k);
void convert_row_f32_to_bf16(const float* x, void* dst, int64_t k);

// Any supported dtype -> f32 (f32 is copied).
void dequantize_row(DType dtype, const void* src, float* y, int64_t k);
// f32 -> dtype for the dtypes Tandem writes (f32, f16, bf16, q8_0, q4_0);
// unsupported for q4_K / q6_K (Tandem reads those, it does not make them).
Status quantize_row(DType dtype, const float* x, void* dst, int64_t k);

}  // namespace tandem::cpu
