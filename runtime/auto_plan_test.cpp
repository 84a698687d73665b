#include "runtime/auto_plan.h"

#include <catch2/catch.hpp>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <set>

#include "planner/flat_profile.h"
#include "planner/planner.h"
#include "planner/profile.h"
#include "runtime/executor_factory.h"
#include "runtime/forward_test_support.h"
#include "runtime/model_maker.h"
#include "runtime/streaming_executor.h"
#include "support/test_support.h"

using namespace tandem;

namespace {

// Sets an environment variable for the test's lifetime, restoring the old value after.
class EnvVar {
 public:
  EnvVar(const char* name, const std::optional<std::string>& value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    if (value) {
      ::setenv(name, value->c_str(), 1);
    } else {
      ::unsetenv(name);
    }
  }
  ~EnvVar() {
    if (old_) {
      ::setenv(name_, old_->c_str(), 1);
    } else {
      ::unsetenv(name_);
    }
  }
  EnvVar(const EnvVar&) = delete;
  EnvVar& operator=(const EnvVar&) = delete;

 private:
  const char* name_;
  std::optional<std::string> old_;
};

// A machine whose CPU is slow at experts (1 ms each) and, with `gpu`, a discrete GPU that is
// fast at them (5 us) with a cheap hand-off but a very slow upload (a miss of a dynamic slot
// costs ~14 ms for the tiny model's 13.8 kB expert): the planner pins on the GPU what fits.
std::string hw_json(bool gpu) {
  const std::string gpus =
      gpu ? R"([{"name": "test-dgpu", "type": "discrete", "unified_memory": false,
     "memory_bytes": 8589934592, "bandwidth_gbps": 400.0, "upload_gbps": 0.001, "zero_copy_gbps": 0,
     "compute_gflops": 20000.0, "expert_ffn_us": 5.0, "attention_us": 0, "submit_wait_us": 1.0}])"
          : "[]";
  return R"({"schema_version": 1, "name": ")" + std::string(gpu ? "test-gpu-box" : "test-cpu-box") +
         R"(", "ram_bytes": 17179869184, "shared_memory_bus": false, "shared_bandwidth_gbps": 0,
  "cpu": {"name": "test-cpu", "n_cores": 2, "n_threads": 2, "isa": [{"isa": "avx2", "n_threads": 2,
    "read_bandwidth_gbps": 1.0, "compute_gflops": 10.0, "expert_ffn_dense_us": 1000.0,
    "expert_ffn_gate_us": 300.0, "attention_us": 0}]},
  "gpus": )" +
         gpus + R"(,
  "storage": {"name": "test-nvme", "latency_us": 80.0,
    "random_read": [{"block_bytes": 4096, "queue_depth": 1, "throughput_gbps": 0.05}]}})";
}

std::filesystem::path write_file(const std::filesystem::path& p, const std::string& text) {
  std::ofstream(p, std::ios::binary) << text;
  return p;
}

struct Fixture {
  test::TempDir dir{"tandem-auto-plan"};
  std::filesystem::path model_path = dir / "tiny.gguf";
  std::optional<Model> model;
  // No profile in the working directory, no cache of the developer's own machine.
  EnvVar xdg{"XDG_CACHE_HOME", (dir / "cache").string()};
  EnvVar env_hw{"TANDEM_HARDWARE", std::nullopt};

  // aligned: n_embd 128 x n_ff_exp 512, so each expert matrix (36 KiB in q4_0) is a whole number
  // of 4 KiB O_DIRECT pages, as in the 4B and 21B models; the RAM cache slots' padding is then
  // one page per matrix (11%), not the 2.7x of the tiny preset's 4.5 kB matrices.
  explicit Fixture(bool aligned = false) {
    std::filesystem::create_directories(dir / "cwd");
    MakeModelOptions mo;
    mo.preset = "tiny";
    if (aligned) {
      mo.n_embd = 128;
      mo.n_ff_exp = 512;
    }
    auto m = testing::make_and_load(mo, model_path);
    REQUIRE(m.ok());
    model.emplace(std::move(*m));
  }

  AutoPlanOptions options(bool gpu) const {
    AutoPlanOptions o;
    o.model_path = model_path;
    o.hardware = write_file(dir / (gpu ? "gpu.json" : "cpu.json"), hw_json(gpu));
    o.search_dir = dir / "cwd";
    o.n_ctx = 64;
    o.allow_calibration = false;
    return o;
  }

  uint64_t expert_bytes() const {
    const ModelShape& s = model->shape();
    return 3ull * s.n_ff_exp * dtype_row_size(DType::q4_0, s.n_embd);
  }

  // Experts 6 and 7 of every layer in 3 tokens of 4, two of the others in the fourth.
  Profile skewed_profile(const std::string& hash) const {
    const ModelShape& s = model->shape();
    ProfileBuilder b(model->name(), hash, profile_shape(s));
    const std::vector<float> w = {0.5f, 0.5f};
    for (uint64_t t = 0; t < 400; ++t) {
      const int32_t a = static_cast<int32_t>((t / 4) % 6);
      const std::vector<int32_t> ids =
          t % 4 != 3 ? std::vector<int32_t>{6, 7} : std::vector<int32_t>{a, (a + 1) % 6};
      for (uint32_t l = 0; l < s.n_layer; ++l) REQUIRE(b.add_routing(l, t, ids, w).ok());
    }
    return b.finish();
  }
};

std::set<uint32_t> gpu_experts(const Plan& plan, uint32_t layer) {
  std::set<uint32_t> out;
  for (uint32_t e = 0; e < plan.placement.tiers[layer].size(); ++e) {
    if (runs_on_gpu(plan.placement.tiers[layer][e])) out.insert(e);
  }
  return out;
}

}  // namespace

TEST_CASE(
    "auto plan: no profile -> flat prior; the plan is for this model and the executor runs it",
    "[auto_plan]") {
  Fixture f;
  AutoPlanOptions o = f.options(/*gpu=*/false);
  std::vector<std::string> lines;
  o.progress = [&](std::string_view line) { lines.emplace_back(line); };
  auto ap = make_auto_plan(*f.model, o);
  INFO((ap.ok() ? std::string() : ap.status().message()));
  REQUIRE(ap.ok());
  CHECK(ap->profile_path.empty());
  CHECK(ap->hardware_path == o.hardware);
  CHECK_FALSE(ap->calibrated);
  CHECK(ap->plan.model_hash == f.model->content_hash());
  CHECK(ap->plan.model_name == f.model->name());
  CHECK(ap->plan.hardware_name == "test-cpu-box");
  CHECK(ap->plan.n_layer == f.model->shape().n_layer);
  CHECK(ap->description.find("flat prior") != std::string::npos);
  CHECK(ap->description.find("test-cpu-box") != std::string::npos);
  bool said_hw = false, said_flat = false;
  for (const std::string& l : lines) {
    said_hw |= l.find(o.hardware.string()) != std::string::npos;
    said_flat |= l.find("flat prior") != std::string::npos;
  }
  CHECK(said_hw);
  CHECK(said_flat);
  // No GPU in the profile: nothing on the GPU.
  CHECK_FALSE(plan_uses_gpu(ap->plan));

  // Written where make_executor reads it, and "auto" resolves to the cpu placement.
  auto path = save_auto_plan(ap->plan);
  REQUIRE(path.ok());
  CHECK(*path == f.dir / "cache" / "tandem" / ("auto-" + f.model->content_hash() + ".plan.json"));
  ExecutorOptions eo;
  eo.placement = "auto";
  eo.plan = *path;
  eo.n_ctx = 64;
  eo.n_ubatch = 8;
  eo.n_threads = 2;
  auto ex = make_executor(*f.model, eo);
  INFO((ex.ok() ? std::string() : ex.status().message()));
  REQUIRE(ex.ok());
  CHECK((*ex)->placement() == "cpu");
  std::vector<float> logits;
  const auto tokens = testing::random_tokens(5, f.model->shape().n_vocab, 3);
  REQUIRE((*ex)->eval(tokens, LogitsRows::last, logits).ok());
  CHECK(logits.size() == f.model->shape().n_vocab);
}

TEST_CASE("auto plan: a skewed profile beside the model pins its hottest experts on the GPU",
          "[auto_plan]") {
  Fixture f;
  AutoPlanOptions o = f.options(/*gpu=*/true);
  // Room for about two experts per layer (the GPU is far faster at them than the CPU).
  o.gpu_budget = 2 * f.model->shape().n_layer * f.expert_bytes() + f.expert_bytes() / 2;
  auto flat = make_auto_plan(*f.model, o);
  REQUIRE(flat.ok());
  CHECK(flat->profile_path.empty());

  const auto beside = f.dir / "tiny.profile.json";
  REQUIRE(save_profile(f.skewed_profile(f.model->content_hash()), beside).ok());
  auto skewed = make_auto_plan(*f.model, o);
  INFO((skewed.ok() ? std::string() : skewed.status().message()));
  REQUIRE(skewed.ok());
  CHECK(skewed->profile_path == beside);
  CHECK(skewed->description.find(beside.string()) != std::string::npos);
  CHECK(skewed->plan.predicted.memory.gpu_bytes <= *o.gpu_budget);
  size_t n_gpu = 0;
  for (uint32_t l = 0; l < f.model->shape().n_layer; ++l) {
    const auto on_gpu = gpu_experts(skewed->plan, l);
    INFO("layer " << l);
    n_gpu += on_gpu.size();
    for (uint32_t e : on_gpu) {
      CHECK((e == 6 || e == 7));  // the hot ones, used by 3 tokens of 4
      CHECK(skewed->plan.placement.tiers[l][e] == ExpertTier::gpu_pinned);
    }
  }
  CHECK(n_gpu >= f.model->shape().n_layer);  // at least one hot expert per layer
  // The flat prior sees no difference between experts: its GPU choice is not the hot pair.
  bool differs = false;
  for (uint32_t l = 0; l < f.model->shape().n_layer; ++l)
    differs |= gpu_experts(flat->plan, l) != gpu_experts(skewed->plan, l);
  CHECK(differs);
  CHECK(skewed->plan.predicted.tokens_per_s != flat->plan.predicted.tokens_per_s);
}

TEST_CASE("auto plan: a profile of another model is skipped; the one in the search dir is used",
          "[auto_plan]") {
  Fixture f;
  AutoPlanOptions o = f.options(/*gpu=*/false);
  REQUIRE(save_profile(f.skewed_profile("not-this-model"), f.dir / "tiny.profile.json").ok());
  auto ap = make_auto_plan(*f.model, o);
  REQUIRE(ap.ok());
  CHECK(ap->profile_path.empty());  // skipped: flat prior
  CHECK(ap->description.find("flat prior") != std::string::npos);

  const auto in_cwd = f.dir / "cwd" / "tiny.profile.json";
  REQUIRE(save_profile(f.skewed_profile(f.model->content_hash()), in_cwd).ok());
  auto ap2 = make_auto_plan(*f.model, o);
  REQUIRE(ap2.ok());
  CHECK(ap2->profile_path == in_cwd);

  // An unreadable profile is an error naming the file, not a silent fallback.
  write_file(f.dir / "tiny.profile.json", "{ not json");
  auto bad = make_auto_plan(*f.model, o);
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.status().message().find("tiny.profile.json") != std::string::npos);
}

TEST_CASE(
    "auto plan: --mem-limit is the RAM budget; an impossible one is an error with the numbers",
    "[auto_plan]") {
  Fixture f(/*aligned=*/true);
  AutoPlanOptions o = f.options(/*gpu=*/false);
  auto full = make_auto_plan(*f.model, o);
  REQUIRE(full.ok());
  const uint64_t all_in_ram = full->plan.predicted.memory.ram_bytes;
  for (const auto& layer : full->plan.placement.tiers)
    for (ExpertTier t : layer) CHECK(t == ExpertTier::ram_cpu);

  // The executor adds its reserve to the plan's bytes when it checks the limit.
  const uint64_t reserve = StreamingExecutorOptions{}.reserve_bytes;
  o.ram_budget = reserve + all_in_ram - 3 * f.expert_bytes();
  auto tight = make_auto_plan(*f.model, o);
  INFO((tight.ok() ? std::string() : tight.status().message()));
  REQUIRE(tight.ok());
  CHECK(tight->plan.predicted.memory.ram_bytes <= o.ram_budget - reserve);
  size_t n_storage = 0;
  for (const auto& layer : tight->plan.placement.tiers)
    for (ExpertTier t : layer) n_storage += t == ExpertTier::storage;
  CHECK(n_storage >= 3);
  const double budget_mib = static_cast<double>(o.ram_budget - reserve) / (1024.0 * 1024.0);
  CHECK(tight->description.find(fmt::format("ram {:.1f} MiB", budget_mib)) != std::string::npos);

  // The executor accepts the plan under the same --mem-limit and runs it.
  auto path = save_auto_plan(tight->plan);
  REQUIRE(path.ok());
  ExecutorOptions eo;
  eo.placement = "auto";
  eo.plan = *path;
  eo.mem_limit = o.ram_budget;
  eo.n_ctx = o.n_ctx;
  eo.n_ubatch = 8;
  eo.n_threads = 2;
  auto ex = make_executor(*f.model, eo);
  INFO((ex.ok() ? std::string() : ex.status().message()));
  REQUIRE(ex.ok());
  std::vector<float> logits;
  REQUIRE(
      (*ex)
          ->eval(testing::random_tokens(4, f.model->shape().n_vocab, 5), LogitsRows::last, logits)
          .ok());
  CHECK((*ex)->counters().storage_bytes > 0);

  o.ram_budget = reserve + 4096;
  auto impossible = make_auto_plan(*f.model, o);
  REQUIRE_FALSE(impossible.ok());
  CHECK(impossible.status().code() == ErrorCode::out_of_memory);
  CHECK(impossible.status().message().find("--auto") != std::string::npos);
  o.ram_budget = reserve;
  auto below_reserve = make_auto_plan(*f.model, o);
  REQUIRE_FALSE(below_reserve.ok());
  CHECK(below_reserve.status().code() == ErrorCode::out_of_memory);
  CHECK(below_reserve.status().message().find("reserve") != std::string::npos);
}

TEST_CASE(
    "auto plan: hardware profile from --hardware, $TANDEM_HARDWARE, the cache; errors name the "
    "file",
    "[auto_plan]") {
  Fixture f;
  AutoPlanOptions o = f.options(/*gpu=*/false);
  const auto given = o.hardware;

  o.hardware = f.dir / "missing.json";
  auto missing = make_auto_plan(*f.model, o);
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.status().code() == ErrorCode::not_found);
  CHECK(missing.status().message().find("missing.json") != std::string::npos);

  o.hardware.clear();
  {
    EnvVar env("TANDEM_HARDWARE", given.string());
    auto ap = make_auto_plan(*f.model, o);
    REQUIRE(ap.ok());
    CHECK(ap->hardware_path == given);
  }
  // Nothing given, nothing cached, calibration off: not_found naming the cache path.
  auto none = make_auto_plan(*f.model, o);
  REQUIRE_FALSE(none.ok());
  CHECK(none.status().code() == ErrorCode::not_found);
  CHECK(none.status().message().find(default_hardware_profile_path().string()) !=
        std::string::npos);
  CHECK(default_hardware_profile_path() == f.dir / "cache" / "tandem" / "hardware.json");

  // The cached one is used.
  std::filesystem::create_directories(f.dir / "cache" / "tandem");
  write_file(default_hardware_profile_path(), hw_json(false));
  auto cached = make_auto_plan(*f.model, o);
  REQUIRE(cached.ok());
  CHECK(cached->hardware_path == default_hardware_profile_path());

  // A broken one is an error naming it.
  write_file(default_hardware_profile_path(), R"({"schema_version": 1, "name": 3})");
  auto broken = make_auto_plan(*f.model, o);
  REQUIRE_FALSE(broken.ok());
  CHECK(broken.status().message().find("hardware.json") != std::string::npos);
}

TEST_CASE("auto plan: without a hardware profile a quick calibration runs once and is cached",
          "[auto_plan][calibrate]") {
  Fixture f;
  AutoPlanOptions o = f.options(/*gpu=*/false);
  o.hardware.clear();
  o.allow_calibration = true;
  o.device = "none";  // CPU and storage only: seconds, and the same on every machine
  const auto t0 = std::chrono::steady_clock::now();
  auto ap = make_auto_plan(*f.model, o);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  INFO((ap.ok() ? std::string() : ap.status().message()));
  REQUIRE(ap.ok());
  CHECK(ap->calibrated);
  CHECK(ap->calibrate_seconds > 0);
  CHECK(ap->calibrate_seconds <= seconds);
  CHECK(ap->hardware_path == default_hardware_profile_path());
  CHECK(ap->description.find("calibrated now") != std::string::npos);
  auto saved = load_hardware_profile(default_hardware_profile_path());
  REQUIRE(saved.ok());
  CHECK(saved->gpus.empty());
  CHECK(saved->ram_bytes > 0);

  auto again = make_auto_plan(*f.model, o);
  REQUIRE(again.ok());
  CHECK_FALSE(again->calibrated);
  CHECK(again->hardware_path == default_hardware_profile_path());
}

TEST_CASE("auto plan: an unwritable cache keeps the plan in the temp directory", "[auto_plan]") {
  test::TempDir dir;
  write_file(dir / "not-a-dir", "x");
  EnvVar xdg("XDG_CACHE_HOME", (dir / "not-a-dir").string());
  Plan plan;
  plan.model_hash = "0123abcd";
  plan.n_layer = 1;
  plan.n_expert = 1;
  plan.expert_bytes = 1;
  plan.solver = "exact";
  plan.predicted.layers.resize(1);
  plan.placement.tiers = {{ExpertTier::ram_cpu}};
  plan.expert_reasons = {{"r"}};
  auto path = save_auto_plan(plan);
  INFO((path.ok() ? std::string() : path.status().message()));
  REQUIRE(path.ok());
  CHECK(path->parent_path() == std::filesystem::temp_directory_path());
  CHECK(path->filename() == "auto-0123abcd.plan.json");
  auto back = load_plan(*path);
  REQUIRE(back.ok());
  CHECK(back->model_hash == "0123abcd");
  std::filesystem::remove(*path);
}

TEST_CASE("flat prior of the tiny and 4b presets: the planner accepts it",
          "[auto_plan][flat_profile]") {
  for (const char* preset : {"tiny", "4b"}) {
    MakeModelOptions mo;
    mo.preset = preset;
    auto shape = resolve_model_shape(mo);
    REQUIRE(shape.ok());
    HardwareProfile hw = *hardware_profile_from_json(hw_json(true), "hw");
    Budget budget;
    budget.ram = hw.ram_bytes;
    budget.gpu_mem = 1ull << 30;
    auto plan = make_plan(*shape, flat_profile(*shape, preset, "h"), hw, budget, PlanOptions{});
    INFO(preset << ": " << (plan.ok() ? std::string() : plan.status().message()));
    REQUIRE(plan.ok());
    CHECK(plan->n_expert == shape->n_expert);
    CHECK(plan->predicted.memory.gpu_bytes <= budget.gpu_mem);
    CHECK(plan->predicted.tokens_per_s > 0);
  }
}
