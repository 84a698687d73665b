// `tandem make-model`: write a SmallThinker GGUF with synthetic, seed-deterministic weights
// (runtime/model_maker.h). Progress (percent, MB/s, ETA) on stderr for files over 64 MB; a
// summary line at the end.
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>

#include "command.h"
#include "runtime/model_maker.h"

namespace tandem::tools {
namespace {

struct MakeModelCli {
  MakeModelOptions opts;
  std::string out;
  std::string dtype = "q4_0";
  std::string gating = "sigmoid";
  std::string swa;  // "", "on", "off"
  bool tied = false;
  bool untied = false;
  std::string vocab;
};

constexpr const char* k_construction = R"(
Weights (deterministic from --seed; the same seed gives byte-identical files on any thread count):
  every element is splitmix64(seed, tensor, element index) -> uniform with unit variance.
  Token embeddings = a shared mean direction u0 (1/4 of the energy) + a few shared topic
  directions + noise. Attention and expert outputs are scaled by 1/sqrt(fan_in) and a depth
  factor so the residual stream stays O(1) through all layers.
  Router (ffn_gate_inp, f32) row e = -skew*ln(1+rank(e)) along u0 + a random direction, so
  expert popularity per layer is Zipf-like with exponent --skew (0 = flat); the ranking is a
  per-layer permutation, so hot experts differ between layers.
  Expert gate rows carry a per-neuron negative bias along u0, so a fraction --relu-sparsity of
  gate pre-activations is <= 0 on typical inputs (hot and cold neurons, as in ReLU models).
  output_norm has random signs (logit std ~1.5), so a tied model does not just copy its input.
  Norms and the router are f32; every other 2-D/3-D weight is --dtype. --transpose-down
  writes ffn_down_exps as PowerInfer's [n_embd, n_ff_exp, n_expert] with the same values
  (it needs n_ff_exp != n_embd, else the layouts cannot be told apart).
)";

std::string human_mb(uint64_t bytes) { return fmt::format("{:.1f} MB", static_cast<double>(bytes) / 1e6); }

int run_make_model(MakeModelCli& c) {
  MakeModelOptions& o = c.opts;
  const auto dt = dtype_from_name(c.dtype);
  if (!dt) return report_error(make_error(ErrorCode::invalid_argument, "make-model: unknown --dtype '{}'", c.dtype));
  o.dtype = *dt;
  if (c.gating == "sigmoid") o.gating = ExpertGating::sigmoid;
  else if (c.gating == "softmax") o.gating = ExpertGating::softmax;
  else if (c.gating == "none") o.gating = ExpertGating::none;
  else return report_error(make_error(ErrorCode::invalid_argument, "make-model: --gating must be sigmoid, softmax or none, not '{}'", c.gating));
  if (c.swa == "on") o.swa = true;
  else if (c.swa == "off") o.swa = false;
  else if (!c.swa.empty()) return report_error(make_error(ErrorCode::invalid_argument, "make-model: --swa must be on or off, not '{}'", c.swa));
  if (c.tied && c.untied) return report_error(make_error(ErrorCode::invalid_argument, "make-model: --tied and --untied exclude each other"));
  if (c.tied) o.tied = true;
  if (c.untied) o.tied = false;
  if (!c.vocab.empty()) o.vocab = c.vocab;

  auto shape = resolve_model_shape(o);
  if (!shape.ok()) return report_error(shape.status());
  const ModelShape& s = *shape;
  std::fprintf(stderr,
               "make-model: preset %s, %s, n_layer %u, n_embd %u, n_head %u/%u x %u, n_expert %u (used %u), "
               "n_ff_exp %u, n_vocab %u, ctx %u, %s, %s, gating %s, swa %s, seed %llu, skew %.2f, relu-sparsity %.2f\n",
               o.preset.c_str(), std::string(dtype_name(o.dtype)).c_str(), s.n_layer, s.n_embd, s.n_head, s.n_head_kv,
               s.n_embd_head_k, s.n_expert, s.n_expert_used, s.n_ff_exp, s.n_vocab, s.n_ctx_train,
               s.tied_output ? "tied" : "untied", s.down_layout == DownLayout::transposed ? "down transposed" : "down standard",
               c.gating.c_str(), s.swa ? "on" : "off", static_cast<unsigned long long>(o.seed), o.skew, o.relu_sparsity);

  using clock = std::chrono::steady_clock;
  const auto t0 = clock::now();
  auto last = t0;
  uint64_t file_size = 0;
  bool printed = false;
  auto progress = [&](uint64_t done, uint64_t total) {
    file_size = total;
    if (total < (uint64_t{64} << 20)) return;
    const auto now = clock::now();
    if (done < total && now - last < std::chrono::milliseconds(500)) return;
    last = now;
    const double secs = std::chrono::duration<double>(now - t0).count();
    const double rate = secs > 0 ? static_cast<double>(done) / 1e6 / secs : 0.0;
    const double eta = rate > 0 ? static_cast<double>(total - done) / 1e6 / rate : 0.0;
    std::fprintf(stderr, "\r  %5.1f%%  %s / %s  %.0f MB/s  ETA %.0f s   ", 100.0 * static_cast<double>(done) / static_cast<double>(total),
                 human_mb(done).c_str(), human_mb(total).c_str(), rate, eta);
    printed = true;
  };
  const Status st = make_model(o, c.out, progress);
  if (printed) std::fprintf(stderr, "\n");
  if (!st.ok()) return report_error(st);
  const double secs = std::chrono::duration<double>(clock::now() - t0).count();
  std::fprintf(stderr, "make-model: wrote %s: %s (%llu bytes) in %.1f s (%.0f MB/s)\n", c.out.c_str(), human_mb(file_size).c_str(),
               static_cast<unsigned long long>(file_size), secs, secs > 0 ? static_cast<double>(file_size) / 1e6 / secs : 0.0);
  return 0;
}

const CommandRegistration reg{
    "make-model", "Write a SmallThinker GGUF with synthetic weights (presets tiny, default, 4b, 21b)", 90,
    [](CLI::App& sub) {
      auto c = std::make_shared<MakeModelCli>();
      MakeModelOptions& o = c->opts;
      sub.footer(k_construction);
      sub.add_option("-o,--output", c->out, "Output GGUF file")->required();
      sub.add_option("--preset", o.preset, "tiny | default | 4b | 21b (shapes of spec §1.1 for 4b/21b)")->capture_default_str();
      sub.add_option("--n-layer", o.n_layer, "Override: number of layers");
      sub.add_option("--n-embd", o.n_embd, "Override: embedding width (multiple of 32)");
      sub.add_option("--n-head", o.n_head, "Override: query heads");
      sub.add_option("--n-head-kv", o.n_head_kv, "Override: key/value heads (divides n_head)");
      sub.add_option("--head-dim", o.head_dim, "Override: head dimension (key_length = value_length)");
      sub.add_option("--n-expert", o.n_expert, "Override: experts per layer");
      sub.add_option("--n-expert-used", o.n_expert_used, "Override: experts selected per token");
      sub.add_option("--n-ff-exp", o.n_ff_exp, "Override: expert FFN width (multiple of 32)");
      sub.add_option("--n-vocab", o.n_vocab, "Override: vocabulary size");
      sub.add_option("--n-ctx-train", o.n_ctx_train, "Override: context_length");
      sub.add_option("--rope-freq-base", o.rope_freq_base, "Override: rope.freq_base");
      sub.add_option("--dtype", c->dtype, "f32 | f16 | q8_0 | q4_0 for every 2-D/3-D weight")->capture_default_str();
      sub.add_option("--seed", o.seed, "Seed of the weights")->capture_default_str();
      sub.add_option("--gating", c->gating, "sigmoid | softmax | none (none omits expert_gating_func)")->capture_default_str();
      sub.add_option("--swa", c->swa, "on | off: write attention.sliding_window (default: the preset's; on for 21b)");
      sub.add_flag("--transpose-down", o.transpose_down, "Write ffn_down_exps transposed (PowerInfer layout)");
      sub.add_flag("--tied", c->tied, "No output.weight: logits use token_embd (default: the preset's)");
      sub.add_flag("--untied", c->untied, "Write a separate output.weight");
      sub.add_option("--skew", o.skew, "Zipf exponent of expert popularity per layer (0 = flat)")->capture_default_str();
      sub.add_option("--relu-sparsity", o.relu_sparsity, "Fraction of expert gate pre-activations <= 0")->capture_default_str();
      sub.add_option("--vocab", c->vocab, "tiktoken ranks file (e.g. qwen.tiktoken): the real Qwen2 vocabulary");
      sub.add_option("--name", o.name, "general.name (default: tandem-<preset>)");
      return [c] { return run_make_model(*c); };
    }};

}  // namespace
}  // namespace tandem::tools
