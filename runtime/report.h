// The pictures of a Profile (`tandem report`): hand-written SVG charts and one
// self-contained HTML page (the SVGs inline, no scripts, fonts, style sheets or links).
//
//   heatmap.svg  : layers (rows, 0 at the top) x experts (columns): each cell's colour is the
//                  activation probability P(e in top-k) = activation_count / n_tokens on a
//                  viridis scale from 0 to the largest cell (legend on the right). Every cell
//                  is one <rect class="cell" data-layer data-expert> with a <title> tooltip;
//                  each layer's most used expert is outlined, and cells are labelled with
//                  their percentage when large enough to read.
//   lru.svg      : per layer the LRU hit rate vs cache size c = 0..n_expert (Profile's
//                  lru_hit_rate, exact stack-distance curves), one thin line per layer
//                  coloured by depth, and their mean in black; dashed markers at c = k, 2k, n/2.
//   sparsity.svg : per layer the distribution over neurons of each neuron's active fraction
//                  (ReLU gate > 0), from the experts' neuron_activity_deciles averaged decile
//                  by decile with weight gate_observations (quantile averaging, "Vincentization",
//                  Ratcliff 1979): whiskers p0..p100, box p10..p90, inner box p30..p70, a line
//                  at the median and a dot at the mean gate activity. Layers without gate
//                  observations are drawn as "not recorded".
//   report.html  : the three charts plus the summary below.
//
// Summary per layer (ProfileSummary): the top experts by activation probability; the routing
// entropy H = -sum p_e log2 p_e of p_e = activation_count_e / sum of counts (bits; uniform
// routing gives log2 n_expert); the mean gate activity over recorded observations; the LRU
// hit rate at c = k, 2k and n/2 (n_expert_used = k, clamped to n_expert).
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "core/status.h"
#include "planner/profile.h"

namespace tandem {

struct ExpertShare {
  uint32_t expert = 0;
  double probability = 0.0;  // activation_count / n_tokens
};

struct LayerSummary {
  std::vector<ExpertShare> top;             // up to 3, most used first (ties: lower id)
  double entropy_bits = 0.0;
  std::optional<double> mean_gate_activity;  // none when no gate observation was recorded
  double hit_k = 0.0, hit_2k = 0.0, hit_half = 0.0;
};

struct ProfileSummary {
  std::vector<LayerSummary> layers;
  double max_entropy_bits = 0.0;  // log2 n_expert
  double mean_entropy_bits = 0.0;
  std::optional<double> mean_gate_activity;
  double mean_hit_k = 0.0, mean_hit_2k = 0.0, mean_hit_half = 0.0;
  uint32_t c_k = 0, c_2k = 0, c_half = 0;  // the cache sizes used
};

// Expects a Profile that passed load_profile's validation (sizes match the shape).
ProfileSummary summarize_profile(const Profile& profile);

std::string heatmap_svg(const Profile& profile);
std::string lru_svg(const Profile& profile);
std::string sparsity_svg(const Profile& profile);
std::string report_html(const Profile& profile);

// Writes heatmap.svg, lru.svg, sparsity.svg and report.html into `dir` (created if missing).
// Errors: invalid_argument when the profile's layer/expert vectors do not match its shape;
// io_error naming the file that could not be written.
Status write_report(const Profile& profile, const std::filesystem::path& dir);

// Checks the sizes the charts index by (layers, experts, lru_hit_rate); invalid_argument
// naming the first mismatch.
Status check_profile_sizes(const Profile& profile);

}  // namespace tandem
