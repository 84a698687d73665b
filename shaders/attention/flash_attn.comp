#version 450
// flash_attn: causal / sliding-window attention of query rows against a KV cache, GQA.
// Shapes (ggml ne order): q [head_dim, n_head, m] f32; k, v [head_dim, n_head_kv, n_ctx] of
// KV_F32 / KV_F16 (f16 read as halves of 32-bit words); pos [m] i32; dst [head_dim, n_head, m].
// Workgroup (chunk c, head block b, row i) serves HB query heads that share one kv head
// (h = b * HB + hb, kv head h / (n_head / n_head_kv)), so each K/V element is read once for all
// of them. It walks the cache positions of chunk c inside the row's window,
// j in [max(0, pos - n_swa + 1) (n_swa > 0), pos], in tiles of WG_SIZE: one invocation per
// position computes s_j = dot(q_h, k_j) * scale for every head of the block; the tile's max and
// sum update each head's running (m, l) as in FlashAttention's online soft_max, and each
// invocation accumulates its own output dimensions d = tid + a * WG_SIZE.
// SPLIT == 0: one chunk covers the cache; dst = acc / l. SPLIT == 1: writes the partial
// (acc[head_dim], m, l) to scratch[(i, h, c)]; flash_attn_combine merges them.
// A pos outside [0, n_ctx) (or an empty window) yields l = 0: NaN in dst.
// USE_SUBGROUP: the per-tile max / sum reductions use subgroupMax / subgroupAdd, then one
// pass over the per-subgroup results, instead of the shared-memory tree.
// USE_FP16 (KV_F16 only): q is held in shared memory as f16; Q.K multiplies f16vec2 pairs
// (q_d, q_d+1) . (k_d, k_d+1) in f16 and adds each pair's sum to an f32 score; P.V multiplies
// f16(p_j) * v_j in f16 and accumulates in f32. Max, sums, exp and the (m, l) state stay f32.
#extension GL_GOOGLE_include_directive : require
#ifdef USE_SUBGROUP
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require
#endif
#ifdef USE_FP16
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
#endif

layout(constant_id = 0) const uint WG_SIZE = 64;
layout(constant_id = 1) const uint HB = 1;  // query heads per workgroup, divides n_head / n_head_kv
layout(local_size_x_id = 0) in;

const uint MAX_DIM_PER_INVOCATION = 4u;  // head_dim <= 4 * WG_SIZE

layout(push_constant) uniform Params {
  uint head_dim;
  uint n_head;
  uint n_head_kv;
  uint n_ctx;
  uint n_swa;
  float scale;
  uint chunk_len;  // positions per workgroup
  uint n_chunks;
  uint split;      // 1: write partials to scratch
  uint q_offset;   // elements of q[]
  uint k_offset;   // elements of the cache type
  uint v_offset;
  uint pos_offset;
  uint d_offset;   // elements of dst[]
  uint s_offset;   // elements of scratch[]
} p;

layout(binding = 0, std430) readonly buffer Q { float q[]; };
#if defined(KV_F32)
layout(binding = 1, std430) readonly buffer K { float kc[]; };
layout(binding = 2, std430) readonly buffer V { float vc[]; };
float load_k(uint e) { return kc[e]; }
float load_v(uint e) { return vc[e]; }
#elif defined(KV_F16)
layout(binding = 1, std430) readonly buffer K { uint kc[]; };
layout(binding = 2, std430) readonly buffer V { uint vc[]; };
float load_k(uint e) { return unpackHalf2x16(kc[e >> 1] >> ((e & 1u) * 16u)).x; }
float load_v(uint e) { return unpackHalf2x16(vc[e >> 1] >> ((e & 1u) * 16u)).x; }
#else
#error "define KV_F32 or KV_F16"
#endif
#ifdef USE_FP16
#ifndef KV_F16
#error "USE_FP16 needs KV_F16"
#endif
// Elements e, e + 1 of the K cache (any e: an odd e straddles two words).
f16vec2 load_k2(uint e) {
  const f16vec2 a = unpackFloat2x16(kc[e >> 1]);
  return (e & 1u) == 0u ? a : f16vec2(a.y, unpackFloat2x16(kc[(e >> 1) + 1u]).x);
}
float16_t load_v16(uint e) { return unpackFloat2x16(vc[e >> 1])[e & 1u]; }
#endif
layout(binding = 3, std430) readonly buffer Pos { int pos[]; };
layout(binding = 4, std430) buffer Dst { float dst[]; };
layout(binding = 5, std430) buffer Scratch { float scratch[]; };

#ifdef USE_FP16
shared float16_t qs[HB * MAX_DIM_PER_INVOCATION * WG_SIZE];
#else
shared float qs[HB * MAX_DIM_PER_INVOCATION * WG_SIZE];
#endif
shared float ps[HB * WG_SIZE];
shared float red[HB * WG_SIZE];

// Workgroup-wide max (is_max) or sum of each of the HB values, all in one tree (log2(WG_SIZE)
// barrier steps for the whole head block), or per subgroup (USE_SUBGROUP). Every invocation
// must call it.
#ifdef USE_SUBGROUP
void wg_reduce(inout float v[HB], bool is_max) {
  for (uint hb = 0u; hb < HB; ++hb) {
    const float r = is_max ? subgroupMax(v[hb]) : subgroupAdd(v[hb]);
    if (subgroupElect()) red[hb * WG_SIZE + gl_SubgroupID] = r;
  }
  barrier();
  for (uint hb = 0u; hb < HB; ++hb) {
    float r = red[hb * WG_SIZE];
    for (uint g = 1u; g < gl_NumSubgroups; ++g) {
      const float o = red[hb * WG_SIZE + g];
      r = is_max ? max(r, o) : r + o;
    }
    v[hb] = r;
  }
  barrier();  // red[] is reused by the next call
}
#else
void wg_reduce(inout float v[HB], bool is_max) {
  const uint tid = gl_LocalInvocationID.x;
  for (uint hb = 0u; hb < HB; ++hb) red[hb * WG_SIZE + tid] = v[hb];
  barrier();
  for (uint s = WG_SIZE / 2u; s > 0u; s >>= 1) {
    if (tid < s) {
      for (uint hb = 0u; hb < HB; ++hb) {
        const float o = red[hb * WG_SIZE + tid + s];
        red[hb * WG_SIZE + tid] = is_max ? max(red[hb * WG_SIZE + tid], o) : red[hb * WG_SIZE + tid] + o;
      }
    }
    barrier();
  }
  for (uint hb = 0u; hb < HB; ++hb) v[hb] = red[hb * WG_SIZE];
  barrier();  // red[] is reused by the next call
}
#endif

void main() {
  const uint c = gl_WorkGroupID.x, i = gl_WorkGroupID.z;
  const uint h0 = gl_WorkGroupID.y * HB;
  const uint tid = gl_LocalInvocationID.x;
  const float NEG_INF = uintBitsToFloat(0xff800000u);
  const uint hkv = h0 / (p.n_head / p.n_head_kv);

  // Everything below the loads is uniform per workgroup (c, b, i), so the barriers inside the
  // loop are reached by all invocations or by none.
  const int pq = pos[p.pos_offset + i];
  const bool valid = pq >= 0 && uint(pq) < p.n_ctx;
  int lo = 0;
  if (p.n_swa != 0u) lo = max(0, pq - int(p.n_swa) + 1);
  const int cs = int(c * p.chunk_len);
  const int ce = min(cs + int(p.chunk_len), int(p.n_ctx));
  const int start = max(lo, cs);
  const int end = valid ? min(pq + 1, ce) : start;  // exclusive

  for (uint hb = 0u; hb < HB; ++hb) {
    const uint qb = p.q_offset + (i * p.n_head + h0 + hb) * p.head_dim;
#ifdef USE_FP16
    for (uint d = tid; d < p.head_dim; d += WG_SIZE) qs[hb * p.head_dim + d] = float16_t(q[qb + d]);
#else
    for (uint d = tid; d < p.head_dim; d += WG_SIZE) qs[hb * p.head_dim + d] = q[qb + d];
#endif
  }
  barrier();

  float m_run[HB], l_run[HB], s[HB], alpha[HB];
  float acc[MAX_DIM_PER_INVOCATION * HB];  // [a * HB + hb]
  for (uint hb = 0u; hb < HB; ++hb) {
    m_run[hb] = NEG_INF;
    l_run[hb] = 0.0;
  }
  for (uint a = 0u; a < MAX_DIM_PER_INVOCATION * HB; ++a) acc[a] = 0.0;

  for (int t0 = start; t0 < end; t0 += int(WG_SIZE)) {
    const int j = t0 + int(tid);
    const bool in_tile = j < end;
    for (uint hb = 0u; hb < HB; ++hb) s[hb] = 0.0;
    if (in_tile) {
      const uint kb = p.k_offset + (uint(j) * p.n_head_kv + hkv) * p.head_dim;
#ifdef USE_FP16
      for (uint d = 0u; d < p.head_dim; d += 2u) {  // head_dim is even for f16 caches
        const f16vec2 kd = load_k2(kb + d);
        for (uint hb = 0u; hb < HB; ++hb) {
          const uint qi = hb * p.head_dim + d;
          s[hb] += float(dot(f16vec2(qs[qi], qs[qi + 1u]), kd));
        }
      }
#else
      for (uint d = 0u; d < p.head_dim; ++d) {
        const float kd = load_k(kb + d);
        for (uint hb = 0u; hb < HB; ++hb) s[hb] += qs[hb * p.head_dim + d] * kd;
      }
#endif
    }
    for (uint hb = 0u; hb < HB; ++hb) s[hb] = in_tile ? s[hb] * p.scale : NEG_INF;
    // Position t0 is always in the tile, so each head's tile max is finite.
    float m_new[HB];
    for (uint hb = 0u; hb < HB; ++hb) m_new[hb] = s[hb];
    wg_reduce(m_new, true);
    float pj[HB];
    for (uint hb = 0u; hb < HB; ++hb) {
      m_new[hb] = max(m_run[hb], m_new[hb]);
      pj[hb] = in_tile ? exp(s[hb] - m_new[hb]) : 0.0;
      ps[hb * WG_SIZE + tid] = pj[hb];
      alpha[hb] = m_run[hb] == NEG_INF ? 0.0 : exp(m_run[hb] - m_new[hb]);
      m_run[hb] = m_new[hb];
    }
    wg_reduce(pj, false);  // its barriers also publish ps[]
    for (uint hb = 0u; hb < HB; ++hb) l_run[hb] = l_run[hb] * alpha[hb] + pj[hb];
    const uint n_in = uint(min(int(WG_SIZE), end - t0));
    for (uint a = 0u; a < MAX_DIM_PER_INVOCATION; ++a) {
      const uint d = tid + a * WG_SIZE;
      if (d >= p.head_dim) break;
      for (uint hb = 0u; hb < HB; ++hb) acc[a * HB + hb] *= alpha[hb];
      for (uint jj = 0u; jj < n_in; ++jj) {
#ifdef USE_FP16
        const float16_t vd = load_v16(p.v_offset + ((uint(t0) + jj) * p.n_head_kv + hkv) * p.head_dim + d);
        for (uint hb = 0u; hb < HB; ++hb) acc[a * HB + hb] += float(float16_t(ps[hb * WG_SIZE + jj]) * vd);
#else
        const float vd = load_v(p.v_offset + ((uint(t0) + jj) * p.n_head_kv + hkv) * p.head_dim + d);
        for (uint hb = 0u; hb < HB; ++hb) acc[a * HB + hb] += ps[hb * WG_SIZE + jj] * vd;
#endif
      }
    }
    barrier();  // ps[] is rewritten by the next tile
  }

  for (uint hb = 0u; hb < HB; ++hb) {
    const uint h = h0 + hb;
    if (p.split != 0u) {
      const uint sb = p.s_offset + ((i * p.n_head + h) * p.n_chunks + c) * (p.head_dim + 2u);
      for (uint a = 0u; a < MAX_DIM_PER_INVOCATION; ++a) {
        const uint d = tid + a * WG_SIZE;
        if (d < p.head_dim) scratch[sb + d] = acc[a * HB + hb];
      }
      if (tid == 0u) {
        scratch[sb + p.head_dim] = m_run[hb];
        scratch[sb + p.head_dim + 1u] = l_run[hb];
      }
    } else {
      const uint db = p.d_offset + (i * p.n_head + h) * p.head_dim;
      for (uint a = 0u; a < MAX_DIM_PER_INVOCATION; ++a) {
        const uint d = tid + a * WG_SIZE;
        if (d < p.head_dim) {
          dst[db + d] = l_run[hb] > 0.0 ? acc[a * HB + hb] / l_run[hb] : uintBitsToFloat(0x7fc00000u);
        }
      }
    }
  }
}
