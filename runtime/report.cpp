#include "runtime/report.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <numeric>
#include <system_error>

#include "runtime/report_svg.h"

namespace tandem {

Status check_profile_sizes(const Profile& p) {
  const auto& s = p.shape;
  if (p.layers.size() != s.n_layer) {
    return make_error(ErrorCode::invalid_argument, "profile {}: {} layers, shape says n_layer {}", p.model_name,
                      p.layers.size(), s.n_layer);
  }
  for (size_t l = 0; l < p.layers.size(); ++l) {
    const LayerProfile& L = p.layers[l];
    if (L.experts.size() != s.n_expert || L.lru_hit_rate.size() != s.n_expert + 1ull) {
      return make_error(ErrorCode::invalid_argument,
                        "profile {}: layer {} has {} experts and {} hit rates (n_expert {} needs {} and {})",
                        p.model_name, l, L.experts.size(), L.lru_hit_rate.size(), s.n_expert, s.n_expert,
                        s.n_expert + 1);
    }
  }
  return Status::success();
}

ProfileSummary summarize_profile(const Profile& p) {
  ProfileSummary sum;
  const uint32_t ne = p.shape.n_expert;
  sum.max_entropy_bits = ne > 0 ? std::log2(static_cast<double>(ne)) : 0.0;
  auto clamp = [&](uint64_t c) { return static_cast<uint32_t>(std::clamp<uint64_t>(c, 1, std::max(1u, ne))); };
  sum.c_k = clamp(p.shape.n_expert_used);
  sum.c_2k = clamp(2ull * p.shape.n_expert_used);
  sum.c_half = clamp(ne / 2);
  double gate_w = 0, gate_sum = 0;
  for (uint32_t l = 0; l < p.layers.size(); ++l) {
    const LayerProfile& L = p.layers[l];
    LayerSummary ls;
    std::vector<uint32_t> order(L.experts.size());
    std::iota(order.begin(), order.end(), 0u);
    std::stable_sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) {
      return L.experts[a].activation_count > L.experts[b].activation_count;
    });
    for (size_t i = 0; i < std::min<size_t>(3, order.size()); ++i) ls.top.push_back({order[i], p.activation_probability(l, order[i])});

    double total = 0, lw = 0, lg = 0;
    for (const auto& e : L.experts) total += static_cast<double>(e.activation_count);
    for (const auto& e : L.experts) {
      if (total > 0 && e.activation_count > 0) {
        const double q = static_cast<double>(e.activation_count) / total;
        ls.entropy_bits -= q * std::log2(q);
      }
      if (e.gate_observations > 0) {
        lw += static_cast<double>(e.gate_observations);
        lg += static_cast<double>(e.gate_observations) * e.gate_activity;
      }
    }
    if (lw > 0) ls.mean_gate_activity = lg / lw;
    gate_w += lw;
    gate_sum += lg;
    auto at = [&](uint32_t c) { return c < L.lru_hit_rate.size() ? L.lru_hit_rate[c] : 0.0; };
    ls.hit_k = at(sum.c_k);
    ls.hit_2k = at(sum.c_2k);
    ls.hit_half = at(sum.c_half);
    sum.mean_entropy_bits += ls.entropy_bits;
    sum.mean_hit_k += ls.hit_k;
    sum.mean_hit_2k += ls.hit_2k;
    sum.mean_hit_half += ls.hit_half;
    sum.layers.push_back(std::move(ls));
  }
  if (!sum.layers.empty()) {
    const double n = static_cast<double>(sum.layers.size());
    sum.mean_entropy_bits /= n;
    sum.mean_hit_k /= n;
    sum.mean_hit_2k /= n;
    sum.mean_hit_half /= n;
  }
  if (gate_w > 0) sum.mean_gate_activity = gate_sum / gate_w;
  return sum;
}

namespace {

std::string pct(double v) { return svg::num(100 * v, 1) + "%"; }

std::string gate_text(const std::optional<double>& g) { return g ? pct(*g) : std::string("not recorded"); }

// Only inline styles from here: the page must not load anything.
constexpr const char* k_style = R"(body{font-family:sans-serif;margin:24px;color:#222;max-width:1200px}
h1{font-size:22px}h2{font-size:17px;margin-top:28px}
table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f0f0f0}td.l{text-align:left}.figure{overflow-x:auto;margin:8px 0 16px 0}
dl{display:grid;grid-template-columns:max-content auto;gap:2px 16px;font-size:14px}dt{font-weight:bold}dd{margin:0})";

}  // namespace

std::string report_html(const Profile& p) {
  const ProfileSummary s = summarize_profile(p);
  using svg::xml_escape;
  std::string h;
  h += "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n";
  h += fmt::format("<title>Tandem profile: {}</title>\n<style>\n{}\n</style>\n</head>\n<body>\n",
                   xml_escape(p.model_name), k_style);
  h += fmt::format("<h1>Expert profile of {}</h1>\n<dl>\n", xml_escape(p.model_name));
  auto item = [&](std::string_view k, const std::string& v) { h += fmt::format("<dt>{}</dt><dd>{}</dd>\n", k, v); };
  item("model hash", xml_escape(p.model_hash));
  item("tokens profiled", std::to_string(p.n_tokens));
  item("shape", fmt::format("n_layer {}, n_expert {}, n_expert_used {}, n_embd {}, n_ff_exp {}", p.shape.n_layer,
                            p.shape.n_expert, p.shape.n_expert_used, p.shape.n_embd, p.shape.n_ff_exp));
  item("routing entropy (mean over layers)",
       fmt::format("{} bits of {} (uniform)", svg::num(s.mean_entropy_bits, 3), svg::num(s.max_entropy_bits, 3)));
  item("mean gate activity", gate_text(s.mean_gate_activity));
  item("mean LRU hit rate", fmt::format("{} at c = k = {}, {} at c = 2k = {}, {} at c = n/2 = {}", pct(s.mean_hit_k),
                                        s.c_k, pct(s.mean_hit_2k), s.c_2k, pct(s.mean_hit_half), s.c_half));
  h += "</dl>\n";

  h += "<h2>Expert activation</h2>\n<div class=\"figure\">\n" + heatmap_svg(p) + "</div>\n";
  h += "<h2>LRU expert cache</h2>\n<div class=\"figure\">\n" + lru_svg(p) + "</div>\n";
  h += "<h2>Neuron (ReLU gate) activity</h2>\n<div class=\"figure\">\n" + sparsity_svg(p) + "</div>\n";

  h += "<h2>Per layer</h2>\n<p>Top experts: share of tokens whose top-k includes the expert. Entropy of the "
       "routing distribution over experts, in bits. Hit rate: an LRU cache of c experts of that layer.</p>\n";
  h += fmt::format(
      "<table>\n<tr><th>layer</th><th>top experts</th><th>entropy (bits)</th><th>gate activity</th>"
      "<th>hit c={}</th><th>hit c={}</th><th>hit c={}</th></tr>\n",
      s.c_k, s.c_2k, s.c_half);
  for (size_t l = 0; l < s.layers.size(); ++l) {
    const LayerSummary& L = s.layers[l];
    std::string top;
    for (const auto& t : L.top) top += fmt::format("{}e{} {}", top.empty() ? "" : ", ", t.expert, pct(t.probability));
    h += fmt::format("<tr><td>{}</td><td class=\"l\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
                     l, top, svg::num(L.entropy_bits, 3), gate_text(L.mean_gate_activity), pct(L.hit_k),
                     pct(L.hit_2k), pct(L.hit_half));
  }
  h += "</table>\n</body>\n</html>\n";
  return h;
}

Status write_report(const Profile& profile, const std::filesystem::path& dir) {
  TANDEM_RETURN_IF_ERROR(check_profile_sizes(profile));
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return make_error(ErrorCode::io_error, "{}: cannot create the folder: {}", dir.string(), ec.message());
  const std::pair<const char*, std::string> files[] = {{"heatmap.svg", heatmap_svg(profile)},
                                                       {"lru.svg", lru_svg(profile)},
                                                       {"sparsity.svg", sparsity_svg(profile)},
                                                       {"report.html", report_html(profile)}};
  for (const auto& [name, text] : files) {
    const std::filesystem::path path = dir / name;
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
    out.close();
    if (!out) return make_error(ErrorCode::io_error, "{}: cannot write the file", path.string());
  }
  return Status::success();
}

}  // namespace tandem
