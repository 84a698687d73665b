// mul_mat_id, ggml_mul_mat_id(as, b, ids) for m tokens (the prompt form of the MoE expert
// projections; mul_mat_vec_id.h is the one-token form):
//   dst[t][s][i] = sum_k W[ids[t][s]][i][k] * b[t][s % n_b1][k],  f32 accumulation, ggml
//   dequantization (spec §3.6)
// Shapes (ggml ne order): weights [ncols, nrows, n_expert] of `wtype` (f32, f16, q8_0, q4_0),
// contiguous (e.g. blk.N.ffn_gate_exps); ids [n_used, m] i32, a DEVICE buffer (top_k's ids);
// b [ncols, n_b1, m] f32 with n_b1 = 1 (one activation row per token, broadcast over its slots:
// gate/up) or n_b1 = n_used (one row per slot: down); dst [nrows, n_used, m] f32.
// ncols must be a multiple of the dtype's block size. n_used * m <= 65535 (one dispatch
// dimension): larger batches are split by the caller.
// An id outside [0, n_expert) makes that slot's row NaN. Variants "mul_mat_id_<dtype>_f32" and
// "..._subgroup" (subgroupAdd row reduction), chosen as gpu/ops/shader_variant.h says.
// Errors (also): not_found for an explicit variant the build or device lacks.
// Form: one workgroup per (output row, token slot), each a GEMV of its expert's row; a form
// tiled over the tokens sharing an expert is a later optimisation.
// Errors: invalid_argument for shapes/slices that do not fit; unsupported dtype. Records only.
#pragma once

#include <cstdint>

#include "core/dtype.h"
#include "gpu/command_recorder.h"
#include "gpu/ops/shader_variant.h"

namespace tandem::gpu::ops {

Status mul_mat_id(CommandRecorder& rec, DType wtype, const BufferSlice& weights, int64_t ncols,
                  int64_t nrows, int64_t n_expert, const BufferSlice& ids, int64_t n_used,
                  int64_t m, const BufferSlice& b, int64_t n_b1, const BufferSlice& dst,
                  ShaderVariant variant = ShaderVariant::automatic);

// The variants this device can run (portable first).
std::vector<ShaderVariant> mul_mat_id_variants(const Device& device, DType wtype);

}  // namespace tandem::gpu::ops
