#include "runtime/sampler.h"

#include <catch2/catch.hpp>

#include <cmath>
#include <numeric>
#include <set>

using namespace tandem;

namespace {

SamplerParams plain(float temp) {
  SamplerParams p;
  p.temp = temp;
  p.top_k = 0;
  p.top_p = 1.0f;
  p.min_p = 0.0f;
  p.seed = 1234;
  return p;
}

std::vector<float> random_logits(std::mt19937& rng, size_t n) {
  std::normal_distribution<float> nd(0.0f, 2.0f);  // values only feed inputs, not the sampler
  std::vector<float> l(n);
  for (float& x : l) x = nd(rng);
  return l;
}

std::set<int32_t> ids_of(const std::vector<TokenCandidate>& c) {
  std::set<int32_t> s;
  for (auto& x : c) s.insert(x.id);
  return s;
}

}  // namespace

TEST_CASE("greedy picks the argmax, lowest id on ties", "[sampler]") {
  Sampler s(plain(0.0f));
  CHECK(s.sample(std::vector<float>{0.1f, 2.0f, -1.0f, 1.9f}) == 1);
  CHECK(s.sample(std::vector<float>{3.0f, 1.0f, 3.0f}) == 0);
  CHECK(s.sample(std::vector<float>{-INFINITY, NAN, -5.0f}) == 2);
  CHECK(s.sample(std::vector<float>{}) == -1);
}

TEST_CASE("top_k = 1 equals greedy at any temperature", "[sampler]") {
  std::mt19937 rng(1);
  SamplerParams p = plain(1.5f);
  p.top_k = 1;
  Sampler s(p), g(plain(0.0f));
  for (size_t n : {1u, 2u, 7u, 100u, 5000u}) {
    const auto l = random_logits(rng, n);
    CHECK(s.sample(l) == g.sample(l));
  }
}

TEST_CASE("a seeded sampler is reproducible", "[sampler]") {
  std::mt19937 rng(2);
  const auto l = random_logits(rng, 1000);
  SamplerParams p;  // llama.cpp defaults
  p.seed = 42;
  Sampler a(p), b(p);
  std::vector<int32_t> xa, xb;
  for (int i = 0; i < 200; ++i) {
    xa.push_back(a.sample(l));
    xb.push_back(b.sample(l));
  }
  CHECK(xa == xb);
  CHECK(std::set<int32_t>(xa.begin(), xa.end()).size() > 1);  // and actually random
  p.seed = 43;
  Sampler c(p);
  std::vector<int32_t> xc;
  for (int i = 0; i < 200; ++i) xc.push_back(c.sample(l));
  CHECK(xc != xa);
  CHECK(a.seed() == 42);
  SamplerParams r;
  Sampler d(r);  // default seed: drawn, and reported
  CHECK(d.params().seed == 0xFFFFFFFFu);
}

TEST_CASE("temperature 1 draws follow the softmax", "[sampler]") {
  const std::vector<float> l = {1.0f, 2.0f, 0.5f};
  double z = 0;
  for (float x : l) z += std::exp(x);
  for (float temp : {1.0f, 0.5f}) {
    Sampler s(plain(temp));
    std::vector<int> count(3, 0);
    const int n = 10000;
    for (int i = 0; i < n; ++i) ++count[s.sample(l)];
    double zt = 0;
    for (float x : l) zt += std::exp(x / temp);
    for (int k = 0; k < 3; ++k) {
      const double p = std::exp(l[k] / temp) / zt;
      const double sd = std::sqrt(p * (1 - p) / n);
      INFO("temp " << temp << " token " << k << " p " << p << " observed " << double(count[k]) / n);
      CHECK(std::abs(double(count[k]) / n - p) < 5 * sd);  // 5 sigma: a fixed seed never flakes
    }
  }
  (void)z;
}

TEST_CASE("top_p keeps the smallest prefix reaching p", "[sampler]") {
  // probabilities 0.5, 0.25, 0.125, 0.0625, 0.0625 (logits are their logs)
  const std::vector<float> l = {std::log(0.25f), std::log(0.5f), std::log(0.0625f), std::log(0.125f), std::log(0.0625f)};
  const auto kept = [&](float top_p) {
    SamplerParams p = plain(1.0f);
    p.top_p = top_p;
    Sampler s(p);
    s.sample(l);
    return ids_of(s.last_candidates());
  };
  CHECK(kept(0.5f) == std::set<int32_t>{1});
  CHECK(kept(0.6f) == std::set<int32_t>{1, 0});
  CHECK(kept(0.75f) == std::set<int32_t>{1, 0});
  CHECK(kept(0.8f) == std::set<int32_t>{1, 0, 3});
  CHECK(kept(0.95f) == std::set<int32_t>{0, 1, 2, 3, 4});
  CHECK(kept(1.0f).size() == 5);
  CHECK(kept(0.0f) == std::set<int32_t>{1});  // always at least one
}

TEST_CASE("min_p keeps tokens with p >= min_p * p_max", "[sampler]") {
  const std::vector<float> l = {std::log(0.5f), std::log(0.2f), std::log(0.05f), std::log(0.15f), std::log(0.1f)};
  const auto kept = [&](float min_p) {
    SamplerParams p = plain(1.0f);
    p.min_p = min_p;
    Sampler s(p);
    s.sample(l);
    return ids_of(s.last_candidates());
  };
  CHECK(kept(0.05f).size() == 5);
  CHECK(kept(0.19f) == std::set<int32_t>{0, 1, 3, 4});  // 0.1 >= 0.095, 0.05 < 0.095
  CHECK(kept(0.25f) == std::set<int32_t>{0, 1, 3});     // cut at 0.125
  CHECK(kept(0.5f) == std::set<int32_t>{0});
  CHECK(kept(0.0f).size() == 5);
}

TEST_CASE("top_k cuts to the k largest and the chain composes", "[sampler]") {
  std::mt19937 rng(4);
  const auto l = random_logits(rng, 500);
  std::vector<int32_t> order(l.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return l[a] > l[b]; });
  SamplerParams p = plain(1.0f);
  p.top_k = 7;
  Sampler s(p);
  for (int i = 0; i < 50; ++i) {
    const int32_t id = s.sample(l);
    CHECK(std::find(order.begin(), order.begin() + 7, id) != order.begin() + 7);
    CHECK(ids_of(s.last_candidates()) == std::set<int32_t>(order.begin(), order.begin() + 7));
  }
  // Defaults (top_k 40, top_p 0.95, min_p 0.05): the survivors are a prefix of the order.
  SamplerParams d;
  d.seed = 9;
  Sampler t(d);
  t.sample(l);
  const auto& c = t.last_candidates();
  REQUIRE_FALSE(c.empty());
  CHECK(c.size() <= 40);
  for (size_t i = 0; i < c.size(); ++i) CHECK(c[i].id == order[i]);
  CHECK(c.back().p >= 0.05f * c.front().p);
}

TEST_CASE("repetition penalty divides positive and multiplies negative logits", "[sampler]") {
  SamplerParams p = plain(0.0f);
  p.repeat_penalty = 2.0f;
  p.repeat_last_n = 2;
  Sampler s(p);
  // Token 0: 3.0 -> 1.5 once penalised; token 1: 2.0 unpenalised; token 2: -0.5 -> -1.0.
  const std::vector<float> l = {3.0f, 2.0f, -0.5f, -0.8f};
  CHECK(s.sample(l) == 0);
  s.accept(0);
  CHECK(s.sample(l) == 1);
  // Penalised negatives drop below unpenalised ones: -0.5 * 2 = -1.0 < -0.8.
  const std::vector<float> neg = {-0.5f, -0.8f};
  Sampler n(p);
  CHECK(n.sample(neg) == 0);
  n.accept(0);
  CHECK(n.sample(neg) == 1);
  // The window forgets: after two more tokens, token 0 is no longer penalised.
  s.accept(3);
  s.accept(3);
  CHECK(s.sample(l) == 0);
  // A count-dependent frequency penalty and a flat presence penalty (llama.cpp formula).
  SamplerParams f = plain(0.0f);
  f.frequency_penalty = 0.6f;
  f.presence_penalty = 0.1f;
  Sampler fr(f);
  const std::vector<float> m = {1.0f, 0.0f};
  fr.accept(0);
  CHECK(fr.sample(m) == 0);  // 1 - 0.6 - 0.1 = 0.3 > 0
  fr.accept(0);
  CHECK(fr.sample(m) == 1);  // 1 - 1.2 - 0.1 < 0
}
