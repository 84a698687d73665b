#version 450
// reglu, ggml_reglu_split(gate, up) (SmallThinker's expert activation, spec §1.1):
// dst[i] = max(gate[i], 0) * up[i]. Shapes: gate, up, dst [n] f32. dst may alias either input.

layout(constant_id = 0) const uint WG_SIZE = 256;
layout(local_size_x_id = 0) in;

layout(push_constant) uniform Params {
  uint n;
  uint g_offset;  // elements, all three
  uint u_offset;
  uint d_offset;
} p;

layout(binding = 0, std430) readonly buffer Gate { float gate[]; };
layout(binding = 1, std430) readonly buffer Up { float up[]; };
layout(binding = 2, std430) writeonly buffer Dst { float dst[]; };

void main() {
  const uint group = gl_WorkGroupID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x;
  const uint i = group * WG_SIZE + gl_LocalInvocationID.x;
  if (i >= p.n) return;
  dst[p.d_offset + i] = max(gate[p.g_offset + i], 0.0) * up[p.u_offset + i];
}
