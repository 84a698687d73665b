// The three SVG charts of runtime/report.h.
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cmath>

#include "runtime/report.h"
#include "runtime/report_svg.h"

namespace tandem {

namespace {

constexpr const char* k_axis = "#333333";
constexpr const char* k_grid = "#e4e4e4";

// Label every `step`-th index so that at most ~`max_labels` labels appear.
uint32_t label_step(uint32_t n, uint32_t max_labels) {
  uint32_t step = 1;
  while (n / step > max_labels) step = step < 5 ? step + 1 : (step < 10 ? 10 : step * 2);
  return step;
}

// Cache sizes the report quotes (k, 2k, n/2), clamped to [1, n_expert].
std::array<uint32_t, 3> marker_sizes(const ProfileShape& s) {
  auto clamp = [&](uint64_t c) { return static_cast<uint32_t>(std::clamp<uint64_t>(c, 1, std::max(1u, s.n_expert))); };
  return {clamp(s.n_expert_used), clamp(2ull * s.n_expert_used), clamp(s.n_expert / 2)};
}

// Rough width of a bold sans-serif title at `size` px (average glyph ~0.6 em), so that the
// canvas is never narrower than its title.
double title_width(const std::string& title, double size) { return 0.6 * size * static_cast<double>(title.size()); }

}  // namespace

std::string heatmap_svg(const Profile& p) {
  const uint32_t nl = p.shape.n_layer, ne = p.shape.n_expert;
  const double cw = std::clamp(760.0 / std::max(1u, ne), 6.0, 44.0);
  const double ch = std::clamp(560.0 / std::max(1u, nl), 6.0, 28.0);
  const double left = 70, top = 56, grid_w = cw * ne, grid_h = ch * nl;
  const double legend_x = left + grid_w + 28;
  const std::string title = fmt::format("Expert activation probability P(e in top-{}) — {} ({} tokens)",
                                        p.shape.n_expert_used, p.model_name, p.n_tokens);
  const double width = std::max(legend_x + 90, left + title_width(title, 15) + 20), height = top + grid_h + 62;

  double vmax = 0;
  for (uint32_t l = 0; l < nl; ++l)
    for (uint32_t e = 0; e < ne; ++e) vmax = std::max(vmax, p.activation_probability(l, e));
  if (vmax <= 0) vmax = 1;

  svg::Document d(width, height, "Expert activation heatmap");
  d.text(left, 22, title, 15, "start", "font-weight=\"bold\"");
  d.text(left, 40, "row: layer, column: expert; outlined: each layer's most used expert", 11, "start",
         "fill=\"#555555\"");

  const bool labels = cw >= 30 && ch >= 14;
  for (uint32_t l = 0; l < nl; ++l) {
    uint32_t best = 0;
    for (uint32_t e = 0; e < ne; ++e) {
      const double v = p.activation_probability(l, e);
      if (v > p.activation_probability(l, best)) best = e;
      const svg::Rgb c = svg::viridis(v / vmax);
      const double x = left + e * cw, y = top + l * ch;
      d.raw(fmt::format(
          "<rect class=\"cell\" data-layer=\"{}\" data-expert=\"{}\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" "
          "fill=\"{}\"><title>layer {} expert {}: {}% of tokens ({} activations)</title></rect>\n",
          l, e, svg::num(x), svg::num(y), svg::num(cw), svg::num(ch), svg::hex(c), l, e, svg::num(100 * v, 1),
          p.layers[l].experts[e].activation_count));
      if (labels) {
        d.text(x + cw / 2, y + ch / 2 + 3.5, svg::num(100 * v, 0), std::min(10.0, ch - 4), "middle",
               fmt::format("fill=\"{}\"", svg::text_colour_on(c)));
      }
    }
    if (ne > 0) {
      d.rect(left + best * cw + 1, top + l * ch + 1, cw - 2, ch - 2, "none",
             "stroke=\"#ff2a6d\" stroke-width=\"2\"");
    }
  }
  d.rect(left, top, grid_w, grid_h, "none", fmt::format("stroke=\"{}\"", k_axis));

  // Axes: experts along the bottom, layers down the left.
  const uint32_t es = label_step(ne, static_cast<uint32_t>(grid_w / 22));
  for (uint32_t e = 0; e < ne; e += es) d.text(left + (e + 0.5) * cw, top + grid_h + 14, std::to_string(e), 10, "middle");
  const uint32_t ls = label_step(nl, static_cast<uint32_t>(grid_h / 12));
  for (uint32_t l = 0; l < nl; l += ls) d.text(left - 6, top + (l + 0.5) * ch + 3.5, std::to_string(l), 10, "end");
  d.text(left + grid_w / 2, top + grid_h + 36, "expert", 12, "middle");
  d.text(22, top + grid_h / 2, "layer", 12, "middle",
         fmt::format("transform=\"rotate(-90 22 {})\"", svg::num(top + grid_h / 2)));

  // Legend: a vertical gradient 0 (bottom) .. vmax (top) made of bands (no gradient ids,
  // so several charts can share one HTML page).
  const double lh = std::min(260.0, std::max(120.0, grid_h)), lw = 16;
  const int bands = 64;
  for (int i = 0; i < bands; ++i) {
    const double t0 = static_cast<double>(i) / bands;
    d.rect(legend_x, top + lh * (1 - t0 - 1.0 / bands), lw, lh / bands + 0.5, svg::hex(svg::viridis(t0 + 0.5 / bands)));
  }
  d.rect(legend_x, top, lw, lh, "none", fmt::format("stroke=\"{}\"", k_axis));
  for (double t : svg::nice_ticks(0, 100 * vmax, 6)) {
    const double y = top + lh * (1 - t / (100 * vmax));
    d.line(legend_x + lw, y, legend_x + lw + 4, y, k_axis);
    d.text(legend_x + lw + 7, y + 3.5, svg::num(t, 1) + "%", 10);
  }
  d.text(legend_x, top - 8, "P(active)", 10);
  return d.finish();
}

std::string lru_svg(const Profile& p) {
  const uint32_t nl = p.shape.n_layer, ne = p.shape.n_expert;
  const double left = 64, top = 50, pw = 620, ph = 380;
  const bool list_layers = nl <= 12;
  const double legend_x = left + pw + 24;
  const std::string title = fmt::format("LRU hit rate per layer vs cache size — {} ({} tokens)", p.model_name, p.n_tokens);
  const double width = std::max(legend_x + 130, left + title_width(title, 15) + 20), height = top + ph + 56;
  svg::Document d(width, height, "LRU expert cache hit rate");
  d.text(left, 22, title, 15, "start", "font-weight=\"bold\"");

  auto px = [&](double c) { return left + (ne ? c / ne : 0) * pw; };
  auto py = [&](double r) { return top + (1 - r) * ph; };
  for (double r : svg::nice_ticks(0, 1, 6)) {
    d.line(left, py(r), left + pw, py(r), k_grid);
    d.text(left - 6, py(r) + 3.5, svg::num(100 * r, 0) + "%", 10, "end");
  }
  for (double c : svg::nice_ticks(0, ne, 11)) {
    d.line(px(c), top, px(c), top + ph, k_grid);
    d.text(px(c), top + ph + 15, svg::num(c, 0), 10, "middle");
  }
  const auto marks = marker_sizes(p.shape);
  const char* mark_names[3] = {"k", "2k", "n/2"};
  for (int i = 0; i < 3; ++i) {
    d.line(px(marks[static_cast<size_t>(i)]), top, px(marks[static_cast<size_t>(i)]), top + ph, "#888888", 1,
           "stroke-dasharray=\"4 3\"");
    d.text(px(marks[static_cast<size_t>(i)]) + 3, top + 12 + 12 * i, fmt::format("c={}", mark_names[i]), 10, "start",
           "fill=\"#555555\"");
  }
  d.rect(left, top, pw, ph, "none", fmt::format("stroke=\"{}\"", k_axis));
  d.text(left + pw / 2, top + ph + 36, "cache size c (experts of the layer)", 12, "middle");
  d.text(18, top + ph / 2, "hit rate", 12, "middle", fmt::format("transform=\"rotate(-90 18 {})\"", svg::num(top + ph / 2)));

  auto polyline = [&](const std::vector<double>& rate, const std::string& colour, double w, std::string_view cls) {
    std::string pts;
    for (size_t c = 0; c < rate.size(); ++c) pts += fmt::format("{}{},{}", c ? " " : "", svg::num(px(c)), svg::num(py(rate[c])));
    d.raw(fmt::format("<polyline class=\"{}\" points=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"{}\" "
                      "stroke-linejoin=\"round\"/>\n",
                      cls, pts, colour, svg::num(w)));
  };
  std::vector<double> mean(ne + 1, 0.0);
  for (uint32_t l = 0; l < nl; ++l) {
    const auto& r = p.layers[l].lru_hit_rate;
    for (size_t c = 0; c < mean.size() && c < r.size(); ++c) mean[c] += r[c] / nl;
    polyline(r, svg::hex(svg::viridis(nl > 1 ? 0.9 * l / (nl - 1) : 0.0)), 1.2, "layer");
  }
  if (nl > 0) polyline(mean, "#000000", 2.6, "mean");

  // Legend: each layer when few, else a depth gradient.
  double ly = top + 6;
  d.line(legend_x, ly, legend_x + 22, ly, "#000000", 2.6);
  d.text(legend_x + 28, ly + 4, "mean", 11);
  ly += 20;
  if (list_layers) {
    for (uint32_t l = 0; l < nl; ++l, ly += 17) {
      d.line(legend_x, ly, legend_x + 22, ly, svg::hex(svg::viridis(nl > 1 ? 0.9 * l / (nl - 1) : 0.0)), 2);
      d.text(legend_x + 28, ly + 4, fmt::format("layer {}", l), 11);
    }
  } else {
    const int bands = 32;
    const double gh = 160;
    for (int i = 0; i < bands; ++i) d.rect(legend_x, ly + gh * i / bands, 14, gh / bands + 0.5, svg::hex(svg::viridis(0.9 * i / (bands - 1))));
    d.text(legend_x + 20, ly + 9, "layer 0", 11);
    d.text(legend_x + 20, ly + gh, fmt::format("layer {}", nl - 1), 11);
  }
  return d.finish();
}

std::string sparsity_svg(const Profile& p) {
  const uint32_t nl = p.shape.n_layer;
  const double left = 64, top = 50, ph = 340;
  const double bw = std::clamp(640.0 / std::max(1u, nl), 6.0, 90.0);
  const double pw = std::max(360.0, bw * std::max(1u, nl));
  const double x0 = left + (pw - bw * nl) / 2;  // few layers: centred in the minimum width
  const double legend_x = left + pw + 24;
  const std::string title =
      fmt::format("Gate activity per neuron (fraction of activations with gate > 0) — {}", p.model_name);
  const double width = std::max(legend_x + 185, left + title_width(title, 15) + 20), height = top + ph + 56;
  svg::Document d(width, height, "Neuron activity per layer");
  d.text(left, 22, title, 15, "start", "font-weight=\"bold\"");
  auto py = [&](double r) { return top + (1 - r) * ph; };
  for (double r : svg::nice_ticks(0, 1, 6)) {
    d.line(left, py(r), left + pw, py(r), k_grid);
    d.text(left - 6, py(r) + 3.5, svg::num(100 * r, 0) + "%", 10, "end");
  }
  bool any = false;
  for (uint32_t l = 0; l < nl; ++l) {
    std::array<double, 11> dec{};
    double w = 0, active = 0;
    for (const auto& e : p.layers[l].experts) {
      if (e.gate_observations == 0) continue;
      const double ew = static_cast<double>(e.gate_observations);
      for (size_t i = 0; i < dec.size(); ++i) dec[i] += ew * e.neuron_activity_deciles[i];
      active += ew * e.gate_activity;
      w += ew;
    }
    const double cx = x0 + (l + 0.5) * bw, half = std::clamp(bw * 0.32, 2.0, 16.0);
    if (w <= 0) {
      d.text(cx, py(0.5), "n/r", 9, "middle", "fill=\"#999999\"");
      continue;
    }
    any = true;
    for (double& v : dec) v /= w;
    const std::string box = fmt::format("class=\"box\" data-layer=\"{}\"", l);
    d.line(cx, py(dec[0]), cx, py(dec[10]), "#555555", 1);
    d.rect(cx - half, py(dec[9]), 2 * half, py(dec[1]) - py(dec[9]), "#b9d7ea", box + " stroke=\"#4a7ca8\"");
    d.rect(cx - half, py(dec[7]), 2 * half, py(dec[3]) - py(dec[7]), "#4a7ca8");
    d.line(cx - half, py(dec[5]), cx + half, py(dec[5]), "#ffffff", 2);
    d.raw(fmt::format("<circle cx=\"{}\" cy=\"{}\" r=\"{}\" fill=\"#ff2a6d\"><title>layer {}: mean gate activity "
                      "{}%</title></circle>\n",
                      svg::num(cx), svg::num(py(active / w)), svg::num(std::min(4.0, half)), l,
                      svg::num(100 * active / w, 1)));
  }
  d.rect(left, top, pw, ph, "none", fmt::format("stroke=\"{}\"", k_axis));
  const uint32_t ls = label_step(nl, static_cast<uint32_t>(pw / 22));
  for (uint32_t l = 0; l < nl; l += ls) d.text(x0 + (l + 0.5) * bw, top + ph + 15, std::to_string(l), 10, "middle");
  d.text(left + pw / 2, top + ph + 36, "layer", 12, "middle");
  d.text(18, top + ph / 2, "neuron active fraction", 12, "middle",
         fmt::format("transform=\"rotate(-90 18 {})\"", svg::num(top + ph / 2)));
  if (!any) d.text(left + pw / 2, py(0.5) - 18, "no gate activity recorded in this profile", 13, "middle", "fill=\"#b00020\"");

  // Legend: one glyph with each level named.
  const double lx = legend_x, ly = top + 10, gx = lx + 9;
  d.line(gx, ly, gx, ly + 100, "#555555");
  d.rect(gx - 7, ly + 15, 14, 70, "#b9d7ea", "stroke=\"#4a7ca8\"");
  d.rect(gx - 7, ly + 32, 14, 36, "#4a7ca8");
  d.line(gx - 7, ly + 50, gx + 7, ly + 50, "#ffffff", 2);
  const std::pair<double, const char*> levels[] = {{0, "p100 (most active neuron)"}, {15, "p90"}, {32, "p70"},
                                                   {50, "median"},  {68, "p30"}, {85, "p10"},
                                                   {100, "p0 (least active neuron)"}};
  for (const auto& [dy, name] : levels) {
    d.line(gx + 9, ly + dy, gx + 13, ly + dy, "#999999");
    d.text(gx + 16, ly + dy + 3.5, name, 10);
  }
  d.raw(fmt::format("<circle cx=\"{}\" cy=\"{}\" r=\"4\" fill=\"#ff2a6d\"/>\n", svg::num(gx), svg::num(ly + 125)));
  d.text(gx + 16, ly + 128.5, "mean gate activity", 10);
  d.text(lx, ly + 152, "n/r: not recorded", 10, "start", "fill=\"#999999\"");
  d.text(lx, ly + 170, "(deciles averaged over the", 10, "start", "fill=\"#555555\"");
  d.text(lx, ly + 183, "layer's experts, weighted", 10, "start", "fill=\"#555555\"");
  d.text(lx, ly + 196, "by observations)", 10, "start", "fill=\"#555555\"");
  return d.finish();
}

}  // namespace tandem
