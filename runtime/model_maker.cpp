// The model maker: SmallThinker GGUF files with synthetic weights whose statistics look like
// a trained sparse MoE to the profiler and planner. Keys, types, tensor names and shapes are
// llama.cpp's (spec §3.2, §3.3); see model_maker_presets.cpp for the shapes.
//
// How the weights are built (also in `tandem make-model --help`):
//  * Every element is a pure function of (seed, tensor, index): splitmix64 of a per-tensor key
//    plus the element's flat index, mapped to a unit-variance uniform value. Rows are made and
//    quantized in parallel with oneTBB; the bytes do not depend on the thread count. The down
//    matrix element (expert e, output i, neuron j) is the same number in both layouts, so
//    --transpose-down changes the layout, not the model (up to quantization).
//  * Token embeddings e_v = a*sqrt(d)*u0 + sum_k c_vk t_k + g*n_v: u0 is a mean direction shared
//    by every token (a^2 = 0.25 of the energy), t_k are K orthonormal "topic" directions (0.15),
//    n_v is noise orthogonal to u0 (0.6). RMS(e_v) ~ 1, and after RMSNorm every token carries
//    the same component a*sqrt(d)/r along u0 (r = the RMS of the residual, modelled per layer).
//  * Residual stream O(1): attention and expert outputs are scaled by 1/sqrt(fan_in) and a
//    depth factor eps = 0.7/sqrt(2*n_layer), so each layer adds about eps^2 to the mean square
//    and the final RMS stays below ~1.25. V and up rows are orthogonal to u0 (in the normed
//    space), so no sublayer adds a token-independent vector to the residual.
//  * Router (ffn_gate_inp, f32; it reads the raw residual): row e = b_e/(a*sqrt(d)) * u0 +
//    s_l * R_e, R_e a unit random direction orthogonal to u0. Every token then gets logit
//    b_e + noise of std ~1.28 (the Gumbel std, for which top-1 frequencies are exactly
//    softmax(b)); b_e = -skew * ln(1 + rank_l(e)), rank_l a per-layer permutation from the
//    seed. So expert popularity is Zipf-like with exponent --skew and the hot experts differ
//    per layer; skew 0 gives flat routing. Tokens sharing topics route alike.
//  * Expert gate rows: g_j = z_j - mu_j * (u0 . x_normed) * r/(a*sqrt(d)) with z_j of unit
//    variance over tokens, so a neuron's pre-activation is ~N(-mu_j, 1); mu_j = mu0 + N(0,1)
//    per neuron with mu0 = Phi^-1(s)*sqrt(2), hence the fraction of gate values <= 0 over
//    tokens and neurons is s = --relu-sparsity, with hot and cold neurons as in ReLU models.
//  * Norm weights 1 +- 0.09 (uniform). output_norm is 1.5/sqrt(d) times that with a random sign
//    per element: logits then have a std of ~1.5 for tied and untied heads, and with tied
//    embeddings the token just read does not win the next-token logits (the residual is
//    dominated by its own embedding; an all-positive norm would make every model a copier).
//    Gate/up/V rows are divided by the norm weight that multiplies their input, so the
//    statistics above hold exactly in the normed space.
//  * Not modelled: temporal locality beyond what shared topic directions and attention mixing
//    give; routing of consecutive tokens is only weakly correlated.
#include "runtime/model_maker.h"

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <numbers>
#include <vector>

#include "cpu/quants.h"
#include "runtime/gguf_writer.h"
#include "runtime/vocab_builder.h"

namespace tandem {
namespace {

// ---- counter-based random numbers -------------------------------------------------------

inline uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

inline uint64_t stream_key(uint64_t seed, uint64_t what, uint64_t sub) {
  return splitmix64(splitmix64(splitmix64(seed) + what) + sub);
}

// Unit-variance uniform in [-sqrt(3), sqrt(3)] for element `idx` of stream `key`.
inline float unit_uniform(uint64_t key, uint64_t idx) {
  const uint64_t h = splitmix64(key + idx * 0x9e3779b97f4a7c15ull);
  const float u = (static_cast<float>(h >> 40) + 0.5f) * (1.0f / 16777216.0f);  // (0, 1)
  return (2.0f * u - 1.0f) * 1.7320508f;
}

// Standard normal (Box-Muller) for the few scalar draws (biases), not for bulk elements.
inline double gaussian(uint64_t key, uint64_t idx) {
  const uint64_t h1 = splitmix64(key + 2 * idx * 0x9e3779b97f4a7c15ull);
  const uint64_t h2 = splitmix64(key + (2 * idx + 1) * 0x9e3779b97f4a7c15ull);
  const double u1 = (static_cast<double>(h1 >> 11) + 0.5) / 9007199254740992.0;
  const double u2 = static_cast<double>(h2 >> 11) / 9007199254740992.0;
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * std::numbers::pi * u2);
}

// Stream ids: one per tensor kind (times the layer) plus the non-tensor draws.
enum Stream : uint64_t {
  s_token_embd = 1, s_output, s_output_norm, s_mean_dir, s_topic_dir, s_topic_coef,
  s_attn_norm = 16, s_attn_q, s_attn_k, s_attn_v, s_attn_output, s_ffn_norm, s_ffn_gate_inp,
  s_ffn_gate_exps, s_ffn_up_exps, s_ffn_down_exps, s_gate_bias, s_router_perm,
};
inline uint64_t layer_stream(Stream s, uint32_t il) { return static_cast<uint64_t>(s) + 64ull * (il + 1); }

double normal_cdf(double x) { return 0.5 * std::erfc(-x / std::numbers::sqrt2); }

double normal_quantile(double p) {
  double lo = -12.0, hi = 12.0;
  for (int i = 0; i < 200; ++i) {
    const double mid = 0.5 * (lo + hi);
    (normal_cdf(mid) < p ? lo : hi) = mid;
  }
  return 0.5 * (lo + hi);
}

// ---- the design: shared directions and per-layer constants ------------------------------

constexpr double k_alpha = 0.5;        // share of u0 in the embedding RMS
constexpr double k_topic_energy = 0.15;
constexpr double k_noise_energy = 0.6;
constexpr double k_tau = 1.0;          // spread of per-neuron gate biases
constexpr double k_router_noise = 1.2825;  // pi/sqrt(6), the std of a Gumbel variable

struct Design {
  ModelShape s;
  uint64_t seed = 0;
  uint32_t d = 0;
  uint32_t n_topic = 0;
  std::vector<float> u0;      // (d) unit
  std::vector<float> topics;  // (n_topic, d) orthonormal, orthogonal to u0
  std::vector<std::vector<float>> attn_norm, ffn_norm;  // [layer] (d)
  std::vector<float> output_norm;                        // (d)
  std::vector<std::vector<float>> router_bias;           // [layer] (n_expert)
  double eps = 0.0;       // RMS each sublayer adds to the residual
  double mu0 = 0.0;       // mean gate bias (in units of the gate noise std)
  double relu2 = 0.0;     // E[relu(g)^2] for g ~ N(-mu0, 1 + tau^2)

  // Modelled RMS of the residual at the input of layer il's attention / FFN.
  double rms_attn_in(uint32_t il) const { return std::sqrt(1.0 + 2.0 * il * eps * eps); }
  double rms_ffn_in(uint32_t il) const { return std::sqrt(1.0 + (2.0 * il + 1.0) * eps * eps); }
};

void project_out(float* v, const float* unit_dir, uint32_t n) {
  double dot = 0.0;
  for (uint32_t i = 0; i < n; ++i) dot += static_cast<double>(v[i]) * unit_dir[i];
  const auto f = static_cast<float>(dot);
  for (uint32_t i = 0; i < n; ++i) v[i] -= f * unit_dir[i];
}

std::vector<float> norm_weights(uint64_t key, uint32_t d, float scale) {
  std::vector<float> w(d);
  for (uint32_t i = 0; i < d; ++i) w[i] = scale * (1.0f + 0.05f * unit_uniform(key, i));
  return w;
}

Design make_design(const ModelShape& s, const MakeModelOptions& opts) {
  Design g;
  g.s = s;
  g.seed = opts.seed;
  g.d = s.n_embd;
  g.n_topic = std::min<uint32_t>(8, g.d / 8);
  // u0 and the topics: Gram-Schmidt over random vectors, in double.
  std::vector<std::vector<double>> basis;
  for (uint32_t k = 0; k <= g.n_topic; ++k) {
    const uint64_t key = stream_key(opts.seed, k == 0 ? s_mean_dir : s_topic_dir, k);
    std::vector<double> v(g.d);
    for (uint32_t i = 0; i < g.d; ++i) v[i] = unit_uniform(key, i);
    for (const auto& b : basis) {
      double dot = 0.0;
      for (uint32_t i = 0; i < g.d; ++i) dot += v[i] * b[i];
      for (uint32_t i = 0; i < g.d; ++i) v[i] -= dot * b[i];
    }
    double nrm = 0.0;
    for (double x : v) nrm += x * x;
    nrm = std::sqrt(nrm);
    for (double& x : v) x /= nrm;
    basis.push_back(std::move(v));
  }
  g.u0.assign(basis[0].begin(), basis[0].end());
  for (uint32_t k = 1; k <= g.n_topic; ++k) g.topics.insert(g.topics.end(), basis[k].begin(), basis[k].end());

  for (uint32_t il = 0; il < s.n_layer; ++il) {
    g.attn_norm.push_back(norm_weights(stream_key(opts.seed, layer_stream(s_attn_norm, il), 0), g.d, 1.0f));
    g.ffn_norm.push_back(norm_weights(stream_key(opts.seed, layer_stream(s_ffn_norm, il), 0), g.d, 1.0f));
    // Expert ranks: a per-layer Fisher-Yates permutation; rank r gets bias -skew*ln(1+r).
    std::vector<uint32_t> order(s.n_expert);
    for (uint32_t e = 0; e < s.n_expert; ++e) order[e] = e;
    const uint64_t pkey = stream_key(opts.seed, layer_stream(s_router_perm, il), 0);
    for (uint32_t i = s.n_expert; i > 1; --i) {
      const uint32_t j = static_cast<uint32_t>(splitmix64(pkey + i) % i);
      std::swap(order[i - 1], order[j]);
    }
    std::vector<float> bias(s.n_expert);
    for (uint32_t r = 0; r < s.n_expert; ++r) {
      bias[order[r]] = static_cast<float>(-opts.skew * std::log(1.0 + r));
    }
    g.router_bias.push_back(std::move(bias));
  }
  g.output_norm = norm_weights(stream_key(opts.seed, s_output_norm, 0), g.d, 1.5f / std::sqrt(static_cast<float>(g.d)));
  const uint64_t sign_key = stream_key(opts.seed, s_output_norm, 1);
  for (uint32_t i = 0; i < g.d; ++i) {
    if (splitmix64(sign_key + i) & 1) g.output_norm[i] = -g.output_norm[i];
  }
  g.eps = 0.7 / std::sqrt(2.0 * s.n_layer);
  g.mu0 = normal_quantile(opts.relu_sparsity) * std::sqrt(1.0 + k_tau * k_tau);
  const double m = -g.mu0, sd = std::sqrt(1.0 + k_tau * k_tau);
  const double z = m / sd;
  g.relu2 = (m * m + sd * sd) * normal_cdf(z) + m * sd * std::exp(-0.5 * z * z) / std::sqrt(2.0 * std::numbers::pi);
  return g;
}

// ---- row generators: row `row` of slab `slab` (an expert, or 0) in ggml layout -------------

using RowFn = std::function<void(uint32_t slab, uint32_t row, float* out)>;

struct TensorPlan {
  std::string name;
  DType dtype;
  std::array<int64_t, 4> ne;
  uint32_t n_dims;
  RowFn row;
  int64_t row_len() const { return ne[0]; }
  int64_t rows_per_slab() const { return ne[1]; }
  int64_t n_slabs() const { return ne[2]; }
};

// A unit-variance random row orthogonal to u0, scaled and divided by the norm weight `w`
// that multiplies its input (so that its dot with the normed input is what was designed).
void fill_orth_row(const Design& g, uint64_t key, uint64_t base, float scale, const std::vector<float>* w, float* out) {
  for (uint32_t i = 0; i < g.d; ++i) out[i] = unit_uniform(key, base + i);
  project_out(out, g.u0.data(), g.d);
  for (uint32_t i = 0; i < g.d; ++i) out[i] *= w ? scale / (*w)[i] : scale;
}

std::vector<TensorPlan> plan_tensors(const Design& g, DType wt) {
  const ModelShape& s = g.s;
  const uint64_t seed = g.seed;
  const uint32_t d = g.d;
  const int64_t n_q = int64_t{s.n_head} * s.n_embd_head_k;
  const int64_t n_kv = int64_t{s.n_head_kv} * s.n_embd_head_k;
  const int64_t n_ff = s.n_ff_exp;
  const int64_t n_e = s.n_expert;
  std::vector<TensorPlan> plans;

  const float a_sqrt_d = static_cast<float>(k_alpha * std::sqrt(static_cast<double>(d)));
  const float topic_scale = static_cast<float>(std::sqrt(k_topic_energy * d / std::max(1u, g.n_topic)));
  const float noise_scale = static_cast<float>(std::sqrt(k_noise_energy));
  plans.push_back({"token_embd.weight", wt, {d, s.n_vocab, 1, 1}, 2, [&g, seed, d, a_sqrt_d, topic_scale, noise_scale](uint32_t, uint32_t v, float* out) {
                     const uint64_t key = stream_key(seed, s_token_embd, 0);
                     fill_orth_row(g, key, uint64_t{v} * d, noise_scale, nullptr, out);
                     for (uint32_t i = 0; i < d; ++i) out[i] += a_sqrt_d * g.u0[i];
                     const uint64_t ckey = stream_key(seed, s_topic_coef, 0);
                     for (uint32_t k = 0; k < g.n_topic; ++k) {
                       const float c = topic_scale * unit_uniform(ckey, uint64_t{v} * g.n_topic + k);
                       const float* t = &g.topics[size_t{k} * d];
                       for (uint32_t i = 0; i < d; ++i) out[i] += c * t[i];
                     }
                   }});

  for (uint32_t il = 0; il < s.n_layer; ++il) {
    const std::string p = "blk." + std::to_string(il) + ".";
    const auto key_of = [seed, il](Stream st, uint64_t slab) { return stream_key(seed, layer_stream(st, il), slab); };
    const double r_attn = g.rms_attn_in(il);
    const double r_ffn = g.rms_ffn_in(il);
    // Std of a random unit-variance row's dot with the normed input minus its u0 part.
    const float inv_rest_attn = static_cast<float>(1.0 / std::sqrt(d * (1.0 - k_alpha * k_alpha / (r_attn * r_attn))));
    const float inv_rest_ffn = static_cast<float>(1.0 / std::sqrt(d * (1.0 - k_alpha * k_alpha / (r_ffn * r_ffn))));
    const float inv_sqrt_d = 1.0f / std::sqrt(static_cast<float>(d));

    plans.push_back({p + "attn_norm.weight", DType::f32, {d, 1, 1, 1}, 1, [&g, il](uint32_t, uint32_t, float* out) {
                       std::copy(g.attn_norm[il].begin(), g.attn_norm[il].end(), out);
                     }});
    for (auto [st, name, rows] : {std::tuple{s_attn_q, "attn_q", n_q}, std::tuple{s_attn_k, "attn_k", n_kv}}) {
      plans.push_back({p + name + ".weight", wt, {d, rows, 1, 1}, 2, [d, key = key_of(st, 0), inv_sqrt_d](uint32_t, uint32_t r, float* out) {
                         for (uint32_t i = 0; i < d; ++i) out[i] = inv_sqrt_d * unit_uniform(key, uint64_t{r} * d + i);
                       }});
    }
    plans.push_back({p + "attn_v.weight", wt, {d, n_kv, 1, 1}, 2, [&g, il, d, key = key_of(s_attn_v, 0), inv_rest_attn](uint32_t, uint32_t r, float* out) {
                       fill_orth_row(g, key, uint64_t{r} * d, inv_rest_attn, &g.attn_norm[il], out);
                     }});
    const float o_scale = static_cast<float>(g.eps / std::sqrt(static_cast<double>(n_q)));
    plans.push_back({p + "attn_output.weight", wt, {n_q, d, 1, 1}, 2, [n_q, key = key_of(s_attn_output, 0), o_scale](uint32_t, uint32_t r, float* out) {
                       for (int64_t i = 0; i < n_q; ++i) out[i] = o_scale * unit_uniform(key, uint64_t{r} * n_q + i);
                     }});
    plans.push_back({p + "ffn_norm.weight", DType::f32, {d, 1, 1, 1}, 1, [&g, il](uint32_t, uint32_t, float* out) {
                       std::copy(g.ffn_norm[il].begin(), g.ffn_norm[il].end(), out);
                     }});
    // Router: reads the raw residual, whose u0 component stays a*sqrt(d) and whose remaining
    // mean square is r^2 - a^2.
    const float router_noise = static_cast<float>(k_router_noise / std::sqrt(r_attn * r_attn - k_alpha * k_alpha));
    plans.push_back({p + "ffn_gate_inp.weight", DType::f32, {d, n_e, 1, 1}, 2, [&g, il, d, key = key_of(s_ffn_gate_inp, 0), router_noise, a_sqrt_d](uint32_t, uint32_t e, float* out) {
                       fill_orth_row(g, key, uint64_t{e} * d, 1.0f, nullptr, out);
                       double nrm = 0.0;
                       for (uint32_t i = 0; i < d; ++i) nrm += static_cast<double>(out[i]) * out[i];
                       const float f = router_noise / static_cast<float>(std::sqrt(nrm));
                       const float b = g.router_bias[il][e] / a_sqrt_d;
                       for (uint32_t i = 0; i < d; ++i) out[i] = f * out[i] + b * g.u0[i];
                     }});
    const float bias_scale = static_cast<float>(r_ffn) / a_sqrt_d;
    plans.push_back({p + "ffn_gate_exps.weight", wt, {d, n_ff, n_e, 1}, 3, [&g, il, d, n_ff, key = key_of(s_ffn_gate_exps, 0), bkey = key_of(s_gate_bias, 0), inv_rest_ffn, bias_scale](uint32_t e, uint32_t j, float* out) {
                       const uint64_t row = uint64_t{e} * n_ff + j;
                       fill_orth_row(g, key, row * d, inv_rest_ffn, nullptr, out);
                       const double mu = g.mu0 + k_tau * gaussian(bkey, row);
                       const float b = -static_cast<float>(mu) * bias_scale;
                       const auto& w = g.ffn_norm[il];
                       for (uint32_t i = 0; i < d; ++i) out[i] = (out[i] + b * g.u0[i]) / w[i];
                     }});
    plans.push_back({p + "ffn_up_exps.weight", wt, {d, n_ff, n_e, 1}, 3, [&g, il, d, n_ff, key = key_of(s_ffn_up_exps, 0), inv_rest_ffn](uint32_t e, uint32_t j, float* out) {
                       fill_orth_row(g, key, (uint64_t{e} * n_ff + j) * d, inv_rest_ffn, &g.ffn_norm[il], out);
                     }});
    // Down element (e, out i, neuron j) = value at flat index (e*d + i)*n_ff + j in both layouts.
    // An expert's output has RMS down_scale*sqrt(n_ff*relu2); the k outputs are mixed with
    // weights summing to one (sum of squares ~1/k), hence the sqrt(k) to land on eps.
    const float down_scale = static_cast<float>(g.eps * std::sqrt(static_cast<double>(s.n_expert_used)) /
                                                std::sqrt(static_cast<double>(n_ff) * std::max(g.relu2, 1e-6)));
    const uint64_t dkey = key_of(s_ffn_down_exps, 0);
    if (s.down_layout == DownLayout::transposed) {
      plans.push_back({p + "ffn_down_exps.weight", wt, {d, n_ff, n_e, 1}, 3, [d, n_ff, dkey, down_scale](uint32_t e, uint32_t j, float* out) {
                         for (uint32_t i = 0; i < d; ++i) out[i] = down_scale * unit_uniform(dkey, (uint64_t{e} * d + i) * n_ff + j);
                       }});
    } else {
      plans.push_back({p + "ffn_down_exps.weight", wt, {n_ff, d, n_e, 1}, 3, [d, n_ff, dkey, down_scale](uint32_t e, uint32_t i, float* out) {
                         for (int64_t j = 0; j < n_ff; ++j) out[j] = down_scale * unit_uniform(dkey, (uint64_t{e} * d + i) * n_ff + j);
                       }});
    }
  }

  plans.push_back({"output_norm.weight", DType::f32, {d, 1, 1, 1}, 1, [&g](uint32_t, uint32_t, float* out) {
                     std::copy(g.output_norm.begin(), g.output_norm.end(), out);
                   }});
  if (!s.tied_output) {
    plans.push_back({"output.weight", wt, {d, s.n_vocab, 1, 1}, 2, [d, key = stream_key(seed, s_output, 0)](uint32_t, uint32_t v, float* out) {
                       for (uint32_t i = 0; i < d; ++i) out[i] = unit_uniform(key, uint64_t{v} * d + i);
                     }});
  }
  return plans;
}

// ---- metadata ----------------------------------------------------------------------------

Status write_metadata(GgufWriter& w, const ModelShape& s, const MakeModelOptions& opts, VocabData vocab) {
  const std::string a = "smallthinker.";
  TANDEM_RETURN_IF_ERROR(w.set_string("general.architecture", "smallthinker"));
  TANDEM_RETURN_IF_ERROR(w.set_string("general.name", opts.name.empty() ? "tandem-" + opts.preset : opts.name));
  TANDEM_RETURN_IF_ERROR(w.set_u32("general.file_type", llama_file_type(opts.dtype)));
  TANDEM_RETURN_IF_ERROR(w.set_u32("general.quantization_version", 2));
  TANDEM_RETURN_IF_ERROR(w.set_u32(a + "context_length", s.n_ctx_train));
  TANDEM_RETURN_IF_ERROR(w.set_u32(a + "embedding_length", s.n_embd));
  TANDEM_RETURN_IF_ERROR(w.set_u32(a + "block_count", s.n_layer));
  // The upstream converter writes moe_ffn_hidden_size into both keys (spec §3.2).
  TANDEM_RETURN_IF_ERROR(w.set_u32(a + "feed_forward_length", s.n_ff_exp));
  TANDEM_RETURN_IF_ERROR(w.set_u32(a + "expert_feed_forward_length", s.n_ff_exp));
  TANDEM_RETURN_IF_ERROR(w.set_u32(a + "expert_count", s.n_expert));
  TANDEM_RETURN_IF_ERROR(w.set_u32(a + "expert_used_count", s.n_expert_used));
  if (s.gating != ExpertGating::none) {
    TANDEM_RETURN_IF_ERROR(w.set_u32(a + "expert_gating_func", static_cast<uint32_t>(s.gating)));
  }
  TANDEM_RETURN_IF_ERROR(w.set_u32(a + "attention.head_count", s.n_head));
  TANDEM_RETURN_IF_ERROR(w.set_u32(a + "attention.head_count_kv", s.n_head_kv));
  TANDEM_RETURN_IF_ERROR(w.set_u32(a + "attention.key_length", s.n_embd_head_k));
  TANDEM_RETURN_IF_ERROR(w.set_u32(a + "attention.value_length", s.n_embd_head_v));
  TANDEM_RETURN_IF_ERROR(w.set_f32(a + "attention.layer_norm_rms_epsilon", s.rms_norm_eps));
  TANDEM_RETURN_IF_ERROR(w.set_f32(a + "rope.freq_base", s.rope_freq_base));
  if (s.swa) TANDEM_RETURN_IF_ERROR(w.set_u32(a + "attention.sliding_window", 4096));

  TANDEM_RETURN_IF_ERROR(w.set_string("tokenizer.ggml.model", vocab.model));
  TANDEM_RETURN_IF_ERROR(w.set_string("tokenizer.ggml.pre", vocab.pre));
  TANDEM_RETURN_IF_ERROR(w.set_string_array("tokenizer.ggml.tokens", vocab.tokens));
  TANDEM_RETURN_IF_ERROR(w.set_i32_array("tokenizer.ggml.token_type", std::move(vocab.token_types)));
  TANDEM_RETURN_IF_ERROR(w.set_string_array("tokenizer.ggml.merges", vocab.merges));
  TANDEM_RETURN_IF_ERROR(w.set_u32("tokenizer.ggml.bos_token_id", vocab.bos_token_id));
  TANDEM_RETURN_IF_ERROR(w.set_u32("tokenizer.ggml.eos_token_id", vocab.eos_token_id));
  if (vocab.padding_token_id) {
    TANDEM_RETURN_IF_ERROR(w.set_u32("tokenizer.ggml.padding_token_id", *vocab.padding_token_id));
  }
  TANDEM_RETURN_IF_ERROR(w.set_bool("tokenizer.ggml.add_bos_token", vocab.add_bos_token));
  TANDEM_RETURN_IF_ERROR(w.set_bool("tokenizer.ggml.add_eos_token", vocab.add_eos_token));
  if (!vocab.chat_template.empty()) {
    TANDEM_RETURN_IF_ERROR(w.set_string("tokenizer.chat_template", std::move(vocab.chat_template)));
  }
  return {};
}

// ---- tensor data ---------------------------------------------------------------------------

// Makes rows [first, first + n) of a tensor (flat over slabs) into `dst`, in parallel.
Status make_rows(const TensorPlan& t, int64_t first, int64_t n, uint8_t* dst) {
  const int64_t len = t.row_len();
  const size_t row_bytes = dtype_row_size(t.dtype, len);
  std::atomic<bool> failed{false};
  tbb::parallel_for(tbb::blocked_range<int64_t>(0, n, 16), [&](const tbb::blocked_range<int64_t>& r) {
    std::vector<float> buf(static_cast<size_t>(len));
    for (int64_t i = r.begin(); i < r.end(); ++i) {
      const int64_t flat = first + i;
      t.row(static_cast<uint32_t>(flat / t.rows_per_slab()), static_cast<uint32_t>(flat % t.rows_per_slab()), buf.data());
      if (!cpu::quantize_row(t.dtype, buf.data(), dst + static_cast<size_t>(i) * row_bytes, len).ok()) failed = true;
    }
  });
  if (failed) {
    return make_error(ErrorCode::internal, "make-model: cannot encode tensor '{}' rows of {} as {}", t.name, len,
                      dtype_name(t.dtype));
  }
  return {};
}

}  // namespace

Status make_model(const MakeModelOptions& opts, const std::filesystem::path& out, const MakeModelProgress& progress) {
  TANDEM_ASSIGN_OR_RETURN(const ModelShape shape, resolve_model_shape(opts));
  VocabData vocab;
  if (opts.vocab) {
    TANDEM_ASSIGN_OR_RETURN(vocab, vocab_from_tiktoken(*opts.vocab, shape.n_vocab));
  } else {
    vocab = vocab_builtin(shape.n_vocab);
  }
  if (vocab.tokens.size() != shape.n_vocab || vocab.token_types.size() != shape.n_vocab) {
    return make_error(ErrorCode::internal, "make-model: the vocabulary has {} tokens and {} token types, expected {}",
                      vocab.tokens.size(), vocab.token_types.size(), shape.n_vocab);
  }

  const Design design = make_design(shape, opts);
  const std::vector<TensorPlan> plans = plan_tensors(design, opts.dtype);

  TANDEM_ASSIGN_OR_RETURN(GgufWriter writer, GgufWriter::create(out));
  TANDEM_RETURN_IF_ERROR(write_metadata(writer, shape, opts, std::move(vocab)));
  for (const auto& t : plans) TANDEM_RETURN_IF_ERROR(writer.add_tensor(t.name, t.dtype, t.ne, t.n_dims));
  TANDEM_RETURN_IF_ERROR(writer.begin_data());

  uint64_t total = writer.bytes_written();
  for (const auto& t : plans) {
    total = gguf_align_up(total, 32);
    total += dtype_row_size(t.dtype, t.row_len()) * static_cast<uint64_t>(t.rows_per_slab() * t.n_slabs());
  }
  if (progress) progress(writer.bytes_written(), total);

  constexpr size_t k_chunk_f32_bytes = size_t{16} << 20;  // memory per chunk, independent of model size
  for (const auto& t : plans) {
    const int64_t n_rows = t.rows_per_slab() * t.n_slabs();
    const int64_t rows_per_chunk =
        std::max<int64_t>(1, static_cast<int64_t>(k_chunk_f32_bytes / (sizeof(float) * static_cast<size_t>(t.row_len()))));
    const size_t row_bytes = dtype_row_size(t.dtype, t.row_len());
    int64_t next = 0;
    const auto next_chunk = [&](std::vector<uint8_t>& chunk) -> Status {
      const int64_t n = std::min(rows_per_chunk, n_rows - next);
      chunk.resize(static_cast<size_t>(n) * row_bytes);
      TANDEM_RETURN_IF_ERROR(make_rows(t, next, n, chunk.data()));
      next += n;
      if (progress) progress(writer.bytes_written() + chunk.size(), total);
      return {};
    };
    TANDEM_RETURN_IF_ERROR(writer.write_tensor_data_chunked(next_chunk));
  }
  TANDEM_RETURN_IF_ERROR(writer.finish());
  if (progress) progress(total, total);
  return {};
}

}  // namespace tandem
