#include "planner/cost_model.h"

#include <algorithm>
#include <cmath>

namespace tandem {

namespace {

// GB/s -> bytes per microsecond.
constexpr double k_bytes_per_us_per_gbps = 1e3;
// GFLOP/s -> FLOP per microsecond.
constexpr double k_flop_per_us_per_gflops = 1e3;

double us_for_bytes(double bytes, double gbps) { return bytes / (gbps * k_bytes_per_us_per_gbps); }

Status check_divides(DType d, uint32_t n, const char* what) {
  if (n % dtype_block_size(d) != 0) {
    return make_error(ErrorCode::invalid_argument, "{} = {} is not a multiple of the {} block size {}",
                      what, n, dtype_name(d), dtype_block_size(d));
  }
  return Status::success();
}

}  // namespace

Result<CostModel> CostModel::create(const ModelShape& shape, const Profile& profile,
                                    const HardwareProfile& hw, const CostOptions& o) {
  if (profile_shape(shape) != profile.shape) {
    const ProfileShape& p = profile.shape;
    return make_error(ErrorCode::invalid_argument,
                      "profile shape (n_layer {}, n_expert {}, n_expert_used {}, n_embd {}, n_ff_exp {}) "
                      "differs from the model's ({}, {}, {}, {}, {})",
                      p.n_layer, p.n_expert, p.n_expert_used, p.n_embd, p.n_ff_exp, shape.n_layer,
                      shape.n_expert, shape.n_expert_used, shape.n_embd, shape.n_ff_exp);
  }
  if (profile.layers.size() != shape.n_layer) {
    return make_error(ErrorCode::invalid_argument, "profile has {} layers, model has {}",
                      profile.layers.size(), shape.n_layer);
  }
  if (hw.cpu.isa.empty()) return make_error(ErrorCode::invalid_argument, "hardware profile {}: no cpu.isa entry", hw.name);
  if (hw.storage.random_read.empty()) {
    return make_error(ErrorCode::invalid_argument, "hardware profile {}: no storage.random_read entry", hw.name);
  }
  if (o.prefill_batch == 0) return make_error(ErrorCode::invalid_argument, "prefill_batch must be > 0");
  TANDEM_RETURN_IF_ERROR(check_divides(o.expert_dtype, shape.n_embd, "n_embd"));
  TANDEM_RETURN_IF_ERROR(check_divides(o.expert_dtype, shape.n_ff_exp, "n_ff_exp"));
  TANDEM_RETURN_IF_ERROR(check_divides(o.dense_dtype, shape.n_embd, "n_embd"));
  TANDEM_RETURN_IF_ERROR(check_divides(o.dense_dtype, shape.n_embd_q(), "n_head * head_dim"));
  TANDEM_RETURN_IF_ERROR(check_divides(o.head_dtype, shape.n_embd, "n_embd"));
  TANDEM_RETURN_IF_ERROR(check_divides(o.embd_dtype, shape.n_embd, "n_embd"));

  CostModel m;
  m.n_layer_ = shape.n_layer;
  m.n_expert_ = shape.n_expert;
  m.expert_bytes_ = 3ull * shape.n_ff_exp * dtype_row_size(o.expert_dtype, shape.n_embd);
  m.expert_flops_ = 6.0 * shape.n_embd * shape.n_ff_exp;
  m.tied_ = shape.tied_output;
  m.batch_ = o.objective == Objective::prefill ? o.prefill_batch : 1;
  const CpuIsaPerf& isa = hw.cpu.best();
  m.cpu_bw_ = isa.read_bandwidth_gbps;
  m.cpu_gflops_ = isa.compute_gflops;
  const double B = static_cast<double>(m.expert_bytes_);
  m.cpu_dense_us_ = isa.expert_ffn_dense_us > 0 ? isa.expert_ffn_dense_us : us_for_bytes(B, m.cpu_bw_);
  m.cpu_gate_us_ = isa.expert_ffn_gate_us > 0 ? isa.expert_ffn_gate_us : m.cpu_dense_us_ / 3.0;
  m.shared_bus_ = hw.shared_memory_bus;
  m.shared_gbps_ = hw.shared_bandwidth_gbps;
  const GpuProfile* gpu = nullptr;
  if (!hw.gpus.empty()) {
    if (o.gpu_index >= hw.gpus.size()) {
      return make_error(ErrorCode::invalid_argument, "gpu index {} out of range: hardware profile {} has {} GPUs",
                        o.gpu_index, hw.name, hw.gpus.size());
    }
    gpu = &hw.gpus[o.gpu_index];
    m.has_gpu_ = true;
    m.unified_ = gpu->unified_memory;
    m.gpu_bw_ = gpu->bandwidth_gbps;
    m.gpu_gflops_ = gpu->compute_gflops;
    m.gpu_expert_us_ = gpu->expert_ffn_us > 0 ? gpu->expert_ffn_us : us_for_bytes(B, m.gpu_bw_);
    m.upload_gbps_ = gpu->upload_gbps;
    m.submit_wait_us_ = gpu->submit_wait_us;
  }
  m.storage_gbps_ = hw.storage.throughput_gbps(m.expert_bytes_);
  m.storage_latency_us_ = hw.storage.latency_us;

  // Attention: weights, router, norms; KV reads per token.
  const double n_embd = shape.n_embd;
  const uint64_t w_bytes = dtype_row_size(o.dense_dtype, shape.n_embd) *
                               (uint64_t{shape.n_embd_q()} + 2ull * shape.n_embd_k_gqa()) +
                           dtype_row_size(o.dense_dtype, shape.n_embd_q()) * uint64_t{shape.n_embd} +
                           4ull * shape.n_embd * shape.n_expert + 8ull * shape.n_embd;
  m.attn_weight_bytes_ = w_bytes * shape.n_layer;
  m.kv_bytes_total_ = 4ull * o.context_length * shape.n_embd_k_gqa() * shape.n_layer;
  const double attn_params = n_embd * (shape.n_embd_q() + 2.0 * shape.n_embd_k_gqa()) +
                             static_cast<double>(shape.n_embd_q()) * n_embd;
  const double N = m.batch_;
  for (uint32_t l = 0; l < shape.n_layer; ++l) {
    const double ctx = shape.is_swa(l) ? std::min<double>(o.context_length, shape.n_swa) : o.context_length;
    const double kv_read = 4.0 * ctx * shape.n_embd_k_gqa();
    const double bytes = static_cast<double>(w_bytes) + kv_read;
    m.attn_bytes_.push_back(bytes);
    if (m.batch_ == 1) {
      m.attn_cpu_us_.push_back(isa.attention_us > 0 ? isa.attention_us : us_for_bytes(bytes, m.cpu_bw_));
      m.attn_gpu_us_.push_back(!gpu ? 0.0 : gpu->attention_us > 0 ? gpu->attention_us : us_for_bytes(bytes, m.gpu_bw_));
    } else {
      const double flops = N * 2.0 * attn_params;
      m.attn_cpu_us_.push_back(std::max(us_for_bytes(w_bytes, m.cpu_bw_), flops / (m.cpu_gflops_ * k_flop_per_us_per_gflops)) / N);
      m.attn_gpu_us_.push_back(!gpu ? 0.0 : std::max(us_for_bytes(w_bytes, m.gpu_bw_), flops / (m.gpu_gflops_ * k_flop_per_us_per_gflops)) / N);
    }
  }
  m.head_bytes_ = uint64_t{shape.n_vocab} * dtype_row_size(o.head_dtype, shape.n_embd);
  m.embd_bytes_ = uint64_t{shape.n_vocab} * dtype_row_size(o.embd_dtype, shape.n_embd);
  const double head_flops = 2.0 * shape.n_vocab * n_embd * N;
  m.head_cpu_us_ = std::max(us_for_bytes(static_cast<double>(m.head_bytes_), m.cpu_bw_),
                            m.batch_ == 1 ? 0.0 : head_flops / (m.cpu_gflops_ * k_flop_per_us_per_gflops)) / N;
  m.head_gpu_us_ = !gpu ? 0.0
                        : std::max(us_for_bytes(static_cast<double>(m.head_bytes_), m.gpu_bw_),
                                   m.batch_ == 1 ? 0.0 : head_flops / (m.gpu_gflops_ * k_flop_per_us_per_gflops)) / N;

  // Usage: per-token probabilities; in prefill, the per-batch read probability / N.
  m.p_.assign(static_cast<size_t>(shape.n_layer) * shape.n_expert, 0.0);
  m.a_.assign(m.p_.size(), 1.0);
  m.lru_terms_.resize(m.p_.size());
  std::array<double, k_lru_grid> times{};
  for (size_t g = 0; g < k_lru_grid; ++g) times[g] = lru_time(g);
  for (uint32_t l = 0; l < shape.n_layer; ++l) {
    const LayerProfile& L = profile.layers[l];
    if (L.experts.size() != shape.n_expert) {
      return make_error(ErrorCode::invalid_argument, "profile layer {}: {} experts for n_expert {}", l,
                        L.experts.size(), shape.n_expert);
    }
    for (uint32_t e = 0; e < shape.n_expert; ++e) {
      const size_t i = static_cast<size_t>(l) * shape.n_expert + e;
      m.p_[i] = std::clamp(profile.activation_probability(l, e), 0.0, 1.0);
      m.a_[i] = std::clamp(L.experts[e].gate_activity, 0.0, 1.0);
      // Per step (token, or batch in prefill): the probability that e is read.
      const double q = m.batch_ == 1 ? m.p_[i] : 1.0 - std::pow(1.0 - m.p_[i], N);
      LruSums& t = m.lru_terms_[i];
      for (size_t g = 0; g < k_lru_grid; ++g) {
        t.occupancy[g] = static_cast<float>(1.0 - std::pow(1.0 - q, times[g]));
        t.misses[g] = static_cast<float>(q * std::pow(1.0 - q, times[g] - 0.5));
      }
    }
    m.calibrate_lru(l, L.lru_hit_rate);
  }
  return m;
}

void CostModel::add_expert(LayerLoad& load, uint32_t layer, uint32_t expert, ExpertTier tier,
                           int sign) const {
  const size_t i = static_cast<size_t>(layer) * n_expert_ + expert;
  const double p = p_[i];
  const double a = a_[i];
  const double B = static_cast<double>(expert_bytes_);
  const double s = sign;
  const double N = batch_;
  // Per token: decode uses the measured per-use times; prefill the batch roofline / N.
  const double read_p = batch_ == 1 ? p : (1.0 - std::pow(1.0 - p, N)) / N;
  const double sparse = (1.0 + 2.0 * a) / 3.0;
  if (runs_on_gpu(tier)) {
    const double us = batch_ == 1 ? p * gpu_expert_us_
                                  : std::max(us_for_bytes(read_p * B, gpu_bw_),
                                             p * expert_flops_ / (gpu_gflops_ * k_flop_per_us_per_gflops));
    load.gpu_us += s * us;
    load.gpu_bytes += s * read_p * B;
    if (tier == ExpertTier::gpu_pinned) load.n_gpu_pinned += sign;
    else {
      load.n_gpu_dynamic += sign;
      load.dynamic_uses += s * read_p;
      if (sign > 0) load.dynamic_lru += lru_terms_[i];
      else load.dynamic_lru -= lru_terms_[i];
    }
  } else {
    const double us = batch_ == 1 ? p * (cpu_gate_us_ + a * (cpu_dense_us_ - cpu_gate_us_))
                                  : std::max(us_for_bytes(read_p * B, cpu_bw_),
                                             p * expert_flops_ * sparse / (cpu_gflops_ * k_flop_per_us_per_gflops));
    load.cpu_us += s * us;
    load.cpu_bytes += s * read_p * B * (batch_ == 1 ? sparse : 1.0);
    if (tier == ExpertTier::ram_cpu) load.n_ram_cpu += sign;
    else {
      load.n_storage += sign;
      load.storage_uses += s * read_p;
      if (sign > 0) load.storage_lru += lru_terms_[i];
      else load.storage_lru -= lru_terms_[i];
    }
  }
}

LayerLoad CostModel::layer_load(uint32_t layer, std::span<const ExpertTier> tiers) const {
  LayerLoad load;
  for (uint32_t e = 0; e < tiers.size(); ++e) add_expert(load, layer, e, tiers[e]);
  return load;
}

void CostModel::calibrate_lru(uint32_t layer, const std::vector<double>& h) {
  const size_t base = static_cast<size_t>(layer) * k_lru_grid;
  if (lru_dilation_.size() < base + k_lru_grid) lru_dilation_.resize(base + k_lru_grid);
  float* dil = &lru_dilation_[base];
  for (size_t g = 0; g < k_lru_grid; ++g) dil[g] = static_cast<float>(g);
  // Decode only: the curve is of a token stream; prefill's steps are batches.
  if (batch_ != 1 || h.size() != n_expert_ + 1u) return;
  std::vector<double> all_occ(k_lru_grid, 0.0), all_miss(k_lru_grid, 0.0);
  double A = 0;
  for (uint32_t e = 0; e < n_expert_; ++e) {
    const size_t i = static_cast<size_t>(layer) * n_expert_ + e;
    A += p_[i];
    for (size_t g = 0; g < k_lru_grid; ++g) {
      all_occ[g] += lru_terms_[i].occupancy[g];
      all_miss[g] += lru_terms_[i].misses[g];
    }
  }
  if (A <= 0) return;
  // For each grid time: the whole stream's LRU of the same characteristic time holds c
  // experts and missed m = (h(n_expert) - h(c)) A per token in the profile; the fractional
  // grid index where the independent-reference misses equal m is the dilated time.
  double offset = 0;  // dilation beyond the informative range: the last one's, as a time ratio
  for (size_t g = 0; g < k_lru_grid; ++g) {
    const double c = all_occ[g];
    if (c > n_expert_ - 1.0 || all_miss[g] < 0.01 * A) {
      dil[g] = static_cast<float>(std::min<double>(k_lru_grid - 1, static_cast<double>(g) + offset));
      continue;
    }
    const size_t ci = std::min(static_cast<size_t>(c), static_cast<size_t>(n_expert_) - 1);
    const double hc = h[ci] + (c - static_cast<double>(ci)) * (h[ci + 1] - h[ci]);
    const double measured = (h[n_expert_] - hc) * A;
    double x = 0;
    if (measured <= all_miss[k_lru_grid - 1]) {
      x = k_lru_grid - 1;
    } else if (measured < all_miss[0]) {
      size_t j = 1;
      while (all_miss[j] > measured) ++j;  // all_miss decreases; stops by the check above
      x = static_cast<double>(j - 1) + (all_miss[j - 1] - measured) / (all_miss[j - 1] - all_miss[j]);
    }
    // Monotone: a longer characteristic time never maps to a shorter one.
    x = std::max(x, g > 0 ? static_cast<double>(dil[g - 1]) : 0.0);
    dil[g] = static_cast<float>(x);
    offset = x - static_cast<double>(g);
  }
}

double CostModel::lru_time(size_t g) { return 0.5 * std::pow(1.5, static_cast<double>(g)); }

namespace {

// Linear interpolation of v at the fractional index x in [0, k_lru_grid - 1].
template <class V>
double at_index(const V& v, double x) {
  const size_t i = std::min(static_cast<size_t>(x), k_lru_grid - 2);
  const double f = x - static_cast<double>(i);
  return v[i] + f * (v[i + 1] - v[i]);
}

}  // namespace

double CostModel::lru_misses(uint32_t layer, const LruSums& sums, double uses, uint32_t n_tier,
                             uint32_t slots) const {
  if (uses <= 0 || slots >= n_tier) return 0;
  const double C = slots;
  const auto& O = sums.occupancy;
  // T_S as a fractional grid index; below the first grid time (0.5 steps) and beyond the
  // last, the ends.
  double x = 0;
  if (C > O[k_lru_grid - 1]) {
    x = k_lru_grid - 1;
  } else if (C > O[0]) {
    const size_t g = static_cast<size_t>(std::lower_bound(O.begin() + 1, O.end(), C) - O.begin());
    const double lo = O[g - 1], span = O[g] - lo;
    x = static_cast<double>(g - 1) + (span > 0 ? std::clamp((C - lo) / span, 0.0, 1.0) : 1.0);
  }
  // The layer's locality: the time at which independent references miss as often as the
  // profiled stream did (lru_dilation_, identity without a profiled LRU curve).
  const double xd = at_index(std::span<const float>(&lru_dilation_[static_cast<size_t>(layer) * k_lru_grid], k_lru_grid), x);
  return std::clamp(at_index(sums.misses, xd) / static_cast<double>(batch_), 0.0, uses);
}

LayerCost CostModel::layer_cost(uint32_t layer, const LayerLoad& load, const Placement& g) const {
  LayerCost c;
  const double B = static_cast<double>(expert_bytes_);
  const bool attn_gpu = g.attention == Device::gpu;
  c.attention_us = attn_gpu ? attn_gpu_us_[layer] : attn_cpu_us_[layer];
  c.cpu_experts_us = std::max(0.0, load.cpu_us);
  c.gpu_experts_us = std::max(0.0, load.gpu_us);
  c.dynamic_accesses = std::max(0.0, load.dynamic_uses);
  c.storage_accesses = std::max(0.0, load.storage_uses);
  if (load.n_gpu_dynamic > 0) {
    const uint32_t slots = std::max(1u, std::min(g.n_dynamic_slots, load.n_gpu_dynamic));
    c.dynamic_misses = lru_misses(layer, load.dynamic_lru, c.dynamic_accesses, load.n_gpu_dynamic, slots);
    c.upload_bytes = c.dynamic_misses * B;
    c.upload_us = us_for_bytes(c.upload_bytes, upload_gbps_);
  }
  if (load.n_storage > 0) {
    const uint32_t slots = std::max(1u, std::min(g.ram_cache_experts, load.n_storage));
    c.storage_misses = lru_misses(layer, load.storage_lru, c.storage_accesses, load.n_storage, slots);
    c.storage_bytes = c.storage_misses * B;
    c.storage_us = us_for_bytes(c.storage_bytes, storage_gbps_) +
                   std::min(1.0, c.storage_misses) * storage_latency_us_;
  }
  const bool cpu_work = !attn_gpu || load.n_ram_cpu + load.n_storage > 0;
  const bool gpu_work = attn_gpu || load.n_gpu_pinned + load.n_gpu_dynamic > 0;
  c.sync_us = cpu_work && gpu_work ? submit_wait_us_ : 0.0;
  if (shared_bus_) {
    const double bus = attn_bytes_[layer] / static_cast<double>(batch_) + std::max(0.0, load.cpu_bytes) +
                       std::max(0.0, load.gpu_bytes) + (unified_ ? 2.0 : 0.0) * c.upload_bytes +
                       c.storage_bytes;
    c.bandwidth_us = us_for_bytes(bus, shared_gbps_);
  }
  c.total_us = combine_layer_us(c.attention_us, c.cpu_experts_us, c.gpu_experts_us, c.upload_us,
                                c.storage_us, c.sync_us, c.bandwidth_us);
  return c;
}

double CostModel::head_us(Device d) const { return d == Device::gpu ? head_gpu_us_ : head_cpu_us_; }

void CostModel::fixed_memory(Device attention, Device head, uint64_t& gpu, uint64_t& ram) const {
  gpu = 0;
  ram = embd_bytes_;
  const uint64_t attn = attn_weight_bytes_ + kv_bytes_total_;
  (attention == Device::gpu ? gpu : ram) += attn;
  if (head == Device::gpu) gpu += head_bytes_;
  else if (!tied_) ram += head_bytes_;
  if (unified_) ram += gpu;
}

void CostModel::layer_memory(const LayerLoad& load, const Placement& g, uint64_t& gpu, uint64_t& ram,
                             uint64_t& storage) const {
  const uint64_t B = expert_bytes_;
  const uint64_t dyn_slots = load.n_gpu_dynamic ? std::max(1u, std::min(g.n_dynamic_slots, load.n_gpu_dynamic)) : 0;
  const uint64_t cache_slots = load.n_storage ? std::max(1u, std::min(g.ram_cache_experts, load.n_storage)) : 0;
  gpu = B * (load.n_gpu_pinned + dyn_slots);
  ram = B * (uint64_t{load.n_gpu_dynamic} + load.n_ram_cpu + cache_slots);
  storage = B * load.n_storage;
  if (unified_) ram += gpu;
}

Result<Prediction> CostModel::evaluate(const Placement& pl) const {
  if (pl.tiers.size() != n_layer_) {
    return make_error(ErrorCode::invalid_argument, "placement has {} layers, model has {}", pl.tiers.size(), n_layer_);
  }
  Prediction q;
  bool any_gpu = pl.attention == Device::gpu || pl.output_head == Device::gpu;
  fixed_memory(pl.attention, pl.output_head, q.memory.gpu_bytes, q.memory.ram_bytes);
  double dyn_uses = 0, dyn_miss = 0, st_uses = 0, st_miss = 0;
  for (uint32_t l = 0; l < n_layer_; ++l) {
    if (pl.tiers[l].size() != n_expert_) {
      return make_error(ErrorCode::invalid_argument, "placement layer {} has {} experts, model has {}", l,
                        pl.tiers[l].size(), n_expert_);
    }
    const LayerLoad load = layer_load(l, pl.tiers[l]);
    any_gpu = any_gpu || load.n_gpu_pinned + load.n_gpu_dynamic > 0;
    LayerCost c = layer_cost(l, load, pl);
    uint64_t g = 0, r = 0, s = 0;
    layer_memory(load, pl, g, r, s);
    q.memory.gpu_bytes += g;
    q.memory.ram_bytes += r;
    q.memory.storage_bytes += s;
    q.token_us += c.total_us;
    q.upload_bytes_per_token += c.upload_bytes;
    q.storage_bytes_per_token += c.storage_bytes;
    dyn_uses += c.dynamic_accesses;
    dyn_miss += c.dynamic_misses;
    st_uses += c.storage_accesses;
    st_miss += c.storage_misses;
    q.layers.push_back(c);
  }
  if (any_gpu && !has_gpu_) {
    return make_error(ErrorCode::invalid_argument, "placement runs work on a GPU but the hardware profile has none");
  }
  q.head_us = head_us(pl.output_head);
  q.submit_us = any_gpu ? submit_wait_us_ : 0.0;
  q.token_us += q.head_us + q.submit_us;
  q.tokens_per_s = q.token_us > 0 ? 1e6 / q.token_us : 0.0;
  q.dynamic_hit_rate = dyn_uses > 0 ? 1.0 - dyn_miss / dyn_uses : 1.0;
  q.ram_cache_hit_rate = st_uses > 0 ? 1.0 - st_miss / st_uses : 1.0;
  return q;
}

}  // namespace tandem
