// Workgroup-wide reductions. Portable: a shared-memory tree. USE_SUBGROUP: subgroupAdd /
// subgroupMax inside each subgroup, then one invocation folds the per-subgroup results
// (the including shader enables GL_KHR_shader_subgroup_basic + _arithmetic).
// Requires: `const uint WG_SIZE` (a power of two) and `shared float red[WG_SIZE]`.
// Every invocation of the workgroup must call these (they contain barriers).

#ifdef USE_SUBGROUP
float wg_fold(float v, bool is_max) {
  const float r = is_max ? subgroupMax(v) : subgroupAdd(v);
  if (subgroupElect()) red[gl_SubgroupID] = r;
  barrier();
  float out_v = red[0];
  for (uint s = 1u; s < gl_NumSubgroups; ++s) out_v = is_max ? max(out_v, red[s]) : out_v + red[s];
  barrier();  // red[] is reused by the next call
  return out_v;
}
float wg_sum(float v) { return wg_fold(v, false); }
float wg_max(float v) { return wg_fold(v, true); }
#else
float wg_sum(float v) {
  const uint tid = gl_LocalInvocationID.x;
  red[tid] = v;
  barrier();
  for (uint s = WG_SIZE / 2u; s > 0u; s >>= 1) {
    if (tid < s) red[tid] += red[tid + s];
    barrier();
  }
  const float r = red[0];
  barrier();  // red[] is reused by the next call
  return r;
}

float wg_max(float v) {
  const uint tid = gl_LocalInvocationID.x;
  red[tid] = v;
  barrier();
  for (uint s = WG_SIZE / 2u; s > 0u; s >>= 1) {
    if (tid < s) red[tid] = max(red[tid], red[tid + s]);
    barrier();
  }
  const float r = red[0];
  barrier();
  return r;
}
#endif
