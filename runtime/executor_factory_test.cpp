#include "runtime/executor_factory.h"

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <fstream>

#include "gpu/testing/vulkan_fixture.h"
#include "cpu/kernel_table.h"
#include "cpu/quants.h"
#include "planner/profile.h"
#include "runtime/cpu_executor.h"
#include "runtime/executor_test_support.h"
#include "runtime/forward_test_support.h"
#include "support/test_support.h"

using namespace tandem;

namespace {

const bool k_probe = test::register_probe("vulkan", gpu::testing::vulkan_probe);

ExecutorOptions small_options() {
  ExecutorOptions o;
  o.n_ctx = 64;
  o.n_ubatch = 16;
  o.n_threads = 2;
  return o;
}

std::vector<float> eval_all(Executor& ex, std::span<const int32_t> tokens) {
  std::vector<float> logits;
  REQUIRE(ex.eval(tokens, LogitsRows::all, logits).ok());
  return logits;
}

// A plan for `model` that keeps every expert in RAM on the CPU except one streamed from the
// file (what `tandem plan` makes without a GPU); `gpu_expert` puts expert (0, 0) on the GPU.
Plan cpu_plan(const Model& model, bool gpu_expert = false) {
  const ModelShape& s = model.shape();
  Plan plan;
  plan.n_layer = s.n_layer;
  plan.n_expert = s.n_expert;
  plan.model_hash = model.content_hash();
  plan.expert_bytes = 1;  // any positive size: the executors take sizes from the model
  plan.predicted.layers.resize(s.n_layer);
  plan.placement.tiers.assign(s.n_layer, std::vector<ExpertTier>(s.n_expert, ExpertTier::ram_cpu));
  plan.placement.tiers[1][2] = ExpertTier::storage;
  plan.placement.ram_cache_experts = 1;
  if (gpu_expert) plan.placement.tiers[0][0] = ExpertTier::gpu_dynamic;
  return plan;
}

}  // namespace

TEST_CASE("make_executor: cpu placement, fast and plain ops agree and count bytes", "[executor]") {
  test::TempDir dir;
  MakeModelOptions mo;
  mo.dtype = DType::q8_0;
  auto model = testing::make_and_load(mo, dir / "m.gguf");
  REQUIRE(model.ok());
  const auto tokens = testing::random_tokens(12, model->shape().n_vocab, 7);

  ExecutorOptions fast = small_options();
  auto ex_fast = make_executor(*model, fast);
  REQUIRE(ex_fast.ok());
  CHECK((*ex_fast)->placement() == "cpu");
  ExecutorOptions plain = small_options();
  plain.cpu_ops = "plain";
  auto ex_plain = make_executor(*model, plain);
  REQUIRE(ex_plain.ok());

  const auto a = eval_all(**ex_fast, tokens);
  const auto b = eval_all(**ex_plain, tokens);
  // The router's f32 dot products sum in another order on the fast path, so a near-tied expert
  // choice can flip on some row and move later rows' logits by ~1e-4 (tests/fast_path_test.cpp
  // checks the exact agreement on its models); here the factory only has to hand out both sets.
  CHECK(test::nmse(a, b) < 1e-3);
  CHECK((*ex_fast)->n_past() == tokens.size());
  const ExecutorCounters c = (*ex_fast)->counters();
  CHECK(c.tokens == tokens.size());
  CHECK(c.evals == 1);
  CHECK(c.weight_bytes > 0);
  CHECK(c.expert_bytes > 0);
  CHECK(c.expert_bytes < c.weight_bytes);
  (*ex_fast)->reset_counters();
  CHECK((*ex_fast)->counters().weight_bytes == 0);
  const auto lines = (*ex_fast)->memory_lines();
  REQUIRE(lines.size() == 1);
  CHECK(lines[0].device == "CPU");
  CHECK(lines[0].detail.find("KV cache") != std::string::npos);
}

TEST_CASE("make_executor: --transpose-down at load matches the transposed file", "[executor][convert]") {
  test::TempDir dir;
  for (DType dt : {DType::f32, DType::q8_0}) {
    MakeModelOptions std_opts;
    std_opts.dtype = dt;
    auto standard = testing::make_and_load(std_opts, dir / "standard.gguf");
    REQUIRE(standard.ok());
    REQUIRE(standard->shape().down_layout == DownLayout::standard);
    const auto tokens = testing::random_tokens(10, standard->shape().n_vocab, 3);

    ExecutorOptions plain_load = small_options();
    auto ex0 = make_executor(*standard, plain_load);
    REQUIRE(ex0.ok());
    const auto reference = eval_all(**ex0, tokens);

    ExecutorOptions opts = small_options();
    opts.transpose_down = true;
    auto ex1 = make_executor(*standard, opts);
    REQUIRE(ex1.ok());
    const auto lines = (*ex1)->memory_lines();
    REQUIRE(lines.size() == 1);
    CHECK(lines[0].detail.find("transposed at load") != std::string::npos);
    const auto transposed = eval_all(**ex1, tokens);
    // f32: a pure transposition, only the summation order of down changes. q8_0: requantized
    // rows (runtime/convert.h states ~1e-5 on the expert outputs), and the down's inputs are
    // rounded differently: q8_0 a (standard) against 8-bit a * d (transposed, cpu/expert_ffn.h),
    // 4.2e-3 apart on this random model.
    const double bound = dt == DType::f32 ? 1e-10 : 1e-2;
    INFO(dtype_name(dt));
    CHECK(test::nmse(transposed, reference) < bound);
    CHECK(test::nmse(transposed, reference) >= 0.0);
  }
}

TEST_CASE("make_executor: a model read into memory (--no-mmap) gives the mapped model's logits, and no streaming",
          "[executor]") {
  test::TempDir dir;
  MakeModelOptions mo;
  mo.dtype = DType::q4_0;
  mo.transpose_down = true;
  REQUIRE(make_model(mo, dir / "m.gguf").ok());
  auto mapped = Model::load(dir / "m.gguf");
  auto read = Model::load(dir / "m.gguf", FileLoad::read);
  REQUIRE(mapped.ok());
  REQUIRE(read.ok());
  CHECK(mapped->content_hash() == read->content_hash());  // plans made for one fit the other
  const auto tokens = testing::random_tokens(12, mapped->shape().n_vocab, 5);
  auto ex_mapped = make_executor(*mapped, small_options());
  auto ex_read = make_executor(*read, small_options());
  REQUIRE(ex_mapped.ok());
  REQUIRE(ex_read.ok());
  CHECK(eval_all(**ex_read, tokens) == eval_all(**ex_mapped, tokens));

  // Streaming would drop the copy's pages (zeroing weights): refused, naming the flag.
  ExecutorOptions limited = small_options();
  limited.mem_limit = uint64_t{65} << 20;  // above the fixed part (64.2 MiB), below the experts
  auto refused = make_executor(*read, limited);
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.status().code() == ErrorCode::invalid_argument);
  CHECK_THAT(refused.status().message(), Catch::Matchers::Contains("--no-mmap"));
  ExecutorOptions planned = small_options();
  const Plan plan = cpu_plan(*read);
  const auto plan_path = dir / "p.plan.json";
  REQUIRE(save_plan(plan, plan_path).ok());
  planned.plan = plan_path;
  auto refused_plan = make_executor(*read, planned);
  REQUIRE_FALSE(refused_plan.ok());
  CHECK_THAT(refused_plan.status().message(), Catch::Matchers::Contains("--no-mmap"));
  // The mapped model streams with the same plan.
  CHECK(make_executor(*mapped, planned).ok());
}

TEST_CASE("make_executor: bad choices are named", "[executor]") {
  test::TempDir dir;
  auto model = testing::make_and_load(MakeModelOptions{}, dir / "m.gguf");
  REQUIRE(model.ok());
  auto expect_error = [&](ExecutorOptions o, const std::string& needle) {
    auto r = make_executor(*model, o);
    REQUIRE_FALSE(r.ok());
    INFO(r.status().message());
    CHECK(r.status().message().find(needle) != std::string::npos);
  };
  ExecutorOptions o = small_options();
  o.placement = "tpu";
  expect_error(o, "unknown placement 'tpu'");
  o = small_options();
  o.cpu_ops = "turbo";
  expect_error(o, "unknown CPU ops 'turbo'");
  o = small_options();
  o.cache_policy = "random";
  expect_error(o, "unknown --cache-policy 'random'");
  o = small_options();
  o.plan = dir / "missing-plan.json";
  expect_error(o, "missing-plan.json");
  {
    std::ofstream(dir / "bad-plan.json") << "{ not json";
    o.plan = dir / "bad-plan.json";
    expect_error(o, "bad-plan.json");
  }
}

TEST_CASE("make_executor: auto placement follows the plan (cpu when it keeps everything on the CPU)", "[executor]") {
  test::TempDir dir;
  auto model = testing::make_and_load(MakeModelOptions{}, dir / "m.gguf");
  REQUIRE(model.ok());
  const ModelShape& s = model->shape();
  Plan plan;
  plan.n_layer = s.n_layer;
  plan.n_expert = s.n_expert;
  plan.model_hash = model->content_hash();
  plan.expert_bytes = 1;  // any positive size: the executors take sizes from the model
  plan.predicted.layers.resize(s.n_layer);
  plan.placement.tiers.assign(s.n_layer, std::vector<ExpertTier>(s.n_expert, ExpertTier::ram_cpu));
  plan.placement.tiers[1][2] = ExpertTier::storage;
  plan.placement.ram_cache_experts = 1;

  CHECK(resolve_placement("auto", nullptr) == "cpu");
  CHECK(resolve_placement("gpu", nullptr) == "gpu");
  CHECK_FALSE(plan_uses_gpu(plan));
  CHECK(resolve_placement("auto", &plan) == "cpu");
  Plan gpu_plan = plan;
  gpu_plan.placement.tiers[0][0] = ExpertTier::gpu_dynamic;
  CHECK(plan_uses_gpu(gpu_plan));
  CHECK(resolve_placement("auto", &gpu_plan) == "hybrid");
  Plan attn_plan = plan;
  attn_plan.placement.attention = Device::gpu;
  CHECK(resolve_placement("auto", &attn_plan) == "hybrid");

  // The CPU-only plan runs (streamed expert included) and equals the plain CPU executor.
  REQUIRE(save_plan(plan, dir / "cpu.plan.json").ok());
  ExecutorOptions o = small_options();
  o.placement = "auto";
  o.plan = dir / "cpu.plan.json";
  auto ex = make_executor(*model, o);
  INFO((ex.ok() ? std::string() : ex.status().message()));
  REQUIRE(ex.ok());
  CHECK((*ex)->placement() == "cpu");
  ExecutorOptions ref_o = small_options();
  auto ref = make_executor(*model, ref_o);
  REQUIRE(ref.ok());
  const std::vector<int32_t> tokens = {1, 5, 9, 2, 7, 3};
  const std::vector<float> a = eval_all(**ex, tokens);
  const std::vector<float> b = eval_all(**ref, tokens);
  REQUIRE(a.size() == b.size());
  double max_diff = 0;
  for (size_t i = 0; i < a.size(); ++i) max_diff = std::max(max_diff, static_cast<double>(std::abs(a[i] - b[i])));
  CHECK(max_diff == 0.0);  // same fast ops, same experts: bit-identical
}

TEST_CASE("make_executor: --profile gives the frequency policy its prior; another model's profile is refused",
          "[executor]") {
  test::TempDir dir;
  auto model = testing::make_and_load(MakeModelOptions{}, dir / "m.gguf");
  REQUIRE(model.ok());
  const ModelShape& s = model->shape();
  auto write_profile = [&](const std::string& hash, const std::filesystem::path& path) {
    ProfileBuilder b(model->name(), hash, profile_shape(s));
    for (uint32_t l = 0; l < s.n_layer; ++l) {
      const std::vector<int32_t> ids = {0, 1};
      const std::vector<float> w = {0.6f, 0.4f};
      REQUIRE(b.add_routing(l, 0, std::span(ids).first(std::min<size_t>(2, s.n_expert_used)),
                            std::span(w).first(std::min<size_t>(2, s.n_expert_used)))
                  .ok());
    }
    REQUIRE(save_profile(b.finish(), path).ok());
  };
  write_profile(model->content_hash(), dir / "p.json");
  write_profile("0123456789abcdef", dir / "other.json");

  ExecutorOptions o = small_options();
  o.mem_limit = 0;
  o.placement = "cpu";
  o.trace = dir / "t.json";  // the streaming executor: the one with a RAM cache policy
  o.cache_policy = "frequency";
  o.profile = dir / "p.json";
  auto ex = make_executor(*model, o);
  INFO((ex.ok() ? std::string() : ex.status().message()));
  REQUIRE(ex.ok());
  std::vector<float> logits;
  const std::vector<int32_t> tokens = {1, 2, 3};
  CHECK((*ex)->eval(tokens, LogitsRows::last, logits).ok());

  o.profile = dir / "other.json";
  auto bad = make_executor(*model, o);
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.status().message().find("other.json") != std::string::npos);
  CHECK(bad.status().message().find("tandem profile") != std::string::npos);
}

TEST_CASE(
    "make_executor: --transpose-down is refused where it would be ignored, naming the placement",
    "[executor][convert]") {
  test::TempDir dir;
  auto model = testing::make_and_load(MakeModelOptions{}, dir / "m.gguf");
  REQUIRE(model.ok());
  REQUIRE(model->shape().down_layout == DownLayout::standard);
  REQUIRE(save_plan(cpu_plan(*model), dir / "cpu.plan.json").ok());
  REQUIRE(save_plan(cpu_plan(*model, /*gpu_expert=*/true), dir / "gpu.plan.json").ok());

  struct Case {
    const char* what;
    std::string placement;
    uint64_t mem_limit = 0;
    std::filesystem::path plan, trace;
    std::vector<std::string> needles;  // besides the flag and the alternative
  };
  const std::vector<Case> cases = {
      {"gpu", "gpu", 0, {}, {}, {"with the gpu placement"}},
      {"hybrid", "hybrid", 0, {}, {}, {"with the hybrid placement"}},
      {"hybrid with a plan", "hybrid", 0, dir / "gpu.plan.json", {}, {"with the hybrid placement"}},
      {"cpu --mem-limit",
       "cpu",
       512ull << 20,
       {},
       {},
       {"streaming executor (selected by --mem-limit)"}},
      {"cpu --plan",
       "cpu",
       0,
       dir / "cpu.plan.json",
       {},
       {"streaming executor (selected by --plan)"}},
      {"cpu --trace", "cpu", 0, {}, dir / "t.json", {"streaming executor (selected by --trace)"}},
      {"cpu --mem-limit --plan",
       "cpu",
       512ull << 20,
       dir / "cpu.plan.json",
       {},
       {"(selected by --mem-limit, --plan)"}},
      {"auto, GPU plan",
       "auto",
       0,
       dir / "gpu.plan.json",
       {},
       {"with the hybrid placement", "the hybrid placement (what --placement auto resolved to)"}},
      {"auto, CPU-only plan",
       "auto",
       0,
       dir / "cpu.plan.json",
       {},
       {"streaming executor (selected by --plan)",
        "the cpu placement (what --placement auto resolved to) on the streaming executor"}},
      {"auto, --mem-limit",
       "auto",
       512ull << 20,
       {},
       {},
       {"streaming executor (selected by --mem-limit)",
        "the cpu placement (what --placement auto resolved to) on the streaming executor"}},
  };
  for (const Case& c : cases) {
    INFO(c.what);
    ExecutorOptions o = small_options();
    o.placement = c.placement;
    o.mem_limit = c.mem_limit;
    o.plan = c.plan;
    o.trace = c.trace;
    o.device = "99";  // no such device: the refusal comes before any device is opened
    o.transpose_down = true;
    auto r = make_executor(*model, o);
    REQUIRE_FALSE(r.ok());
    const std::string& msg = r.status().message();
    INFO(msg);
    CHECK(r.status().code() == ErrorCode::invalid_argument);
    CHECK(msg.find("--transpose-down is not supported") != std::string::npos);
    CHECK(msg.find("tandem convert --transpose-down IN OUT") != std::string::npos);
    for (const std::string& n : c.needles) CHECK(msg.find(n) != std::string::npos);
    // Without the flag the same choice is not refused for it (the CPU ones run here).
    o.transpose_down = false;
    o.device.clear();
    const bool on_cpu =
        c.placement == "cpu" || (c.placement == "auto" && c.plan != dir / "gpu.plan.json");
    if (on_cpu) {
      auto plain = make_executor(*model, o);
      INFO((plain.ok() ? std::string() : plain.status().message()));
      CHECK(plain.ok());
    }
  }
  // An unknown placement is named as such, not as a --transpose-down conflict.
  ExecutorOptions bad = small_options();
  bad.placement = "tpu";
  bad.transpose_down = true;
  auto r = make_executor(*model, bad);
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().message().find("unknown placement 'tpu'") != std::string::npos);
}

TEST_CASE(
    "make_executor: --transpose-down on a transposed file is a no-op on the streaming executor",
    "[executor][convert]") {
  test::TempDir dir;
  MakeModelOptions mo;
  mo.transpose_down = true;
  auto model = testing::make_and_load(mo, dir / "t.gguf");
  REQUIRE(model.ok());
  REQUIRE(model->shape().down_layout == DownLayout::transposed);
  REQUIRE(save_plan(cpu_plan(*model), dir / "cpu.plan.json").ok());
  const std::vector<int32_t> tokens = {1, 5, 9, 2, 7, 3};
  for (int variant = 0; variant < 4; ++variant) {
    ExecutorOptions o = small_options();
    const char* what = "cpu";
    if (variant == 1) {
      what = "cpu --mem-limit";
      o.mem_limit = 512ull << 20;
    } else if (variant == 2) {
      what = "auto --plan (cpu-only plan)";
      o.placement = "auto";
      o.plan = dir / "cpu.plan.json";
    } else if (variant == 3) {
      what = "cpu --trace";
      o.trace = dir / "trace.json";
    }
    INFO(what);
    auto without = make_executor(*model, o);
    REQUIRE(without.ok());
    o.transpose_down = true;
    auto with = make_executor(*model, o);
    INFO((with.ok() ? std::string() : with.status().message()));
    REQUIRE(with.ok());
    CHECK((*with)->placement() == "cpu");
    for (const DeviceMemoryLine& line : (*with)->memory_lines()) {
      CHECK(line.detail.find("transposed at load") == std::string::npos);
    }
    const auto a = eval_all(**with, tokens);
    const auto b = eval_all(**without, tokens);
    CHECK(test::max_abs_diff(a, b) == 0.0);  // the same executor on the same file
  }
}

TEST_CASE("make_executor: --transpose-down on a transposed file is a no-op on the GPU placements",
          "[executor][convert][gpu]") {
  test::TempDir dir;
  MakeModelOptions mo;
  mo.preset = "tiny";
  mo.transpose_down = true;
  auto model = testing::make_and_load(mo, dir / "t.gguf");
  REQUIRE(model.ok());
  REQUIRE(model->shape().down_layout == DownLayout::transposed);
  const std::vector<int32_t> tokens = {1, 5, 9, 2};
  for (const char* placement : {"gpu", "hybrid"}) {
    INFO(placement);
    ExecutorOptions o = small_options();
    o.placement = placement;
    o.device = testing::test_device();
    auto without = make_executor(*model, o);
    INFO((without.ok() ? std::string() : without.status().message()));
    REQUIRE(without.ok());
    o.transpose_down = true;
    auto with = make_executor(*model, o);
    INFO((with.ok() ? std::string() : with.status().message()));
    REQUIRE(with.ok());
    CHECK((*with)->placement() == placement);
    const auto a = eval_all(**with, tokens);
    const auto b = eval_all(**without, tokens);
    CHECK(test::max_abs_diff(a, b) == 0.0);
  }
}

TEST_CASE("make_executor: the cpu repack of expert up/down rows gives the same bits, and only where it applies",
          "[executor][convert]") {
  test::TempDir dir;
  for (DType dt : {DType::q4_0, DType::q8_0}) {
    INFO(dtype_name(dt));
    MakeModelOptions mo;
    mo.dtype = dt;
    mo.transpose_down = true;
    const auto path = dir / ("t-" + std::string(dtype_name(dt)) + ".gguf");
    auto model = testing::make_and_load(mo, path);
    REQUIRE(model.ok());
    const ModelShape& s = model->shape();
    const auto tokens = testing::random_tokens(12, s.n_vocab, 9);

    // The repacked views: same row bytes, rows of a neuron side by side.
    auto rp = repack_for_cpu(s, model->weights(), CpuRepackOptions{});
    REQUIRE(rp.ok());
    CHECK((*rp)->n_layers == static_cast<int>(s.n_layer));
    for (uint32_t l = 0; l < s.n_layer; ++l) {
      const TensorView& up0 = model->weights().layers[l].ffn_up_exps;
      const TensorView& down0 = model->weights().layers[l].ffn_down_exps;
      const TensorView& up = (*rp)->weights.layers[l].ffn_up_exps;
      const TensorView& down = (*rp)->weights.layers[l].ffn_down_exps;
      const size_t rb = up0.row_size();
      CHECK(up.nb[1] == 2 * rb);
      CHECK(down.row(0, 0) == up.row(0, 0) + rb);
      for (int64_t e : {int64_t{0}, static_cast<int64_t>(s.n_expert) - 1}) {
        for (int64_t r : {int64_t{0}, static_cast<int64_t>(s.n_ff_exp) - 1}) {
          CHECK(std::equal(up.row(r, e), up.row(r, e) + rb, up0.row(r, e)));
          CHECK(std::equal(down.row(r, e), down.row(r, e) + rb, down0.row(r, e)));
        }
      }
    }

    ExecutorOptions off = small_options();
    off.repack = false;
    auto ex_off = make_executor(*model, off);
    REQUIRE(ex_off.ok());
    const auto want = eval_all(**ex_off, tokens);
    for (int threads : {1, 3}) {
      ExecutorOptions on = small_options();
      on.n_threads = threads;
      auto ex_on = make_executor(*model, on);
      REQUIRE(ex_on.ok());
      auto* cpu = dynamic_cast<CpuExecutor*>(ex_on->get());
      REQUIRE(cpu != nullptr);
      CHECK(cpu->repacked_bytes() == 2 * model->weights().layers[0].ffn_up_exps.nbytes() * s.n_layer);
      CHECK((*ex_on)->memory_lines()[0].detail.find("repacked") != std::string::npos);
      CHECK(eval_all(**ex_on, tokens) == want);  // bit-identical: only the strides changed
      // The source pages were dropped from the mapping: still readable (re-read from the file).
      const TensorView& up0 = model->weights().layers[0].ffn_up_exps;
      CHECK(std::equal(up0.row(0, 0), up0.row(0, 0) + up0.row_size(),
                       static_cast<const uint8_t*>((*rp)->weights.layers[0].ffn_up_exps.data)));
    }

    // The plain ops read the repacked views through their strides too.
    ExecutorOptions plain_off = small_options(), plain_on = small_options();
    plain_off.cpu_ops = plain_on.cpu_ops = "plain";
    plain_off.repack = false;
    auto ex_plain_off = make_executor(*model, plain_off);
    auto ex_plain_on = make_executor(*model, plain_on);
    REQUIRE(ex_plain_off.ok());
    REQUIRE(ex_plain_on.ok());
    CHECK(dynamic_cast<CpuExecutor*>(ex_plain_on->get())->repacked_bytes() > 0);
    CHECK(eval_all(**ex_plain_on, tokens) == eval_all(**ex_plain_off, tokens));

    // Read into memory (--no-mmap): not repacked (the copy would double those bytes).
    auto read = Model::load(path, FileLoad::read);
    REQUIRE(read.ok());
    auto ex_read = make_executor(*read, small_options());
    REQUIRE(ex_read.ok());
    CHECK(dynamic_cast<CpuExecutor*>(ex_read->get())->repacked_bytes() == 0);
    CHECK(eval_all(**ex_read, tokens) == want);
  }

  // A standard-layout model: nothing to repack (its down rows are not per neuron).
  MakeModelOptions so;
  so.dtype = DType::q4_0;
  auto standard = testing::make_and_load(so, dir / "s.gguf");
  REQUIRE(standard.ok());
  auto rp = repack_for_cpu(standard->shape(), standard->weights(), CpuRepackOptions{});
  REQUIRE(rp.ok());
  CHECK((*rp)->n_layers == 0);
  CHECK((*rp)->bytes == 0);
}

// q4_0x16 and q4_0_split (runtime/convert.h repack_for_cpu): a model whose rows are multiples
// of 512 elements (n_embd 512, 4 heads of 128), transposed and standard down, untied and tied
// output (a tied token_embd is repacked and get_rows unpacks it). Rows unpack to the source
// bytes; the fast ops give the bits of the unrepacked model for a prompt (token tiles) and for
// single-token steps (the gemv path), at 1 and 3 threads; the plain ops refuse repacked views
// by name.
TEST_CASE("make_executor: q4_0x16 and q4_0_split repacked weights give the same bits", "[executor][convert]") {
  test::TempDir dir;
  for (int variant = 0; variant < 3; ++variant) {
    const bool transposed = variant != 1, tied = variant == 2;
    INFO("transposed down " << transposed << ", tied output " << tied);
    MakeModelOptions mo;
    mo.n_embd = 512;
    mo.head_dim = 128;
    mo.n_head = 4;
    mo.n_head_kv = 2;
    mo.tied = tied;
    mo.transpose_down = transposed;
    const auto path = dir / ("x16_" + std::to_string(variant) + ".gguf");
    auto model = testing::make_and_load(mo, path);
    REQUIRE(model.ok());
    const ModelShape& s = model->shape();
    const ModelWeights& src = model->weights();

    CpuRepackOptions ro;
    ro.q4_0x16 = true;
    auto rp = repack_for_cpu(s, src, ro);
    REQUIRE(rp.ok());
    CHECK((*rp)->n_q4_0x16 == static_cast<int>(6 * s.n_layer + 1));  // q, k, v, output, gate, up; + output or token_embd
    CHECK((*rp)->n_layers == (transposed ? static_cast<int>(s.n_layer) : 0));
    const LayerWeights& l0 = (*rp)->weights.layers[0];
    CHECK(l0.ffn_down_exps.layout == (transposed ? RowLayout::q4_0_split : RowLayout::ggml));
    CHECK((*rp)->n_q4_0_split == (transposed ? static_cast<int>(s.n_layer) : 0));
    if (transposed) {  // the split down rows unpack to the source rows
      const TensorView& down = l0.ffn_down_exps;
      std::vector<uint8_t> row(down.row_size());
      for (int64_t ex : {int64_t{0}, down.ne[2] - 1}) {
        cpu::unpack_row_q4_0_split(down.row(down.ne[1] - 1, ex), row.data(), down.ne[0]);
        CHECK(std::equal(row.begin(), row.end(), src.layers[0].ffn_down_exps.row(down.ne[1] - 1, ex)));
      }
    }
    // Tied: token_embd is repacked once and the output is the same view; untied, token_embd
    // (read only by get_rows) keeps the file's rows.
    CHECK((*rp)->weights.token_embd.layout == (tied ? RowLayout::q4_0x16 : RowLayout::ggml));
    CHECK(((*rp)->weights.output.data == (*rp)->weights.token_embd.data) == tied);
    std::vector<uint8_t> back(l0.attn_q.row_size());
    using Pair = std::pair<const TensorView*, const TensorView*>;
    for (const auto& [repacked, source] : {Pair{&l0.attn_q, &src.layers[0].attn_q},
                                           Pair{&l0.ffn_gate_exps, &src.layers[0].ffn_gate_exps},
                                           Pair{&l0.ffn_up_exps, &src.layers[0].ffn_up_exps},
                                           Pair{&(*rp)->weights.output, &src.output}}) {
      INFO(source->name);
      CHECK(repacked->layout == RowLayout::q4_0x16);
      const int64_t last = repacked->ne[1] - 1, ex = repacked->ne[2] - 1;
      cpu::unpack_row_q4_0x16(repacked->row(last, ex), back.data(), repacked->ne[0]);
      CHECK(std::equal(back.begin(), back.end(), source->row(last, ex)));
      CHECK(!std::equal(back.begin(), back.end(), repacked->row(last, ex)));
    }

    // The plain ops refuse the repacked views, naming the tensor.
    {
      auto plain = make_cpu_ops();
      std::vector<float> x(512, 0.5f), y(static_cast<size_t>(l0.attn_q.ne[1]));
      const Status st = plain->mul_mat(l0.attn_q, x.data(), 1, y.data());
      CHECK(st.code() == ErrorCode::invalid_argument);
      CHECK(st.message().find(std::string(l0.attn_q.name)) != std::string::npos);
    }

    const auto tokens = testing::random_tokens(13, s.n_vocab, 5);
    const auto run = [&](Executor& ex) {
      std::vector<float> all = eval_all(ex, std::span<const int32_t>(tokens).first(10));
      std::vector<float> one;
      for (size_t i = 10; i < tokens.size(); ++i) {  // single tokens: the gemv path
        REQUIRE(ex.eval(std::span<const int32_t>(tokens).subspan(i, 1), LogitsRows::all, one).ok());
        all.insert(all.end(), one.begin(), one.end());
      }
      return all;
    };
    ExecutorOptions off = small_options();
    off.repack = false;
    auto ex_off = make_executor(*model, off);
    REQUIRE(ex_off.ok());
    const auto want = run(**ex_off);
    for (int threads : {1, 3}) {
      ExecutorOptions on = small_options();
      on.n_threads = threads;
      auto ex_on = make_executor(*model, on);
      REQUIRE(ex_on.ok());
      const std::string line = (*ex_on)->memory_lines()[0].detail;
      INFO(line);
      if (cpu::kernels().prefer_q4_0x16) {
        CHECK(line.find(std::to_string(6 * s.n_layer + 1) + " tensors as q4_0x16, " +
                        std::to_string(transposed ? s.n_layer : 0) + " as q4_0_split") != std::string::npos);
      } else {
        WARN("the kernel table (" << cpu::isa_name(cpu::kernels().isa) << ") does not prefer q4_0x16: not repacked");
        CHECK((line.find(" tensors as q4_0x16") == std::string::npos || line.find(" 0 tensors as q4_0x16") != std::string::npos));
      }
      CHECK(run(**ex_on) == want);
    }
  }
}
