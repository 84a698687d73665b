// Weight access shared by the mul_mat family. The weights binding is read as 32-bit words and
// decoded by byte offset, so every dtype works without 8/16-bit storage features and rows
// need no alignment beyond 2 bytes (q4_0 blocks are 18 bytes, q8_0 34, f16 rows 2*ncols).
// Block layouts and dequantization are ggml's (spec §3.6, ggml-common.h / ggml-quants.c):
//   q8_0: f16 d; i8 qs[32]        y[j] = qs[j] * d
//   q4_0: f16 d; u8 qs[16]        y[j] = ((qs[j] & 0xF) - 8) * d, y[j+16] = ((qs[j] >> 4) - 8) * d
// Requires: `uint weights[]` declared by the including shader.

uint load_u8(uint off) { return (weights[off >> 2] >> ((off & 3u) * 8u)) & 0xFFu; }
// off must be even.
uint load_u16(uint off) { return (weights[off >> 2] >> ((off & 2u) * 8u)) & 0xFFFFu; }
float load_f16(uint off) { return unpackHalf2x16(load_u16(off)).x; }
// 4 bytes from an even offset. Reads only words that hold some of those bytes, which the
// binding covers (CommandRecorder::bind rounds its range up to whole words).
uint load_u32_even(uint off) {
  const uint w = off >> 2;
  return (off & 2u) == 0u ? weights[w] : (weights[w] >> 16) | (weights[w + 1u] << 16);
}

#if defined(DATA_F32)
#define QK 1u
#define BLOCK_BYTES 4u
#elif defined(DATA_F16)
#define QK 1u
#define BLOCK_BYTES 2u
#elif defined(DATA_Q8_0)
#define QK 32u
#define BLOCK_BYTES 34u
#elif defined(DATA_Q4_0)
#define QK 32u
#define BLOCK_BYTES 18u
#else
#error "define one of DATA_F32, DATA_F16, DATA_Q8_0, DATA_Q4_0"
#endif

// Element k of the row starting at byte `row`.
float weight_at(uint row, uint k) {
#if defined(DATA_F32)
  return uintBitsToFloat(weights[(row >> 2) + k]);
#elif defined(DATA_F16)
  return load_f16(row + 2u * k);
#elif defined(DATA_Q8_0)
  const uint base = row + (k / 32u) * 34u;
  const int q = bitfieldExtract(int(load_u8(base + 2u + (k % 32u))), 0, 8);
  return float(q) * load_f16(base);
#else
  const uint base = row + (k / 32u) * 18u;
  const uint j = k % 32u;
  const uint byte = load_u8(base + 2u + (j % 16u));
  const uint q = j < 16u ? (byte & 0xFu) : (byte >> 4);
  return float(int(q) - 8) * load_f16(base);
#endif
}
