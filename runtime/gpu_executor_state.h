// Internal to the GPU executors (gpu_executor.cpp, gpu_graph.cpp; the hybrid executor,
// hybrid_executor.cpp, reuses it for attention, norms and the output head): what the graph
// holds on the device and the recording of one ubatch's graph, whole or in parts. Not a
// public interface.
#pragma once

#include <cstdint>
#include <climits>
#include <map>
#include <memory>
#include <vector>

#include "gpu/buffer.h"
#include "gpu/command_recorder.h"
#include "gpu/device.h"
#include "gpu/instance.h"
#include "gpu/pipeline.h"
#include "gpu/staging_ring.h"
#include "gpu/weight_buffer.h"
#include "runtime/forward_ops.h"
#include "runtime/gpu_check.h"
#include "runtime/gpu_executor.h"

namespace tandem {

// One ubatch as the graph sees it: tokens at positions p0 .. p0 + n_tokens - 1.
struct GpuUbatch {
  int64_t n_tokens = 0;
  int64_t p0 = 0;
  bool want_logits = false;
  bool all_rows = false;
  bool read_routing = false;  // record copies of every layer's ids / weights for the observer
  // Rows the last layer computes past its K/V projections (as Forward::eval_ubatch).
  int64_t last_r0() const { return !want_logits ? n_tokens : (all_rows ? 0 : n_tokens - 1); }
};

// How GpuGraph::init sets the graph up.
struct GpuGraphConfig {
  // false: the three ffn_*_exps tensors are not bound (the hybrid executor uploads only its
  // GPU-tier experts, compactly); record parts with moe = false then.
  bool bind_experts = true;
  // true: x (the residual stream) and f (the ffn_norm output) are MemoryIntent::shared
  // (host-visible; on unified memory the CPU reads and writes them in place).
  bool host_activations = false;
};

// Which parts of the ubatch's graph record_ubatch records (all by default = the whole graph).
struct GpuGraphParts {
  bool embed = true;            // get_rows(token_embd) into x
  uint32_t layer_begin = 0;     // layers [layer_begin, layer_end) (clamped to n_layer)
  uint32_t layer_end = UINT32_MAX;
  bool router = true;           // mul_mat(ffn_gate_inp) + top_k (+ routing copies)
  bool moe = true;              // expert FFN + add(moe); false: the layer ends with f = ffn_norm
  bool head = true;             // output_norm + output + logits copy, when ub.want_logits
};

// The router's gating and top-k on one row of logits as Forward::route computes them
// (probabilities in f64 rounded to f32, stable ranking (ties to the lower id), llama.cpp's
// clamp of the weights' sum): ids (k), weights (k). The reference for the shadow check and the
// hybrid executor's CPU router.
void route_row(ExpertGating gating, const float* logits, int64_t n_expert, int64_t k, int32_t* ids,
               float* weights);

struct GpuGraph {
  const Model* model = nullptr;
  GpuExecutorOptions options;
  uint32_t n_ub = 0;  // rows of scratch: min(n_ubatch, n_ctx)

  // Declaration order = reverse destruction order: buffers go before the device.
  std::unique_ptr<gpu::Instance> instance;
  std::unique_ptr<gpu::Device> device;
  std::unique_ptr<gpu::PipelineCache> pipelines;
  std::unique_ptr<gpu::StagingRing> staging;
  std::unique_ptr<gpu::CommandRecorder> rec;         // one-shot recordings (prompt, check)
  std::unique_ptr<gpu::CommandRecorder> decode_rec;  // the replayed one-token recording

  std::vector<gpu::WeightBuffer> weights;
  std::map<const void*, size_t> weight_index;  // tensor data pointer -> weights[]
  uint64_t weight_bytes_bound = 0;
  uint64_t staged_bytes = 0;

  std::vector<gpu::Buffer> k_cache,
      v_cache;  // per layer (n_ctx, n_head_kv, head_dim) of cache_type
  // Scratch, shapes in math order (rows, cols) for n_ub rows.
  gpu::Buffer tokens, pos;  // (n_ub) i32, host-written
  // (n_ub) i32, host-written: the positions of the rows the last layer computes (from
  // GpuUbatch::last_r0()), so that those ops bind their positions at offset 0 (rope and
  // flash_attn take a position slice only at a bindable offset).
  gpu::Buffer pos_rows;
  gpu::Buffer x, h, f, a, moe;             // (n_ub, n_embd)
  gpu::Buffer q, attn;                     // (n_ub, n_head * head_dim)
  gpu::Buffer k, v;                        // (n_ub, n_head_kv * head_dim)
  gpu::Buffer router_logits;               // (n_ub, n_expert)
  gpu::Buffer expert_ids, expert_weights;  // (n_ub, n_expert_used) i32 / f32
  gpu::Buffer gate, up;                    // (n_ub, n_expert_used, n_ff_exp)
  gpu::Buffer expert_out;                  // (n_ub, n_expert_used, n_embd)
  gpu::Buffer fa_scratch;                  // flash_attn split-K partials
  // q8_1 activations of the integer-dot mat-vecs (gpu/ops/quantize_q8_1.h): n_expert_used rows
  // of max(n_embd, n_embd_q, n_ff_exp). Passing it lets one-token mat-vecs over q4_0/q8_0
  // weights pick the _intdot variant where the device has integer dot products (the
  // activations are then quantized as the CPU's mul_mat does: q8_0 values, f16-rounded scale).
  gpu::Buffer q8_1;
  gpu::Buffer logits;                      // (n_ub, n_vocab)
  gpu::Buffer logits_rb;                   // (n_ub, n_vocab) readback
  gpu::Buffer routing_rb;  // (n_layer, n_ub, n_expert_used) ids then weights, readback
  uint64_t scratch_bytes = 0, kv_bytes = 0;

  uint32_t n_past = 0;
  ForwardObserver* observer = nullptr;
  bool decode_recorded = false;
  bool decode_want_logits = false, decode_routing = false;
  uint64_t replays = 0;
  ExecutorCounters counters;

  std::unique_ptr<ForwardOps> cpu_ops;  // shadow check references
  std::unique_ptr<GpuChecker> checker;  // options.check

  const gpu::Buffer& weight(const TensorView& t) const {
    return weights[weight_index.at(t.data)].buffer;
  }
  // Validates the model for the shaders, creates the device and every buffer. Errors as
  // GpuExecutor::create.
  Status init(const Model& model, const GpuExecutorOptions& options, const GpuGraphConfig& config);
  GpuGraphConfig config;

  // Records `parts` of the ubatch's graph into `rec` (begun by the caller), or, with the
  // checker, runs them step by step.
  Status record_ubatch(gpu::CommandRecorder& rec, const GpuUbatch& ub, bool check,
                       const GpuGraphParts& parts = {});
  // Weight bytes the shaders read for one ubatch (ExecutorCounters::weight_bytes).
  uint64_t ubatch_weight_bytes(const GpuUbatch& ub) const;
  uint64_t expert_bytes_per_slot(uint32_t il) const;
};

}  // namespace tandem
