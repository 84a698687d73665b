#include "runtime/kv_cache.h"

#include <algorithm>
#include <new>

namespace tandem {

Result<KvCache> KvCache::create(const ModelShape& shape, const KvCacheOptions& options) {
  if (options.n_ctx == 0) return make_error(ErrorCode::invalid_argument, "KV cache: context size (-c) must be > 0");
  if (options.n_ubatch == 0) return make_error(ErrorCode::invalid_argument, "KV cache: ubatch size must be > 0");
  if (options.type != DType::f16 && options.type != DType::f32) {
    return make_error(ErrorCode::invalid_argument, "KV cache: type {} not supported (use f16 or f32)",
                      dtype_name(options.type));
  }
  if (shape.n_embd_head_k != shape.n_embd_head_v) {
    return make_error(ErrorCode::unsupported, "KV cache: key_length {} != value_length {}",
                      shape.n_embd_head_k, shape.n_embd_head_v);
  }
  KvCache c;
  c.n_ctx_ = options.n_ctx;
  c.n_ubatch_ = std::min(options.n_ubatch, options.n_ctx);
  c.type_ = options.type;
  const size_t cell_bytes = dtype_row_size(options.type, shape.n_embd_k_gqa());
  c.layers_.resize(shape.n_layer);
  try {
    for (uint32_t il = 0; il < shape.n_layer; ++il) {
      Layer& l = c.layers_[il];
      const bool swa = shape.is_swa(il);
      // A window of n_swa positions plus one ubatch written ahead of its queries.
      const uint64_t want = swa ? uint64_t{shape.n_swa} + c.n_ubatch_ : options.n_ctx;
      l.meta.n_cells = static_cast<uint32_t>(std::min<uint64_t>(want, options.n_ctx));
      l.meta.type = options.type;
      l.meta.n_head_kv = shape.n_head_kv;
      l.meta.head_dim = shape.n_embd_head_k;
      l.meta.cell_bytes = cell_bytes;
      l.meta.n_swa = swa ? shape.n_swa : 0;
      l.k.assign(cell_bytes * l.meta.n_cells, 0);
      l.v.assign(cell_bytes * l.meta.n_cells, 0);
    }
  } catch (const std::bad_alloc&) {
    return make_error(ErrorCode::out_of_memory, "KV cache: cannot allocate {} layers for a context of {}",
                      shape.n_layer, options.n_ctx);
  }
  c.first_pos_.assign(shape.n_layer, 0);
  return c;
}

size_t KvCache::size_bytes() const {
  size_t total = 0;
  for (const Layer& l : layers_) total += l.k.size() + l.v.size();
  return total;
}

uint32_t KvCache::first_pos(uint32_t il) const { return first_pos_[il]; }

void KvCache::clear() {
  n_past_ = 0;
  std::fill(first_pos_.begin(), first_pos_.end(), 0u);
}

void KvCache::advance(uint32_t n_tokens) {
  n_past_ += n_tokens;
  // Truncation does not bring overwritten cells back, so the oldest valid position only grows.
  for (size_t il = 0; il < layers_.size(); ++il) {
    const uint32_t cells = layers_[il].meta.n_cells;
    if (n_past_ > cells) first_pos_[il] = std::max(first_pos_[il], n_past_ - cells);
  }
}

Status KvCache::truncate(uint32_t n) {
  if (n > n_past_) {
    return make_error(ErrorCode::invalid_argument, "KV cache: cannot keep {} positions, it holds {}", n, n_past_);
  }
  for (uint32_t il = 0; il < layers_.size(); ++il) {
    const KvLayerView& m = layers_[il].meta;
    if (m.n_swa == 0 || n == 0) continue;
    // The next query (position n) reads positions n - n_swa + 1 .. n - 1.
    const uint32_t need = n >= m.n_swa ? n - m.n_swa + 1 : 0;
    if (need < first_pos(il)) {
      return make_error(ErrorCode::invalid_argument,
                        "KV cache: layer {} (sliding window) no longer holds position {} needed to keep {} positions",
                        il, need, n);
    }
  }
  n_past_ = n;
  return Status::success();
}

}  // namespace tandem
