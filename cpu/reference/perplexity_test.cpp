#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

#include "cpu/reference/perplexity.h"

using namespace tandem;
using namespace tandem::cpu::reference;

TEST_CASE("perplexity: hand-made logits", "[reference][perplexity]") {
  // T = 4, n_vocab = 3. Row t predicts token t+1.
  const std::vector<int32_t> tokens = {0, 1, 2, 0};
  const std::vector<float> logits = {
      0.0f,  0.0f,           0.0f,            // row 0: uniform -> -log p(1) = log 3
      10.0f, 0.0f,           0.0f,            // row 1: -log p(2) = log(e^10 + 2)
      0.0f,  std::log(2.0f), std::log(3.0f),  // row 2: p(0) = 1/6 -> log 6
      5.0f,  5.0f,           5.0f,            // row 3: never scored (no token 4)
  };
  // Default first = T/2 = 2: only row 2 is scored.
  auto half = perplexity(logits, 3, tokens);
  REQUIRE(half.ok());
  CHECK(half->count == 1);
  CHECK(half->mean_nll() == Approx(1.791759469228055));  // log 6
  CHECK(half->ppl() == Approx(6.0));

  auto all = perplexity(logits, 3, tokens, 0);
  REQUIRE(all.ok());
  CHECK(all->count == 3);
  CHECK(all->nll_sum == Approx(12.89046255363363));
  CHECK(all->nll_sum == Approx(std::log(3.0) + std::log(std::exp(10.0) + 2.0) + std::log(6.0)));
  CHECK(all->ppl() == Approx(std::exp(12.89046255363363 / 3)));

  // A confident, correct prediction costs almost nothing; adding the logit shift changes nothing.
  std::vector<float> sure = logits;
  for (float& l : sure) l += 100.0f;
  sure[2 * 3 + 0] += 40.0f;
  auto s = perplexity(sure, 3, tokens);
  REQUIRE(s.ok());
  CHECK(s->mean_nll() == Approx(0.0).margin(1e-15));
}

TEST_CASE("perplexity: bad input is an error", "[reference][perplexity]") {
  const std::vector<float> logits(6, 0.0f);
  const std::vector<int32_t> two = {0, 1};
  CHECK(perplexity(logits, 3, two, 0).ok());
  CHECK(perplexity(logits, 3, two).status().code() ==
        ErrorCode::invalid_argument);  // first = 1: nothing scored
  CHECK(perplexity(logits, 3, std::vector<int32_t>{0}).status().code() ==
        ErrorCode::invalid_argument);
  CHECK(perplexity(logits, 4, two).status().code() == ErrorCode::invalid_argument);
  CHECK(perplexity(logits, 0, two).status().code() == ErrorCode::invalid_argument);
  CHECK(perplexity(logits, 3, std::vector<int32_t>{0, 3}).status().code() ==
        ErrorCode::invalid_argument);
  CHECK(perplexity(logits, 3, std::vector<int32_t>{0, -1}).status().code() ==
        ErrorCode::invalid_argument);
  CHECK(perplexity(logits, 3, two, 1).status().code() == ErrorCode::invalid_argument);
}
