#version 450
// quantize_q8_1: f32 activations -> q8_1 blocks (common/q8_1.glsl) for the integer-dot
// mat-vecs. Run once per activation vector; every mat-vec that reads the vector shares it.
// Shapes (ggml ne order): x [ncols, nrows] f32, rows x_row_stride elements apart;
// dst [ncols / 32, nrows] blocks of Q8_1_WORDS words. ncols is a multiple of 32.
// One invocation per block. Quantization is ggml's quantize_row_q8_0_ref: d = amax / 127,
// id = d != 0 ? 1 / d : 0, q = roundf(x * id) (half away from zero), stored d = fp16(d).
#extension GL_GOOGLE_include_directive : require

layout(constant_id = 0) const uint WG_SIZE = 64;
layout(local_size_x_id = 0) in;

layout(push_constant) uniform Params {
  uint ncols;
  uint nrows;
  uint x_offset;      // elements
  uint x_row_stride;  // elements
  uint q_offset;      // words
} p;

layout(binding = 0, std430) readonly buffer Src { float x[]; };
layout(binding = 1, std430) writeonly buffer Dst { uint q[]; };

#include "../common/fp16.glsl"
#include "../common/q8_1.glsl"

void main() {
  const uint b = (gl_WorkGroupID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x) * WG_SIZE + gl_LocalInvocationID.x;
  const uint blocks_per_row = p.ncols / 32u;
  if (b >= blocks_per_row * p.nrows) return;
  const uint row = b / blocks_per_row;
  const uint xb = p.x_offset + row * p.x_row_stride + (b % blocks_per_row) * 32u;
  float amax = 0.0;
  for (uint j = 0u; j < 32u; ++j) amax = max(amax, abs(x[xb + j]));
  const float d = amax / 127.0;
  // 1.0 / d must be correctly rounded to reproduce the CPU's quants; GLSL division may not be.
  const float id = d != 0.0 ? 1.0 / d : 0.0;
  const uint qb = p.q_offset + b * Q8_1_WORDS;
  int sum = 0;
  for (uint w = 0u; w < 8u; ++w) {
    uint packed = 0u;
    for (uint k = 0u; k < 4u; ++k) {
      const float v = x[xb + w * 4u + k] * id;
      // roundf (half away from zero), exact: v - trunc(v) has no rounding error.
      float r = trunc(v);
      if (abs(v - r) >= 0.5) r += sign(v);
      const int qv = int(clamp(r, -128.0, 127.0));
      sum += qv;
      packed |= (uint(qv) & 0xFFu) << (8u * k);
    }
    q[qb + 2u + w] = packed;
  }
  const float d16 = unpackHalf2x16(f16_bits_rne(d)).x;
  q[qb] = floatBitsToUint(d16);
  q[qb + 1u] = floatBitsToUint(d16 * float(sum));
}
