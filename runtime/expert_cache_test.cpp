#include "runtime/expert_cache.h"

#include <algorithm>
#include <catch2/catch.hpp>
#include <random>
#include <thread>
#include <vector>

#include "runtime/gguf_writer.h"
#include "runtime/model.h"
#include "runtime/model_maker.h"
#include "support/test_support.h"

namespace fs = std::filesystem;
using namespace tandem;

namespace {

constexpr uint32_t k_layers = 3;
constexpr uint32_t k_experts = 8;
constexpr int64_t k_embd = 96;
constexpr int64_t k_ff = 64;

// A GGUF holding only expert tensors (gate/up q4_0, down q8_0, random bytes) behind odd-sized
// filler tensors, so slab offsets fall at arbitrary places modulo 4096.
fs::path write_expert_gguf(const test::TempDir& dir) {
  const fs::path path = dir / "experts.gguf";
  auto w = GgufWriter::create(path);
  REQUIRE(w.ok());
  struct T {
    std::string name;
    DType dtype;
    std::array<int64_t, 4> ne;
    uint32_t n_dims;
  };
  std::vector<T> ts;
  ts.push_back({"filler.weight", DType::f32, {77, 1, 1, 1}, 1});
  for (uint32_t l = 0; l < k_layers; ++l) {
    ts.push_back({fmt::format("blk.{}.ffn_gate_exps.weight", l), DType::q4_0, {k_embd, k_ff, k_experts, 1}, 3});
    ts.push_back({fmt::format("blk.{}.ffn_norm.weight", l), DType::f32, {k_embd + 3 * l, 1, 1, 1}, 1});
    ts.push_back({fmt::format("blk.{}.ffn_up_exps.weight", l), DType::q4_0, {k_embd, k_ff, k_experts, 1}, 3});
    ts.push_back({fmt::format("blk.{}.ffn_down_exps.weight", l), DType::q8_0, {k_ff, k_embd, k_experts, 1}, 3});
  }
  REQUIRE(w->set_string("general.architecture", "test").ok());
  for (const T& t : ts) REQUIRE(w->add_tensor(t.name, t.dtype, t.ne, t.n_dims).ok());
  REQUIRE(w->begin_data().ok());
  std::mt19937_64 rng(1234);
  for (const T& t : ts) {
    const TensorView v = TensorView::contiguous(nullptr, t.dtype, t.ne);
    std::vector<uint8_t> bytes(v.nbytes());
    for (auto& b : bytes) b = static_cast<uint8_t>(rng());
    REQUIRE(w->write_tensor_data(bytes).ok());
  }
  REQUIRE(w->finish().ok());
  return path;
}

GgufFile open_gguf(const fs::path& p) {
  auto f = GgufFile::open(p);
  INFO(f.status().message());
  REQUIRE(f.ok());
  return std::move(f).value();
}

std::unique_ptr<ExpertCache> make_cache(const GgufFile& file, const ExpertCacheOptions& o) {
  auto c = ExpertCache::create(file, o);
  INFO(c.status().message());
  REQUIRE(c.ok());
  return std::move(c).value();
}

const char* k_names[3] = {"ffn_gate_exps", "ffn_up_exps", "ffn_down_exps"};

// The slab of expert e in the file's own mapping.
std::span<const uint8_t> file_slab(const GgufFile& file, ExpertId id, int m) {
  const GgufTensorInfo* t = file.find_tensor(fmt::format("blk.{}.{}.weight", id.layer, k_names[m]));
  REQUIRE(t != nullptr);
  const uint64_t nb2 = t->nbytes / static_cast<uint64_t>(t->ne[2]);
  return file.tensor_bytes(*t).subspan(uint64_t(id.expert) * nb2, nb2);
}

bool same_bytes(std::span<const uint8_t> a, std::span<const uint8_t> b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin());
}

void check_ref(const GgufFile& file, const ExpertRef& ref) {
  for (int m = 0; m < 3; ++m) {
    const TensorView& v = ref.matrix(static_cast<ExpertMatrix>(m));
    INFO("layer " << ref.id().layer << " expert " << ref.id().expert << " " << k_names[m]);
    REQUIRE(v.name == fmt::format("blk.{}.{}.weight", ref.id().layer, k_names[m]));
    REQUIRE(v.ne[2] == 1);
    REQUIRE(same_bytes(ref.bytes(static_cast<ExpertMatrix>(m)), file_slab(file, ref.id(), m)));
  }
}

std::vector<ExpertId> all_experts(uint32_t n_layer, uint32_t n_expert) {
  std::vector<ExpertId> ids;
  for (uint32_t l = 0; l < n_layer; ++l) {
    for (uint32_t e = 0; e < n_expert; ++e) ids.push_back({int32_t(l), int32_t(e)});
  }
  return ids;
}

uint64_t acquire_hits_of(ExpertCache& cache, const std::vector<ExpertId>& trace, const GgufFile& file) {
  for (ExpertId id : trace) {
    auto ref = cache.acquire(id);
    REQUIRE(ref.ok());
    check_ref(file, *ref);
  }
  return cache.stats().acquire_hits;
}

}  // namespace

TEST_CASE("ExpertCache: acquired experts equal the file's slabs under eviction; pinned stay", "[expert_cache]") {
  test::TempDir dir("tandem-expert-cache");
  const GgufFile file = open_gguf(write_expert_gguf(dir));
  struct Variant {
    CachePolicyKind policy;
    bool uring;
    bool direct;
  };
  for (Variant v : {Variant{CachePolicyKind::lru, true, true}, Variant{CachePolicyKind::frequency, true, true},
                    Variant{CachePolicyKind::lru, false, true}, Variant{CachePolicyKind::lru, true, false}}) {
    ExpertCacheOptions o;
    o.n_slots = 4;
    o.pinned = {{0, 1}, {2, 7}};
    o.policy = v.policy;
    o.io.use_io_uring = v.uring;
    o.io.direct = v.direct;
    o.io.queue_depth = 4;
    auto cache = make_cache(file, o);
    INFO(cache->reader().describe() << " policy " << cache->policy_name());
    REQUIRE(cache->n_layer() == k_layers);
    REQUIRE(cache->n_expert() == k_experts);
    REQUIRE(cache->expert_bytes(0) == 2 * 64 * 54 + 96 * 68);
    REQUIRE(cache->slot_bytes() >= cache->expert_bytes(0));
    REQUIRE(cache->slot_bytes() <= cache->expert_bytes(0) + 3 * 8192);
    REQUIRE(cache->preload_pinned().ok());
    std::mt19937 rng(5);
    const auto ids = all_experts(k_layers, k_experts);
    for (int step = 0; step < 300; ++step) {
      const ExpertId id = ids[rng() % ids.size()];
      auto ref = cache->acquire(id);
      REQUIRE(ref.ok());
      REQUIRE(ref->id() == id);
      check_ref(file, *ref);
      REQUIRE(cache->state({0, 1}) == ExpertState::present);
      REQUIRE(cache->state({2, 7}) == ExpertState::present);
      REQUIRE(cache->resident().size() <= 6);
    }
    const ExpertCacheStats st = cache->stats();
    REQUIRE(st.evictions > 100);
    REQUIRE(st.acquire_hits + st.acquire_loading + st.acquire_misses == 302);
    REQUIRE(st.loads_completed == st.acquire_misses + st.request_loads);
    REQUIRE(st.loads_failed == 0);
    REQUIRE(st.bytes_loaded == st.loads_completed * cache->expert_bytes(0));
    REQUIRE(st.io.bytes_transferred >= st.bytes_loaded);
  }
}

TEST_CASE("ExpertCache: LRU evicts in exactly the least-recently-used order", "[expert_cache]") {
  test::TempDir dir("tandem-expert-cache");
  const GgufFile file = open_gguf(write_expert_gguf(dir));
  ExpertCacheOptions o;
  o.n_slots = 3;
  auto cache = make_cache(file, o);
  const ExpertId a{0, 0}, b{0, 1}, c{1, 2}, d{2, 3};
  struct Step {
    ExpertId access;
    bool hit;
    std::vector<ExpertId> resident_after;
  };
  const std::vector<Step> trace = {
      {a, false, {a}},       {b, false, {a, b}},    {c, false, {a, b, c}}, {a, true, {a, b, c}},
      {d, false, {a, c, d}},  // b was least recent
      {b, false, {a, b, d}},  // then c
      {a, true, {a, b, d}},   {c, false, {a, b, c}},  // then d
      {d, false, {a, c, d}},  // b: a was touched after it
  };
  uint64_t hits = 0;
  for (size_t i = 0; i < trace.size(); ++i) {
    INFO("step " << i);
    auto ref = cache->acquire(trace[i].access);
    REQUIRE(ref.ok());
    check_ref(file, *ref);
    hits += trace[i].hit ? 1 : 0;
    REQUIRE(cache->stats().acquire_hits == hits);
    auto expected = trace[i].resident_after;
    std::sort(expected.begin(), expected.end());
    REQUIRE(cache->resident() == expected);
  }
  REQUIRE(cache->stats().evictions == 4);
}

TEST_CASE("ExpertCache: the frequency policy keeps a recurring hot set that LRU loses", "[expert_cache]") {
  // 5 slots; 4 hot experts accessed round-robin, each followed by one of 20 cold experts in
  // turn. Between two uses of a hot expert come 3 other hot and 4 cold ones: 7 distinct
  // experts > 5 slots, so LRU always evicts the hot expert before its return (0 hits), while
  // the hot set (4) plus one cold fits: with the profile prior (hot experts ~25x likelier) the
  // policy evicts the previous cold expert each time, so every hot access after the first
  // round hits (100 hot accesses - 4 cold starts = 96 hits), and no cold access can hit.
  test::TempDir dir("tandem-expert-cache");
  const GgufFile file = open_gguf(write_expert_gguf(dir));
  const auto ids = all_experts(k_layers, k_experts);
  const std::vector<ExpertId> hot(ids.begin(), ids.begin() + 4);
  const std::vector<ExpertId> cold(ids.begin() + 4, ids.end());
  std::vector<ExpertId> trace;
  for (int i = 0; i < 100; ++i) {
    trace.push_back(hot[size_t(i) % hot.size()]);
    trace.push_back(cold[size_t(i) % cold.size()]);
  }
  // The profile a run of this workload would have produced.
  Profile profile;
  profile.shape.n_layer = k_layers;
  profile.shape.n_expert = k_experts;
  profile.n_tokens = 100;
  profile.layers.resize(k_layers);
  for (auto& layer : profile.layers) layer.experts.resize(k_experts);
  for (ExpertId h : hot) profile.layers[size_t(h.layer)].experts[size_t(h.expert)].activation_count = 25;
  for (ExpertId c : cold) profile.layers[size_t(c.layer)].experts[size_t(c.expert)].activation_count = 5;
  auto prior = expert_priors_from_profile(profile, k_layers, k_experts);
  REQUIRE(prior.ok());

  ExpertCacheOptions o;
  o.n_slots = 5;
  auto lru = make_cache(file, o);
  const uint64_t lru_hits = acquire_hits_of(*lru, trace, file);

  o.policy = CachePolicyKind::frequency;
  o.frequency.prior = *prior;
  auto freq = make_cache(file, o);
  const uint64_t freq_hits = acquire_hits_of(*freq, trace, file);

  o.frequency.prior.clear();  // plain LRFU: the decayed frequency alone also separates them
  auto lrfu = make_cache(file, o);
  const uint64_t lrfu_hits = acquire_hits_of(*lrfu, trace, file);

  INFO("lru " << lru_hits << " frequency " << freq_hits << " lrfu " << lrfu_hits);
  REQUIRE(lru_hits == 0);
  REQUIRE(freq_hits == 96);
  REQUIRE(lrfu_hits > 80);
  REQUIRE(freq->stats().evictions < lru->stats().evictions);

  REQUIRE(expert_priors_from_profile(profile, k_layers + 1, k_experts).status().code() == ErrorCode::invalid_argument);
  FrequencyPolicyOptions bad;
  bad.prior = {1.0, -1.0};
  REQUIRE(make_frequency_policy(1, 2, 1, bad).status().code() == ErrorCode::invalid_argument);
  bad.prior = {1.0};
  REQUIRE(make_frequency_policy(1, 2, 1, bad).status().code() == ErrorCode::invalid_argument);
}

TEST_CASE("ExpertCache: read faults reach the acquirer; delayed loads are waited for", "[expert_cache]") {
  test::TempDir dir("tandem-expert-cache");
  const GgufFile file = open_gguf(write_expert_gguf(dir));
  for (bool uring : {true, false}) {
    IoFaultInjector faults;
    ExpertCacheOptions o;
    o.n_slots = 2;
    o.io.use_io_uring = uring;
    o.io.faults = &faults;
    o.io.max_retries = 2;
    auto cache = make_cache(file, o);
    const ExpertId bad{1, 3};
    const GgufTensorInfo* up = file.find_tensor("blk.1.ffn_up_exps.weight");
    const uint64_t up_offset = up->file_offset + 3 * (up->nbytes / k_experts);
    faults.add(IoFaultRule::fail_offset(up_offset + 10, EIO, 0));

    auto r = cache->acquire(bad);
    REQUIRE_FALSE(r.ok());
    REQUIRE(r.status().code() == ErrorCode::io_error);
    REQUIRE_THAT(r.status().message(), Catch::Contains("blk.1.ffn_up_exps.weight") &&
                                           Catch::Contains(fmt::format("offset {}", up_offset)) &&
                                           Catch::Contains("errno 5") && Catch::Contains("layer 1 expert 3"));
    REQUIRE(cache->state(bad) == ExpertState::not_present);
    REQUIRE(cache->stats().loads_failed == 1);
    // Other experts are unaffected; once the fault clears, the next access loads it.
    auto good = cache->acquire({1, 2});
    REQUIRE(good.ok());
    check_ref(file, *good);
    good->release();
    faults.clear();
    auto again = cache->acquire(bad);
    REQUIRE(again.ok());
    check_ref(file, *again);
    again->release();

    // A short read on the next request is retried transparently.
    faults.add(IoFaultRule::short_request(cache->stats().io.n_requests, 7, 1));
    auto shorted = cache->acquire({0, 5});
    REQUIRE(shorted.ok());
    check_ref(file, *shorted);
    shorted->release();

    // A slow read: request() returns at once with the load in flight, acquire() waits for it.
    faults.add(IoFaultRule::delay_request(cache->stats().io.n_requests + 2, 120));
    const ExpertId slow{2, 6};
    REQUIRE(*cache->request(slow) == ExpertState::not_present);
    REQUIRE(cache->state(slow) == ExpertState::loading);
    const uint64_t loading_before = cache->stats().acquire_loading;
    auto waited = cache->acquire(slow);
    REQUIRE(waited.ok());
    check_ref(file, *waited);
    REQUIRE(cache->stats().acquire_loading == loading_before + 1);
  }
}

TEST_CASE("ExpertCache: slots held by references are not evicted; requests give up, acquires time out",
          "[expert_cache]") {
  test::TempDir dir("tandem-expert-cache");
  const GgufFile file = open_gguf(write_expert_gguf(dir));
  ExpertCacheOptions o;
  o.n_slots = 1;
  o.slot_wait_ms = 50;
  auto cache = make_cache(file, o);
  auto held = cache->acquire({0, 0});
  REQUIRE(held.ok());
  REQUIRE(*cache->request({0, 2}) == ExpertState::not_present);
  REQUIRE(cache->stats().request_dropped == 1);
  REQUIRE(cache->state({0, 2}) == ExpertState::not_present);
  auto blocked = cache->acquire({0, 2});
  REQUIRE(blocked.status().code() == ErrorCode::out_of_memory);
  REQUIRE_THAT(blocked.status().message(), Catch::Contains("layer 0 expert 2"));
  check_ref(file, *held);  // still intact
  held->release();
  auto ok = cache->acquire({0, 2});
  REQUIRE(ok.ok());
  check_ref(file, *ok);
  REQUIRE(cache->state({0, 0}) == ExpertState::not_present);

  // A reference released from another thread unblocks a waiting acquire.
  o.slot_wait_ms = 20000;
  auto cache2 = make_cache(file, o);
  auto first = cache2->acquire({1, 1});
  REQUIRE(first.ok());
  std::thread releaser([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    first->release();
  });
  auto second = cache2->acquire({1, 4});
  releaser.join();
  REQUIRE(second.ok());
  check_ref(file, *second);
}

TEST_CASE("ExpertCache: bad ids, files and pinned lists are refused", "[expert_cache]") {
  test::TempDir dir("tandem-expert-cache");
  const GgufFile file = open_gguf(write_expert_gguf(dir));
  auto cache = make_cache(file, {});
  REQUIRE(cache->acquire({3, 0}).status().code() == ErrorCode::invalid_argument);
  REQUIRE(cache->acquire({0, 8}).status().code() == ErrorCode::invalid_argument);
  REQUIRE(cache->request({-1, 0}).status().code() == ErrorCode::invalid_argument);
  ExpertCacheOptions twice;
  twice.pinned = {{1, 1}, {1, 1}};
  REQUIRE(ExpertCache::create(file, twice).status().code() == ErrorCode::invalid_argument);
  ExpertCacheOptions outside;
  outside.pinned = {{0, 9}};
  REQUIRE(ExpertCache::create(file, outside).status().code() == ErrorCode::invalid_argument);

  // Pinned only: an unpinned expert has nowhere to go.
  ExpertCacheOptions pinned_only;
  pinned_only.n_slots = 0;
  pinned_only.pinned = {{2, 2}};
  auto p = make_cache(file, pinned_only);
  REQUIRE(p->acquire({2, 2}).ok());
  REQUIRE(p->acquire({2, 3}).status().code() == ErrorCode::out_of_memory);

  // A GGUF without expert tensors.
  const fs::path plain = dir / "plain.gguf";
  {
    auto w = GgufWriter::create(plain);
    REQUIRE(w.ok());
    REQUIRE(w->add_tensor("token_embd.weight", DType::f32, {32, 4, 1, 1}, 2).ok());
    REQUIRE(w->begin_data().ok());
    std::vector<uint8_t> zeros(32 * 4 * 4);
    REQUIRE(w->write_tensor_data(zeros).ok());
    REQUIRE(w->finish().ok());
  }
  const GgufFile plain_file = open_gguf(plain);
  auto none = ExpertCache::create(plain_file, {});
  REQUIRE(none.status().code() == ErrorCode::not_found);
  REQUIRE_THAT(none.status().message(), Catch::Contains("blk.0.ffn_gate_exps.weight"));
}

TEST_CASE("ExpertCache: concurrent acquires and prefetches from three threads", "[expert_cache]") {
  test::TempDir dir("tandem-expert-cache");
  const GgufFile file = open_gguf(write_expert_gguf(dir));
  for (CachePolicyKind policy : {CachePolicyKind::lru, CachePolicyKind::frequency}) {
    ExpertCacheOptions o;
    o.n_slots = 6;
    o.pinned = {{1, 0}};
    o.policy = policy;
    o.io.queue_depth = 8;
    auto cache = make_cache(file, o);
    const auto ids = all_experts(k_layers, k_experts);
    std::atomic<int> n_bad{0};
    auto worker = [&](unsigned seed) {
      std::mt19937 rng(seed);
      for (int i = 0; i < 150; ++i) {
        const ExpertId pick[2] = {ids[rng() % ids.size()], ids[rng() % ids.size()]};
        if (!cache->prefetch(pick).ok()) n_bad.fetch_add(1);
        auto ref = cache->acquire(pick[0]);
        if (!ref.ok()) {
          n_bad.fetch_add(1);
          continue;
        }
        for (int m = 0; m < 3; ++m) {
          if (!same_bytes(ref->bytes(static_cast<ExpertMatrix>(m)), file_slab(file, pick[0], m))) n_bad.fetch_add(1);
        }
      }
    };
    std::vector<std::thread> threads;
    for (unsigned t = 0; t < 3; ++t) threads.emplace_back(worker, 100 + t);
    for (auto& t : threads) t.join();
    REQUIRE(n_bad.load() == 0);
    const ExpertCacheStats st = cache->stats();
    REQUIRE(st.acquire_hits + st.acquire_loading + st.acquire_misses == 450);
    REQUIRE(st.loads_failed == 0);
    REQUIRE(cache->resident().size() <= 7);
  }
}

TEST_CASE("ExpertCache: a model_maker tiny model's experts load byte-exact", "[expert_cache]") {
  test::TempDir dir("tandem-expert-cache");
  const fs::path path = dir / "tiny.gguf";
  MakeModelOptions mo;
  mo.preset = "tiny";
  Status made = make_model(mo, path);
  INFO(made.message());
  REQUIRE(made.ok());
  const GgufFile file = open_gguf(path);
  auto shape = read_model_shape(file);
  REQUIRE(shape.ok());
  ExpertCacheOptions o;
  o.n_slots = 3;
  auto cache = make_cache(file, o);
  REQUIRE(cache->n_layer() == shape->n_layer);
  REQUIRE(cache->n_expert() == shape->n_expert);
  for (ExpertId id : all_experts(cache->n_layer(), cache->n_expert())) {
    auto ref = cache->acquire(id);
    REQUIRE(ref.ok());
    check_ref(file, *ref);
    REQUIRE(ref->matrix(ExpertMatrix::gate).ne[0] == shape->n_embd);
    REQUIRE(ref->matrix(ExpertMatrix::gate).ne[1] == shape->n_ff_exp);
  }
  REQUIRE(cache->stats().evictions == shape->n_layer * shape->n_expert - 3);
}

TEST_CASE("ExpertCache: prefetch loads the router's choice in rank order while slots last", "[expert_cache]") {
  test::TempDir dir("tandem-expert-cache");
  const GgufFile file = open_gguf(write_expert_gguf(dir));
  IoFaultInjector faults;
  for (uint64_t i = 0; i < 6; ++i) faults.add(IoFaultRule::delay_request(i, 100));  // keep both loads in flight
  ExpertCacheOptions o;
  o.n_slots = 2;
  o.io.faults = &faults;
  auto cache = make_cache(file, o);
  const std::vector<ExpertId> topk = {{1, 5}, {1, 2}, {1, 7}};  // rank order, top-1 first
  auto started = cache->prefetch(topk);
  REQUIRE(started.ok());
  REQUIRE(*started == 2);
  REQUIRE(cache->state(topk[0]) == ExpertState::loading);
  REQUIRE(cache->state(topk[1]) == ExpertState::loading);
  REQUIRE(cache->state(topk[2]) == ExpertState::not_present);  // no slot: both are loading
  REQUIRE(cache->stats().request_loads == 2);
  REQUIRE(cache->stats().request_dropped == 1);
  for (int r = 0; r < 2; ++r) {
    auto ref = cache->acquire(topk[size_t(r)]);
    REQUIRE(ref.ok());
    check_ref(file, *ref);
  }
  // The first acquire waits for its load; the second load ran alongside, so it may be done.
  REQUIRE(cache->stats().acquire_loading >= 1);
  REQUIRE(cache->stats().acquire_loading + cache->stats().acquire_hits == 2);
  REQUIRE(cache->stats().acquire_misses == 0);
  // Prefetching what is resident costs nothing.
  REQUIRE(*cache->prefetch(std::span(topk).first(2)) == 0);
  REQUIRE(cache->stats().request_hits == 2);
  REQUIRE(cache->prefetch(std::vector<ExpertId>{{9, 9}}).status().code() == ErrorCode::invalid_argument);
}

TEST_CASE("ExpertCache: per-layer partitions evict only within the layer", "[expert_cache]") {
  test::TempDir dir("tandem-expert-cache");
  const GgufFile file = open_gguf(write_expert_gguf(dir));
  const std::vector<ExpertId> trace = {{0, 0}, {1, 0}, {1, 1}};
  ExpertCacheOptions o;
  o.n_slots = 2;  // one pool: the third access evicts the oldest, layer 0's
  auto shared = make_cache(file, o);
  for (ExpertId id : trace) REQUIRE(shared->acquire(id).ok());
  REQUIRE(shared->resident() == std::vector<ExpertId>{{1, 0}, {1, 1}});

  o.n_slots_per_layer = 1;  // one slot per layer: layer 1 evicts its own expert
  auto split = make_cache(file, o);
  REQUIRE(split->n_slots() == k_layers);
  for (ExpertId id : trace) {
    auto ref = split->acquire(id);
    REQUIRE(ref.ok());
    check_ref(file, *ref);
  }
  REQUIRE(split->resident() == std::vector<ExpertId>{{0, 0}, {1, 1}});
  // A referenced expert blocks only its own layer.
  o.slot_wait_ms = 30;
  auto held_cache = make_cache(file, o);
  auto held = held_cache->acquire({2, 4});
  REQUIRE(held.ok());
  REQUIRE(held_cache->acquire({2, 5}).status().code() == ErrorCode::out_of_memory);
  REQUIRE(held_cache->acquire({0, 5}).ok());
}
