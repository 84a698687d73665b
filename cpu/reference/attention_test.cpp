#include <catch2/catch.hpp>

#include <cmath>
#include <random>
#include <vector>

#include "cpu/reference/ops.h"

using namespace tandem;
using namespace tandem::cpu::reference;

namespace {

// n_head 4, n_head_kv 2, head_dim 4. With swa on, layers follow the spec pattern (period 4):
// layer 0 is full attention + NoPE, layers 1..3 are SWA + RoPE.
ModelShape small_shape(bool swa, uint32_t n_swa = 3) {
  ModelShape s;
  s.n_vocab = 8;
  s.n_embd = 16;
  s.n_layer = 8;
  s.n_head = 4;
  s.n_head_kv = 2;
  s.n_embd_head_k = 4;
  s.n_embd_head_v = 4;
  s.n_rot = 4;
  s.n_expert = 2;
  s.n_expert_used = 1;
  s.n_ff_exp = 4;
  s.rope_freq_base = 1.5e6f;
  s.rope_freq_base_swa = 100.0f;
  s.swa = swa;
  s.n_swa = swa ? n_swa : 0;
  return s;
}

std::vector<float> random_vec(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = nd(rng);
  return v;
}

struct Qkv {
  int64_t T;
  std::vector<float> q, k, v;
};

Qkv random_qkv(const ModelShape& s, int64_t T, uint32_t seed) {
  return {T, random_vec(static_cast<size_t>(T * s.n_embd_q()), seed),
          random_vec(static_cast<size_t>(T * s.n_embd_k_gqa()), seed + 1),
          random_vec(static_cast<size_t>(T * s.n_embd_v_gqa()), seed + 2)};
}

std::vector<float> run(const ModelShape& s, uint32_t il, const Qkv& in) {
  std::vector<float> out(static_cast<size_t>(in.T * s.n_head * s.n_embd_head_v));
  self_attention(s, il, in.T, in.q, in.k, in.v, out);
  return out;
}

}  // namespace

TEST_CASE("attention_head: scale 1/sqrt(head_dim), closed form", "[reference][attention]") {
  const ModelShape s = small_shape(false);
  // q . k1 / sqrt(4) = 1, q . k0 = 0 -> p1 = e / (1 + e); out = p1 * v1.
  const std::vector<float> q = {2, 0, 0, 0};
  const std::vector<float> k = {0, 0, 0, 0, 1, 0, 0, 0};
  const std::vector<float> v = {0, 0, 0, 0, 1, 2, 3, 4};
  std::vector<float> out(4);
  attention_head(s, 0, 1, q, RowsF32{k.data(), 2, 4, 4}, RowsF32{v.data(), 2, 4, 4}, out);
  const double p1 = 0.7310585786300049;
  for (int d = 0; d < 4; ++d) CHECK(out[d] == Approx(p1 * (d + 1)));
}

TEST_CASE("attention: causal, a token never sees the future", "[reference][attention]") {
  const ModelShape s = small_shape(false);
  const Qkv a = random_qkv(s, 5, 1);
  const auto out_a = run(s, 0, a);
  // Change the last token's q, k and v: rows 0..3 must not move, row 4 must.
  Qkv b = a;
  for (int64_t i = 4 * s.n_embd_k_gqa(); i < 5 * s.n_embd_k_gqa(); ++i) b.k[i] += 3.0f;
  for (int64_t i = 4 * s.n_embd_v_gqa(); i < 5 * s.n_embd_v_gqa(); ++i) b.v[i] -= 5.0f;
  const auto out_b = run(s, 0, b);
  const size_t row = s.n_head * s.n_embd_head_v;
  for (size_t i = 0; i < 4 * row; ++i) CHECK(out_a[i] == out_b[i]);
  bool changed = false;
  for (size_t i = 4 * row; i < 5 * row; ++i) changed |= out_a[i] != out_b[i];
  CHECK(changed);
  // Future rows full of NaN do not leak into the past.
  std::vector<float> k(3 * 4, NAN), v(3 * 4, NAN);
  for (int d = 0; d < 4; ++d) k[d] = v[d] = 1.0f;
  std::vector<float> out(4);
  attention_head(s, 0, 0, std::vector<float>{1, 1, 1, 1}, RowsF32{k.data(), 3, 4, 4},
                 RowsF32{v.data(), 3, 4, 4}, out);
  for (float x : out) CHECK(x == 1.0f);
}

TEST_CASE("attention: SWA window boundary exactly at n_swa", "[reference][attention]") {
  const ModelShape s = small_shape(true, 3);
  REQUIRE(!s.is_swa(0));
  REQUIRE(s.is_swa(1));
  // Layer 1 (SWA, n_swa 3): pos 5 sees 3, 4, 5; pos_q - pos_k = 3 is masked.
  CHECK(kq_masked(s, 1, 5, 2));
  CHECK(!kq_masked(s, 1, 5, 3));
  CHECK(!kq_masked(s, 1, 5, 5));
  CHECK(kq_masked(s, 1, 5, 6));
  // Layer 0 (full) sees all of the past, and nothing of the future.
  CHECK(!kq_masked(s, 0, 5, 0));
  CHECK(kq_masked(s, 0, 5, 6));
  // Without swa, layer 1 is full too.
  CHECK(!kq_masked(small_shape(false), 1, 5, 0));

  // q = 0 gives equal scores: the output is the mean of the visible v rows.
  const int64_t n_kv = 6;
  std::vector<float> k = random_vec(static_cast<size_t>(n_kv * 4), 9),
                     v(static_cast<size_t>(n_kv * 4));
  for (int64_t j = 0; j < n_kv; ++j)
    for (int d = 0; d < 4; ++d) v[j * 4 + d] = static_cast<float>(j * j + d);
  const std::vector<float> q(4, 0.0f);
  std::vector<float> out(4);
  attention_head(s, 1, 5, q, RowsF32{k.data(), n_kv, 4, 4}, RowsF32{v.data(), n_kv, 4, 4}, out);
  for (int d = 0; d < 4; ++d) CHECK(out[d] == Approx((9 + 16 + 25) / 3.0 + d));
  attention_head(s, 0, 5, q, RowsF32{k.data(), n_kv, 4, 4}, RowsF32{v.data(), n_kv, 4, 4}, out);
  for (int d = 0; d < 4; ++d) CHECK(out[d] == Approx((0 + 1 + 4 + 9 + 16 + 25) / 6.0 + d));
  // Position 2 with n_swa 3 still sees everything (2 - 0 = 2 < 3).
  attention_head(s, 1, 2, q, RowsF32{k.data(), n_kv, 4, 4}, RowsF32{v.data(), n_kv, 4, 4}, out);
  for (int d = 0; d < 4; ++d) CHECK(out[d] == Approx((0 + 1 + 4) / 3.0 + d));
}

TEST_CASE("attention: GQA maps q head h to kv head h / (n_head / n_head_kv)",
          "[reference][attention]") {
  const ModelShape s = small_shape(false);
  Qkv in = random_qkv(s, 3, 21);
  // kv head 0's values are all 1, kv head 1's all 2: q heads 0, 1 -> 1 and 2, 3 -> 2
  // (an interleaved h % n_head_kv mapping would give 1, 2, 1, 2).
  for (int64_t t = 0; t < in.T; ++t)
    for (int64_t c = 0; c < s.n_embd_v_gqa(); ++c)
      in.v[t * s.n_embd_v_gqa() + c] = c < 4 ? 1.0f : 2.0f;
  const auto out = run(s, 0, in);
  for (int64_t t = 0; t < in.T; ++t)
    for (int h = 0; h < 4; ++h)
      for (int d = 0; d < 4; ++d) CHECK(out[t * 16 + h * 4 + d] == Approx(h < 2 ? 1.0 : 2.0));
}

TEST_CASE("attention: NoPE layers rotate neither q nor k; RoPE layers use their base",
          "[reference][attention]") {
  const ModelShape s = small_shape(true, 100);  // window wider than T: only rope differs
  REQUIRE(!s.use_rope(0));
  REQUIRE(s.use_rope(1));
  const Qkv in = random_qkv(s, 4, 31);

  // Expected per head from attention_head on unrotated (layer 0) or rotated (layer 1) copies.
  auto expected = [&](uint32_t il, bool rotate, float base) {
    std::vector<float> q = in.q, k = in.k, out(static_cast<size_t>(in.T * 16));
    if (rotate) {
      for (int64_t t = 0; t < in.T; ++t) {
        for (int h = 0; h < 4; ++h)
          rope_neox(std::span<float>(q).subspan(t * 16 + h * 4, 4), t, 4, base);
        for (int h = 0; h < 2; ++h)
          rope_neox(std::span<float>(k).subspan(t * 8 + h * 4, 4), t, 4, base);
      }
    }
    for (int h = 0; h < 4; ++h)
      for (int64_t t = 0; t < in.T; ++t)
        attention_head(s, il, t, std::span<const float>(q).subspan(t * 16 + h * 4, 4),
                       RowsF32{k.data() + (h / 2) * 4, in.T, 4, 8},
                       RowsF32{in.v.data() + (h / 2) * 4, in.T, 4, 8},
                       std::span<float>(out).subspan(t * 16 + h * 4, 4));
    return out;
  };
  const auto nope = run(s, 0, in);
  CHECK(nope == expected(0, false, 0.0f));
  CHECK(nope != expected(0, true, s.rope_freq_base));
  const auto roped = run(s, 1, in);
  CHECK(roped == expected(1, true, s.rope_freq_base_swa));  // SWA layers take freq_base_swa
  CHECK(roped != expected(1, true, s.rope_freq_base));
  CHECK(roped != expected(1, false, 0.0f));
  // Without swa every layer uses rope with rope_freq_base (the 4B layout).
  const ModelShape full = small_shape(false);
  CHECK(run(full, 0, in) == expected(0, true, full.rope_freq_base));
}
