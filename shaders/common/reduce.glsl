// Workgroup-wide reductions through shared memory (portable: no subgroup features).
// Requires: `const uint WG_SIZE` (a power of two) and `shared float red[WG_SIZE]`.
// Every invocation of the workgroup must call these (they contain barriers).

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
