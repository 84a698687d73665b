// Forward: the SmallThinker forward pass over a KvCache (spec §2.1-2.6), the runtime's
// executor. Weights are read in place from the model mapping; activations live in scratch
// buffers owned by the Forward object.
//
// eval() appends `tokens` at positions kv.n_past() … to the cache, in ubatches of at most
// min(n_ubatch, kv.n_ubatch()) tokens (a prompt and a single decode token take the same
// path), and returns logits only for the rows asked for:
//   LogitsRows::last : (1, n_vocab)  the last token's (sampling)
//   LogitsRows::all  : (n_tokens, n_vocab) every token's, row-major (perplexity)
// Per layer, the router reads the raw layer input (spec §2.2) and its result is handed to the
// ForwardObserver before attention starts. With an observer the router runs first, before
// anything else of the layer; without one it shares a parallel region with the K, V and Q
// projections (ForwardOps::mul_mat_multi).
//
// Threads: every op runs inside a tbb::task_arena of `n_threads` (0 = all hardware threads).
// Results are bit-identical for every thread count and for every ubatch size (each output
// element is computed by one thread in a fixed order; see forward_ops.h).
//
// Not thread-safe: one eval at a time per Forward object.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "core/model_shape.h"
#include "core/model_weights.h"
#include "core/status.h"
#include "runtime/forward_observer.h"
#include "runtime/forward_ops.h"
#include "runtime/kv_cache.h"

namespace tandem {

struct ForwardOptions {
  uint32_t n_ubatch = 512;  // tokens per ubatch (-ub)
  int n_threads = 0;        // -t; 0 = every hardware thread
};

enum class LogitsRows { last, all };

class Forward {
 public:
  // `shape` and `weights` must outlive the Forward (they view the model mapping).
  // ops: nullptr = make_fast_cpu_ops(cpu::kernels()). Errors: invalid_argument for n_ubatch == 0 or n_threads < 0.
  static Result<std::unique_ptr<Forward>> create(const ModelShape& shape, const ModelWeights& weights,
                                                 const ForwardOptions& options,
                                                 std::unique_ptr<ForwardOps> ops = nullptr);
  ~Forward();
  Forward(const Forward&) = delete;
  Forward& operator=(const Forward&) = delete;

  // Errors (the cache is unchanged on an argument error): invalid_argument for no tokens, a
  // token id outside [0, n_vocab) (naming its index), a cache made for another model, or
  // n_past + n_tokens > n_ctx ("… exceeds the context of N (-c)"). Errors from the ops leave the
  // cache holding the ubatches completed before the failure.
  Status eval(KvCache& kv, std::span<const int32_t> tokens, LogitsRows rows, std::vector<float>& logits);

  // Not owned; nullptr to stop observing.
  void set_observer(ForwardObserver* observer) { observer_ = observer; }
  int n_threads() const;
  ForwardOps& ops() { return *ops_; }
  const ModelShape& shape() const { return shape_; }

 private:
  Forward(const ModelShape& shape, const ModelWeights& weights, const ForwardOptions& options,
          std::unique_ptr<ForwardOps> ops);
  Status eval_ubatch(KvCache& kv, std::span<const int32_t> tokens, bool want_logits, bool all_rows, float* logits);
  Status route(uint32_t il, const float* x, int64_t m, const int32_t* pos);
  // Top-k experts and their weights (expert_ids_, expert_weights_) from router_logits_ (m rows).
  void select_experts(uint32_t il, int64_t m, const int32_t* pos);

  const ModelShape& shape_;
  const ModelWeights& weights_;
  ForwardOptions options_;
  std::unique_ptr<ForwardOps> ops_;
  ForwardObserver* observer_ = nullptr;
  struct Arena;
  std::unique_ptr<Arena> arena_;

  // Scratch, grown on demand; shapes in math order (rows, cols).
  std::vector<float> x_, h_, q_, k_, v_, attn_, a_, f_, moe_, router_logits_;
  std::vector<int32_t> pos_, expert_ids_;
  std::vector<float> expert_weights_;
  std::vector<uint64_t> gate_active_;
  std::vector<uint64_t> routed_;
  std::vector<uint32_t> gate_neurons_;  // (n_expert, n_ff_exp), only for observers that want it
};

}  // namespace tandem
