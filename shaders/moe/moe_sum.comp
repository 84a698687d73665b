#version 450
// moe_sum: dst[r][c] = sum_{s < k} weights[r][s] * expert_out[r][s][c], summed in slot order.
// Shapes (ggml ne order): expert_out [n_embd, k, m] f32; weights [k, m] f32; dst [n_embd, m].

layout(constant_id = 0) const uint WG_SIZE = 256;
layout(local_size_x_id = 0) in;

layout(push_constant) uniform Params {
  uint n_embd;
  uint k;
  uint m;
  uint e_offset;  // elements, all three
  uint w_offset;
  uint d_offset;
} p;

layout(binding = 0, std430) readonly buffer ExpertOut { float expert_out[]; };
layout(binding = 1, std430) readonly buffer Weights { float weights[]; };
layout(binding = 2, std430) writeonly buffer Dst { float dst[]; };

void main() {
  const uint group = gl_WorkGroupID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x;
  const uint idx = group * WG_SIZE + gl_LocalInvocationID.x;
  if (idx >= p.n_embd * p.m) return;
  const uint r = idx / p.n_embd, c = idx % p.n_embd;
  float sum = 0.0;
  for (uint s = 0u; s < p.k; ++s) {
    sum += weights[p.w_offset + r * p.k + s] * expert_out[p.e_offset + (r * p.k + s) * p.n_embd + c];
  }
  dst[p.d_offset + idx] = sum;
}
