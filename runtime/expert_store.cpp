#include "runtime/expert_store.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>

namespace tandem {
namespace {

const char* const k_exps_names[k_expert_matrices] = {"ffn_gate_exps", "ffn_up_exps",
                                                     "ffn_down_exps"};

bool is_expert_tensor(std::string_view name) {
  for (const char* n : k_exps_names) {
    if (name.find(n) != std::string_view::npos) return true;
  }
  return false;
}

// One expert of a layer as a 3-D view with ne2 = 1 (the moe op's MoeArgs form).
TensorView one_expert(const TensorView& exps, int64_t e) {
  return exps.slice2(e);
}

TensorView from_ref(const TensorView& m) {
  TensorView v = m;
  v.ne[2] = 1;
  v.ne[3] = 1;
  return v;
}

}  // namespace

const char* store_tier_name(StoreTier t) {
  switch (t) {
    case StoreTier::ram:
      return "ram";
    case StoreTier::stream:
      return "stream";
    case StoreTier::gpu:
      return "gpu";
  }
  return "?";
}

uint32_t ExpertStoreConfig::count(StoreTier t) const {
  return uint32_t(std::count(tiers.begin(), tiers.end(), t));
}

ExpertStoreConfig make_store_config_all_ram(const ModelShape& shape) {
  ExpertStoreConfig c;
  c.n_layer = shape.n_layer;
  c.n_expert = shape.n_expert;
  c.tiers.assign(size_t{shape.n_layer} * shape.n_expert, StoreTier::ram);
  return c;
}

Result<ExpertStoreConfig> make_store_config_all_stream(const ModelShape& shape,
                                                       uint32_t n_slots_per_layer) {
  if (n_slots_per_layer == 0) {
    return make_error(ErrorCode::invalid_argument,
                      "streamed experts need at least 1 cache slot per layer");
  }
  ExpertStoreConfig c = make_store_config_all_ram(shape);
  std::fill(c.tiers.begin(), c.tiers.end(), StoreTier::stream);
  c.n_slots_per_layer = n_slots_per_layer;
  return c;
}

Result<ExpertStoreConfig> make_store_config_from_plan(const ModelShape& shape, const Plan& plan) {
  const Placement& p = plan.placement;
  if (plan.n_layer != shape.n_layer || plan.n_expert != shape.n_expert ||
      p.tiers.size() != shape.n_layer) {
    return make_error(
        ErrorCode::invalid_argument,
        "plan for {} layers x {} experts (model '{}') does not fit this model ({} x {})",
        plan.n_layer, plan.n_expert, plan.model_name, shape.n_layer, shape.n_expert);
  }
  ExpertStoreConfig c = make_store_config_all_ram(shape);
  uint32_t n_gpu = 0;
  for (uint32_t l = 0; l < shape.n_layer; ++l) {
    if (p.tiers[l].size() != shape.n_expert) {
      return make_error(ErrorCode::invalid_argument,
                        "plan layer {} lists {} experts, the model has {}", l, p.tiers[l].size(),
                        shape.n_expert);
    }
    for (uint32_t e = 0; e < shape.n_expert; ++e) {
      StoreTier t = StoreTier::ram;
      switch (p.tiers[l][e]) {
        case ExpertTier::ram_cpu:
          t = StoreTier::ram;
          break;
        case ExpertTier::storage:
          t = StoreTier::stream;
          break;
        case ExpertTier::gpu_pinned:
        case ExpertTier::gpu_dynamic:
          t = StoreTier::gpu;
          ++n_gpu;
          break;
      }
      c.tiers[size_t(l) * shape.n_expert + e] = t;
    }
  }
  if (c.count(StoreTier::stream) > 0) {
    if (p.ram_cache_experts == 0) {
      return make_error(ErrorCode::invalid_argument,
                        "plan streams {} experts from storage but gives them no RAM cache slots "
                        "(ram_cache_experts 0)",
                        c.count(StoreTier::stream));
    }
    c.n_slots_per_layer = p.ram_cache_experts;
  }
  if (n_gpu > 0) {
    c.notes.push_back(fmt::format(
        "{} experts the plan puts on the GPU run from RAM (the mapping) on this CPU path", n_gpu));
  }
  return c;
}

uint64_t non_expert_weight_bytes(const GgufFile& file) {
  uint64_t n = 0;
  for (const GgufTensorInfo& t : file.tensors()) {
    if (!is_expert_tensor(t.name)) n += t.nbytes;
  }
  return n;
}

Result<uint64_t> expert_slot_bytes(const GgufFile& file) {
  // As ExpertCache::create sizes its regions: per matrix the largest layer's slab, aligned up,
  // plus one alignment unit for the lead.
  uint64_t region[k_expert_matrices] = {0, 0, 0};
  bool any = false;
  for (const GgufTensorInfo& t : file.tensors()) {
    for (int m = 0; m < k_expert_matrices; ++m) {
      if (t.name.find(k_exps_names[m]) == std::string::npos || t.ne[2] < 1) continue;
      const uint64_t nb2 = t.nbytes / uint64_t(t.ne[2]);
      region[m] = std::max(region[m], io_align_up(nb2) + k_io_alignment);
      any = true;
    }
  }
  if (!any)
    return make_error(ErrorCode::not_found, "{}: no expert tensors (ffn_*_exps)",
                      file.path().string());
  return region[0] + region[1] + region[2];
}

std::string format_mib(uint64_t bytes) {
  return fmt::format("{:.1f} MiB", double(bytes) / (1024.0 * 1024.0));
}

Result<ExpertStoreConfig> make_store_config_for_mem_limit(const Model& model,
                                                          const MemLimitInputs& in) {
  const ModelShape& shape = model.shape();
  const uint64_t weights = non_expert_weight_bytes(model.file());
  TANDEM_ASSIGN_OR_RETURN(const uint64_t slot, expert_slot_bytes(model.file()));
  const uint64_t resident = weights + in.kv_bytes + in.reserve_bytes;
  const uint64_t need = resident + uint64_t{shape.n_expert_used} * slot;
  if (in.mem_limit < need) {
    return make_error(ErrorCode::out_of_memory,
                      "--mem-limit {} is too small: non-expert weights {} + KV {} + reserve {} + "
                      "one layer's {} routed "
                      "experts {} x {} = {}",
                      format_mib(in.mem_limit), format_mib(weights), format_mib(in.kv_bytes),
                      format_mib(in.reserve_bytes), shape.n_expert_used, shape.n_expert_used,
                      format_mib(slot), format_mib(need));
  }
  ExpertStoreConfig c = make_store_config_all_ram(shape);
  std::fill(c.tiers.begin(), c.tiers.end(), StoreTier::stream);
  const uint64_t all = uint64_t{shape.n_layer} * shape.n_expert;
  c.n_slots = uint32_t(std::min<uint64_t>(all, (in.mem_limit - resident) / slot));
  c.notes.push_back(fmt::format(
      "--mem-limit {}: non-expert weights {} + KV {} + reserve {} resident, {} expert cache "
      "slots x {} = {}",
      format_mib(in.mem_limit), format_mib(weights), format_mib(in.kv_bytes),
      format_mib(in.reserve_bytes), c.n_slots, format_mib(slot),
      format_mib(uint64_t{c.n_slots} * slot)));
  return c;
}

Result<uint64_t> parse_mem_size(std::string_view text) {
  std::string s(text);
  while (!s.empty() && (s.back() == 'B' || s.back() == 'b' || s.back() == ' '))
    s.pop_back();  // "1GB", "1 G"
  if (s.empty()) return make_error(ErrorCode::invalid_argument, "memory size '{}' is empty", text);
  double mult = 1;
  switch (s.back()) {
    case 'k':
    case 'K':
      mult = 1024.0;
      break;
    case 'm':
    case 'M':
      mult = 1024.0 * 1024.0;
      break;
    case 'g':
    case 'G':
      mult = 1024.0 * 1024.0 * 1024.0;
      break;
    case 't':
    case 'T':
      mult = 1024.0 * 1024.0 * 1024.0 * 1024.0;
      break;
    default:
      break;
  }
  if (mult != 1) s.pop_back();
  char* end = nullptr;
  errno = 0;
  const double v = std::strtod(s.c_str(), &end);
  if (s.empty() || end != s.c_str() + s.size() || errno != 0 || !std::isfinite(v) || v < 0 ||
      v * mult > 1.8e19) {
    return make_error(ErrorCode::invalid_argument,
                      "memory size '{}' is not a number with an optional k/M/G/T suffix", text);
  }
  return uint64_t(v * mult);
}

Result<std::unique_ptr<ExpertStore>> ExpertStore::create(const Model& model,
                                                         ExpertStoreConfig config,
                                                         ExpertCacheOptions cache_options) {
  const ModelShape& shape = model.shape();
  if (config.n_layer != shape.n_layer || config.n_expert != shape.n_expert ||
      config.tiers.size() != size_t{shape.n_layer} * shape.n_expert) {
    return make_error(ErrorCode::invalid_argument,
                      "expert store for {} x {} experts, model {} has {} x {}", config.n_layer,
                      config.n_expert, model.name(), shape.n_layer, shape.n_expert);
  }
  const bool any_stream = config.count(StoreTier::stream) > 0;
  if (any_stream && !model.file().file_backed()) {
    return make_error(ErrorCode::invalid_argument,
                      "{}: the model was read into memory (--no-mmap), so all of it is resident and none of it can be "
                      "dropped: streaming {} experts from storage (--mem-limit, a plan's storage tier) needs the "
                      "model mapped; drop --no-mmap",
                      model.file().path().string(), config.count(StoreTier::stream));
  }
  auto store = std::unique_ptr<ExpertStore>(new ExpertStore(model, std::move(config)));
  if (any_stream) {
    cache_options.n_slots = store->config_.n_slots;
    cache_options.n_slots_per_layer = store->config_.n_slots_per_layer;
    cache_options.pinned = store->config_.pinned;
    auto cache = ExpertCache::create(model.file(), cache_options);
    if (!cache.ok()) return cache.status();
    store->cache_ = std::move(cache).value();
    TANDEM_RETURN_IF_ERROR(store->cache_->preload_pinned());
  }
  return store;
}

Result<ExpertWeightsRef> ExpertStore::acquire(ExpertId id) const {
  ExpertWeightsRef w;
  if (tier(id) != StoreTier::stream) {
    const LayerWeights& lw = model_.weights().layers[size_t(id.layer)];
    w.gate = one_expert(lw.ffn_gate_exps, id.expert);
    w.up = one_expert(lw.ffn_up_exps, id.expert);
    w.down = one_expert(lw.ffn_down_exps, id.expert);
    return w;
  }
  w.streamed = true;
  w.waited = cache_->state(id) != ExpertState::present;
  auto ref = cache_->acquire(id);
  if (!ref.ok()) return ref.status();
  w.ref = std::move(ref).value();
  w.gate = from_ref(w.ref.matrix(ExpertMatrix::gate));
  w.up = from_ref(w.ref.matrix(ExpertMatrix::up));
  w.down = from_ref(w.ref.matrix(ExpertMatrix::down));
  return w;
}

Status ExpertStore::drop_streamed_pages() const {
  // Large page-cache folios (ext4 and others since Linux 6.x) are mapped whole on a fault,
  // and fault-around maps cached neighbours: a non-expert page that shares a folio with an
  // expert slab would bring the slab back. So the whole mapping and the file's page cache are
  // dropped; the non-expert weights then fault back in page by page (MADV_RANDOM: no
  // readahead), and streamed slabs are only ever read with O_DIRECT.
  const GgufFile& file = model_.file();
  const std::span<const uint8_t> map = file.mapping();
  if (map.empty()) return Status::success();
  if (!file.file_backed()) {  // MADV_DONTNEED would zero a copy (create() refuses this case)
    return make_error(ErrorCode::invalid_argument, "{}: the model is a copy in memory (--no-mmap), not a mapping",
                      file.path().string());
  }
  const long page = ::sysconf(_SC_PAGESIZE);
  const auto lo = reinterpret_cast<uintptr_t>(map.data()) & ~uintptr_t(page - 1);
  const uintptr_t hi = reinterpret_cast<uintptr_t>(map.data()) + map.size();
  if (::madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_DONTNEED) != 0) {
    return make_error(ErrorCode::io_error,
                      "{}: madvise(MADV_DONTNEED) on the model mapping ({} bytes) failed: {}",
                      file.path().string(), hi - lo, std::strerror(errno));
  }
  const int fd = ::open(file.path().c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return make_error(ErrorCode::io_error, "{}: cannot open to drop its page cache: {}",
                      file.path().string(), std::strerror(errno));
  }
  (void)::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);  // advisory: nothing to report when ignored
  ::close(fd);
  return Status::success();
}

}  // namespace tandem
