#version 450
// rope (NEOX mode), ggml_rope_ext with mode GGML_ROPE_TYPE_NEOX, freq_scale 1, no YaRN
// (spec §2.3; ggml-cpu ops.cpp rope_f32 neox branch): for i < n_rot/2, with
// theta = pos * freq_base^(-2i/n_rot), the pair (x[i], x[i + n_rot/2]) becomes
// (x0 cos - x1 sin, x0 sin + x1 cos); dims n_rot..ne0-1 are copied unchanged.
// Shapes (ggml ne order): src, dst [ne0 = head_dim, ne1 = n_head, ne2 = n_tokens] f32
// contiguous; pos [ne2] i32. ne0 and n_rot even, n_rot <= ne0.
// Grid: x over ne0/2 pairs, y over heads, z over tokens.

layout(constant_id = 0) const uint WG_SIZE = 64;
layout(local_size_x_id = 0) in;

layout(push_constant) uniform Params {
  uint ne0;
  uint ne1;
  uint ne2;
  uint n_rot;
  float theta_scale;  // freq_base^(-2/n_rot), computed on the host in double precision
  uint x_offset;      // elements
  uint d_offset;      // elements
} p;

layout(binding = 0, std430) readonly buffer Src { float x[]; };
layout(binding = 1, std430) readonly buffer Pos { int pos[]; };
layout(binding = 2, std430) writeonly buffer Dst { float dst[]; };

void main() {
  const uint i = gl_GlobalInvocationID.x;
  if (i >= p.ne0 / 2u) return;
  const uint head = gl_WorkGroupID.y, tok = gl_WorkGroupID.z;
  const uint base = (tok * p.ne1 + head) * p.ne0;
  const uint half_rot = p.n_rot / 2u;
  if (i < half_rot) {
    const float theta = float(pos[tok]) * pow(p.theta_scale, float(i));
    const float c = cos(theta), s = sin(theta);
    const float x0 = x[p.x_offset + base + i];
    const float x1 = x[p.x_offset + base + i + half_rot];
    dst[p.d_offset + base + i] = x0 * c - x1 * s;
    dst[p.d_offset + base + i + half_rot] = x0 * s + x1 * c;
  } else {
    const uint k = p.n_rot + 2u * (i - half_rot);
    dst[p.d_offset + base + k] = x[p.x_offset + base + k];
    dst[p.d_offset + base + k + 1u] = x[p.x_offset + base + k + 1u];
  }
}
