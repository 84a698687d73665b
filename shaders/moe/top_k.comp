#version 450
// top_k: the router after its logits (spec §1.3, §2.1; llama.cpp build_moe_ffn). Per row:
//   probs = softmax(logits) (gating 1) or sigmoid(logits) (gating 2), f32
//   ids = the k largest probs, best first, ties to the lower index, NaN below every number
//   weights[s] = probs[ids[s]] / max(sum_s probs[ids[s]], 6.103515625e-5)
// Shapes (ggml ne order): logits [n_expert, m] f32; ids [k, m] i32; weights [k, m] f32.
// One workgroup per row; the row lives in shared memory (n_expert <= MAX_EXPERT).
// Each of the k picks is a workgroup arg-max: a shared-memory tree (portable) or, with
// USE_SUBGROUP, subgroupMax over an order-preserving key and subgroupMin over the indices that
// reach it, then one invocation folds the per-subgroup winners. Same order either way.
#extension GL_GOOGLE_include_directive : require
#ifdef USE_SUBGROUP
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require
#endif

layout(constant_id = 0) const uint WG_SIZE = 64;
layout(local_size_x_id = 0) in;

const uint MAX_EXPERT = 1024u;
const uint NONE = 0xffffffffu;

layout(push_constant) uniform Params {
  uint n_expert;
  uint m;
  uint k;
  uint gating;    // ExpertGating: 1 softmax, 2 sigmoid
  uint l_offset;  // elements, all three
  uint i_offset;
  uint w_offset;
} p;

layout(binding = 0, std430) readonly buffer Logits { float logits[]; };
layout(binding = 1, std430) writeonly buffer Ids { int ids[]; };
layout(binding = 2, std430) writeonly buffer Weights { float weights[]; };

shared float probs[MAX_EXPERT];
shared bool taken[MAX_EXPERT];
shared float red[WG_SIZE];
shared float best_v[WG_SIZE];
shared uint best_i[WG_SIZE];
shared float chosen_p[MAX_EXPERT];
#include "../common/reduce.glsl"

// Is candidate (va, ia) ranked before (vb, ib)? NONE ranks last, NaN below every number.
bool before(float va, uint ia, float vb, uint ib) {
  if (ia == NONE) return false;
  if (ib == NONE) return true;
  const bool na = isnan(va), nb = isnan(vb);
  if (na != nb) return nb;
  if (!na && va != vb) return va > vb;
  return ia < ib;
}

#ifdef USE_SUBGROUP
// A key whose unsigned order is before()'s order on values: NONE 0, NaN 1, numbers above
// (sign-flipped bits, -0 as +0). Equal keys are equal values; the lower index then wins.
uint rank_key(float v, uint i) {
  if (i == NONE) return 0u;
  if (isnan(v)) return 1u;
  const uint u = v == 0.0 ? 0u : floatBitsToUint(v);
  return (u & 0x80000000u) != 0u ? ~u : (u | 0x80000000u);
}
#endif

void main() {
  const uint row = gl_WorkGroupID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x;
  if (row >= p.m) return;  // uniform per workgroup: no barrier is skipped by part of it
  const uint tid = gl_LocalInvocationID.x;
  const uint lb = p.l_offset + row * p.n_expert;
  float mx = uintBitsToFloat(0xff800000u);
  for (uint e = tid; e < p.n_expert; e += WG_SIZE) {
    probs[e] = logits[lb + e];
    taken[e] = false;
    mx = max(mx, probs[e]);
  }
  if (p.gating == 1u) {
    mx = wg_max(mx);
    float s = 0.0;
    for (uint e = tid; e < p.n_expert; e += WG_SIZE) {
      probs[e] = exp(probs[e] - mx);
      s += probs[e];
    }
    s = wg_sum(s);
    const float inv = 1.0 / s;
    for (uint e = tid; e < p.n_expert; e += WG_SIZE) probs[e] *= inv;
  } else {
    for (uint e = tid; e < p.n_expert; e += WG_SIZE) probs[e] = 1.0 / (1.0 + exp(-probs[e]));
  }
  barrier();
  for (uint s = 0u; s < p.k; ++s) {
    float bv = 0.0;
    uint bi = NONE;
    for (uint e = tid; e < p.n_expert; e += WG_SIZE) {
      if (!taken[e] && before(probs[e], e, bv, bi)) {
        bv = probs[e];
        bi = e;
      }
    }
#ifdef USE_SUBGROUP
    const uint key = rank_key(bv, bi);
    const uint kmax = subgroupMax(key);
    const uint imin = subgroupMin(key == kmax ? bi : NONE);
    if (subgroupElect()) {
      best_v[gl_SubgroupID] = kmax == 0u ? 0.0 : probs[imin];
      best_i[gl_SubgroupID] = kmax == 0u ? NONE : imin;
    }
    barrier();
    if (tid == 0u) {
      for (uint g = 1u; g < gl_NumSubgroups; ++g) {
        if (before(best_v[g], best_i[g], best_v[0], best_i[0])) {
          best_v[0] = best_v[g];
          best_i[0] = best_i[g];
        }
      }
    }
#else
    best_v[tid] = bv;
    best_i[tid] = bi;
    barrier();
    for (uint h = WG_SIZE / 2u; h > 0u; h >>= 1) {
      if (tid < h && before(best_v[tid + h], best_i[tid + h], best_v[tid], best_i[tid])) {
        best_v[tid] = best_v[tid + h];
        best_i[tid] = best_i[tid + h];
      }
      barrier();
    }
#endif
    if (tid == 0u) {
      taken[best_i[0]] = true;
      chosen_p[s] = best_v[0];
      ids[p.i_offset + row * p.k + s] = int(best_i[0]);
    }
    barrier();
  }
  if (tid == 0u) {
    float sum = 0.0;
    for (uint s = 0u; s < p.k; ++s) sum += chosen_p[s];
    const float denom = max(sum, 6.103515625e-5);
    for (uint s = 0u; s < p.k; ++s) weights[p.w_offset + row * p.k + s] = chosen_p[s] / denom;
  }
}
