// ExpertCache: the RAM tier of hybrid execution — experts read on demand from the GGUF file's
// expert slabs (spec §3.3: expert e of `blk.l.ffn_{gate,up,down}_exps.weight` is the slab of
// nb[2] bytes at file_offset + e * nb[2]) into a fixed number of RAM slots, with a pinned set
// and a replacement policy (spec §5.2 describes PowerInfer's equivalent).
//
// Granularity: one slot holds one whole expert (its gate, up and down matrices), unlike
// PowerInfer's per-matrix entries: Tandem's executor always needs all three matrices of a
// routed expert (gate for every row, up/down for the rows the ReLU gate leaves active), so a
// per-matrix cache would only add states where an expert is partly resident. A load issues
// the three reads at once; the expert becomes PRESENT when all three have arrived.
//
// Memory: each slot is one 4096-aligned buffer with one region per matrix; each region holds
// the matrix's covering aligned range (io_cover), so a slot costs
// sum over matrices of (align_up(nb[2]) + 4096) bytes, under 8192 bytes per matrix more than
// the slab (slot_bytes()); in O_DIRECT mode a load moves at most 8190 extra bytes per matrix
// (the alignment padding before and after the slab). The slab starts `lead` = file offset %
// 4096 bytes into its region.
//
// States per expert: NOT_PRESENT -> LOADING -> PRESENT (-> NOT_PRESENT on eviction, or when
// the load fails: the error goes to every waiter and the next access tries again).
// Pinned experts (from the plan) get slots of their own on top of n_slots, load on first
// access (or preload_pinned()) and are never evicted. Dynamic slots are recycled by the
// policy (cache_policy.h: lru or frequency) among experts that are PRESENT and not
// referenced; a referenced expert (a live ExpertRef) is never evicted.
//
// Counters: acquire_* classify each acquire() (hit = present, loading = a load was in
// flight, e.g. from a prefetch; miss = acquire started the load); request_* the same for
// request()/prefetch(). Every access, of either kind, also updates the policy (as PowerInfer's
// prefetch LRU-promotes). bytes_loaded counts slab bytes of completed loads; io.bytes_transferred
// what the kernel moved, alignment padding included.
//
// Threading: every method may be called from any thread. acquire() blocks; request() and
// prefetch() only queue reads. An ExpertRef must not outlive its cache. Waiting for a slot:
// when every dynamic slot is referenced or loading, acquire() waits up to slot_wait_ms for one
// to be released, then fails with out_of_memory (holding more ExpertRefs than n_slots from one
// thread cannot make progress); request() gives up at once (counted as request_dropped).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "core/model_shape.h"
#include "core/status.h"
#include "core/tensor_view.h"
#include "runtime/cache_policy.h"
#include "runtime/gguf_file.h"
#include "runtime/io_uring_reader.h"

namespace tandem {

// The three matrices of an expert, in the GGUF tensor names' order.
enum class ExpertMatrix : uint8_t { gate = 0, up = 1, down = 2 };  // ffn_{gate,up,down}_exps
inline constexpr int k_expert_matrices = 3;

enum class ExpertState : uint8_t { not_present, loading, present };
const char* expert_state_name(ExpertState s);

enum class CachePolicyKind : uint8_t { lru, frequency };

struct ExpertCacheOptions {
  uint32_t n_slots = 16;           // dynamic slots, one expert each (may be 0: pinned only)
  // > 0: partitioned — every layer gets this many dynamic slots of its own and evicts only
  // among them (the plan's per-layer `ram_cache_experts`, planner/plan.h); n_slots is then
  // ignored and n_slots() = n_slots_per_layer * n_layer. 0: one pool of n_slots shared by all
  // layers (PowerInfer's single LRU, spec §5.2).
  uint32_t n_slots_per_layer = 0;
  std::vector<ExpertId> pinned;    // each gets its own slot, never evicted
  CachePolicyKind policy = CachePolicyKind::lru;
  FrequencyPolicyOptions frequency;  // for CachePolicyKind::frequency
  AsyncReaderOptions io;
  uint32_t slot_wait_ms = 30000;   // acquire(): longest wait for a dynamic slot to free up
  // Optional hooks (traces): on_load_start when a load starts (just before its three reads
  // are submitted), on_load_done when its last read completed (ok or the load's error). Called with the
  // cache's lock held, on the submitting thread and on the reader's completion thread: keep
  // them short and never call back into the cache.
  std::function<void(ExpertId)> on_load_start;
  std::function<void(ExpertId, const Status&)> on_load_done;
};

struct ExpertCacheStats {
  uint64_t acquire_hits = 0, acquire_loading = 0, acquire_misses = 0;
  uint64_t request_hits = 0, request_loading = 0, request_loads = 0, request_dropped = 0;
  uint64_t evictions = 0;
  uint64_t loads_completed = 0, loads_failed = 0;
  uint64_t bytes_loaded = 0;  // slab bytes of completed loads
  IoStats io;
};

class ExpertCache;

// A PRESENT expert held in RAM while this lives (its slot is not evicted). Move-only.
class ExpertRef {
 public:
  ExpertRef() = default;
  ExpertRef(ExpertRef&& o) noexcept;
  ExpertRef& operator=(ExpertRef&& o) noexcept;
  ExpertRef(const ExpertRef&) = delete;
  ExpertRef& operator=(const ExpertRef&) = delete;
  ~ExpertRef() { release(); }

  explicit operator bool() const { return cache_ != nullptr; }
  ExpertId id() const { return id_; }
  // The expert's matrix as a 2-D view in ggml ne order: gate/up (n_embd, n_ff_exp); down
  // (n_ff_exp, n_embd), or (n_embd, n_ff_exp) for a transposed-down file. Named after the
  // GGUF tensor; dtype as stored.
  const TensorView& matrix(ExpertMatrix m) const { return views_[static_cast<int>(m)]; }
  // The slab's bytes: equal to tensor_bytes(blk.l.ffn_*_exps.weight)[e * nb2, (e + 1) * nb2).
  std::span<const uint8_t> bytes(ExpertMatrix m) const;
  void release();

 private:
  friend class ExpertCache;
  ExpertCache* cache_ = nullptr;
  uint32_t slot_ = 0;
  ExpertId id_;
  TensorView views_[k_expert_matrices];
};

class ExpertCache {
 public:
  // Reads the expert tensors' layout from `file` (which need not outlive the cache) and opens
  // the file for reading. Errors: not_found (no blk.0.ffn_gate_exps.weight, or a layer missing
  // one of the three), invalid_file (not 3-D, expert counts differing), invalid_argument
  // (pinned id out of range or repeated), out_of_memory (slot allocation), and the reader's.
  static Result<std::unique_ptr<ExpertCache>> create(const GgufFile& file, const ExpertCacheOptions& options);
  ~ExpertCache();  // waits for reads in flight
  ExpertCache(const ExpertCache&) = delete;
  ExpertCache& operator=(const ExpertCache&) = delete;

  // Starts loading `id` when it is absent (evicting if needed); never waits for I/O. Returns
  // the state found before the call: not_present means a load was started, or dropped when
  // no slot could be freed (see stats().request_dropped and state()).
  Result<ExpertState> request(ExpertId id);
  // Requests `ids` in order (the router's choice, top-1 first). Returns the loads started.
  Result<uint32_t> prefetch(std::span<const ExpertId> ids);
  // Blocks until `id` is PRESENT and returns it referenced, or the error of its load
  // (io_error naming the tensor, file, offset, length and errno).
  Result<ExpertRef> acquire(ExpertId id);
  // Loads every pinned expert and waits for them.
  Status preload_pinned();

  ExpertState state(ExpertId id) const;
  std::vector<ExpertId> resident() const;  // PRESENT experts, sorted
  ExpertCacheStats stats() const;
  std::string_view policy_name() const;

  uint32_t n_layer() const { return n_layer_; }
  uint32_t n_expert() const { return n_expert_; }
  uint32_t n_slots() const { return n_slots_; }  // dynamic slots (all partitions)
  uint64_t slot_bytes() const { return slot_bytes_; }
  uint64_t expert_bytes(uint32_t layer) const;  // slab bytes of one expert of that layer
  const AsyncReader& reader() const { return *reader_; }

 private:
  friend class ExpertRef;
  struct MatrixLayout {
    std::string name;
    DType dtype = DType::f32;
    int64_t ne0 = 0, ne1 = 0;
    uint64_t file_offset = 0;  // of expert 0
    uint64_t nb2 = 0;          // bytes per expert
  };
  struct Load {
    bool done = false;
    Status status;
  };
  struct Slot {
    AlignedBuffer buffer;
    ExpertId id{-1, -1};
    ExpertState state = ExpertState::not_present;
    bool pinned = false;
    uint32_t refs = 0;
    uint32_t reads_left = 0;
    std::shared_ptr<Load> load;
  };

  ExpertCache() = default;
  size_t key(ExpertId id) const { return size_t(id.layer) * n_expert_ + size_t(id.expert); }
  Status check_id(ExpertId id) const;
  const MatrixLayout& layout(int32_t layer, int m) const { return layouts_[size_t(layer) * k_expert_matrices + m]; }
  uint64_t region_offset(int m) const { return region_offset_[m]; }
  // Starts a load into a slot (evicting if needed); null when no slot can be freed. The load
  // may already be done (failed) when every submit was refused. Caller holds mu_.
  std::shared_ptr<Load> start_load_locked(ExpertId id);
  void on_read_done(uint32_t slot, int m, const Status& status);  // takes mu_
  void finish_read_locked(uint32_t slot, int m, const Status& status);
  Result<ExpertState> request_impl(ExpertId id, bool* load_started);
  ExpertRef make_ref_locked(uint32_t slot);
  void release(uint32_t slot);

  // Dynamic slots of a partition: [p * partition_size_, (p + 1) * partition_size_).
  uint32_t partition_of(int32_t layer) const { return per_layer_ ? uint32_t(layer) : 0; }
  uint32_t n_layer_ = 0, n_expert_ = 0, n_slots_ = 0, partition_size_ = 0;
  bool per_layer_ = false;
  uint64_t slot_bytes_ = 0;
  uint64_t region_offset_[k_expert_matrices] = {0, 0, 0};
  uint32_t slot_wait_ms_ = 0;
  std::function<void(ExpertId)> on_load_start_;
  std::function<void(ExpertId, const Status&)> on_load_done_;
  std::string path_;
  std::vector<MatrixLayout> layouts_;  // [layer][matrix]

  mutable std::mutex mu_;
  std::condition_variable cv_;  // a load finished or a reference was released
  std::vector<Slot> slots_;     // dynamic slots first, then one per pinned expert
  std::vector<int32_t> slot_of_;  // [key] -> slot, -1 when absent
  std::vector<std::vector<int32_t>> free_;  // [partition] dynamic slots holding nothing
  std::unique_ptr<CachePolicy> policy_;
  uint64_t tick_ = 0;
  ExpertCacheStats stats_;
  std::unique_ptr<AsyncReader> reader_;
};

}  // namespace tandem
