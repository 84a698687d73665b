#version 450
// set_rows, ggml_set_rows: dst row rows[i] = src row i (f32) converted to the dst type.
// Shapes (ggml ne order): src [ncols, m] f32; rows [m] i32; dst [ncols, nrows] f32 (DST_F32) or
// f16 (DST_F16: ncols even, one invocation per pair of halves = one 32-bit word, written whole).
// An index outside [0, nrows) writes nothing.
#extension GL_GOOGLE_include_directive : require

layout(constant_id = 0) const uint WG_SIZE = 256;
layout(local_size_x_id = 0) in;

layout(push_constant) uniform Params {
  uint ncols;
  uint m;
  uint nrows;
  uint s_offset;  // elements
  uint r_offset;  // elements
  uint d_offset;  // elements of dst[] (f32 values, or 32-bit words of two halves)
} p;

layout(binding = 0, std430) readonly buffer Src { float src[]; };
layout(binding = 1, std430) readonly buffer Rows { int rows[]; };
#if defined(DST_F32)
layout(binding = 2, std430) writeonly buffer Dst { float dst[]; };
#elif defined(DST_F16)
layout(binding = 2, std430) writeonly buffer Dst { uint dst[]; };
#include "../common/fp16.glsl"
#else
#error "define DST_F32 or DST_F16"
#endif

void main() {
#if defined(DST_F32)
  const uint per_row = p.ncols;
#else
  const uint per_row = p.ncols / 2u;
#endif
  const uint group = gl_WorkGroupID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x;
  const uint idx = group * WG_SIZE + gl_LocalInvocationID.x;
  if (idx >= per_row * p.m) return;
  const uint i = idx / per_row, c = idx % per_row;
  const int r = rows[p.r_offset + i];
  if (r < 0 || uint(r) >= p.nrows) return;
#if defined(DST_F32)
  dst[p.d_offset + uint(r) * per_row + c] = src[p.s_offset + i * p.ncols + c];
#else
  const uint s = p.s_offset + i * p.ncols + 2u * c;
  dst[p.d_offset + uint(r) * per_row + c] = f16_bits_rne(src[s]) | (f16_bits_rne(src[s + 1u]) << 16);
#endif
}
