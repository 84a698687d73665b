#include "runtime/session.h"

#include <catch2/catch.hpp>

#include <cmath>
#include <string>

#include "cpu/reference/forward.h"
#include "cpu/reference/perplexity.h"
#include "runtime/forward_test_support.h"
#include "runtime/perplexity.h"
#include "support/test_support.h"

using namespace tandem;

namespace {

std::unique_ptr<Session> open_tiny(const test::TempDir& dir, DType weights, uint32_t n_ctx, DType cache = DType::f16) {
  MakeModelOptions mo;
  mo.preset = "tiny";
  mo.dtype = weights;
  const auto path = dir / "tiny.gguf";
  REQUIRE(make_model(mo, path).ok());
  SessionOptions so;
  so.model_path = path;
  so.n_ctx = n_ctx;
  so.n_ubatch = 8;
  so.n_threads = 2;
  so.cache_type = cache;
  so.sampling.temp = 0.0f;  // greedy
  so.sampling.repeat_penalty = 1.0f;
  auto s = Session::open(so);
  INFO(s.status().message());
  REQUIRE(s.ok());
  return std::move(*s);
}

struct Collected {
  std::vector<int32_t> tokens;
  std::string text;
};

TokenCallback collect(Collected& c) {
  return [&c](int32_t tok, std::string_view text) {
    if (tok >= 0) c.tokens.push_back(tok);
    c.text.append(text);
    return true;
  };
}

}  // namespace

TEST_CASE("Session: bad prompts and -n beyond the context are clear errors", "[session]") {
  test::TempDir dir;
  auto s = open_tiny(dir, DType::q4_0, 16);
  auto empty = s->generate({}, 4, {});
  CHECK(empty.status().code() == ErrorCode::invalid_argument);
  CHECK(empty.status().message().find("empty prompt") != std::string::npos);
  const auto long_prompt = testing::random_tokens(20, s->model().shape().n_vocab, 1);
  auto too_long = s->generate(long_prompt, 4, {});
  CHECK(too_long.status().message() == "prompt has 20 tokens but the context is 16 (-c)");
  const auto prompt = testing::random_tokens(10, s->model().shape().n_vocab, 2);
  auto too_many = s->generate(prompt, 7, {});
  CHECK(too_many.status().message().find("-n 7") != std::string::npos);
  CHECK(too_many.status().message().find("context of 16 (-c)") != std::string::npos);
  CHECK(s->executor().n_past() == 0);
  // Exactly filling the context is fine.
  Collected c;
  auto ok = s->generate(prompt, 6, collect(c));
  REQUIRE(ok.ok());
  CHECK((ok->n_generated == 6 || ok->stopped_at_eog));
}

TEST_CASE("Session: streams n tokens and keeps the cache between turns", "[session]") {
  test::TempDir dir;
  auto a = open_tiny(dir, DType::q4_0, 128);
  const std::vector<int32_t> p1 = a->tokenize("The quick brown fox", true, true);
  REQUIRE(!p1.empty());
  Collected c1;
  auto st1 = a->generate(p1, 6, collect(c1));
  REQUIRE(st1.ok());
  REQUIRE(!st1->stopped_at_eog);  // this prompt does not produce EOG early on the tiny model
  CHECK(st1->n_generated == 6);
  CHECK(c1.tokens.size() == 6);
  CHECK(st1->n_prompt_eval == p1.size());
  CHECK(st1->n_decode == 5);  // the last sampled token is not evaluated
  // The streamed pieces concatenate to the streaming detokenizer's output for those tokens
  // (complete UTF-8; tokens that split a character come out once it is complete).
  Detokenizer d(a->tokenizer(), false);
  std::string want;
  for (int32_t t : c1.tokens) want += d.push(t);
  want += d.flush();
  CHECK(c1.text == want);
  CHECK(st1->ttft_seconds > 0.0);

  // Second turn: the whole conversation so far plus more text.
  std::vector<int32_t> p2 = p1;
  p2.insert(p2.end(), c1.tokens.begin(), c1.tokens.end());
  const auto more = a->tokenize(" jumps over", false, true);
  p2.insert(p2.end(), more.begin(), more.end());
  Collected c2;
  auto st2 = a->generate(p2, 6, collect(c2));
  REQUIRE(st2.ok());
  CHECK(st2->n_prompt_reused == p1.size() + 5);
  CHECK(st2->n_prompt_eval == p2.size() - (p1.size() + 5));

  // A fresh session given the whole second prompt continues identically (greedy).
  test::TempDir dir_b;
  auto b = open_tiny(dir_b, DType::q4_0, 128);
  Collected cb;
  auto stb = b->generate(p2, 6, collect(cb));
  REQUIRE(stb.ok());
  CHECK(stb->n_prompt_reused == 0);
  CHECK(cb.tokens == c2.tokens);

  // The callback can stop generation.
  int calls = 0;
  auto st3 = b->generate(p1, 6, [&](int32_t, std::string_view) { return ++calls < 2; });
  REQUIRE(st3.ok());
  CHECK(st3->n_generated == 2);
}

TEST_CASE("Session: perplexity equals the reference computed over the same chunks", "[session][perplexity]") {
  test::TempDir dir;
  auto s = open_tiny(dir, DType::f32, 32, DType::f32);
  const ModelShape& sh = s->model().shape();
  const auto tokens = testing::random_tokens(3 * 32 + 5, sh.n_vocab, 42);
  PerplexityOptions po;
  po.n_ctx = 32;
  po.bos = s->tokenizer().bos();  // exercise the BOS replacement whatever the vocab says
  std::vector<double> running;
  auto r = perplexity(s->executor(), tokens, po, [&](uint32_t, double p) { running.push_back(p); });
  REQUIRE(r.ok());
  CHECK(r->n_chunk == 3);
  CHECK(r->count == 3 * (32 - 16 - 1));
  CHECK(running == r->running_ppl);

  cpu::reference::PerplexityStats total;
  for (uint32_t c = 0; c < 3; ++c) {
    std::vector<int32_t> chunk(tokens.begin() + c * 32, tokens.begin() + (c + 1) * 32);
    chunk[0] = *po.bos;
    std::vector<float> logits;
    REQUIRE(cpu::reference::forward(sh, s->model().weights(), chunk, logits).ok());
    auto st = cpu::reference::perplexity(logits, sh.n_vocab, chunk);
    REQUIRE(st.ok());
    total.nll_sum += st->nll_sum;
    total.count += st->count;
    INFO("chunk " << c);
    CHECK(r->running_ppl[c] == Approx(total.ppl()).epsilon(1e-6));
  }
  CHECK(r->ppl == Approx(total.ppl()).epsilon(1e-6));
  CHECK(r->ppl_error > 0.0);

  auto short_text = perplexity(s->executor(), std::span<const int32_t>(tokens.data(), 63), po);
  CHECK(short_text.status().message().find("you need at least 64 tokens") != std::string::npos);
}

TEST_CASE("Session: padding tokens ([PAD], type UNUSED) are never sampled", "[session]") {
  // A vocabulary far larger than the builtin BPE learns is mostly [PAD{i}] entries; random
  // weights give them ordinary logits, so without the mask sampling at a high temperature
  // would emit them (invisible text).
  test::TempDir dir;
  MakeModelOptions mo;
  mo.preset = "tiny";
  mo.n_vocab = 8192;
  mo.dtype = DType::f32;
  const auto path = dir / "padded.gguf";
  REQUIRE(make_model(mo, path).ok());
  SessionOptions so;
  so.model_path = path;
  so.n_ctx = 256;
  so.n_threads = 2;
  so.sampling.temp = 2.0f;
  so.sampling.top_k = 0;
  so.sampling.top_p = 1.0f;
  so.sampling.min_p = 0.0f;
  so.sampling.seed = 7;
  auto s = Session::open(so);
  REQUIRE(s.ok());
  const auto& tok = (*s)->tokenizer();
  int32_t n_unused = 0;
  for (int32_t id = 0; id < tok.n_vocab(); ++id) n_unused += tok.token_type(id) == TokenType::unused;
  REQUIRE(n_unused > tok.n_vocab() / 4);  // the premise: most of the vocabulary is padding
  Collected c;
  const auto prompt = tok.encode("The little robot", false, false);
  auto st = (*s)->generate(prompt, 128, collect(c));
  REQUIRE(st.ok());
  REQUIRE(c.tokens.size() > 16);
  for (int32_t t : c.tokens) {
    INFO("token " << t);
    CHECK(tok.token_type(t) != TokenType::unused);
  }
}
