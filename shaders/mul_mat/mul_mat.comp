#version 450
// mul_mat (matrix form): dst[j][i] = dot(weights row i, src row j) for a batch of activation
// rows, ggml_mul_mat(weights, src) semantics. Tiled: a BM x BN workgroup computes a BM x BN
// output tile, staging BK-wide slices of both operands (weights dequantized to f32) in shared
// memory; f32 accumulation. Zero padding covers tiles that overhang M, N or K.
// Shapes (ggml ne order): weights [K, M] of DATA_*, src [K, N] f32 (rows x_row_stride floats
// apart), dst [M, N] f32 (rows d_row_stride floats apart). K must be a multiple of the block
// size for q8_0/q4_0. BM*BN must be a power of two no larger than the device's limit.
#extension GL_GOOGLE_include_directive : require

layout(constant_id = 0) const uint BM = 16;
layout(constant_id = 1) const uint BN = 16;
layout(constant_id = 2) const uint BK = 32;
layout(local_size_x_id = 0, local_size_y_id = 1) in;

layout(push_constant) uniform Params {
  uint K;
  uint M;
  uint N;
  uint w_offset;      // bytes
  uint w_row_stride;  // bytes
  uint x_offset;      // elements
  uint x_row_stride;  // elements
  uint d_offset;      // elements
  uint d_row_stride;  // elements
} p;

layout(binding = 0, std430) readonly buffer Weights { uint weights[]; };
layout(binding = 1, std430) readonly buffer Src { float x[]; };
layout(binding = 2, std430) writeonly buffer Dst { float dst[]; };

#include "../common/weights.glsl"

// +1 column of padding avoids shared-memory bank conflicts on the column reads.
shared float ws[BM * (BK + 1)];
shared float xs[BN * (BK + 1)];

void main() {
  const uint tx = gl_LocalInvocationID.x;
  const uint ty = gl_LocalInvocationID.y;
  const uint lid = ty * BM + tx;
  const uint i0 = gl_WorkGroupID.x * BM;
  const uint j0 = gl_WorkGroupID.y * BN;
  float acc = 0.0;
  for (uint k0 = 0u; k0 < p.K; k0 += BK) {
    for (uint e = lid; e < BM * BK; e += BM * BN) {
      const uint r = e / BK, c = e % BK;
      const uint gi = i0 + r, gk = k0 + c;
      ws[r * (BK + 1u) + c] = (gi < p.M && gk < p.K) ? weight_at(p.w_offset + gi * p.w_row_stride, gk) : 0.0;
    }
    for (uint e = lid; e < BN * BK; e += BM * BN) {
      const uint r = e / BK, c = e % BK;
      const uint gj = j0 + r, gk = k0 + c;
      xs[r * (BK + 1u) + c] = (gj < p.N && gk < p.K) ? x[p.x_offset + gj * p.x_row_stride + gk] : 0.0;
    }
    barrier();
    for (uint c = 0u; c < BK; ++c) acc += ws[tx * (BK + 1u) + c] * xs[ty * (BK + 1u) + c];
    barrier();
  }
  const uint i = i0 + tx, j = j0 + ty;
  if (i < p.M && j < p.N) dst[p.d_offset + j * p.d_row_stride + i] = acc;
}
