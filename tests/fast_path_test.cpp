// End to end: the fast CPU ops (runtime/forward_ops_fast.h) inside Forward on tiny models of
// every layout the maker writes, for every ISA table the host runs and 1, 2, 3 threads.
//
// Oracle: the plain ops (make_cpu_ops). They quantize activations to q8_0 before quantized
// mul_mats exactly as the fast ops (and ggml) do, so the two differ only by f32 reassociation
// and the table's soft_max/rms_norm (1e-5 relative): greedy tokens must agree exactly, and
// logit differences measure the kernels alone. (cpu::reference::forward keeps activations in
// f32, which moves quantized logits by ~1e-5 NMSE and flips near-ties; tests/golden_test.cpp
// ties the plain ops to it, and Forward's default ops are now the fast ones.) f32 models are
// also compared with cpu::reference::forward directly.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstring>

#include "cpu/kernel_table.h"
#include "cpu/reference/forward.h"
#include "runtime/forward.h"
#include "runtime/forward_ops_fast.h"
#include "runtime/forward_test_support.h"
#include "support/test_support.h"

using namespace tandem;

namespace {

struct Variant {
  const char* name;
  DType dtype;
  bool transpose_down;
  // NMSE bound of the fast logits against the plain ops' (measured with -s: <= 3.1e-12 over
  // every variant and ISA, the largest from the scalar table's f64 dots against the plain
  // ops' f32 ones; quantized variants get 10x more room, since a q8_0 rounding of an
  // activation that flips between the two moves a logit by a quantization step).
  double bound;
};

constexpr Variant k_variants[] = {
    {"f32", DType::f32, false, 1e-10},   {"f32 transposed down", DType::f32, true, 1e-10},
    {"q8_0", DType::q8_0, false, 1e-9},  {"q8_0 transposed down", DType::q8_0, true, 1e-9},
    {"q4_0", DType::q4_0, false, 1e-9},  {"q4_0 transposed down", DType::q4_0, true, 1e-9},
};

constexpr size_t k_prompt = 21;
constexpr int k_gen = 12;

struct Run {
  std::vector<float> prompt_logits;  // (k_prompt, n_vocab)
  std::vector<float> gen_logits;     // (k_gen, n_vocab), the last row of each decode step
  std::vector<int32_t> tokens;       // greedy continuation
};

int32_t argmax(std::span<const float> row) {
  return static_cast<int32_t>(std::max_element(row.begin(), row.end()) - row.begin());
}

// Prompt in ubatches of `n_ubatch`, then greedy decoding one token at a time.
Run run(const Model& model, std::unique_ptr<ForwardOps> ops, int n_threads, uint32_t n_ubatch,
        const std::vector<int32_t>& prompt, DType cache = DType::f16) {
  const ModelShape& s = model.shape();
  auto fwd = Forward::create(s, model.weights(), {n_ubatch, n_threads}, std::move(ops));
  REQUIRE(fwd.ok());
  auto kv = KvCache::create(s, {64, n_ubatch, cache});
  REQUIRE(kv.ok());
  Run r;
  REQUIRE((*fwd)->eval(*kv, prompt, LogitsRows::all, r.prompt_logits).ok());
  std::vector<float> logits(r.prompt_logits.end() - s.n_vocab, r.prompt_logits.end());
  for (int i = 0; i < k_gen; ++i) {
    const int32_t t = argmax(logits);
    r.tokens.push_back(t);
    REQUIRE((*fwd)->eval(*kv, std::span<const int32_t>(&t, 1), LogitsRows::last, logits).ok());
    r.gen_logits.insert(r.gen_logits.end(), logits.begin(), logits.end());
  }
  return r;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

std::vector<const cpu::KernelTable*> host_tables() {
  std::vector<const cpu::KernelTable*> r;
  for (cpu::Isa isa : {cpu::Isa::scalar, cpu::Isa::avx2, cpu::Isa::avx512, cpu::Isa::neon}) {
    const cpu::KernelTable* kt = cpu::kernels_for(isa);
    if (kt == nullptr) {
      if (isa != cpu::Isa::neon) WARN("ISA " << cpu::isa_name(isa) << " not available on this host: skipped");
      continue;
    }
    r.push_back(kt);
  }
  return r;
}

// Per-neuron gate counts of every (layer, expert) call, concatenated in call order.
class NeuronLog final : public ForwardObserver {
 public:
  bool wants_gate_neurons() const override { return true; }
  void on_expert_gate_neurons(uint32_t layer, uint32_t expert, std::span<const uint32_t> counts,
                              uint32_t n_rows) override {
    log.push_back(layer);
    log.push_back(expert);
    log.push_back(n_rows);
    log.insert(log.end(), counts.begin(), counts.end());
  }
  std::vector<uint32_t> log;
};

}  // namespace

TEST_CASE("fast path: greedy tokens equal the plain ops' for every ISA and 1-3 threads", "[fast_path]") {
  test::TempDir dir;
  for (const Variant& v : k_variants) {
    INFO("variant " << v.name);
    MakeModelOptions mo;
    mo.preset = "tiny";
    mo.dtype = v.dtype;
    mo.transpose_down = v.transpose_down;
    auto model = testing::make_and_load(mo, dir / "m.gguf");
    INFO(model.status().message());
    REQUIRE(model.ok());
    const ModelShape& s = model->shape();
    REQUIRE(s.down_layout == (v.transpose_down ? DownLayout::transposed : DownLayout::standard));
    const auto prompt = testing::random_tokens(k_prompt, s.n_vocab, 4321);

    const Run oracle = run(*model, make_cpu_ops(), 2, 512, prompt);
    for (const cpu::KernelTable* kt : host_tables()) {
      INFO("isa " << cpu::isa_name(kt->isa));
      std::vector<Run> runs;
      for (int nt : {1, 2, 3}) {
        INFO("threads " << nt);
        // Ubatches of 8 (8 + 8 + 5) for the prompt.
        runs.push_back(run(*model, make_fast_cpu_ops(*kt), nt, 8, prompt));
        CHECK(runs.back().tokens == oracle.tokens);
        const double e = test::nmse(runs.back().prompt_logits, oracle.prompt_logits);
        INFO("prompt logits nmse vs plain " << e);
        CHECK(e < v.bound);
        CHECK(test::nmse(runs.back().gen_logits, oracle.gen_logits) < v.bound);
      }
      for (size_t i = 1; i < runs.size(); ++i) {
        CHECK(same_bits(runs[i].prompt_logits, runs[0].prompt_logits));
        CHECK(same_bits(runs[i].gen_logits, runs[0].gen_logits));
      }
      // Another ubatch split (the whole prompt at once) gives the same bits.
      const Run whole = run(*model, make_fast_cpu_ops(*kt), 2, 512, prompt);
      CHECK(same_bits(whole.prompt_logits, runs[0].prompt_logits));
      CHECK(same_bits(whole.gen_logits, runs[0].gen_logits));
    }

    if (v.dtype == DType::f32) {  // and straight against the reference forward pass
      std::vector<float> expected;
      REQUIRE(cpu::reference::forward(s, model->weights(), prompt, expected).ok());
      const Run fast = run(*model, make_fast_cpu_ops(cpu::kernels()), 2, 8, prompt, DType::f32);  // as the reference
      const double e = test::nmse(fast.prompt_logits, expected);
      INFO("nmse vs cpu::reference::forward " << e);
      CHECK(e < 1e-10);
    }
  }
}

TEST_CASE("fast path: per-neuron gate counts equal the plain ops'", "[fast_path]") {
  test::TempDir dir;
  for (bool transposed : {false, true}) {
    MakeModelOptions mo;
    mo.preset = "tiny";
    mo.dtype = DType::q4_0;
    mo.transpose_down = transposed;
    auto model = testing::make_and_load(mo, dir / "m.gguf");
    REQUIRE(model.ok());
    const ModelShape& s = model->shape();
    const auto prompt = testing::random_tokens(17, s.n_vocab, 99);
    std::vector<std::vector<uint32_t>> logs;
    for (int which = 0; which < 2; ++which) {
      auto fwd = Forward::create(s, model->weights(), {8, 2},
                                 which == 0 ? make_cpu_ops() : make_fast_cpu_ops(cpu::kernels()));
      REQUIRE(fwd.ok());
      NeuronLog log;
      (*fwd)->set_observer(&log);
      auto kv = KvCache::create(s, {32, 8, DType::f16});
      REQUIRE(kv.ok());
      std::vector<float> logits;
      REQUIRE((*fwd)->eval(*kv, prompt, LogitsRows::last, logits).ok());
      logs.push_back(std::move(log.log));
    }
    INFO((transposed ? "transposed" : "standard"));
    REQUIRE(!logs[0].empty());
    CHECK(logs[1] == logs[0]);
  }
}

TEST_CASE("fast path: weight bytes per decode token are counted", "[fast_path]") {
  test::TempDir dir;
  MakeModelOptions mo;
  mo.preset = "tiny";
  mo.dtype = DType::q4_0;
  mo.transpose_down = true;
  auto model = testing::make_and_load(mo, dir / "m.gguf");
  REQUIRE(model.ok());
  const ModelShape& s = model->shape();
  auto ops = make_fast_cpu_ops(cpu::kernels());
  ForwardOps* raw = ops.get();
  auto fwd = Forward::create(s, model->weights(), {8, 2}, std::move(ops));
  REQUIRE(fwd.ok());
  auto kv = KvCache::create(s, {32, 8, DType::f16});
  REQUIRE(kv.ok());
  std::vector<float> logits;
  REQUIRE((*fwd)->eval(*kv, testing::random_tokens(4, s.n_vocab, 1), LogitsRows::last, logits).ok());
  raw->reset_counters();
  const int32_t t = 5;
  REQUIRE((*fwd)->eval(*kv, std::span<const int32_t>(&t, 1), LogitsRows::last, logits).ok());
  const ForwardOpsCounters c = raw->counters();
  // Dense weights of one token: every attention and router matrix, the output head, one
  // embedding row; experts: between the gate rows alone and n_expert_used whole experts.
  uint64_t dense = model->weights().output.nbytes() + model->weights().token_embd.row_size();
  uint64_t expert_max = 0, expert_min = 0;
  for (const LayerWeights& lw : model->weights().layers) {
    dense += lw.attn_q.nbytes() + lw.attn_k.nbytes() + lw.attn_v.nbytes() + lw.attn_output.nbytes() +
             lw.ffn_gate_inp.nbytes();
    const uint64_t gate = lw.ffn_gate_exps.nbytes() / s.n_expert;
    expert_min += s.n_expert_used * gate;
    expert_max += s.n_expert_used * (gate + (lw.ffn_up_exps.nbytes() + lw.ffn_down_exps.nbytes()) / s.n_expert);
  }
  CHECK(c.weight_bytes - c.expert_bytes == dense);
  CHECK(c.expert_bytes > expert_min);
  CHECK(c.expert_bytes < expert_max);  // ReLU sparsity: some up/down rows were skipped
}
