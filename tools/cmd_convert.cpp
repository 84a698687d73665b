// `tandem convert --transpose-down IN OUT`: rewrites ffn_down_exps into PowerInfer's
// transposed layout (runtime/convert.h), copying every other tensor and key unchanged, then
// measures what the requantization cost on the experts' outputs and prints it.
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>

#include "command.h"
#include "runtime/convert.h"
#include "runtime/model.h"

namespace tandem::tools {
namespace {

struct ConvertCli {
  bool transpose_down = false;
  std::string in, out;
  bool no_check = false;
};

// Figures measured with this command on models from `tandem make-model` (bench/RESULTS.md).
constexpr const char* k_footer = R"(
--transpose-down: ffn_down_exps [n_ff_exp, n_embd, n_expert] -> [n_embd, n_ff_exp, n_expert]
(PowerInfer's layout: the sparse expert FFN then reads only the down rows of active neurons).
Each expert is dequantized, transposed and requantized to its own dtype, one expert at a time.
Precision cost: none for f32, f16 and bf16 (the values round-trip exactly; the tests check the
result is byte-identical to a model made transposed). For q8_0 and q4_0 the blocks run along
n_embd afterwards, so down is quantized twice. Measured on `tandem make-model --preset tiny`
(seed 42; NMSE = sum (after - before)^2 / sum before^2, `before` the standard model):
  dtype  down weights  expert outputs  logits (24 tokens)  perplexity, builtin corpus, -c 128
  q8_0   1.3e-05       1.4e-05         2.1e-03             1201.80 -> 1201.38
  q4_0   1.9e-03       1.9e-03         6.5e-04             1202.13 -> 1203.82 (+0.1%)
The logits and perplexity include how the CPU runs each layout: the standard down quantizes its
input a to q8_0, the transposed one rounds each a * d to 8 bits (see cpu/expert_ffn.h); for q8_0
that difference, not the weights, is most of the logits' NMSE.
For scale: the maker's own transposed q4_0 file (quantized once from the same f32 values) is
4.8e-03 away from the standard one on the expert outputs. After converting, the command measures
the expert-output NMSE of this model (8 random unit-variance inputs through every expert;
--no-check skips it).
)";

int run_convert(const ConvertCli& c) {
  if (!c.transpose_down) {
    return report_error(make_error(ErrorCode::invalid_argument, "convert: say what to convert (--transpose-down)"));
  }
  using clock = std::chrono::steady_clock;
  const auto t0 = clock::now();
  auto last = t0;
  bool printed = false;
  auto stats = convert_transpose_down(c.in, c.out, [&](uint64_t done, uint64_t total) {
    const auto now = clock::now();
    if (total < (uint64_t{64} << 20) || (done < total && now - last < std::chrono::milliseconds(500))) return;
    last = now;
    std::fprintf(stderr, "\r  %5.1f%%  %.1f / %.1f MB   ", 100.0 * static_cast<double>(done) / static_cast<double>(total),
                 static_cast<double>(done) / 1e6, static_cast<double>(total) / 1e6);
    printed = true;
  });
  if (printed) std::fprintf(stderr, "\n");
  if (!stats.ok()) return report_error(stats.status());
  std::fprintf(stderr, "convert: wrote %s (%llu bytes) in %.1f s: %u ffn_down_exps transposed, %u tensors copied\n",
               c.out.c_str(), static_cast<unsigned long long>(stats->bytes_written),
               std::chrono::duration<double>(clock::now() - t0).count(), stats->n_tensors_converted,
               stats->n_tensors_copied);
  std::printf("down weights NMSE: %.3e\n", stats->down_weight_nmse);
  if (c.no_check) return 0;
  auto before = Model::load(c.in);
  if (!before.ok()) return report_error(before.status());
  auto after = Model::load(c.out);
  if (!after.ok()) return report_error(after.status());
  auto e = expert_output_nmse(before->shape(), before->weights(), after->shape(), after->weights());
  if (!e.ok()) return report_error(e.status());
  std::printf("expert outputs NMSE: %.3e (8 random inputs through every expert)\n", *e);
  return 0;
}

const CommandRegistration reg{
    "convert", "Rewrite a model file (--transpose-down: PowerInfer's ffn_down_exps layout)", 92, [](CLI::App& sub) {
      auto c = std::make_shared<ConvertCli>();
      sub.footer(k_footer);
      sub.add_flag("--transpose-down", c->transpose_down, "transpose every blk.*.ffn_down_exps (see below)");
      sub.add_option("in", c->in, "input GGUF (SmallThinker, standard down layout)")->required();
      sub.add_option("out", c->out, "output GGUF")->required();
      sub.add_flag("--no-check", c->no_check, "skip measuring the expert-output error afterwards");
      return [c] { return run_convert(*c); };
    }};

}  // namespace
}  // namespace tandem::tools
