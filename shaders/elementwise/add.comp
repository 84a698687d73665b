#version 450
// add, ggml_add semantics with row broadcast: dst[r][c] = a[r][c] + b[r % b_nrows][c].
// Shapes (ggml ne order): a, dst [ncols, nrows] f32 contiguous; b [ncols, b_nrows] f32.
// dst may alias a.

layout(constant_id = 0) const uint WG_SIZE = 256;
layout(local_size_x_id = 0) in;

layout(push_constant) uniform Params {
  uint ncols;
  uint nrows;
  uint b_nrows;
  uint a_offset;  // elements, all three
  uint b_offset;
  uint d_offset;
} p;

layout(binding = 0, std430) readonly buffer A { float a[]; };
layout(binding = 1, std430) readonly buffer B { float b[]; };
layout(binding = 2, std430) writeonly buffer Dst { float dst[]; };

void main() {
  const uint group = gl_WorkGroupID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x;
  const uint idx = group * WG_SIZE + gl_LocalInvocationID.x;
  if (idx >= p.ncols * p.nrows) return;
  const uint r = idx / p.ncols, c = idx % p.ncols;
  dst[p.d_offset + idx] = a[p.a_offset + idx] + b[p.b_offset + (r % p.b_nrows) * p.ncols + c];
}
