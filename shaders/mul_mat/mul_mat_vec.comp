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
// USE_INTDOT (q8_0 / q4_0 weights): x is read as q8_1 blocks (common/q8_1.glsl, made by
// quantize_q8_1; x_offset and x_slot_stride count 32-bit words) and each block's products are
// packed int8x4 dot products summed in int32:
//   q8_0: d_w * d_x * sum(q_w * q_x)
//   q4_0: d_w * (d_x * sum(n_w * q_x) - 8 * s_x), n_w the unsigned nibble, s_x = d_x * sum(q_x)
// (ggml-vulkan mul_mat_vecq). USE_FP16 (f16 weights): 8 weights per step as four f16vec2 fma
// with x rounded to f16, summed in f16 within the step and in f32 across steps; row tails
// (ncols % 8) in f32. Both keep the shared-memory reduction.
// SPARSE_GATE (with MUL_MAT_ID; the ReLU-sparse up projection of a ReGLU expert FFN): binding 4
// is the gate mat-vec's output for the same ids, gate [nrows, n_slots] f32 at gate_offset
// elements. Row i of slot s is computed only when gate[s][i] > 0 (NaN counts as inactive);
// otherwise dst[s][i] = 0 and the row's weights are never read. The workgroup owns one row, so
// the test is one uniform branch per workgroup and every invocation still reaches the
// reduction's barriers / subgroup ops. Active rows are computed exactly as without SPARSE_GATE.
#extension GL_GOOGLE_include_directive : require
#ifdef USE_SUBGROUP
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require
#endif
#ifdef USE_FP16
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
#endif
#ifdef USE_INTDOT
#include "../common/integer_dot.glsl"
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
#ifdef SPARSE_GATE
  uint gate_offset;    // elements
#endif
} p;

layout(binding = 0, std430) readonly buffer Weights { uint weights[]; };
#ifdef USE_INTDOT
layout(binding = 1, std430) readonly buffer Src { uint xq[]; };
#include "../common/q8_1.glsl"
#else
layout(binding = 1, std430) readonly buffer Src { float x[]; };
#endif
layout(binding = 2, std430) writeonly buffer Dst { float dst[]; };
#ifdef MUL_MAT_ID
layout(binding = 3, std430) readonly buffer Ids { int ids[]; };
#endif
#ifdef SPARSE_GATE
#ifndef MUL_MAT_ID
#error "SPARSE_GATE needs MUL_MAT_ID"
#endif
layout(binding = 4, std430) readonly buffer Gate { float gate[]; };
#endif

#include "../common/weights.glsl"

shared float partial[WG_SIZE];

#if defined(USE_INTDOT)
float block_dot(uint row, uint ib, uint x_base) {
  const uint qb = x_base + ib * Q8_1_WORDS;
  const uint base = row + ib * BLOCK_BYTES;
  int sumi = 0;
#if defined(DATA_Q8_0)
  for (uint w = 0u; w < 8u; ++w) sumi = dot_packed4x8_acc(int(load_u32_even(base + 2u + 4u * w)), int(xq[qb + 2u + w]), sumi);
  return load_f16(base) * (uintBitsToFloat(xq[qb]) * float(sumi));
#elif defined(DATA_Q4_0)
  for (uint w = 0u; w < 4u; ++w) {
    const uint v = load_u32_even(base + 2u + 4u * w);  // elements 4w..4w+3 (low) and 16+4w.. (high)
    sumi = dot_packed4x8_acc(int(v & 0x0F0F0F0Fu), int(xq[qb + 2u + w]), sumi);
    sumi = dot_packed4x8_acc(int((v >> 4) & 0x0F0F0F0Fu), int(xq[qb + 6u + w]), sumi);
  }
  return load_f16(base) * (uintBitsToFloat(xq[qb]) * float(sumi) - 8.0 * uintBitsToFloat(xq[qb + 1u]));
#else
#error "USE_INTDOT needs DATA_Q8_0 or DATA_Q4_0"
#endif
}
#else
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
#endif

#if defined(USE_FP16)
#if !defined(DATA_F16)
#error "USE_FP16 needs DATA_F16"
#endif
float row_dot_fp16(uint row, uint x_base, uint tid) {
  float sum = 0.0;
  const uint n8 = p.ncols / 8u;
  for (uint g = tid; g < n8; g += WG_SIZE) {
    const uint off = row + 16u * g;
    const uint xb = x_base + 8u * g;
    f16vec2 acc = f16vec2(0.0);
    for (uint w = 0u; w < 4u; ++w) {
      const f16vec2 wv = unpackFloat2x16(load_u32_even(off + 4u * w));
      acc = fma(wv, f16vec2(x[xb + 2u * w], x[xb + 2u * w + 1u]), acc);
    }
    sum += float(acc.x) + float(acc.y);
  }
  for (uint k = n8 * 8u + tid; k < p.ncols; k += WG_SIZE) sum += weight_at(row, k) * x[x_base + k];
  return sum;
}
#endif

void main() {
  // 2-D grid so row counts above maxComputeWorkGroupCount[0] (e.g. n_vocab) still fit.
  const uint i = gl_WorkGroupID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x;
  const uint tid = gl_LocalInvocationID.x;
  // No early return: every invocation must reach the barriers.
#ifdef MUL_MAT_ID
  const uint slot = gl_WorkGroupID.z;
  const int expert = ids[p.ids_offset + slot];
  const bool valid = expert >= 0 && uint(expert) < p.n_expert;
  bool in_range = i < p.nrows && valid;
  const uint row = p.w_offset + uint(valid ? expert : 0) * p.expert_stride + i * p.w_row_stride;
  const uint x_base = p.x_offset + slot * p.x_slot_stride;
  const uint d_index = p.d_offset + slot * p.nrows + i;
  if (!valid && tid == 0u && i < p.nrows) dst[d_index] = uintBitsToFloat(0x7fc00000u);  // NaN
#ifdef SPARSE_GATE
  // i and slot are the workgroup's: every invocation reads the same gate value and takes the
  // same branch. ReGLU multiplies this row by relu(gate) = 0, so its dot product is not needed.
  if (in_range && !(gate[p.gate_offset + slot * p.nrows + i] > 0.0)) {
    in_range = false;
    if (tid == 0u) dst[d_index] = 0.0;
  }
#endif
#else
  const bool in_range = i < p.nrows;
  const uint row = p.w_offset + i * p.w_row_stride;
  const uint x_base = p.x_offset;
  const uint d_index = p.d_offset + i;
#endif
  float sum = 0.0;
  if (in_range) {
#if defined(USE_FP16)
    sum = row_dot_fp16(row, x_base, tid);
#else
    for (uint ib = tid; ib < p.ncols / QK; ib += WG_SIZE) sum += block_dot(row, ib, x_base);
#endif
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
