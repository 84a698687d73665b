#version 450
// mul_mat_id, ggml_mul_mat_id(as, b, ids) for m tokens:
//   dst[t][s][i] = dot(weights[ids[t][s]] row i, b[t][s % n_b1]),  f32 accumulation.
// Shapes (ggml ne order): weights [ncols, nrows, n_expert] of DATA_*, read as 32-bit words;
// ids [n_used, m] i32; b [ncols, n_b1, m] f32; dst [nrows, n_used, m] f32.
// Workgroup (row i over x/y, pair t * n_used + s over z): each invocation strides over the row's
// elements, then a shared-memory reduction (USE_SUBGROUP: subgroupAdd, common/reduce.glsl).
// An id outside [0, n_expert) yields a NaN row.
#extension GL_GOOGLE_include_directive : require
#ifdef USE_SUBGROUP
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require
#endif

layout(constant_id = 0) const uint WG_SIZE = 64;
layout(local_size_x_id = 0) in;

layout(push_constant) uniform Params {
  uint ncols;
  uint nrows;
  uint n_expert;
  uint n_used;
  uint n_b1;
  uint w_offset;       // bytes
  uint row_bytes;
  uint expert_bytes;
  uint b_offset;       // elements, all three
  uint i_offset;
  uint d_offset;
} p;

layout(binding = 0, std430) readonly buffer Weights { uint weights[]; };
layout(binding = 1, std430) readonly buffer B { float b[]; };
layout(binding = 2, std430) readonly buffer Ids { int ids[]; };
layout(binding = 3, std430) writeonly buffer Dst { float dst[]; };

#include "../common/weights.glsl"

shared float red[WG_SIZE];
#include "../common/reduce.glsl"

void main() {
  const uint i = gl_WorkGroupID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x;
  const uint pair = gl_WorkGroupID.z;
  const uint t = pair / p.n_used, s = pair % p.n_used;
  const int expert = ids[p.i_offset + pair];
  const bool valid = expert >= 0 && uint(expert) < p.n_expert;
  const bool in_range = i < p.nrows;
  const uint row = p.w_offset + uint(valid ? expert : 0) * p.expert_bytes + i * p.row_bytes;
  const uint xb = p.b_offset + (t * p.n_b1 + s % p.n_b1) * p.ncols;
  float sum = 0.0;
  if (in_range && valid) {
    for (uint k = gl_LocalInvocationID.x; k < p.ncols; k += WG_SIZE) sum += weight_at(row, k) * b[xb + k];
  }
  sum = wg_sum(sum);  // every invocation reaches the barriers
  if (gl_LocalInvocationID.x == 0u && in_range) {
    dst[p.d_offset + pair * p.nrows + i] = valid ? sum : uintBitsToFloat(0x7fc00000u);
  }
}
