#include "runtime/expert_cache.h"

#include <algorithm>
#include <chrono>
#include <utility>

namespace tandem {

namespace {

constexpr const char* k_matrix_names[k_expert_matrices] = {"ffn_gate_exps", "ffn_up_exps", "ffn_down_exps"};

}  // namespace

const char* expert_state_name(ExpertState s) {
  switch (s) {
    case ExpertState::not_present: return "not_present";
    case ExpertState::loading: return "loading";
    case ExpertState::present: return "present";
  }
  return "?";
}

// ---------------------------------------------------------------------------------------
// ExpertRef

ExpertRef::ExpertRef(ExpertRef&& o) noexcept
    : cache_(std::exchange(o.cache_, nullptr)), slot_(o.slot_), id_(o.id_) {
  for (int m = 0; m < k_expert_matrices; ++m) views_[m] = o.views_[m];
}

ExpertRef& ExpertRef::operator=(ExpertRef&& o) noexcept {
  if (this != &o) {
    release();
    cache_ = std::exchange(o.cache_, nullptr);
    slot_ = o.slot_;
    id_ = o.id_;
    for (int m = 0; m < k_expert_matrices; ++m) views_[m] = o.views_[m];
  }
  return *this;
}

std::span<const uint8_t> ExpertRef::bytes(ExpertMatrix m) const {
  const TensorView& v = views_[static_cast<int>(m)];
  return {static_cast<const uint8_t*>(v.data), v.nbytes()};
}

void ExpertRef::release() {
  if (cache_) std::exchange(cache_, nullptr)->release(slot_);
}

// ---------------------------------------------------------------------------------------
// Construction

Result<std::unique_ptr<ExpertCache>> ExpertCache::create(const GgufFile& file,
                                                         const ExpertCacheOptions& options) {
  std::unique_ptr<ExpertCache> c(new ExpertCache());
  c->path_ = file.path().string();
  const std::string& path = c->path_;

  for (uint32_t l = 0;; ++l) {
    const std::string gate_name = fmt::format("blk.{}.{}.weight", l, k_matrix_names[0]);
    if (!file.find_tensor(gate_name)) {
      if (l == 0) return make_error(ErrorCode::not_found, "{}: no expert tensor {}", path, gate_name);
      break;
    }
    for (int m = 0; m < k_expert_matrices; ++m) {
      const std::string name = fmt::format("blk.{}.{}.weight", l, k_matrix_names[m]);
      const GgufTensorInfo* t = file.find_tensor(name);
      if (!t) return make_error(ErrorCode::not_found, "{}: layer {} has {} but no {}", path, l, gate_name, name);
      if (t->n_dims != 3 || t->ne[2] < 1) {
        return make_error(ErrorCode::invalid_file, "{}: {} has {} dims (ne {}x{}x{}); expert tensors are 3-D",
                          path, name, t->n_dims, t->ne[0], t->ne[1], t->ne[2]);
      }
      if (c->n_expert_ == 0) c->n_expert_ = static_cast<uint32_t>(t->ne[2]);
      if (t->ne[2] != c->n_expert_) {
        return make_error(ErrorCode::invalid_file, "{}: {} has {} experts, blk.0.{}.weight has {}", path, name,
                          t->ne[2], k_matrix_names[0], c->n_expert_);
      }
      MatrixLayout ml;
      ml.name = name;
      ml.dtype = t->dtype;
      ml.ne0 = t->ne[0];
      ml.ne1 = t->ne[1];
      ml.file_offset = t->file_offset;
      ml.nb2 = dtype_row_size(t->dtype, t->ne[0]) * static_cast<uint64_t>(t->ne[1]);
      if (ml.nb2 * static_cast<uint64_t>(t->ne[2]) != t->nbytes) {
        return make_error(ErrorCode::invalid_file, "{}: {} holds {} bytes, expected {} experts x {}", path, name,
                          t->nbytes, t->ne[2], ml.nb2);
      }
      c->layouts_.push_back(std::move(ml));
    }
    ++c->n_layer_;
  }

  // Each region must hold the covering aligned range of the largest slab of its matrix.
  uint64_t region_bytes[k_expert_matrices] = {0, 0, 0};
  for (uint32_t l = 0; l < c->n_layer_; ++l) {
    for (int m = 0; m < k_expert_matrices; ++m) {
      region_bytes[m] = std::max(region_bytes[m], io_align_up(c->layout(int32_t(l), m).nb2) + k_io_alignment);
    }
  }
  for (int m = 0; m < k_expert_matrices; ++m) {
    c->region_offset_[m] = c->slot_bytes_;
    c->slot_bytes_ += region_bytes[m];
  }

  c->per_layer_ = options.n_slots_per_layer > 0;
  c->n_slots_ = c->per_layer_ ? options.n_slots_per_layer * c->n_layer_ : options.n_slots;
  c->partition_size_ = c->per_layer_ ? options.n_slots_per_layer : options.n_slots;
  c->slot_wait_ms_ = options.slot_wait_ms;
  c->on_load_start_ = options.on_load_start;
  c->on_load_done_ = options.on_load_done;
  c->slot_of_.assign(size_t{c->n_layer_} * c->n_expert_, -1);
  c->slots_.resize(size_t{c->n_slots_} + options.pinned.size());
  for (size_t s = 0; s < c->slots_.size(); ++s) {
    auto buf = AlignedBuffer::allocate(c->slot_bytes_);
    if (!buf.ok()) {
      return buf.status().with_context(fmt::format("expert cache for {}: slot {} of {}", path, s, c->slots_.size()));
    }
    c->slots_[s].buffer = std::move(buf).value();
  }
  c->free_.resize(c->per_layer_ ? c->n_layer_ : 1);
  for (uint32_t s = c->n_slots_; s-- > 0;) {
    c->free_[c->partition_size_ ? s / c->partition_size_ : 0].push_back(static_cast<int32_t>(s));
  }
  for (size_t i = 0; i < options.pinned.size(); ++i) {
    const ExpertId id = options.pinned[i];
    TANDEM_RETURN_IF_ERROR(c->check_id(id).with_context("pinned expert list"));
    if (c->slot_of_[c->key(id)] >= 0) {
      return make_error(ErrorCode::invalid_argument, "pinned expert list names layer {} expert {} twice",
                        id.layer, id.expert);
    }
    const auto s = static_cast<int32_t>(c->n_slots_ + i);
    c->slots_[size_t(s)].pinned = true;
    c->slots_[size_t(s)].id = id;
    c->slot_of_[c->key(id)] = s;
  }

  if (options.policy == CachePolicyKind::lru) {
    c->policy_ = make_lru_policy(c->n_layer_, c->n_expert_);
  } else {
    TANDEM_ASSIGN_OR_RETURN(c->policy_,
                            make_frequency_policy(c->n_layer_, c->n_expert_, c->n_slots_, options.frequency));
  }
  TANDEM_ASSIGN_OR_RETURN(c->reader_, AsyncReader::open(file.path(), options.io));
  // Every slab must lie inside the file the reader sees (the mapping and the file agree
  // unless the file changed underneath).
  for (const MatrixLayout& ml : c->layouts_) {
    if (ml.file_offset + ml.nb2 * c->n_expert_ > c->reader_->file_size()) {
      return make_error(ErrorCode::invalid_file, "{}: {} ends at byte {}, past the end of the file ({} bytes)",
                        path, ml.name, ml.file_offset + ml.nb2 * c->n_expert_, c->reader_->file_size());
    }
  }
  return c;
}

ExpertCache::~ExpertCache() {
  // Completions touch the slots: let every read and callback finish first.
  reader_.reset();
#ifndef NDEBUG
  for (const Slot& s : slots_) assert(s.refs == 0 && "an ExpertRef outlived its ExpertCache");
#endif
}

Status ExpertCache::check_id(ExpertId id) const {
  if (id.layer < 0 || uint32_t(id.layer) >= n_layer_ || id.expert < 0 || uint32_t(id.expert) >= n_expert_) {
    return make_error(ErrorCode::invalid_argument, "expert id (layer {}, expert {}) is outside {} layers x {} experts",
                      id.layer, id.expert, n_layer_, n_expert_);
  }
  return Status::success();
}

uint64_t ExpertCache::expert_bytes(uint32_t layer) const {
  uint64_t n = 0;
  for (int m = 0; m < k_expert_matrices; ++m) n += layout(int32_t(layer), m).nb2;
  return n;
}

// ---------------------------------------------------------------------------------------
// Loading

std::shared_ptr<ExpertCache::Load> ExpertCache::start_load_locked(ExpertId id) {
  int32_t s = slot_of_[key(id)];  // pinned experts keep their slot mapped while absent
  if (s < 0) {
    const uint32_t p = partition_of(id.layer);
    if (!free_[p].empty()) {
      s = free_[p].back();
      free_[p].pop_back();
    } else {
      std::vector<ExpertId> candidates;
      std::vector<int32_t> candidate_slots;
      for (uint32_t i = p * partition_size_; i < (p + 1) * partition_size_; ++i) {
        const Slot& slot = slots_[i];
        if (slot.state == ExpertState::present && slot.refs == 0) {
          candidates.push_back(slot.id);
          candidate_slots.push_back(int32_t(i));
        }
      }
      if (candidates.empty()) return nullptr;
      const size_t v = policy_->choose_victim(candidates, tick_);
      s = candidate_slots[v];
      Slot& victim = slots_[size_t(s)];
      slot_of_[key(victim.id)] = -1;
      policy_->on_evict(victim.id);
      victim.state = ExpertState::not_present;
      ++stats_.evictions;
    }
  }
  Slot& slot = slots_[size_t(s)];
  slot.id = id;
  slot.state = ExpertState::loading;
  slot.reads_left = k_expert_matrices;
  slot.load = std::make_shared<Load>();
  std::shared_ptr<Load> load = slot.load;
  slot_of_[key(id)] = s;
  if (on_load_start_) on_load_start_(id);
  for (int m = 0; m < k_expert_matrices; ++m) {
    const MatrixLayout& ml = layout(id.layer, m);
    ReadRequest rq;
    rq.offset = ml.file_offset + uint64_t(id.expert) * ml.nb2;
    rq.length = ml.nb2;
    rq.dst = slot.buffer.data() + region_offset(m);
    rq.dst_capacity = (m + 1 < k_expert_matrices ? region_offset(m + 1) : slot_bytes_) - region_offset(m);
    // Callbacks run on the reader's thread and take mu_; submit() never runs them inline.
    Status st = reader_->submit(rq, [this, s, m](const Status& r) { on_read_done(uint32_t(s), m, r); });
    // A refused submit cannot happen for a validated layout; fail the load rather than hang.
    if (!st.ok()) finish_read_locked(uint32_t(s), m, st);
  }
  return load;
}

void ExpertCache::on_read_done(uint32_t s, int m, const Status& status) {
  std::lock_guard lock(mu_);
  finish_read_locked(s, m, status);
}

void ExpertCache::finish_read_locked(uint32_t s, int m, const Status& status) {
  Slot& slot = slots_[s];
  if (!status.ok() && slot.load->status.ok()) {
    slot.load->status = status.with_context(
        fmt::format("loading layer {} expert {} ({})", slot.id.layer, slot.id.expert, layout(slot.id.layer, m).name));
  }
  if (--slot.reads_left != 0) return;
  const ExpertId load_id = slot.id;
  std::shared_ptr<Load> load = std::move(slot.load);
  if (load->status.ok()) {
    slot.state = ExpertState::present;
    ++stats_.loads_completed;
    stats_.bytes_loaded += expert_bytes(uint32_t(slot.id.layer));
  } else {
    ++stats_.loads_failed;
    slot.state = ExpertState::not_present;
    policy_->on_evict(slot.id);
    if (!slot.pinned) {
      slot_of_[key(slot.id)] = -1;
      slot.id = ExpertId{-1, -1};
      free_[partition_size_ ? s / partition_size_ : 0].push_back(int32_t(s));
    }
  }
  load->done = true;
  if (on_load_done_) on_load_done_(load_id, load->status);
  cv_.notify_all();
}

ExpertRef ExpertCache::make_ref_locked(uint32_t s) {
  Slot& slot = slots_[s];
  ++slot.refs;
  ExpertRef ref;
  ref.cache_ = this;
  ref.slot_ = s;
  ref.id_ = slot.id;
  for (int m = 0; m < k_expert_matrices; ++m) {
    const MatrixLayout& ml = layout(slot.id.layer, m);
    const uint64_t lead = io_cover(ml.file_offset + uint64_t(slot.id.expert) * ml.nb2, ml.nb2).lead;
    ref.views_[m] = TensorView::contiguous(slot.buffer.data() + region_offset(m) + lead, ml.dtype,
                                           {ml.ne0, ml.ne1, 1, 1}, ml.name);
  }
  return ref;
}

void ExpertCache::release(uint32_t s) {
  std::lock_guard lock(mu_);
  assert(slots_[s].refs > 0);
  if (--slots_[s].refs == 0) cv_.notify_all();
}

// ---------------------------------------------------------------------------------------
// Access

Result<ExpertState> ExpertCache::request(ExpertId id) {
  bool started = false;
  return request_impl(id, &started);
}

Result<ExpertState> ExpertCache::request_impl(ExpertId id, bool* load_started) {
  TANDEM_RETURN_IF_ERROR(check_id(id));
  std::lock_guard lock(mu_);
  policy_->on_access(id, ++tick_);
  const int32_t s = slot_of_[key(id)];
  const ExpertState found = s >= 0 ? slots_[size_t(s)].state : ExpertState::not_present;
  *load_started = false;
  switch (found) {
    case ExpertState::present: ++stats_.request_hits; break;
    case ExpertState::loading: ++stats_.request_loading; break;
    case ExpertState::not_present:
      *load_started = start_load_locked(id) != nullptr;
      ++(*load_started ? stats_.request_loads : stats_.request_dropped);
      break;
  }
  return found;
}

Result<uint32_t> ExpertCache::prefetch(std::span<const ExpertId> ids) {
  uint32_t started = 0;
  for (ExpertId id : ids) {
    bool load_started = false;
    TANDEM_RETURN_IF_ERROR(request_impl(id, &load_started).status());
    started += load_started ? 1 : 0;
  }
  return started;
}

Result<ExpertRef> ExpertCache::acquire(ExpertId id) {
  TANDEM_RETURN_IF_ERROR(check_id(id));
  std::unique_lock lock(mu_);
  policy_->on_access(id, ++tick_);
  bool counted = false;
  auto count = [&](uint64_t& counter) {
    if (!counted) ++counter;
    counted = true;
  };
  for (;;) {
    const int32_t s = slot_of_[key(id)];
    const ExpertState st = s >= 0 ? slots_[size_t(s)].state : ExpertState::not_present;
    if (st == ExpertState::present) {
      count(stats_.acquire_hits);
      return make_ref_locked(uint32_t(s));
    }
    std::shared_ptr<Load> load;
    if (st == ExpertState::loading) {
      count(stats_.acquire_loading);
      load = slots_[size_t(s)].load;
    } else {
      count(stats_.acquire_misses);
      load = start_load_locked(id);
    }
    if (load) {
      cv_.wait(lock, [&] { return load->done; });
      if (!load->status.ok()) return load->status;
      continue;  // present now (or, rarely, already evicted again: load it again)
    }
    // Every dynamic slot (of the layer's partition) is loading or referenced: wait for one.
    const uint32_t p = partition_of(id.layer);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(slot_wait_ms_);
    auto slot_free = [&] {
      if (!free_[p].empty() || slot_of_[key(id)] >= 0) return true;  // or another thread loads it
      for (uint32_t i = p * partition_size_; i < (p + 1) * partition_size_; ++i) {
        if (slots_[i].state == ExpertState::present && slots_[i].refs == 0) return true;
      }
      return false;
    };
    if (partition_size_ == 0 || !cv_.wait_until(lock, deadline, slot_free)) {
      uint32_t n_referenced = 0;
      for (uint32_t i = p * partition_size_; i < (p + 1) * partition_size_; ++i) n_referenced += slots_[i].refs > 0 ? 1 : 0;
      return make_error(ErrorCode::out_of_memory,
                        "expert cache for {}: no slot for layer {} expert {} after {} ms: all {} dynamic slots{} "
                        "are loading or referenced ({} referenced); release ExpertRefs or add slots",
                        path_, id.layer, id.expert, partition_size_ == 0 ? 0 : slot_wait_ms_, partition_size_,
                        per_layer_ ? " of its layer" : "", n_referenced);
    }
  }
}

Status ExpertCache::preload_pinned() {
  std::vector<ExpertId> ids;
  {
    std::lock_guard lock(mu_);
    for (uint32_t i = n_slots_; i < slots_.size(); ++i) ids.push_back(slots_[i].id);
  }
  for (ExpertId id : ids) TANDEM_RETURN_IF_ERROR(request(id).status());
  for (ExpertId id : ids) {
    auto ref = acquire(id);
    if (!ref.ok()) return ref.status();
  }
  return Status::success();
}

ExpertState ExpertCache::state(ExpertId id) const {
  if (!check_id(id).ok()) return ExpertState::not_present;
  std::lock_guard lock(mu_);
  const int32_t s = slot_of_[key(id)];
  return s >= 0 ? slots_[size_t(s)].state : ExpertState::not_present;
}

std::vector<ExpertId> ExpertCache::resident() const {
  std::vector<ExpertId> out;
  {
    std::lock_guard lock(mu_);
    for (const Slot& s : slots_) {
      if (s.state == ExpertState::present) out.push_back(s.id);
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

ExpertCacheStats ExpertCache::stats() const {
  ExpertCacheStats s;
  {
    std::lock_guard lock(mu_);
    s = stats_;
  }
  s.io = reader_->stats();
  return s;
}

std::string_view ExpertCache::policy_name() const { return policy_->name(); }

}  // namespace tandem
