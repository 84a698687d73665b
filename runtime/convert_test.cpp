// convert_transpose_down / transpose_down_in_memory: a tiny standard model converted, loaded
// back and compared tensor by tensor, key by key and logit by logit with the original and
// with the maker's transposed model; the precision cost within its stated bound; bad input.
#include <catch2/catch.hpp>

#include <fstream>

#include "runtime/convert.h"
#include "runtime/forward_ops.h"
#include "runtime/forward_test_support.h"
#include "runtime/gguf_writer.h"
#include "support/test_support.h"

using namespace tandem;
using Catch::Matchers::Contains;

namespace {

MakeModelOptions tiny(DType dtype, bool transposed) {
  MakeModelOptions o;
  o.preset = "tiny";
  o.dtype = dtype;
  o.transpose_down = transposed;
  return o;
}

// Every position's logits of 24 tokens evaluated in ubatches of 8 with the plain CPU ops.
std::vector<float> logits_of(const ModelShape& shape, const ModelWeights& weights) {
  ForwardOptions fo;
  fo.n_ubatch = 8;
  fo.n_threads = 1;
  auto fwd = Forward::create(shape, weights, fo, make_cpu_ops());
  REQUIRE(fwd.ok());
  KvCacheOptions ko;
  ko.n_ctx = 64;
  ko.n_ubatch = 8;
  ko.type = DType::f32;
  auto kv = KvCache::create(shape, ko);
  REQUIRE(kv.ok());
  const std::vector<int32_t> tokens = testing::random_tokens(24, shape.n_vocab, 7);
  auto r = testing::eval_in_steps(**fwd, *kv, tokens, 8);
  REQUIRE(r.ok());
  return std::move(r).value();
}

std::span<const float> as_span(const std::vector<float>& v) { return {v.data(), v.size()}; }

bool same_bytes(std::span<const uint8_t> a, std::span<const uint8_t> b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin());
}

}  // namespace

TEST_CASE("convert --transpose-down: layout, other tensors and keys unchanged, logits close", "[convert]") {
  test::TempDir dir;
  // Bounds: the figures measured on tiny models (convert --help: q4_0 1.9e-3 for weights and
  // expert outputs, 6.5e-4 for logits; q8_0 1.3e-5, 1.4e-5, 2.1e-3) with about 2x headroom.
  // The q8_0 logits move more than its weights: the standard file's down quantizes a to q8_0,
  // the transposed one rounds a * d to 8 bits (cpu/expert_ffn.h), and each of those alone is
  // ~1e-3 from exact on these random tiny models.
  const auto [dtype, weight_bound, output_bound, logits_bound] = GENERATE(
      std::tuple{DType::q4_0, 4e-3, 4e-3, 1.5e-3}, std::tuple{DType::q8_0, 3e-5, 3e-5, 5e-3});
  CAPTURE(dtype_name(dtype));
  const auto in = dir / "std.gguf", out = dir / "conv.gguf";
  REQUIRE(make_model(tiny(dtype, false), in).ok());
  auto stats = convert_transpose_down(in, out);
  REQUIRE(stats.ok());
  auto a = Model::load(in);
  auto c = Model::load(out);
  REQUIRE(a.ok());
  REQUIRE(c.ok());
  CHECK(a->shape().down_layout == DownLayout::standard);
  CHECK(c->shape().down_layout == DownLayout::transposed);
  CHECK(stats->n_tensors_converted == a->shape().n_layer);
  CHECK(stats->n_tensors_copied + stats->n_tensors_converted == a->file().tensors().size());
  CHECK(stats->bytes_written == c->file().file_size());
  CHECK(stats->down_weight_nmse > 0.0);
  CHECK(stats->down_weight_nmse < weight_bound);

  // Every other tensor byte-identical, same order; every key identical.
  const auto& ta = a->file().tensors();
  const auto& tc = c->file().tensors();
  REQUIRE(ta.size() == tc.size());
  for (size_t i = 0; i < ta.size(); ++i) {
    CAPTURE(ta[i].name);
    REQUIRE(ta[i].name == tc[i].name);
    CHECK(ta[i].dtype == tc[i].dtype);
    if (ta[i].name.find("ffn_down_exps") != std::string::npos) {
      CHECK(tc[i].ne == std::array<int64_t, 4>{ta[i].ne[1], ta[i].ne[0], ta[i].ne[2], 1});
      CHECK(tc[i].nbytes == ta[i].nbytes);
    } else {
      CHECK(ta[i].ne == tc[i].ne);
      CHECK(same_bytes(a->file().tensor_bytes(ta[i]), c->file().tensor_bytes(tc[i])));
    }
  }
  REQUIRE(a->file().kvs().size() == c->file().kvs().size());
  for (size_t i = 0; i < a->file().kvs().size(); ++i) {
    CAPTURE(a->file().kvs()[i].key);
    CHECK(a->file().kvs()[i].key == c->file().kvs()[i].key);
    CHECK(a->file().kvs()[i].value.value == c->file().kvs()[i].value.value);
  }

  // Precision cost on the experts' outputs and on the logits.
  auto e = expert_output_nmse(a->shape(), a->weights(), c->shape(), c->weights());
  REQUIRE(e.ok());
  CHECK(*e > 0.0);
  CHECK(*e < output_bound);
  const auto la = logits_of(a->shape(), a->weights());
  const auto lc = logits_of(c->shape(), c->weights());
  const double logits_nmse = test::nmse(as_span(lc), as_span(la));
  CHECK(logits_nmse < logits_bound);

  // The in-memory transposition gives the same bytes as the file and the same logits.
  auto mem = transpose_down_in_memory(*a);
  REQUIRE(mem.ok());
  CHECK((*mem)->shape.down_layout == DownLayout::transposed);
  CHECK((*mem)->down_weight_nmse == Approx(stats->down_weight_nmse).epsilon(1e-9));
  for (uint32_t il = 0; il < a->shape().n_layer; ++il) {
    const TensorView& m = (*mem)->weights.layers[il].ffn_down_exps;
    const TensorView& f = c->weights().layers[il].ffn_down_exps;
    CHECK(m.ne == f.ne);
    CHECK(same_bytes({static_cast<const uint8_t*>(m.data), m.nbytes()}, {static_cast<const uint8_t*>(f.data), f.nbytes()}));
    // Everything else still views the model's mapping.
    CHECK((*mem)->weights.layers[il].ffn_up_exps.data == a->weights().layers[il].ffn_up_exps.data);
  }
  CHECK((*mem)->weights.token_embd.data == a->weights().token_embd.data);
  CHECK(logits_of((*mem)->shape, (*mem)->weights) == lc);
}

TEST_CASE("convert --transpose-down of f32 and f16 models is lossless", "[convert]") {
  test::TempDir dir;
  const DType dtype = GENERATE(DType::f32, DType::f16);
  CAPTURE(dtype_name(dtype));
  const auto in = dir / "std.gguf", out = dir / "conv.gguf", made = dir / "made_t.gguf";
  REQUIRE(make_model(tiny(dtype, false), in).ok());
  REQUIRE(make_model(tiny(dtype, true), made).ok());
  auto stats = convert_transpose_down(in, out);
  REQUIRE(stats.ok());
  CHECK(stats->down_weight_nmse == 0.0);
  auto a = Model::load(in);
  auto c = Model::load(out);
  auto m = Model::load(made);
  REQUIRE((a.ok() && c.ok() && m.ok()));
  // The maker writes the same values in both layouts, so the converted file's down tensors
  // are the maker's transposed ones, byte for byte.
  for (uint32_t il = 0; il < a->shape().n_layer; ++il) {
    const TensorView& cv = c->weights().layers[il].ffn_down_exps;
    const TensorView& mv = m->weights().layers[il].ffn_down_exps;
    CHECK(same_bytes({static_cast<const uint8_t*>(cv.data), cv.nbytes()}, {static_cast<const uint8_t*>(mv.data), mv.nbytes()}));
  }
  auto e = expert_output_nmse(a->shape(), a->weights(), c->shape(), c->weights());
  REQUIRE(e.ok());
  CHECK(*e < 1e-12);
  // Same model, other summation order in down: equal up to float rounding.
  const auto la = logits_of(a->shape(), a->weights());
  const auto lc = logits_of(c->shape(), c->weights());
  CHECK(test::max_abs_diff(as_span(lc), as_span(la)) < 1e-4);
  CHECK(test::nmse(as_span(lc), as_span(la)) < 1e-10);
}

TEST_CASE("convert --transpose-down rejects bad input", "[convert]") {
  test::TempDir dir;
  const auto std_path = dir / "std.gguf", tr_path = dir / "tr.gguf";
  REQUIRE(make_model(tiny(DType::q8_0, false), std_path).ok());
  REQUIRE(make_model(tiny(DType::q8_0, true), tr_path).ok());

  SECTION("already transposed") {
    auto r = convert_transpose_down(tr_path, dir / "x.gguf");
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().code() == ErrorCode::invalid_argument);
    CHECK_THAT(r.status().message(), Contains("already transposed"));
    CHECK_FALSE(std::filesystem::exists(dir / "x.gguf"));
    auto m = Model::load(tr_path);
    REQUIRE(m.ok());
    CHECK_FALSE(transpose_down_in_memory(*m).ok());
  }
  SECTION("not a SmallThinker file") {
    const auto llama = dir / "llama.gguf";
    {
      auto w = GgufWriter::create(llama);
      REQUIRE(w.ok());
      REQUIRE(w->set_string("general.architecture", "llama").ok());
      REQUIRE(w->add_tensor("x", DType::f32, {32, 1, 1, 1}, 1).ok());
      REQUIRE(w->begin_data().ok());
      std::vector<uint8_t> zeros(128);
      REQUIRE(w->write_tensor_data(zeros).ok());
      REQUIRE(w->finish().ok());
    }
    auto r = convert_transpose_down(llama, dir / "x.gguf");
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().code() == ErrorCode::unsupported);
    CHECK_THAT(r.status().message(), Contains("llama"));
  }
  SECTION("not a GGUF file") {
    const auto junk = dir / "junk.gguf";
    std::ofstream(junk) << "this is not a gguf file at all";
    CHECK_FALSE(convert_transpose_down(junk, dir / "x.gguf").ok());
    CHECK_FALSE(convert_transpose_down(dir / "missing.gguf", dir / "x.gguf").ok());
  }
  SECTION("unwritable output") {
    auto r = convert_transpose_down(std_path, dir / "no-such-dir" / "x.gguf");
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().code() == ErrorCode::io_error);
    CHECK_THAT(r.status().message(), Contains("no-such-dir"));
  }
  SECTION("output is the input") {
    auto r = convert_transpose_down(std_path, std_path);
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().code() == ErrorCode::invalid_argument);
    CHECK(Model::load(std_path).ok());
  }
  SECTION("n_ff_exp == n_embd cannot be told apart") {
    MakeModelOptions o = tiny(DType::q8_0, false);
    o.n_ff_exp = 64;
    const auto sq = dir / "square.gguf";
    REQUIRE(make_model(o, sq).ok());
    auto r = convert_transpose_down(sq, dir / "x.gguf");
    REQUIRE_FALSE(r.ok());
    CHECK_THAT(r.status().message(), Contains("n_ff_exp == n_embd"));
  }
}
