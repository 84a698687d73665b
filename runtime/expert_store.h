// ExpertStore: where the CPU path finds each routed expert's weights (issue 7, "the expert
// cache", RAM tier).
//
// Tier per (layer, expert):
//   ram     computed in place from the model mapping (the file's pages, faulted in on use);
//   stream  read from the GGUF expert slabs into an ExpertCache slot (expert_cache.h:
//           io_uring/O_DIRECT, pinned set, LRU/frequency policy) when the router picks it;
//   gpu     reserved for the hybrid executor (experts a plan puts on the GPU). On this CPU
//           path a gpu tier is computed like ram; make_store_config_from_plan() says so in
//           its notes.
//
// Configurations (ExpertStoreConfig) come from a planner Plan (planner/plan.h: ram_cpu ->
// ram, storage -> stream with the plan's ram_cache_experts slots per layer, gpu_* -> gpu) or
// from simple policies: all ram; all stream with N slots; a memory limit.
//
// Memory-limit arithmetic (make_store_config_for_mem_limit), all in bytes:
//   resident = non-expert weights (every tensor of the file that is not a ffn_*_exps one)
//            + KV cache + reserve (activations, code and heaps: MemLimitInputs::reserve_bytes)
//   slots    = floor((limit - resident) / slot_bytes), ExpertCache::slot_bytes() (the largest
//              expert of any layer plus O_DIRECT padding)
//   required: slots >= n_expert_used (one layer's routed experts for one token), else
//             out_of_memory naming every figure.
// Every expert is streamed then, from one pool shared by all layers (PowerInfer's single LRU,
// spec §5.2).
//
// Threading: acquire() may be called from any thread (the ExpertCache is thread-safe).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/model_shape.h"
#include "core/status.h"
#include "core/tensor_view.h"
#include "planner/plan.h"
#include "runtime/expert_cache.h"
#include "runtime/model.h"

namespace tandem {

enum class StoreTier : uint8_t { ram, stream, gpu };
const char* store_tier_name(StoreTier t);  // "ram", "stream", "gpu"

struct ExpertStoreConfig {
  uint32_t n_layer = 0, n_expert = 0;
  std::vector<StoreTier> tiers;    // [layer * n_expert + expert]
  uint32_t n_slots = 0;            // shared pool (when n_slots_per_layer == 0)
  uint32_t n_slots_per_layer = 0;  // > 0: partitioned per layer
  std::vector<ExpertId> pinned;    // streamed experts loaded once and kept
  std::vector<std::string>
      notes;  // choices worth printing ("plan tier gpu runs as ram on the CPU path")

  StoreTier tier(ExpertId id) const {
    return tiers[size_t(id.layer) * n_expert + size_t(id.expert)];
  }
  uint32_t count(StoreTier t) const;
};

ExpertStoreConfig make_store_config_all_ram(const ModelShape& shape);
// Errors: invalid_argument for 0 slots.
Result<ExpertStoreConfig> make_store_config_all_stream(const ModelShape& shape,
                                                       uint32_t n_slots_per_layer);
// Errors: invalid_argument when the plan's n_layer/n_expert differ from the model's, or it
// streams experts with ram_cache_experts == 0.
Result<ExpertStoreConfig> make_store_config_from_plan(const ModelShape& shape, const Plan& plan);

struct MemLimitInputs {
  uint64_t mem_limit = 0;      // bytes
  uint64_t kv_bytes = 0;       // KvCache::size_bytes()
  uint64_t reserve_bytes = 0;  // activations, code, heaps
};
// The bytes of every non-expert tensor of the file (what stays resident in the mapping).
uint64_t non_expert_weight_bytes(const GgufFile& file);
// Slot size of an ExpertCache over `file` (the largest layer's expert + O_DIRECT padding);
// not_found when the file has no expert tensors.
Result<uint64_t> expert_slot_bytes(const GgufFile& file);
// Errors: out_of_memory "--mem-limit 512.0 MiB is too small: non-expert weights 300.0 MiB +
// KV 64.0 MiB + reserve 64.0 MiB + one layer's 4 routed experts 4 × 6.0 MiB = 452.0 MiB".
Result<ExpertStoreConfig> make_store_config_for_mem_limit(const Model& model,
                                                          const MemLimitInputs& in);

// "1G", "512M", "65536", "1.5G", "300k" (binary units: k = 1024). Errors: invalid_argument
// naming the text.
Result<uint64_t> parse_mem_size(std::string_view text);
std::string format_mib(uint64_t bytes);  // "12.3 MiB"

// One expert's weights for the moe op, as one-expert 3-D views in ggml ne order
// (ne2 = 1): gate/up (n_embd, n_ff_exp, 1); down (n_ff_exp, n_embd, 1) standard or
// (n_embd, n_ff_exp, 1) transposed. `ref` keeps a streamed expert's slot alive.
struct ExpertWeightsRef {
  TensorView gate, up, down;
  ExpertRef ref;
  bool streamed = false;
  bool waited = false;  // acquire() had to wait for a read (or start one)
};

class ExpertStore {
 public:
  // `model` must outlive the store. Stream tiers open an ExpertCache over the model file
  // with `cache_options` (io, faults, policy, hooks; its n_slots / n_slots_per_layer /
  // pinned are taken from `config`). Errors: invalid_argument when the config's shape
  // differs from the model's; the cache's.
  static Result<std::unique_ptr<ExpertStore>> create(const Model& model, ExpertStoreConfig config,
                                                     ExpertCacheOptions cache_options);

  const ExpertStoreConfig& config() const { return config_; }
  StoreTier tier(ExpertId id) const { return config_.tier(id); }
  ExpertCache* cache() const { return cache_.get(); }  // nullptr when nothing is streamed

  // Blocks for a streamed expert until it is in RAM. Errors: the cache's (an io_error naming
  // the layer, expert, tensor, file, offset).
  Result<ExpertWeightsRef> acquire(ExpertId id) const;

  // Drops every page of the model mapping from this process (madvise MADV_DONTNEED) and the
  // file's unmapped pages from the page cache (posix_fadvise DONTNEED), so that memory-limited
  // mode starts with no expert page resident (large page-cache folios and fault-around would
  // otherwise map expert bytes next to the non-expert weights). The non-expert weights fault
  // back in on use. Errors: io_error naming the file.
  Status drop_streamed_pages() const;

 private:
  ExpertStore(const Model& model, ExpertStoreConfig config)
      : model_(model), config_(std::move(config)) {}
  const Model& model_;
  ExpertStoreConfig config_;
  std::unique_ptr<ExpertCache> cache_;
};

}  // namespace tandem
