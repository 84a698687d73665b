#include "runtime/streaming_executor.h"

#include <catch2/catch.hpp>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cpu/kernel_table.h"
#include "runtime/forward_ops_fast.h"
#include "runtime/forward_test_support.h"
#include "runtime/io_fault.h"
#include "runtime/mem_stats.h"
#include "support/test_support.h"

using namespace tandem;

namespace {

struct Run {
  std::vector<int32_t> tokens;  // generated
  std::vector<float> logits;    // every step's last-row logits, concatenated
};

// Greedy generation: the prompt in one eval, then n one-token evals.
Run greedy(Executor& ex, const std::vector<int32_t>& prompt, size_t n) {
  Run r;
  std::vector<float> lg;
  ex.clear();
  Status st = ex.eval(prompt, LogitsRows::last, lg);
  INFO(st.message());
  REQUIRE(st.ok());
  for (size_t i = 0; i < n; ++i) {
    r.logits.insert(r.logits.end(), lg.begin(), lg.end());
    const int32_t t = int32_t(std::max_element(lg.begin(), lg.end()) - lg.begin());
    r.tokens.push_back(t);
    if (i + 1 == n) break;
    st = ex.eval(std::span<const int32_t>(&t, 1), LogitsRows::last, lg);
    INFO(st.message());
    REQUIRE(st.ok());
  }
  return r;
}

// The same with a plain Forward (the all-ram reference path).
Run greedy_forward(const Model& m, const std::vector<int32_t>& prompt, size_t n,
                   std::unique_ptr<ForwardOps> ops) {
  auto fw = Forward::create(m.shape(), m.weights(), {}, std::move(ops));
  REQUIRE(fw.ok());
  auto kv = KvCache::create(m.shape(), {256, 64, DType::f16});
  REQUIRE(kv.ok());
  Run r;
  std::vector<float> lg;
  REQUIRE((*fw)->eval(*kv, prompt, LogitsRows::last, lg).ok());
  for (size_t i = 0; i < n; ++i) {
    r.logits.insert(r.logits.end(), lg.begin(), lg.end());
    const int32_t t = int32_t(std::max_element(lg.begin(), lg.end()) - lg.begin());
    r.tokens.push_back(t);
    if (i + 1 == n) break;
    REQUIRE((*fw)->eval(*kv, std::span<const int32_t>(&t, 1), LogitsRows::last, lg).ok());
  }
  return r;
}

StreamingExecutorOptions base_options(bool fast = false) {
  StreamingExecutorOptions o;
  o.make_base_ops = [fast] { return fast ? make_fast_cpu_ops(cpu::kernels()) : make_cpu_ops(); };
  o.n_ctx = 256;
  o.n_ubatch = 64;
  o.n_threads = 2;
  return o;
}

std::unique_ptr<StreamingExecutor> make_exec(const Model& m, const StreamingExecutorOptions& o) {
  auto ex = make_streaming_executor_typed(m, o);
  INFO(ex.status().message());
  REQUIRE(ex.ok());
  return std::move(ex).value();
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

Plan alternating_plan(const ModelShape& s, uint32_t slots_per_layer) {
  Plan p;
  p.n_layer = s.n_layer;
  p.n_expert = s.n_expert;
  p.placement.ram_cache_experts = slots_per_layer;
  p.placement.tiers.assign(s.n_layer, std::vector<ExpertTier>(s.n_expert));
  for (uint32_t l = 0; l < s.n_layer; ++l) {
    for (uint32_t e = 0; e < s.n_expert; ++e) {
      // Every expert alternates with its neighbour and with itself one layer down; a few plan
      // "gpu" tiers, which the CPU path runs from RAM.
      const uint32_t v = (l + e) % 4;
      p.placement.tiers[l][e] = v == 3 ? ExpertTier::gpu_pinned
                                       : (v % 2 == 0 ? ExpertTier::storage : ExpertTier::ram_cpu);
    }
  }
  return p;
}

const std::vector<int32_t> k_prompt = {11, 400, 7, 93, 250, 3, 77, 180, 5, 301, 42, 9};

}  // namespace

TEST_CASE(
    "streaming executor: 64 greedy tokens equal the all-ram run for every tier mix and policy",
    "[stream]") {
  // Standard down layout over the plain ops, transposed over the fast ones.
  for (const bool transposed : {false, true}) {
    const bool fast = transposed;
    test::TempDir dir("tandem-stream");
    MakeModelOptions mo;
    mo.preset = "tiny";
    mo.dtype = transposed ? DType::q8_0 : DType::q4_0;
    mo.transpose_down = transposed;
    auto model = testing::make_and_load(mo, dir / "m.gguf");
    INFO(model.status().message());
    REQUIRE(model.ok());
    const Model& m = *model;
    const ModelShape& s = m.shape();
    INFO("down layout " << (transposed ? "transposed" : "standard") << ", base ops "
                        << (fast ? "fast" : "plain"));

    const Run ref =
        greedy_forward(m, k_prompt, 64, fast ? make_fast_cpu_ops(cpu::kernels()) : make_cpu_ops());
    auto all_ram = make_exec(m, base_options(fast));
    const Run ram = greedy(*all_ram, k_prompt, 64);
    // The base ops' per-expert output does not depend on the other rows: bit-identical with
    // the base's own moe over the model tensors.
    CHECK(ram.tokens == ref.tokens);
    CHECK(same_bits(ram.logits, ref.logits));
    CHECK(all_ram->counters().storage_bytes == 0);

    struct Case {
      std::string name;
      StreamingExecutorOptions o;
      ExpertStoreConfig store;
      Plan plan;
    };
    std::vector<Case> cases;
    {
      // The minimum: one slot per layer (the op holds one expert at a time).
      Case c{"all stream, 1 slot per layer, lru", base_options(fast), {}, {}};
      c.store = *make_store_config_all_stream(s, 1);
      cases.push_back(c);
      c.name = "all stream, 1 slot per layer, frequency";
      c.o.policy = CachePolicyKind::frequency;
      cases.push_back(c);
    }
    {
      Case c{"alternating plan, 1 slot per layer", base_options(fast), {}, alternating_plan(s, 1)};
      cases.push_back(c);
    }
    {
      // One shared pool of n_expert_used slots (the mem-limit shape), both policies.
      Case c{"all stream, shared pool of n_expert_used slots, lru", base_options(fast), {}, {}};
      c.store = make_store_config_all_ram(s);
      std::fill(c.store.tiers.begin(), c.store.tiers.end(), StoreTier::stream);
      c.store.n_slots = s.n_expert_used;
      cases.push_back(c);
      c.name = "all stream, shared pool of n_expert_used slots, frequency";
      c.o.policy = CachePolicyKind::frequency;
      cases.push_back(c);
    }
    for (Case& c : cases) {
      INFO(c.name);
      if (!c.plan.placement.tiers.empty()) {
        c.o.plan = &c.plan;
      } else {
        c.o.store = &c.store;
      }
      auto ex = make_exec(m, c.o);
      const Run r = greedy(*ex, k_prompt, 64);
      CHECK(r.tokens == ram.tokens);
      CHECK(same_bits(r.logits, ram.logits));
      const ExecutorCounters ctr = ex->counters();
      const uint64_t all_expert_bytes =
          s.n_layer * ex->store().cache()->expert_bytes(0) * s.n_expert;
      // Far smaller than the experts, so it really streamed: more bytes read than the experts hold.
      CHECK(ex->store().cache()->n_slots() * ex->store().cache()->expert_bytes(0) * 4 <=
            all_expert_bytes);
      CHECK(ctr.ram_misses > 0);
      CHECK(ctr.storage_bytes > 0);
      CHECK(ex->ops_stats().streamed_experts > 0);
      if (c.o.plan == nullptr) CHECK(ctr.storage_bytes > all_expert_bytes);
      CHECK(ctr.tokens == k_prompt.size() + 63);
      CHECK(ex->memory_lines().size() == 1);
      CHECK_THAT(ex->memory_lines()[0].detail, Catch::Contains("expert cache"));
    }
  }
}

TEST_CASE(
    "streaming executor: the trace shows each read of layer l starting before layer l's attention "
    "ends",
    "[stream][trace]") {
  test::TempDir dir("tandem-stream");
  auto model = testing::make_and_load(MakeModelOptions{}, dir / "m.gguf");
  REQUIRE(model.ok());
  const ModelShape& s = model->shape();

  // A shared pool that holds a few layers' choices: reads on every token.
  ExpertStoreConfig store = make_store_config_all_ram(s);
  std::fill(store.tiers.begin(), store.tiers.end(), StoreTier::stream);
  store.n_slots = 2 * s.n_expert_used;

  auto late_reads = [&](bool prefetch, const std::filesystem::path& path) {
    StreamingExecutorOptions o = base_options();
    o.store = &store;
    o.prefetch = prefetch;
    o.trace = path;
    {
      auto ex = make_exec(*model, o);
      greedy(*ex, {42}, 24);
    }  // the destructor writes the trace
    std::ifstream in(path);
    REQUIRE(in);
    std::stringstream ss;
    ss << in.rdbuf();
    const auto j = nlohmann::json::parse(ss.str(), nullptr, false);
    REQUIRE_FALSE(j.is_discarded());
    REQUIRE(j.contains("traceEvents"));
    std::map<std::pair<int64_t, int64_t>, std::pair<int64_t, int64_t>>
        attention;  // (layer, pass) -> (ts, end)
    std::vector<nlohmann::json> reads;
    std::map<std::string, int> names;
    for (const auto& e : j["traceEvents"]) {
      const std::string name = e["name"];
      ++names[name];
      if (e["ph"] != "X") continue;
      REQUIRE(e.contains("ts"));
      REQUIRE(e.contains("dur"));
      if (name == "attention") {
        attention[{e["args"]["layer"], e["args"]["pass"]}] = {e["ts"],
                                                              int64_t(e["ts"]) + int64_t(e["dur"])};
      } else if (name == "read") {
        reads.push_back(e);
      }
    }
    for (const char* n : {"eval", "router", "prefetch", "attention", "experts", "expert", "read"}) {
      INFO(n);
      CHECK(names[n] > 0);
    }
    CHECK(names["hit"] + names["miss"] > 0);
    REQUIRE(reads.size() > s.n_layer);
    std::vector<int> reads_per_layer(s.n_layer, 0);
    size_t late = 0;
    for (const auto& r : reads) {
      const int64_t l = r["args"]["layer"];
      const int64_t pass = r["args"]["pass"];
      ++reads_per_layer[size_t(l)];
      const auto it = attention.find({l, pass});
      REQUIRE(it != attention.end());
      if (int64_t(r["ts"]) >= it->second.second) ++late;
    }
    for (uint32_t l = 0; l < s.n_layer; ++l) CHECK(reads_per_layer[l] > 0);
    return late;
  };
  CHECK(late_reads(true, dir / "prefetch.json") == 0);
  // Without the prefetch every read starts in the expert op, after attention: the check bites.
  CHECK(late_reads(false, dir / "no-prefetch.json") > 0);
}

TEST_CASE(
    "streaming executor: a slow read is waited for, a failing one fails the eval naming the expert",
    "[stream][fault]") {
  test::TempDir dir("tandem-stream");
  auto model = testing::make_and_load(MakeModelOptions{}, dir / "m.gguf");
  REQUIRE(model.ok());
  const Model& m = *model;
  const ModelShape& s = m.shape();
  auto ram_ex = make_exec(m, base_options());
  const Run ram = greedy(*ram_ex, k_prompt, 16);

  const ExpertStoreConfig store = *make_store_config_all_stream(s, 1);
  SECTION("slow reads") {
    IoFaultInjector faults;
    IoFaultRule slow;
    slow.kind = IoFaultKind::delay;
    slow.delay_ms = 30;
    slow.times = 12;
    faults.add(slow);
    StreamingExecutorOptions o = base_options();
    o.store = &store;
    o.io.faults = &faults;
    auto ex = make_exec(m, o);
    const Run r = greedy(*ex, k_prompt, 16);
    CHECK(faults.n_injected() == 12);
    CHECK(ex->ops_stats().waits > 0);
    CHECK(ex->ops_stats().wait_us >= 30000);
    CHECK(r.tokens == ram.tokens);
    CHECK(same_bits(r.logits, ram.logits));
  }
  SECTION("a failing read") {
    // The expert layer 1 routes the first prompt row to first.
    struct FirstChoice : ForwardObserver {
      int32_t expert = -1;
      void on_routing(uint32_t layer, std::span<const int32_t>, std::span<const int32_t> ids,
                      std::span<const float>) override {
        if (layer == 1 && expert < 0) expert = ids[0];
      }
    } first;
    ram_ex->set_observer(&first);
    std::vector<float> lg;
    ram_ex->clear();
    REQUIRE(ram_ex->eval(k_prompt, LogitsRows::last, lg).ok());
    REQUIRE(first.expert >= 0);
    const GgufTensorInfo* up = m.file().find_tensor("blk.1.ffn_up_exps.weight");
    REQUIRE(up != nullptr);
    IoFaultInjector faults;
    faults.add(IoFaultRule::fail_offset(
        up->file_offset + uint64_t(first.expert) * (up->nbytes / s.n_expert) + 10, EIO,
        0));  // every attempt: retries fail too
    StreamingExecutorOptions o = base_options();
    o.store = &store;
    o.io.faults = &faults;
    auto ex = make_exec(m, o);
    Status st = ex->eval(k_prompt, LogitsRows::last, lg);
    REQUIRE_FALSE(st.ok());
    CHECK(st.code() == ErrorCode::io_error);
    CHECK_THAT(st.message(), Catch::Contains(fmt::format("layer 1 expert {}", first.expert)));
    CHECK_THAT(st.message(), Catch::Contains("ffn_up_exps"));
    // The executor stays usable: without the fault the same prompt evaluates as the ram run.
    faults.clear();
    ex->clear();
    const Run r = greedy(*ex, k_prompt, 16);
    CHECK(r.tokens == ram.tokens);
  }
}

TEST_CASE("streaming executor: a memory limit too small says which figures do not fit",
          "[stream][memlimit]") {
  test::TempDir dir("tandem-stream");
  auto model = testing::make_and_load(MakeModelOptions{}, dir / "m.gguf");
  REQUIRE(model.ok());
  StreamingExecutorOptions o = base_options();
  o.mem_limit = 256 * 1024;
  auto ex = make_streaming_executor(*model, o);
  REQUIRE_FALSE(ex.ok());
  CHECK(ex.status().code() == ErrorCode::out_of_memory);
  CHECK_THAT(ex.status().message(), Catch::Contains("--mem-limit 0.2 MiB is too small"));
  CHECK_THAT(ex.status().message(), Catch::Contains("non-expert weights"));
  CHECK_THAT(ex.status().message(), Catch::Contains("KV"));
  CHECK_THAT(ex.status().message(), Catch::Contains("routed experts"));

  CHECK(*parse_mem_size("1G") == 1ull << 30);
  CHECK(*parse_mem_size("512M") == 512ull << 20);
  CHECK(*parse_mem_size("1.5k") == 1536);
  CHECK(*parse_mem_size("4096") == 4096);
  CHECK(*parse_mem_size("2GB") == 2ull << 30);
  CHECK_FALSE(parse_mem_size("").ok());
  CHECK_FALSE(parse_mem_size("12X").ok());
  CHECK_FALSE(parse_mem_size("-1G").ok());
}

namespace {

// Resident bytes of this process's mapping of `path` (/proc/self/smaps "Rss:" of every VMA
// that maps it).
uint64_t mapping_rss(const std::filesystem::path& path) {
  std::ifstream in("/proc/self/smaps");
  const std::string want = std::filesystem::canonical(path).string();
  std::string line;
  bool in_map = false;
  uint64_t rss = 0;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    std::string first;
    ls >> first;
    if (!first.empty() && first.back() == ':') {  // a field of the current VMA
      uint64_t kb = 0;
      if (in_map && first == "Rss:" && (ls >> kb)) rss += kb * 1024;
      continue;
    }
    // A VMA header: "start-end perms offset dev inode   path".
    in_map = line.size() >= want.size() &&
             line.compare(line.size() - want.size(), want.size(), want) == 0;
  }
  return rss;
}

}  // namespace

TEST_CASE("streaming executor: memory-limited mode keeps the model's expert pages out of memory",
          "[stream][memlimit]") {
  test::TempDir dir("tandem-stream");
  // Experts large next to everything else: 4 layers x 16 experts x 3 x 256 x 512 q4_0 = 13.5 MiB.
  MakeModelOptions mo;
  mo.n_embd = 256;
  mo.n_ff_exp = 512;
  mo.n_expert = 16;
  mo.n_expert_used = 2;
  auto model = testing::make_and_load(mo, dir / "m.gguf");
  INFO(model.status().message());
  REQUIRE(model.ok());
  const Model& m = *model;
  const uint64_t weights = non_expert_weight_bytes(m.file());
  const uint64_t slot = *expert_slot_bytes(m.file());
  const uint64_t experts = std::filesystem::file_size(dir / "m.gguf") -
                           weights;  // header bytes included: an upper bound

  auto ram_ex = make_exec(m, base_options(true));
  const Run ram = greedy(*ram_ex, k_prompt, 8);
  const uint64_t ram_mapped = mapping_rss(dir / "m.gguf");
  ram_ex.reset();

  StreamingExecutorOptions o = base_options(true);
  o.reserve_bytes = 1 << 20;
  auto kv = KvCache::create(m.shape(), {o.n_ctx, o.n_ubatch, o.cache_type});
  REQUIRE(kv.ok());
  o.mem_limit = weights + kv->size_bytes() + o.reserve_bytes + 6 * slot;
  const auto before = read_mem_stats();
  REQUIRE(before.ok());
  auto ex = make_exec(m, o);
  CHECK(ex->store().cache()->n_slots() == 6);
  CHECK(mapping_rss(dir / "m.gguf") <= 64 * 1024);  // loading's touches dropped
  const Run r = greedy(*ex, k_prompt, 8);
  CHECK(r.tokens == ram.tokens);
  CHECK(same_bits(r.logits, ram.logits));
  const uint64_t mapped = mapping_rss(dir / "m.gguf");
  const auto after = read_mem_stats();
  REQUIRE(after.ok());
  // The all-ram run faulted expert pages in (the control: this measure sees them) ...
  CHECK(ram_mapped > weights + experts / 4);
  // ... the limited run only the non-expert weights (plus pages shared at slab edges).
  CHECK(mapped <= weights + 2 * 4096 * 3 * m.shape().n_layer + 64 * 1024);
  const int64_t anon_delta = int64_t(after->rss_anon_bytes) - int64_t(before->rss_anon_bytes);
  WARN("mem-limit " << format_mib(o.mem_limit) << " (experts " << format_mib(experts)
                    << "): model mapping resident " << format_mib(mapped)
                    << " (all-ram run: " << format_mib(ram_mapped) << "), anonymous RSS delta "
                    << anon_delta / 1024 << " KiB, cache " << format_mib(6 * slot) << ", reads "
                    << ex->store().cache()->reader().describe());
  CHECK(uint64_t(std::max<int64_t>(0, anon_delta)) + mapped <= o.mem_limit + (4u << 20));
}

namespace {

// cgroup v2 with the memory controller and a systemd that makes scopes: what the check from
// outside needs. Empty when usable, else why not.
std::string cgroup_memory_probe() {
  std::ifstream in("/sys/fs/cgroup/cgroup.controllers");
  std::string controllers;
  std::getline(in, controllers);
  if (controllers.find("memory") == std::string::npos) {
    return "no cgroup v2 memory controller at /sys/fs/cgroup (cgroup.controllers: '" + controllers +
           "')";
  }
  if (std::system("systemd-run --scope -q -p MemoryMax=64M true >/dev/null 2>&1") != 0) {
    return "systemd-run --scope -p MemoryMax= does not work here";
  }
  return {};
}
const bool k_cgroup_probe = test::register_probe("cgroup", cgroup_memory_probe);

}  // namespace

// Run by the [cgroup] test inside a memory.max scope: a memory-limited run of the model in
// TANDEM_STREAM_CHILD_MODEL whose limit is the scope's minus what this process already holds.
TEST_CASE("streaming executor: child of the cgroup test", "[.][memlimit_child]") {
  const char* path = std::getenv("TANDEM_STREAM_CHILD_MODEL");
  const char* limit = std::getenv("TANDEM_STREAM_CHILD_LIMIT");
  REQUIRE(path != nullptr);
  REQUIRE(limit != nullptr);
  auto model = Model::load(path);
  REQUIRE(model.ok());
  const auto base = read_mem_stats();
  REQUIRE(base.ok());
  StreamingExecutorOptions o = base_options();
  o.reserve_bytes = 1 << 20;
  o.mem_limit = *parse_mem_size(limit) - base->rss_bytes;
  auto ex = make_exec(*model, o);
  greedy(*ex, k_prompt, 8);
  const auto after = read_mem_stats();
  REQUIRE(after.ok());
  CHECK(after->rss_anon_bytes + after->rss_file_bytes <= *parse_mem_size(limit));
}

TEST_CASE("streaming executor: a memory-limited run stays inside a cgroup memory.max",
          "[.][cgroup][memlimit]") {
  // Hidden: runs where the [cgroup] probe passes (ctest entry with TANDEM_TEST_REQUIRES=cgroup).
  (void)k_cgroup_probe;
  const std::string why = cgroup_memory_probe();
  if (!why.empty()) FAIL("cannot check from outside: " << why);
  test::TempDir dir("tandem-stream");
  MakeModelOptions mo;
  mo.n_embd = 256;
  mo.n_ff_exp = 512;
  mo.n_expert = 16;
  REQUIRE(make_model(mo, dir / "m.gguf").ok());
  const std::string self = std::filesystem::read_symlink("/proc/self/exe").string();
  // The scope's limit: the test binary's own footprint plus a few MiB for the model's
  // non-expert weights, KV and a handful of cache slots (the experts alone are 13.5 MiB).
  const auto now = read_mem_stats();
  REQUIRE(now.ok());
  const uint64_t limit = now->rss_bytes + (8ull << 20);
  const std::string cmd = fmt::format(
      "TANDEM_STREAM_CHILD_MODEL='{}' TANDEM_STREAM_CHILD_LIMIT={} systemd-run --scope -q -p "
      "MemoryMax={} "
      "-p MemorySwapMax=0 '{}' '[memlimit_child]'",
      (dir / "m.gguf").string(), limit, limit, self);
  CHECK(std::system(cmd.c_str()) == 0);
}
