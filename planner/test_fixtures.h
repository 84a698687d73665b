// Made-up models, usage profiles and machines for the planner's tests (header-only, used by
// planner/*_test.cpp only). Deterministic for a given seed.
#pragma once

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "core/model_shape.h"
#include "planner/hardware_profile.h"
#include "planner/profile.h"

namespace tandem::planner_test {

// A small SmallThinker-like shape (q4_0-compatible sizes).
inline ModelShape tiny_shape(uint32_t n_layer, uint32_t n_expert, uint32_t n_expert_used) {
  ModelShape s;
  s.n_vocab = 512;
  s.n_ctx_train = 4096;
  s.n_embd = 256;
  s.n_layer = n_layer;
  s.n_head = 4;
  s.n_head_kv = 2;
  s.n_embd_head_k = s.n_embd_head_v = s.n_rot = 64;
  s.n_expert = n_expert;
  s.n_expert_used = n_expert_used;
  s.n_ff_exp = 256;
  return s;
}

// SmallThinker-21B-A3B (spec §1.1).
inline ModelShape shape_21b() {
  ModelShape s;
  s.n_vocab = 151936;
  s.n_ctx_train = 16384;
  s.n_embd = 2560;
  s.n_layer = 52;
  s.n_head = 28;
  s.n_head_kv = 4;
  s.n_embd_head_k = s.n_embd_head_v = s.n_rot = 128;
  s.n_expert = 64;
  s.n_expert_used = 6;
  s.n_ff_exp = 768;
  s.swa = true;
  s.n_swa = 4096;
  return s;
}

// Routing with a skewed per-layer popularity (weights ~ rank^-skew) and some locality
// (a token repeats the previous token's experts with probability `repeat`).
struct RoutingGen {
  std::mt19937_64 rng;
  uint32_t n_expert, k;
  std::vector<double> pop;
  std::vector<int32_t> prev;
  double repeat;

  RoutingGen(uint64_t seed, uint32_t n_expert_, uint32_t k_, double skew, double repeat_)
      : rng(seed), n_expert(n_expert_), k(k_), repeat(repeat_) {
    std::vector<uint32_t> perm(n_expert);
    std::iota(perm.begin(), perm.end(), 0u);
    std::shuffle(perm.begin(), perm.end(), rng);
    pop.resize(n_expert);
    for (uint32_t i = 0; i < n_expert; ++i) pop[perm[i]] = std::pow(1.0 + i, -skew);
  }

  std::vector<int32_t> next() {
    std::vector<int32_t> out;
    std::uniform_real_distribution<double> u(0, 1);
    for (int32_t e : prev) {
      if (out.size() < k && u(rng) < repeat) out.push_back(e);
    }
    while (out.size() < k) {
      std::vector<double> w = pop;
      for (int32_t e : out) w[e] = 0;
      std::discrete_distribution<int> d(w.begin(), w.end());
      out.push_back(d(rng));
    }
    prev = out;
    return out;
  }
};

inline Profile random_profile(const ModelShape& shape, uint64_t seed, uint32_t n_tokens = 200) {
  ProfileBuilder b("test-model", "hash-" + std::to_string(seed), profile_shape(shape));
  std::mt19937_64 rng(seed * 7919 + 1);
  std::uniform_real_distribution<double> u(0, 1);
  std::vector<RoutingGen> gens;
  for (uint32_t l = 0; l < shape.n_layer; ++l) {
    gens.emplace_back(seed * 1000 + l, shape.n_expert, shape.n_expert_used, 0.5 + 1.5 * u(rng), 0.5 * u(rng));
  }
  const size_t words = (shape.n_ff_exp + 63) / 64;
  std::vector<double> activity(static_cast<size_t>(shape.n_layer) * shape.n_expert);
  for (auto& a : activity) a = 0.1 + 0.8 * u(rng);
  std::vector<float> w(shape.n_expert_used, 1.0f / static_cast<float>(shape.n_expert_used));
  for (uint32_t t = 0; t < n_tokens; ++t) {
    for (uint32_t l = 0; l < shape.n_layer; ++l) {
      const auto ids = gens[l].next();
      (void)b.add_routing(l, t, ids, w);
      if (t % 8 == 0) {
        for (int32_t e : ids) {
          std::vector<uint64_t> mask(words, 0);
          const double a = activity[static_cast<size_t>(l) * shape.n_expert + e];
          for (uint32_t j = 0; j < shape.n_ff_exp; ++j) {
            if (u(rng) < a) mask[j / 64] |= uint64_t{1} << (j % 64);
          }
          (void)b.add_gate_mask(l, static_cast<uint32_t>(e), mask);
        }
      }
    }
  }
  return b.finish();
}

// A machine with a GPU; `unified` makes it an APU sharing one memory bus.
inline HardwareProfile test_machine(bool unified, double upload_gbps = 12.0) {
  HardwareProfile hw;
  hw.name = unified ? "test-apu" : "test-dgpu";
  hw.ram_bytes = 16ull << 30;
  hw.shared_memory_bus = unified;
  hw.shared_bandwidth_gbps = unified ? 60.0 : 0.0;
  hw.cpu.name = "test-cpu";
  hw.cpu.n_cores = 8;
  hw.cpu.n_threads = 16;
  hw.cpu.isa.push_back({"avx2", 8, 40.0, 500.0, 0, 0, 0});
  GpuProfile g;
  g.name = unified ? "test-igpu" : "test-dgpu";
  g.type = unified ? GpuType::integrated : GpuType::discrete;
  g.unified_memory = unified;
  g.memory_bytes = unified ? (4ull << 30) : (8ull << 30);
  g.bandwidth_gbps = unified ? 60.0 : 400.0;
  g.upload_gbps = upload_gbps;
  g.zero_copy_gbps = unified ? 60.0 : 20.0;
  g.compute_gflops = unified ? 1600.0 : 20000.0;
  g.submit_wait_us = 30.0;
  hw.gpus.push_back(g);
  hw.storage.name = "test-nvme";
  hw.storage.latency_us = 80.0;
  hw.storage.random_read.push_back({4096, 1, 0.05});
  hw.storage.random_read.push_back({1 << 20, 32, 3.0});
  return hw;
}

// Random machine parameters over wide ranges (property tests).
inline HardwareProfile random_machine(uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(0, 1);
  auto logu = [&](double lo, double hi) { return lo * std::pow(hi / lo, u(rng)); };
  HardwareProfile hw = test_machine(u(rng) < 0.4, logu(1, 50));
  hw.cpu.isa[0].read_bandwidth_gbps = logu(5, 100);
  GpuProfile& g = hw.gpus[0];
  if (!g.unified_memory) g.bandwidth_gbps = logu(50, 1000);
  else hw.shared_bandwidth_gbps = g.bandwidth_gbps = logu(20, 120);
  g.submit_wait_us = logu(1, 200);
  hw.storage.random_read[1].throughput_gbps = logu(0.1, 10);
  hw.storage.latency_us = logu(10, 500);
  if (u(rng) < 0.15) hw.gpus.clear();
  return hw;
}

}  // namespace tandem::planner_test
