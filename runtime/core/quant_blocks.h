// Quantized block layouts, byte-for-byte as ggml (ggml/src/ggml-common.h), spec §3.6.
// `d`/`dmin` are IEEE binary16 bit patterns (use core/fp16.h to convert).
#pragma once

#include <cstdint>

namespace tandem {

inline constexpr int QK4_0 = 32;
inline constexpr int QK8_0 = 32;
inline constexpr int QK_K = 256;
inline constexpr int K_SCALE_SIZE = 12;

struct block_q4_0 {
  uint16_t d;              // scale (f16)
  uint8_t qs[QK4_0 / 2];   // nibbles: element j in low nibble of qs[j], j+16 in high nibble
};
static_assert(sizeof(block_q4_0) == 18);

struct block_q8_0 {
  uint16_t d;          // scale (f16)
  int8_t qs[QK8_0];    // quants
};
static_assert(sizeof(block_q8_0) == 34);

struct block_q4_K {
  uint16_t d;                    // super-block scale for quantized scales (f16)
  uint16_t dmin;                 // super-block scale for quantized mins (f16)
  uint8_t scales[K_SCALE_SIZE];  // 8 scales and 8 mins, 6 bits each
  uint8_t qs[QK_K / 2];          // 4-bit quants
};
static_assert(sizeof(block_q4_K) == 144);

struct block_q6_K {
  uint8_t ql[QK_K / 2];      // low 4 bits
  uint8_t qh[QK_K / 4];      // high 2 bits
  int8_t scales[QK_K / 16];  // 8-bit sub-block scales
  uint16_t d;                // super-block scale (f16)
};
static_assert(sizeof(block_q6_K) == 210);

}  // namespace tandem
