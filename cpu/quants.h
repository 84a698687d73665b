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

// q4_0x16: the CPU repack of a q4_0 row for the AVX2 and AVX-512 kernels (kernel_table.h
// *_q4_0x16_* entries; in the spirit of llama.cpp's CPU repack, block_q4_0x8). A row of k elements,
// k % 512 == 0, keeps its size (18 bytes per 32 elements) as units of 16 blocks, 288 bytes each:
//   byte 64 q + 4 l + i  (q, i < 4, l < 16) = qs[4 q + i] of the unit's block q4_0x16_block(l)
//   bytes 256 + 2 l, 257 + 2 l               = that block's scale d (f16, little-endian)
// so the q-th 64 bytes hold, per dword lane l, elements 4q..4q+3 of lane l's block in their low
// nibbles and 16+4q..16+4q+3 in their high ones: vpdpbusd consumes them as loaded (AVX2 reads
// lanes 0..7 and 8..15 as two 32-byte halves and uses vpmaddubsw). The lane
// order (a 4 x 4 transpose) is the one the q4_0 kernels' lane reduction leaves, so both give
// the same bits. repack and unpack are inverses; src and dst must not overlap.
inline constexpr int64_t k_q4_0x16_elems = 512;
constexpr int q4_0x16_block(int l) { return 4 * (l % 4) + l / 4; }
void repack_row_q4_0x16(const void* src, void* dst, int64_t k);
void unpack_row_q4_0x16(const void* src, void* dst, int64_t k);

// q4_0_split: the CPU repack of a transposed expert down row (kernel_table.h down_rows_q4_0_split):
// a q4_0 row of nb = k / 32 blocks as all its quants, then all its scales, the same size:
//   bytes 16 b .. 16 b + 15   = qs of block b (block order)
//   bytes 16 nb + 2 b, +1     = d of block b (f16, little-endian)
// so 4 blocks' quants are one 64-byte load and a row's scales are contiguous. src and dst must
// not overlap.
void repack_row_q4_0_split(const void* src, void* dst, int64_t k);
void unpack_row_q4_0_split(const void* src, void* dst, int64_t k);

// Any supported dtype -> f32 (f32 is copied).
void dequantize_row(DType dtype, const void* src, float* y, int64_t k);
// f32 -> dtype for the dtypes Tandem writes (f32, f16, bf16, q8_0, q4_0);
// unsupported for q4_K / q6_K (Tandem reads those, it does not make them).
Status quantize_row(DType dtype, const float* x, void* dst, int64_t k);

}  // namespace tandem::cpu
