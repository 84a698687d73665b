#version 450
// mul_mat_vec (GEMV): dst[i] = dot(weights row i, x), f32 accumulation. One workgroup per row;
// each invocation strides over the row's blocks, then the workgroup reduces its partial sums
// through shared memory (portable) or subgroupAdd (USE_SUBGROUP).
// Shapes (ggml ne order): weights [ncols, nrows] of DATA_*, x [ncols] f32, dst [nrows] f32.
// ncols must be a multiple of the block size (32 for q8_0/q4_0).
// MUL_MAT_ID (ggml_mul_mat_id for one token): weights [ncols, nrows, n_expert]; workgroup z is
// the slot s of ids [n_slots] i32; dst[s][i] = dot(weights[ids[s]] row i, x[s]) with x rows
// x_slot_stride floats apart (0: one x shared by every slot). An id outside [0, n_expert)
// yields NaN rows: visible, never an out-of-bounds read.
#extension GL_GOOGLE_include_directive : require
#ifdef USE_SUBGROUP
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require
#endif

layout(constant_id = 0) const uint WG_SIZE = 64;
layout(local_size_x_id = 0) in;

layout(push_constant) uniform Params {
  uint ncols;         // elements per row
  uint nrows;
  uint w_offset;      // bytes from the binding start to row 0
  uint w_row_stride;  // bytes between rows (ggml nb[1])
  uint x_offset;      // elements
  uint d_offset;      // elements
#ifdef MUL_MAT_ID
  uint expert_stride;  // bytes between experts (ggml nb[2])
  uint x_slot_stride;  // elements
  uint ids_offset;     // elements
  uint n_expert;
#endif
} p;

layout(binding = 0, std430) readonly buffer Weights { uint weights[]; };
layout(binding = 1, std430) readonly buffer Src { float x[]; };
layout(binding = 2, std430) writeonly buffer Dst { float dst[]; };
#ifdef MUL_MAT_ID
layout(binding = 3, std430) readonly buffer Ids { int ids[]; };
#endif

#include "../common/weights.glsl"

shared float partial[WG_SIZE];

float block_dot(uint row, uint ib, uint x_base) {
  const uint xb = x_base + ib * QK;
#if defined(DATA_F32) || defined(DATA_F16)
  return weight_at(row, ib) * x[xb];
#elif defined(DATA_Q8_0)
  const uint base = row + ib * BLOCK_BYTES;
  float s = 0.0;
  for (uint j = 0u; j < 32u; j += 2u) {
    const int q = int(load_u16(base + 2u + j));
    s += float(bitfieldExtract(q, 0, 8)) * x[xb + j] + float(bitfieldExtract(q, 8, 8)) * x[xb + j + 1u];
  }
  return s * load_f16(base);
#else
  const uint base = row + ib * BLOCK_BYTES;
  float s = 0.0;
  for (uint j = 0u; j < 16u; j += 2u) {
    const uint q = load_u16(base + 2u + j);
    s += float(int(q & 0xFu) - 8) * x[xb + j] + float(int((q >> 4) & 0xFu) - 8) * x[xb + j + 16u] +
         float(int((q >> 8) & 0xFu) - 8) * x[xb + j + 1u] + float(int(q >> 12) - 8) * x[xb + j + 17u];
  }
  return s * load_f16(base);
#endif
}

void main() {
  // 2-D grid so row counts above maxComputeWorkGroupCount[0] (e.g. n_vocab) still fit.
  const uint i = gl_WorkGroupID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x;
  const uint tid = gl_LocalInvocationID.x;
  // No early return: every invocation must reach the barriers.
#ifdef MUL_MAT_ID
  const uint slot = gl_WorkGroupID.z;
  const int expert = ids[p.ids_offset + slot];
  const bool valid = expert >= 0 && uint(expert) < p.n_expert;
  const bool in_range = i < p.nrows && valid;
  const uint row = p.w_offset + uint(valid ? expert : 0) * p.expert_stride + i * p.w_row_stride;
  const uint x_base = p.x_offset + slot * p.x_slot_stride;
  const uint d_index = p.d_offset + slot * p.nrows + i;
  if (!valid && tid == 0u && i < p.nrows) dst[d_index] = uintBitsToFloat(0x7fc00000u);  // NaN
#else
  const bool in_range = i < p.nrows;
  const uint row = p.w_offset + i * p.w_row_stride;
  const uint x_base = p.x_offset;
  const uint d_index = p.d_offset + i;
#endif
  float sum = 0.0;
  if (in_range) {
    for (uint ib = tid; ib < p.ncols / QK; ib += WG_SIZE) sum += block_dot(row, ib, x_base);
  }
#ifdef USE_SUBGROUP
  sum = subgroupAdd(sum);
  if (subgroupElect()) partial[gl_SubgroupID] = sum;
  barrier();
  if (tid == 0u && in_range) {
    float total = 0.0;
    for (uint s = 0u; s < gl_NumSubgroups; ++s) total += partial[s];
    dst[d_index] = total;
  }
#else
  partial[tid] = sum;
  barrier();
  for (uint s = WG_SIZE / 2u; s > 0u; s >>= 1) {
    if (tid < s) partial[tid] += partial[tid + s];
    barrier();
  }
  if (tid == 0u && in_range) dst[d_index] = partial[0];
#endif
}
