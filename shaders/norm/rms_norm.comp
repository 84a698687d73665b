#version 450
// rms_norm, ggml_rms_norm semantics: dst = x / sqrt(mean(x^2) + eps) per row; with DO_MUL the
// result is also multiplied elementwise by `weight` (ggml_mul fused, as llama.cpp applies
// attn_norm / ffn_norm). One workgroup per row.
// Shapes (ggml ne order): src, dst [ncols, nrows] f32 contiguous; weight [ncols] f32.
#extension GL_GOOGLE_include_directive : require

layout(constant_id = 0) const uint WG_SIZE = 128;
layout(local_size_x_id = 0) in;

layout(push_constant) uniform Params {
  uint ncols;
  uint nrows;
  float eps;
  uint x_offset;  // elements, all three
  uint w_offset;
  uint d_offset;
} p;

layout(binding = 0, std430) readonly buffer Src { float x[]; };
layout(binding = 1, std430) readonly buffer Weight { float weight[]; };
layout(binding = 2, std430) writeonly buffer Dst { float dst[]; };

shared float red[WG_SIZE];
#include "../common/reduce.glsl"

void main() {
  const uint row = gl_WorkGroupID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x;
  const bool in_range = row < p.nrows;
  const uint xb = p.x_offset + row * p.ncols;
  float ss = 0.0;
  if (in_range) {
    for (uint c = gl_LocalInvocationID.x; c < p.ncols; c += WG_SIZE) ss += x[xb + c] * x[xb + c];
  }
  const float scale = inversesqrt(wg_sum(ss) / float(p.ncols) + p.eps);
  if (!in_range) return;
  const uint db = p.d_offset + row * p.ncols;
  for (uint c = gl_LocalInvocationID.x; c < p.ncols; c += WG_SIZE) {
#ifdef DO_MUL
    dst[db + c] = x[xb + c] * scale * weight[p.w_offset + c];
#else
    dst[db + c] = x[xb + c] * scale;
#endif
  }
}
