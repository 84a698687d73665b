#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <random>
#include <set>
#include <vector>

#include "cpu/reference/ops.h"

using namespace tandem;
using namespace tandem::cpu::reference;

namespace {
double sigmoid(double x) {
  return 1.0 / (1.0 + std::exp(-x));
}

TokenRouting route_ok(ExpertGating g, std::vector<float> logits, int64_t k) {
  auto r = route(g, logits, k);
  REQUIRE(r.ok());
  return *r;
}
}  // namespace

TEST_CASE("route sigmoid: hand-made logits, numbers written out", "[reference][router]") {
  // probs = sigmoid([0, 1, -1, 2]) = [0.5, 0.7310585786, 0.2689414214, 0.8807970780]
  const TokenRouting r = route_ok(ExpertGating::sigmoid, {0.0f, 1.0f, -1.0f, 2.0f}, 2);
  REQUIRE(r.experts == std::vector<int32_t>{3, 1});
  REQUIRE(r.weights.size() == 2);
  CHECK(r.weights[0] == Approx(0.5464491031607007).epsilon(1e-6));
  CHECK(r.weights[1] == Approx(0.4535508968392993).epsilon(1e-6));
}

TEST_CASE("route softmax: hand-made logits, numbers written out", "[reference][router]") {
  // softmax over all 4, then top-2 renormalised == softmax over the 2 selected logits [3, 2].
  const TokenRouting r = route_ok(ExpertGating::softmax, {1.0f, 2.0f, 3.0f, 0.0f}, 2);
  REQUIRE(r.experts == std::vector<int32_t>{2, 1});
  CHECK(r.weights[0] == Approx(0.7310585786300048).epsilon(1e-6));
  CHECK(r.weights[1] == Approx(0.2689414213699951).epsilon(1e-6));
}

TEST_CASE("route: weights follow the formulas on random logits", "[reference][router]") {
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.0f, 2.0f);
  for (int n_expert : {1, 3, 8, 33}) {
    for (int k : {1, 2, 4}) {
      if (k > n_expert) continue;
      std::vector<float> logits(static_cast<size_t>(n_expert));
      for (auto& l : logits) l = nd(rng);
      // Expected order: sort by logit, descending (both gatings are monotone; no ties here).
      std::vector<int32_t> order(logits.size());
      for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int32_t>(i);
      std::sort(order.begin(), order.end(),
                [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });
      order.resize(static_cast<size_t>(k));

      for (ExpertGating g : {ExpertGating::sigmoid, ExpertGating::softmax}) {
        const TokenRouting r = route_ok(g, logits, k);
        REQUIRE(r.experts == order);
        // sigmoid: s_i / sum s ; softmax: exp(l_i) / sum over the selected exp(l) (the
        // denominator over all experts cancels in the renormalisation).
        double sum = 0;
        for (int32_t e : order)
          sum += g == ExpertGating::sigmoid ? sigmoid(logits[e]) : std::exp(logits[e]);
        double total = 0;
        for (int s = 0; s < k; ++s) {
          const double p =
              g == ExpertGating::sigmoid ? sigmoid(logits[order[s]]) : std::exp(logits[order[s]]);
          CHECK(r.weights[s] == Approx(p / sum).epsilon(1e-5));
          total += r.weights[s];
        }
        CHECK(total == Approx(1.0).epsilon(1e-6));
      }
    }
  }
}

TEST_CASE("top_k: ties pick the lower index; sets match a brute force", "[reference][router]") {
  const std::vector<float> flat = {1.0f, 1.0f, 1.0f, 1.0f};
  CHECK(top_k(flat, 2) == std::vector<int32_t>{0, 1});
  const std::vector<float> tie_late = {0.0f, 5.0f, 2.0f, 5.0f, 2.0f};
  CHECK(top_k(tie_late, 3) == std::vector<int32_t>{1, 3, 2});
  CHECK(top_k(tie_late, 0).empty());
  CHECK(top_k(tie_late, 9).size() == 5);  // clamped
  // Past the size where std::sort switches from insertion sort: still lowest indices first.
  std::vector<float> many(200, 0.5f);
  many[150] = 0.75f;
  CHECK(top_k(many, 4) == std::vector<int32_t>{150, 0, 1, 2});
  const std::vector<float> with_nan = {NAN, -1.0f, 3.0f};
  CHECK(top_k(with_nan, 3) == std::vector<int32_t>{2, 1, 0});

  std::mt19937 rng(11);
  std::uniform_int_distribution<int> small(0, 4);  // few distinct values: many ties
  for (int trial = 0; trial < 50; ++trial) {
    const int n = 1 + trial % 17;
    std::vector<float> x(static_cast<size_t>(n));
    for (auto& v : x) v = static_cast<float>(small(rng));
    const int k = 1 + trial % n;
    const auto got = top_k(x, k);
    // A brute force: pick the max repeatedly, lowest index among equals.
    std::vector<bool> used(x.size(), false);
    std::set<int32_t> want;
    for (int s = 0; s < k; ++s) {
      int best = -1;
      for (int i = 0; i < n; ++i)
        if (!used[i] && (best < 0 || x[i] > x[best])) best = i;
      used[best] = true;
      want.insert(best);
    }
    CHECK(std::set<int32_t>(got.begin(), got.end()) == want);
    for (size_t s = 1; s < got.size(); ++s) CHECK(x[got[s - 1]] >= x[got[s]]);
  }
}

TEST_CASE("route sigmoid: saturated probabilities tie and the lower index wins",
          "[reference][router]") {
  // sigmoid(30) and sigmoid(40) both round to 1.0f: llama.cpp ranks the f32 probabilities, so
  // this is a tie (HF would rank the logits and pick expert 1).
  const TokenRouting r = route_ok(ExpertGating::sigmoid, {30.0f, 40.0f, 0.0f}, 1);
  REQUIRE(r.experts == std::vector<int32_t>{0});
  CHECK(r.weights[0] == 1.0f);
  const TokenRouting r2 = route_ok(ExpertGating::softmax, {2.0f, 2.0f, 2.0f}, 2);
  REQUIRE(r2.experts == std::vector<int32_t>{0, 1});
  CHECK(r2.weights[0] == Approx(0.5));
  CHECK(r2.weights[1] == Approx(0.5));
}

TEST_CASE("route: the weight sum is clamped at 6.103515625e-5", "[reference][router]") {
  // sigmoid(-20) + sigmoid(-21) = 2.8e-9 < 6.1e-5: weights = p / 6.103515625e-5, not p / sum.
  const TokenRouting r = route_ok(ExpertGating::sigmoid, {-20.0f, -21.0f, -22.0f}, 2);
  REQUIRE(r.experts == std::vector<int32_t>{0, 1});
  CHECK(r.weights[0] == Approx(3.37699408804283e-05).epsilon(1e-5));
  CHECK(r.weights[1] == Approx(1.2423266995670852e-05).epsilon(1e-5));
  CHECK(r.weights[0] + r.weights[1] < 1e-4f);
  // Just above the clamp the plain renormalisation applies.
  const TokenRouting r2 = route_ok(ExpertGating::sigmoid, {-9.0f, -9.5f}, 2);
  CHECK(r2.weights[0] + r2.weights[1] == Approx(1.0).epsilon(1e-6));
}

TEST_CASE("route: bad gating or k is an error", "[reference][router]") {
  const std::vector<float> logits = {0.0f, 1.0f};
  CHECK(route(ExpertGating::none, logits, 1).status().code() == ErrorCode::invalid_argument);
  CHECK(route(ExpertGating::sigmoid, logits, 0).status().code() == ErrorCode::invalid_argument);
  CHECK(route(ExpertGating::sigmoid, logits, 3).status().code() == ErrorCode::invalid_argument);
  std::vector<float> probs(2);
  CHECK(!router_probs(ExpertGating::none, logits, probs).ok());
}

TEST_CASE("soft_max: closed form, masking and the all-masked row", "[reference][soft_max]") {
  std::vector<float> x = {0.0f, std::log(3.0f), -INFINITY};
  soft_max(x, x);
  CHECK(x[0] == Approx(0.25));
  CHECK(x[1] == Approx(0.75));
  CHECK(x[2] == 0.0f);
  std::vector<float> all_masked = {-INFINITY, -INFINITY};
  soft_max(all_masked, all_masked);
  CHECK(all_masked == std::vector<float>{0.0f, 0.0f});
  std::vector<float> big = {1000.0f, 1000.0f};  // max subtraction keeps this finite
  soft_max(big, big);
  CHECK(big[0] == Approx(0.5));
}
