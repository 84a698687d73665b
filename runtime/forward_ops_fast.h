// The fast CPU ForwardOps: the forward pass's ops on the SIMD kernel table (cpu/kernel_table.h),
// the chunked attention kernel (cpu/attention.h) and the ReLU-sparse expert FFN
// (cpu/expert_ffn.h). Same contracts as forward_ops.h; what each op runs on:
//   mul_mat   q4_0/q8_0 weights: x quantized to q8_0 once per row (kt.quantize_row_q8_0,
//             bit-exact with ggml), then kt.gemv_* (m == 1) or kt.gemm_* (m > 1) over fixed
//             chunks of weight rows; f16/bf16/f32 weights: the float gemv/gemm on f32 x;
//             q4_K/q6_K: the plain ops (make_cpu_ops), which dequantize to f32.
//   get_rows  rows converted with cpu/quants.h (one row per token: nothing to vectorise).
//   rms_norm  kt.rms_norm per row.
//   rope_neox angles in f64 per position as the plain op and cpu/reference (not the table's
//             f32 running product, whose drift of ~1e-4 rad near position 4096 shows against
//             the reference), rotation in f32.
//   attention cpu::attention (f16/f32 cache; GQA, causal, sliding window).
//   moe       the ubatch's rows grouped per expert (ascending expert), one
//             cpu::expert_ffn(FfnMode::sparse) call per expert with all its rows, so each
//             expert's weights are read once per ubatch; both down layouts. Each (row, slot)
//             output is kept apart and the slots summed in slot order (as llama.cpp).
//             Fills gate_active and, when asked, gate_neuron_active. Experts in a dtype
//             expert_ffn does not take (f32/f16/bf16/q4_K/q6_K) go to the plain moe.
// Threads: work runs on the caller's tbb::task_arena in fixed chunks, so results are
// bit-identical for every thread count; a row's result does not depend on the rows batched
// with it (the kernels' per-token results are independent of their token tiling).
// Differences from the plain ops are f32 reassociation (SIMD dots, the table's soft_max and
// rms_norm within 1e-5 relative, chunked attention softmax): tests bound them by NMSE.
// counters(): weight bytes the kernels had to read since reset_counters() — every row of a
// mul_mat weight, each get_rows row, and expert bytes as ExpertFfnStats::bytes_read (sparse:
// gate + active up/down rows); the plain-moe fallback counts every row of each routed expert.
// Not thread-safe (one forward pass at a time, as Forward).
#pragma once

#include <memory>

#include "cpu/kernel_table.h"
#include "runtime/forward_ops.h"

namespace tandem {

// `kt` must outlive the ops (the tables of cpu::kernels() / kernels_for() are static).
std::unique_ptr<ForwardOps> make_fast_cpu_ops(const cpu::KernelTable& kt);

}  // namespace tandem
