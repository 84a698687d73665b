#version 450
// flash_attn_combine: merges flash_attn's split-K partials. For row i, head h, the chunks c
// with l_c > 0 hold (acc_c[head_dim], m_c, l_c) relative to their own max m_c:
//   M = max_c m_c,  L = sum_c l_c exp(m_c - M),  dst = sum_c acc_c exp(m_c - M) / L
// (FlashAttention-2 / ggml-vulkan flash_attn_split_k_reduce). No chunk with l > 0 -> NaN.
// Shapes: scratch [(head_dim + 2), n_chunks, n_head, m] f32; dst [head_dim, n_head, m] f32.

layout(constant_id = 0) const uint WG_SIZE = 64;
layout(local_size_x_id = 0) in;

layout(push_constant) uniform Params {
  uint head_dim;
  uint n_head;
  uint n_chunks;
  uint s_offset;  // elements
  uint d_offset;  // elements
} p;

layout(binding = 0, std430) readonly buffer Scratch { float scratch[]; };
layout(binding = 1, std430) writeonly buffer Dst { float dst[]; };

void main() {
  const uint h = gl_WorkGroupID.x, i = gl_WorkGroupID.y;
  const uint stride = p.head_dim + 2u;
  const uint base = p.s_offset + (i * p.n_head + h) * p.n_chunks * stride;
  float mx = uintBitsToFloat(0xff800000u);
  for (uint c = 0u; c < p.n_chunks; ++c) {
    if (scratch[base + c * stride + p.head_dim + 1u] > 0.0) mx = max(mx, scratch[base + c * stride + p.head_dim]);
  }
  float l = 0.0;
  for (uint c = 0u; c < p.n_chunks; ++c) {
    const float lc = scratch[base + c * stride + p.head_dim + 1u];
    if (lc > 0.0) l += lc * exp(scratch[base + c * stride + p.head_dim] - mx);
  }
  const uint db = p.d_offset + (i * p.n_head + h) * p.head_dim;
  for (uint d = gl_LocalInvocationID.x; d < p.head_dim; d += WG_SIZE) {
    float o = 0.0;
    for (uint c = 0u; c < p.n_chunks; ++c) {
      const uint cb = base + c * stride;
      if (scratch[cb + p.head_dim + 1u] > 0.0) o += scratch[cb + d] * exp(scratch[cb + p.head_dim] - mx);
    }
    dst[db + d] = l > 0.0 ? o / l : uintBitsToFloat(0x7fc00000u);
  }
}
