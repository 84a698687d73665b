// ForwardOps: the operations the forward pass (runtime/forward.h) is made of, behind one
// interface so that a faster set (a SIMD kernel table, a GPU backend) replaces the plain CPU
// one without touching the graph code. make_cpu_ops() gives the plain portable C++ set.
//
// Conventions for every op:
//   * activations are f32, row-major in math order X[rows, cols] (ggml ne = [cols, rows]);
//   * weights are TensorViews in ggml ne order, read in place from the model mapping;
//   * ops may run work in parallel (oneTBB) inside the caller's task_arena, but each output
//     element is produced by one thread in a fixed order, so results are bit-identical for
//     every thread count and for every split of the rows into ubatches;
//   * errors (an unsupported dtype, a shape mismatch) come back as Status naming the tensor.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string_view>

#include "core/model_shape.h"
#include "core/status.h"
#include "core/tensor_view.h"
#include "runtime/kv_cache.h"

namespace tandem {
namespace cpu {
struct KernelTable;
}

// One layer's expert FFN for a ubatch (spec §2.1 "moe", §2.5).
struct MoeArgs {
  const TensorView* gate_exps = nullptr;  // (n_embd, n_ff_exp, n_expert)
  const TensorView* up_exps = nullptr;    // (n_embd, n_ff_exp, n_expert)
  const TensorView* down_exps = nullptr;  // standard (n_ff_exp, n_embd, n_expert) or transposed (n_embd, n_ff_exp, n_expert)
  DownLayout down_layout = DownLayout::standard;
  int64_t n_embd = 0;
  int64_t n_ff_exp = 0;
  int64_t n_expert = 0;
  int64_t n_expert_used = 0;
  const float* x = nullptr;           // (n_rows, n_embd): ffn_norm output
  const int32_t* expert_ids = nullptr;  // (n_rows, n_expert_used)
  const float* weights = nullptr;     // (n_rows, n_expert_used)
  int64_t n_rows = 0;
  // Optional (nullptr = not wanted): (n_expert, n_ff_exp) row-major; element (e, j) += the
  // number of rows routed to e whose gate pre-activation j is > 0. Ops that do not count per
  // neuron leave it untouched (the forward pass checks the sums against gate_active).
  uint32_t* gate_neuron_active = nullptr;
};

// Weight bytes the ops had to read since the last reset (for roofline figures). Ops that do
// not count leave both 0.
struct ForwardOpsCounters {
  uint64_t weight_bytes = 0;  // every weight byte read (mul_mat, get_rows rows, moe), experts included
  uint64_t expert_bytes = 0;  // of which expert weights (moe)
};

// One product of a mul_mat_multi call: y (m, N) = x (m, K) · wᵀ, as mul_mat.
struct MatMulJob {
  const TensorView* w = nullptr;
  const float* x = nullptr;
  int64_t m = 0;
  float* y = nullptr;
};

class ForwardOps {
 public:
  virtual ~ForwardOps() = default;
  virtual std::string_view name() const = 0;

  // y (m, N) = x (m, K) · Wᵀ for w with ne = [K, N] (N rows of K elements), any dtype.
  // As ggml: for q4_0/q8_0 weights x is first quantized to q8_0 per row and the dot products
  // are integer block dots; f32/f16/bf16 weights use an f32 dot. (q4_K/q6_K: dequantized to f32,
  // where ggml would quantize x to q8_K.)
  virtual Status mul_mat(const TensorView& w, const float* x, int64_t m, float* y) = 0;

  // Several independent mul_mats (no job reads another's y): each y gets the bits mul_mat
  // would give it. Ops may run all the jobs' row chunks in one parallel region, which saves a
  // fork-join per job and keeps the weight stream going (a layer's router, attn_k, attn_v and
  // attn_q at decode: 2 MB in four matrices). Errors as mul_mat's, for the first invalid job;
  // which y were written then is unspecified. The default calls mul_mat for each job in order.
  virtual Status mul_mat_multi(std::span<const MatMulJob> jobs) {
    for (const MatMulJob& j : jobs) TANDEM_RETURN_IF_ERROR(mul_mat(*j.w, j.x, j.m, j.y));
    return Status::success();
  }

  // y (m, K) = rows ids[0..m) of w (ne = [K, N]) converted to f32 (ggml get_rows). Repacked
  // views: the ops that reads_q4_0x16() take q4_0x16 rows (a tied token_embd); others refuse.
  virtual Status get_rows(const TensorView& w, const int32_t* ids, int64_t m, float* y) = 0;

  // y = x / sqrt(mean(x²) + eps) * weight, per row of n (ggml rms_norm then mul; sum in double).
  virtual void rms_norm(const float* x, const float* weight, int64_t m, int64_t n, float eps, float* y) = 0;

  // In place NEOX RoPE (spec §2.3) on x (m, n_head, head_dim) for row positions pos[m]:
  // pairs (i, i + n_rot/2), θ_i = pos · base^(-2i/n_rot) computed as ggml does
  // (θ_0 = pos, θ_{i+1} = θ_i · base^(-2/n_rot) in f32).
  virtual void rope_neox(float* x, const int32_t* pos, int64_t m, int64_t n_head, int64_t head_dim,
                         int64_t n_rot, float base) = 0;

  // Causal attention (spec §2.3) for m query rows q (m, n_head, head_dim) at positions pos[m]
  // against the cache layer `kv`, which must already hold every position a query reads
  // (0..pos, or the last kv.n_swa of them). Q head h reads KV head h / (n_head / n_head_kv).
  // out (m, n_head * head_dim). Scores scaled by `scale`, soft_max in f32 with a double sum.
  virtual void attention(const float* q, const int32_t* pos, int64_t m, int64_t n_head,
                         const KvLayerView& kv, float scale, float* out) = 0;

  // out (n_rows, n_embd) = Σ_slot weight[slot] · down_e(relu(gate_e(x)) * up_e(x)), summed
  // in slot order (as llama.cpp). gate_active (n_expert) += number of (row, neuron) pairs
  // routed to each expert whose gate pre-activation is > 0.
  virtual Status moe(const MoeArgs& args, float* out, std::span<uint64_t> gate_active) = 0;

  // Whether mul_mat and moe read q4_0 weights repacked as RowLayout::q4_0x16 (and run faster
  // on them): runtime/convert.h repack_for_cpu rewrites them only then. Ops that return false
  // reject such views with invalid_argument.
  virtual bool reads_q4_0x16() const { return false; }

  virtual ForwardOpsCounters counters() const { return {}; }
  virtual void reset_counters() {}
};

// The plain portable C++ implementation (parallel with oneTBB over rows/heads).
std::unique_ptr<ForwardOps> make_cpu_ops();

// The SIMD kernel-table implementation (runtime/forward_ops_fast.h); `kt` must outlive it.
std::unique_ptr<ForwardOps> make_fast_cpu_ops(const cpu::KernelTable& kt);

}  // namespace tandem
