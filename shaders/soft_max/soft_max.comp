#version 450
// soft_max, ggml_soft_max_ext semantics with max_bias 0: per row,
// v = x * scale + mask[row % mask_nrows] (when has_mask), dst = exp(v - max v) / sum exp(...).
// A row whose values are all -inf yields NaN, as in ggml. One workgroup per row.
// Shapes (ggml ne order): src, dst [ncols, nrows] f32 contiguous; mask [ncols, mask_nrows] f32
// (broadcast over the rows: row r uses mask row r % mask_nrows). Without a mask the caller
// binds src again as the mask; it is never read.
#extension GL_GOOGLE_include_directive : require

layout(constant_id = 0) const uint WG_SIZE = 128;
layout(local_size_x_id = 0) in;

layout(push_constant) uniform Params {
  uint ncols;
  uint nrows;
  float scale;
  uint has_mask;
  uint mask_nrows;
  uint x_offset;  // elements, all three
  uint m_offset;
  uint d_offset;
} p;

layout(binding = 0, std430) readonly buffer Src { float x[]; };
layout(binding = 1, std430) readonly buffer Mask { float mask[]; };
layout(binding = 2, std430) buffer Dst { float dst[]; };

shared float red[WG_SIZE];
#include "../common/reduce.glsl"

float value(uint row, uint c) {
  float v = x[p.x_offset + row * p.ncols + c] * p.scale;
  if (p.has_mask != 0u) v += mask[p.m_offset + (row % p.mask_nrows) * p.ncols + c];
  return v;
}

void main() {
  const uint row = gl_WorkGroupID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x;
  const bool in_range = row < p.nrows;
  const uint tid = gl_LocalInvocationID.x;
  float m = uintBitsToFloat(0xff800000u);  // -inf
  if (in_range) {
    for (uint c = tid; c < p.ncols; c += WG_SIZE) m = max(m, value(row, c));
  }
  m = wg_max(m);
  float s = 0.0;
  const uint db = p.d_offset + row * p.ncols;
  if (in_range) {
    for (uint c = tid; c < p.ncols; c += WG_SIZE) {
      const float e = exp(value(row, c) - m);
      dst[db + c] = e;
      s += e;
    }
  }
  s = wg_sum(s);
  if (!in_range) return;
  const float inv = 1.0 / s;
  // Each invocation rescales only the elements it wrote itself: no barrier needed.
  for (uint c = tid; c < p.ncols; c += WG_SIZE) dst[db + c] *= inv;
}
