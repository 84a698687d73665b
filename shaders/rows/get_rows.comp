#version 450
// get_rows, ggml_get_rows: dst row i = row ids[i] of the DATA_* source, dequantized to f32.
// Shapes (ggml ne order): src (bound as `weights`, 32-bit words) [ncols, nrows]; ids [m] i32;
// dst [ncols, m] f32. One workgroup per dst row. The table may be bound in parts (a table larger
// than maxStorageBufferRange): this dispatch writes the rows whose id lies in
// [row_lo, row_lo + n_part); the part with row_lo == 0 also writes NaN rows for ids outside
// [0, nrows).
#extension GL_GOOGLE_include_directive : require

layout(constant_id = 0) const uint WG_SIZE = 64;
layout(local_size_x_id = 0) in;

layout(push_constant) uniform Params {
  uint ncols;
  uint nrows;   // rows of the whole table
  uint row_lo;  // first row of the bound part
  uint n_part;  // rows in the bound part
  uint m;
  uint w_offset;   // bytes from the binding start to row 0
  uint row_bytes;
  uint i_offset;   // elements
  uint d_offset;   // elements
} p;

layout(binding = 0, std430) readonly buffer Weights { uint weights[]; };
layout(binding = 1, std430) readonly buffer Ids { int ids[]; };
layout(binding = 2, std430) writeonly buffer Dst { float dst[]; };

#include "../common/weights.glsl"

void main() {
  const uint i = gl_WorkGroupID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x;
  if (i >= p.m) return;
  const int id = ids[p.i_offset + i];
  const bool valid = id >= 0 && uint(id) < p.nrows;
  const bool mine = valid && uint(id) >= p.row_lo && uint(id) - p.row_lo < p.n_part;
  if (!mine && (valid || p.row_lo != 0u)) return;
  const uint row = p.w_offset + (mine ? uint(id) - p.row_lo : 0u) * p.row_bytes;
  const uint d = p.d_offset + i * p.ncols;
  for (uint k = gl_LocalInvocationID.x; k < p.ncols; k += WG_SIZE) {
    dst[d + k] = mine ? weight_at(row, k) : uintBitsToFloat(0x7fc00000u);
  }
}
