// mul_mat_vec_id: ggml_mul_mat_id for one token, the MoE expert GEMV. For each slot s of
// `ids` (the router's chosen experts):
//   dst[s][i] = sum_k W[ids[s]][i][k] * x_s[k],  f32 accumulation, ggml dequantization.
// Shapes (ggml ne order): weights [ncols, nrows, n_expert] of `wtype` (f32, f16, q8_0, q4_0),
// e.g. blk.N.ffn_up_exps; contiguous unless row_stride / expert_stride (bytes) say otherwise.
// ids [n_slots] i32 (device buffer, may be written by a previous dispatch).
// x: broadcast_x ? [ncols] f32 shared by every slot : [ncols, n_slots] f32 (one row per slot,
// as the down projection takes each expert's own activation). dst [nrows, n_slots] f32.
// An id outside [0, n_expert) makes that slot's row NaN (ids live on the device: they cannot be
// checked when recording). Variants and their selection as mul_mat_vec
// ("mul_mat_vec_id_<dtype>_f32[_subgroup|_intdot|_fp16]"); the _intdot variants quantize x
// (one row, or one per slot) into `q8_1`, which must hold q8_1_bytes(ncols, broadcast_x ? 1 :
// n_slots) bytes.
// ReLU-sparse form (the up projection of a ReGLU expert FFN, spec §2.5): with
// `skip_if_gate_le_zero` = gate [nrows, n_slots] f32 (the gate mat-vec's output for the same ids
// and x, same layout as dst), row i of slot s is computed only when gate[s][i] > 0; otherwise
// dst[s][i] = 0 exactly and that row's weights are never read (NaN gates count as <= 0). ReGLU
// then gives relu(g) * 0 = 0 where the dense form gives relu(g) * u = 0 * u: for finite u the
// FFN's output is unchanged, and the inactive rows' up weights are not read. Computed rows are
// bit-identical to the dense op's (same variant). Every variant above has a "_sparse" twin
// ("mul_mat_vec_id_q4_0_f32_intdot_sparse"), chosen by the same rules when the slice is given.
// gate must not overlap dst (invalid_argument).
#pragma once

#include "core/dtype.h"
#include "gpu/command_recorder.h"
#include "gpu/ops/mul_mat_vec.h"

namespace tandem::gpu::ops {

struct MulMatVecIdOptions {
  uint64_t row_stride = 0;     // bytes; 0 = contiguous
  uint64_t expert_stride = 0;  // bytes; 0 = nrows * row_stride
  ReductionVariant variant = ReductionVariant::automatic;
  BufferSlice q8_1;         // as MulMatVecOptions::q8_1
  bool q8_1_ready = false;  // as MulMatVecOptions::q8_1_ready
  // Empty: dense. Else gate [nrows, n_slots] f32, 4-byte aligned: the ReLU-sparse form above.
  BufferSlice skip_if_gate_le_zero;
};

Status mul_mat_vec_id(CommandRecorder& rec, DType wtype, const BufferSlice& weights, int64_t ncols, int64_t nrows,
                      int64_t n_expert, const BufferSlice& ids, int64_t n_slots, const BufferSlice& x,
                      bool broadcast_x, const BufferSlice& dst, const MulMatVecIdOptions& options = {});

}  // namespace tandem::gpu::ops
