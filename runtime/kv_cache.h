// KvCache: the attention keys and values of one sequence, per layer (spec §2.3).
//
// Layout per layer: `n_cells` cells, each one position's K (n_embd_k_gqa = n_head_kv *
// head_dim elements, head-major: head h at [h*head_dim, (h+1)*head_dim)) and V (same shape),
// stored in `type` (f16 by default, as llama.cpp's --cache-type-k/-v f16; f32 selectable).
//
// Full-attention layers hold the whole context: n_cells = n_ctx, cell = position.
// Sliding-window layers (`shape.is_swa(il)`) hold only the recent window as a ring buffer:
// n_cells = min(n_ctx, n_swa + n_ubatch), cell = position % n_cells. The extra n_ubatch cells
// are what llama.cpp's iswa cache adds too: a ubatch writes all its T <= n_ubatch keys before
// its first query reads, and that query still needs the n_swa - 1 positions before it.
// NoPE layers (spec §2.4, `!shape.use_rope(il)`) simply get unrotated K from the caller.
//
// Positions are 0 .. n_past()-1, appended in order (one sequence). Not thread-safe for
// concurrent writers; concurrent readers of distinct cells are fine.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/dtype.h"
#include "core/model_shape.h"
#include "core/status.h"

namespace tandem {

struct KvCacheOptions {
  uint32_t n_ctx = 4096;    // positions a full-attention layer holds (-c)
  uint32_t n_ubatch = 512;  // largest ubatch that will be appended at once
  DType type = DType::f16;  // f16 or f32, for K and V both
};

// One layer's storage as the attention op sees it.
struct KvLayerView {
  uint8_t* k = nullptr;       // (n_cells, n_head_kv, head_dim) of `type`
  uint8_t* v = nullptr;       // (n_cells, n_head_kv, head_dim) of `type`
  DType type = DType::f16;
  uint32_t n_cells = 0;
  uint32_t n_head_kv = 0;
  uint32_t head_dim = 0;
  size_t cell_bytes = 0;      // bytes of one cell's K (same for V)
  uint32_t n_swa = 0;         // window in positions for sliding-window layers, 0 = full

  uint8_t* k_cell(int64_t pos) const { return k + static_cast<size_t>(pos % n_cells) * cell_bytes; }
  uint8_t* v_cell(int64_t pos) const { return v + static_cast<size_t>(pos % n_cells) * cell_bytes; }
};

class KvCache {
 public:
  // Errors: invalid_argument for n_ctx == 0, n_ubatch == 0, a type other than f16/f32, or
  // key_length != value_length; out_of_memory when the buffers cannot be allocated.
  static Result<KvCache> create(const ModelShape& shape, const KvCacheOptions& options);

  uint32_t n_ctx() const { return n_ctx_; }
  uint32_t n_ubatch() const { return n_ubatch_; }
  uint32_t n_layer() const { return static_cast<uint32_t>(layers_.size()); }
  DType type() const { return type_; }
  uint32_t n_past() const { return n_past_; }  // positions held (next position to write)
  size_t size_bytes() const;                   // K + V of every layer

  KvLayerView layer(uint32_t il) { return layers_[il].view(); }
  // Oldest position layer il still holds.
  uint32_t first_pos(uint32_t il) const;

  // Forgets everything (n_past = 0); keeps the buffers.
  void clear();
  // Forgets positions >= n. Errors (invalid_argument) when n > n_past, or when a
  // sliding-window layer has already overwritten a position the window of position n would
  // need (the caller must then clear() and re-evaluate).
  Status truncate(uint32_t n);
  // Marks positions n_past .. n_past+n_tokens-1 as written (by the forward pass).
  // Precondition: n_past + n_tokens <= n_ctx and n_tokens <= n_ubatch.
  void advance(uint32_t n_tokens);

 private:
  struct Layer {
    std::vector<uint8_t> k, v;
    KvLayerView meta;
    KvLayerView view() {
      KvLayerView r = meta;
      r.k = k.data();
      r.v = v.data();
      return r;
    }
  };
  std::vector<Layer> layers_;
  std::vector<uint32_t> first_pos_;  // per layer: oldest position not yet overwritten
  uint32_t n_ctx_ = 0;
  uint32_t n_ubatch_ = 0;
  uint32_t n_past_ = 0;
  DType type_ = DType::f16;
};

}  // namespace tandem
