#version 450
// ReLU-sparse expert down projection over a transposed weight (PowerInfer layout, spec §3.4:
// ffn_down_exps ne = [n_embd, n_ff_exp, n_expert], row j = the n_embd-vector neuron j adds):
//   dst[s][i] = sum_j h[s][j] * W[ids[s]][j][i], skipping every j with h[s][j] == 0 (after
// ReGLU most neurons are exactly zero, so most rows are never read).
// Shapes (ggml ne order): weights [nout, nin, n_expert] of DATA_*; h [nin, n_slots] f32;
// ids [n_slots] i32; dst [nout, n_slots] f32. nout must be a multiple of the block size.
// Grid: x over nout in WG_SIZE chunks, z over slots. An id outside [0, n_expert) gives NaN.
#extension GL_GOOGLE_include_directive : require

layout(constant_id = 0) const uint WG_SIZE = 64;
layout(local_size_x_id = 0) in;

layout(push_constant) uniform Params {
  uint nout;
  uint nin;
  uint w_offset;       // bytes
  uint w_row_stride;   // bytes between rows j
  uint expert_stride;  // bytes between experts
  uint h_offset;       // elements
  uint d_offset;       // elements
  uint ids_offset;     // elements
  uint n_expert;
} p;

layout(binding = 0, std430) readonly buffer Weights { uint weights[]; };
layout(binding = 1, std430) readonly buffer Src { float h[]; };
layout(binding = 2, std430) writeonly buffer Dst { float dst[]; };
layout(binding = 3, std430) readonly buffer Ids { int ids[]; };

#include "../common/weights.glsl"

void main() {
  const uint i = gl_GlobalInvocationID.x;
  const uint slot = gl_WorkGroupID.z;
  if (i >= p.nout) return;
  const int expert = ids[p.ids_offset + slot];
  if (expert < 0 || uint(expert) >= p.n_expert) {
    dst[p.d_offset + slot * p.nout + i] = uintBitsToFloat(0x7fc00000u);
    return;
  }
  const uint base = p.w_offset + uint(expert) * p.expert_stride;
  const uint hb = p.h_offset + slot * p.nin;
  float acc = 0.0;
  for (uint j = 0u; j < p.nin; ++j) {
    const float hj = h[hb + j];
    if (hj != 0.0) acc += hj * weight_at(base + j * p.w_row_stride, i);  // uniform branch
  }
  dst[p.d_offset + slot * p.nout + i] = acc;
}
