// Model: hyperparameter defaults and derivations (spec §2.4, §3.2), tensor checks (§3.3,
// §3.4) and clear errors, on tiny SmallThinker files written here with GgufWriter.
#include <catch2/catch.hpp>

#include <map>
#include <optional>

#include "runtime/gguf_writer.h"
#include "runtime/model.h"
#include "support/test_support.h"

using namespace tandem;
using Catch::Matchers::Contains;

namespace {

// A tiny SmallThinker: 8 layers, n_embd 64, 4 heads of 16 (2 kv heads), 4 experts of 32.
struct Tiny {
  uint32_t n_layer = 8;
  int64_t n_embd = 64, n_head = 4, n_head_kv = 2, head_dim = 16, n_expert = 4, n_expert_used = 2,
          n_ff = 32, n_vocab = 100;
  bool transposed_down = false;
  bool tied = true;
  // Key edits applied over the defaults: nullopt removes the key.
  std::map<std::string, std::optional<GgufValue>> keys;
  // Tensor edits: nullopt removes the tensor, else {ne, n_dims}.
  std::map<std::string, std::optional<std::pair<std::array<int64_t, 4>, uint32_t>>> tensors;
  std::map<std::string, DType> dtypes;
};

std::filesystem::path write_tiny(const test::TempDir& dir, const Tiny& t,
                                 const std::string& file = "tiny.gguf") {
  std::vector<std::pair<std::string, GgufValue>> kv = {
      {"general.architecture", gguf_scalar(std::string("smallthinker"))},
      {"general.name", gguf_scalar(std::string("tiny-test"))},
      {"smallthinker.context_length", gguf_scalar(uint32_t{4096})},
      {"smallthinker.embedding_length", gguf_scalar(uint32_t(t.n_embd))},
      {"smallthinker.block_count", gguf_scalar(uint32_t(t.n_layer))},
      {"smallthinker.attention.head_count", gguf_scalar(uint32_t(t.n_head))},
      {"smallthinker.attention.head_count_kv", gguf_scalar(uint32_t(t.n_head_kv))},
      {"smallthinker.attention.key_length", gguf_scalar(uint32_t(t.head_dim))},
      {"smallthinker.attention.value_length", gguf_scalar(uint32_t(t.head_dim))},
      {"smallthinker.attention.layer_norm_rms_epsilon", gguf_scalar(1e-6f)},
      {"smallthinker.expert_count", gguf_scalar(uint32_t(t.n_expert))},
      {"smallthinker.expert_used_count", gguf_scalar(uint32_t(t.n_expert_used))},
      {"smallthinker.expert_feed_forward_length", gguf_scalar(uint32_t(t.n_ff))},
      {"smallthinker.expert_gating_func", gguf_scalar(uint32_t{2})},
      {"smallthinker.rope.freq_base", gguf_scalar(1.5e6f)},
      {"tokenizer.ggml.tokens",
       gguf_array(std::vector<std::string>(static_cast<size_t>(t.n_vocab), "tok"))},
  };
  for (const auto& [k, v] : t.keys) {
    auto it = std::find_if(kv.begin(), kv.end(), [&](const auto& p) { return p.first == k; });
    if (it != kv.end()) kv.erase(it);
    if (v) kv.emplace_back(k, *v);
  }
  struct T {
    std::string name;
    std::array<int64_t, 4> ne;
    uint32_t n_dims;
  };
  const int64_t d = t.n_embd, q = t.n_head * t.head_dim, k = t.n_head_kv * t.head_dim;
  std::vector<T> ts = {{"token_embd.weight", {d, t.n_vocab, 1, 1}, 2},
                       {"output_norm.weight", {d, 1, 1, 1}, 1}};
  if (!t.tied) ts.push_back({"output.weight", {d, t.n_vocab, 1, 1}, 2});
  for (uint32_t il = 0; il < t.n_layer; ++il) {
    auto n = [&](const char* s) { return "blk." + std::to_string(il) + "." + s + ".weight"; };
    ts.push_back({n("attn_norm"), {d, 1, 1, 1}, 1});
    ts.push_back({n("attn_q"), {d, q, 1, 1}, 2});
    ts.push_back({n("attn_k"), {d, k, 1, 1}, 2});
    ts.push_back({n("attn_v"), {d, k, 1, 1}, 2});
    ts.push_back({n("attn_output"), {q, d, 1, 1}, 2});
    ts.push_back({n("ffn_norm"), {d, 1, 1, 1}, 1});
    ts.push_back({n("ffn_gate_inp"), {d, t.n_expert, 1, 1}, 2});
    ts.push_back({n("ffn_gate_exps"), {d, t.n_ff, t.n_expert, 1}, 3});
    ts.push_back({n("ffn_up_exps"), {d, t.n_ff, t.n_expert, 1}, 3});
    if (t.transposed_down) {
      ts.push_back({n("ffn_down_exps"), {d, t.n_ff, t.n_expert, 1}, 3});
    } else {
      ts.push_back({n("ffn_down_exps"), {t.n_ff, d, t.n_expert, 1}, 3});
    }
  }
  const auto path = dir / file;
  auto w = GgufWriter::create(path);
  REQUIRE(w.ok());
  for (const auto& [key, v] : kv) REQUIRE(w->set(key, v).ok());
  std::vector<size_t> sizes;
  for (auto& x : ts) {
    auto edit = t.tensors.find(x.name);
    if (edit != t.tensors.end()) {
      if (!edit->second) continue;
      x.ne = edit->second->first;
      x.n_dims = edit->second->second;
    }
    auto dt = t.dtypes.count(x.name) ? t.dtypes.at(x.name) : DType::f32;
    REQUIRE(w->add_tensor(x.name, dt, x.ne, x.n_dims).ok());
    sizes.push_back(dtype_row_size(dt, x.ne[0]) * static_cast<size_t>(x.ne[1] * x.ne[2] * x.ne[3]));
  }
  REQUIRE(w->begin_data().ok());
  for (size_t i = 0; i < sizes.size(); ++i) {
    REQUIRE(w->write_tensor_data(std::vector<uint8_t>(sizes[i], static_cast<uint8_t>(i))).ok());
  }
  REQUIRE(w->finish().ok());
  return path;
}

Status load_error(const Tiny& t) {
  test::TempDir dir("tandem-model");
  auto m = Model::load(write_tiny(dir, t));
  REQUIRE_FALSE(m.ok());
  return m.status();
}

}  // namespace

TEST_CASE("Model loads a tiny SmallThinker with llama.cpp defaults", "[model]") {
  test::TempDir dir("tandem-model");
  Tiny t;
  t.keys["smallthinker.attention.head_count_kv"] = std::nullopt;  // -> n_head
  t.keys["smallthinker.attention.value_length"] = std::nullopt;   // -> key_length
  t.keys["smallthinker.attention.key_length"] = std::nullopt;     // -> n_embd / n_head = 16
  t.keys["smallthinker.rope.freq_base"] = std::nullopt;           // -> 10000
  t.n_head_kv = 4;
  auto m = Model::load(write_tiny(dir, t));
  REQUIRE(m.ok());
  const ModelShape& s = m->shape();
  CHECK(s.n_embd == 64);
  CHECK(s.n_layer == 8);
  CHECK(s.n_head == 4);
  CHECK(s.n_head_kv == 4);
  CHECK(s.n_embd_head_k == 16);
  CHECK(s.n_embd_head_v == 16);
  CHECK(s.n_rot == 16);
  CHECK(s.rope_freq_base == 10000.0f);
  CHECK(s.rope_freq_base_swa == 10000.0f);
  CHECK(s.rms_norm_eps == 1e-6f);
  CHECK(s.n_vocab == 100);  // from tokenizer.ggml.tokens
  CHECK(s.n_expert == 4);
  CHECK(s.n_expert_used == 2);
  CHECK(s.n_ff_exp == 32);
  CHECK(s.gating == ExpertGating::sigmoid);
  CHECK(s.gating_from_file);
  CHECK_FALSE(s.swa);
  CHECK(s.tied_output);
  CHECK(s.down_layout == DownLayout::standard);
  CHECK(m->name() == "tiny-test");
  CHECK(m->content_hash().size() == 16);
  // Views: tied output is token_embd; expert slabs are where the file put them.
  const ModelWeights& w = m->weights();
  CHECK(w.output.data == w.token_embd.data);
  REQUIRE(w.layers.size() == 8);
  CHECK(w.layers[3].ffn_up_exps.ne == std::array<int64_t, 4>{64, 32, 4, 1});
  const GgufTensorInfo* up3 = m->file().find_tensor("blk.3.ffn_up_exps.weight");
  REQUIRE(up3 != nullptr);
  CHECK(w.layers[3].ffn_up_exps.data == m->file().tensor_bytes(*up3).data());
  CHECK(w.layers[3].ffn_up_exps.name == "blk.3.ffn_up_exps.weight");
}

TEST_CASE("Model reads explicit values, vocab_size and the content hash", "[model]") {
  test::TempDir dir("tandem-model");
  Tiny t;
  t.keys["smallthinker.vocab_size"] = gguf_scalar(uint32_t{100});
  t.keys["smallthinker.rope.freq_base_swa"] = gguf_scalar(5000.0f);
  t.keys["smallthinker.expert_gating_func"] = gguf_scalar(uint32_t{1});
  t.keys["smallthinker.rope.dimension_count"] = gguf_scalar(uint32_t{8});
  t.keys["general.name"] = std::nullopt;
  t.keys["smallthinker.attention.head_count_kv"] =
      gguf_array(std::vector<int32_t>(8, 2));  // per-layer, uniform
  t.tied = false;
  auto m = Model::load(write_tiny(dir, t));
  REQUIRE(m.ok());
  CHECK(m->shape().n_head_kv == 2);
  CHECK(m->shape().n_gqa() == 2);
  CHECK(m->shape().n_rot == 8);
  CHECK(m->shape().rope_freq_base == 1.5e6f);
  CHECK(m->shape().rope_freq_base_swa == 5000.0f);
  CHECK(m->shape().gating == ExpertGating::softmax);
  CHECK_FALSE(m->shape().tied_output);
  CHECK(m->weights().output.data != m->weights().token_embd.data);
  CHECK(m->weights().output.name == "output.weight");
  CHECK(m->name() == "tiny");  // the file stem

  // Same file content -> same hash; different tensor data -> different hash.
  auto again = Model::load(write_tiny(dir, t, "again.gguf"));
  REQUIRE(again.ok());
  CHECK(again->content_hash() == m->content_hash());
  Tiny t2 = t;
  t2.dtypes["blk.0.attn_q.weight"] = DType::f16;
  auto other = Model::load(write_tiny(dir, t2, "other.gguf"));
  REQUIRE(other.ok());
  CHECK(other->content_hash() != m->content_hash());
}

TEST_CASE("Model derives the SWA / NoPE layer pattern as llama.cpp", "[model]") {
  test::TempDir dir("tandem-model");
  SECTION("no sliding_window key: all layers full + RoPE") {
    auto m = Model::load(write_tiny(dir, Tiny{}));
    REQUIRE(m.ok());
    for (uint32_t il = 0; il < 8; ++il) {
      CHECK_FALSE(m->shape().is_swa(il));
      CHECK(m->shape().use_rope(il));
    }
  }
  SECTION("sliding_window 0 counts as absent") {
    Tiny t;
    t.keys["smallthinker.attention.sliding_window"] = gguf_scalar(uint32_t{0});
    auto m = Model::load(write_tiny(dir, t));
    REQUIRE(m.ok());
    CHECK_FALSE(m->shape().swa);
  }
  SECTION("sliding_window present: n_swa forced to 4096, dense first period 4") {
    Tiny t;
    t.keys["smallthinker.attention.sliding_window"] = gguf_scalar(uint32_t{123});
    t.keys["smallthinker.rope.freq_base_swa"] = gguf_scalar(7.0f);
    auto m = Model::load(write_tiny(dir, t));
    REQUIRE(m.ok());
    const ModelShape& s = m->shape();
    CHECK(s.swa);
    CHECK(s.n_swa == 4096);
    CHECK(s.swa_pattern == 4);
    for (uint32_t il = 0; il < 8; ++il) {
      INFO("layer " << il);
      CHECK(s.is_swa(il) == (il % 4 != 0));
      CHECK(s.use_rope(il) == (il % 4 != 0));
      CHECK(s.rope_base(il) == (il % 4 != 0 ? 7.0f : 1.5e6f));
    }
  }
  SECTION("sliding_window_pattern overrides the period (NoPE step stays 4)") {
    Tiny t;
    t.keys["smallthinker.attention.sliding_window"] = gguf_scalar(uint32_t{4096});
    t.keys["smallthinker.attention.sliding_window_pattern"] = gguf_scalar(uint32_t{2});
    auto m = Model::load(write_tiny(dir, t));
    REQUIRE(m.ok());
    CHECK(m->shape().swa_pattern == 2);
    CHECK(m->shape().is_swa(1));
    CHECK_FALSE(m->shape().is_swa(2));
    CHECK(m->shape().use_rope(2));
    CHECK_FALSE(m->shape().use_rope(4));
  }
}

TEST_CASE("Model detects transposed ffn_down_exps and missing gating", "[model]") {
  test::TempDir dir("tandem-model");
  Tiny t;
  t.transposed_down = true;
  t.keys["smallthinker.expert_gating_func"] = std::nullopt;
  auto m = Model::load(write_tiny(dir, t));
  REQUIRE(m.ok());
  CHECK(m->shape().down_layout == DownLayout::transposed);
  CHECK(m->weights().layers[0].ffn_down_exps.ne == std::array<int64_t, 4>{64, 32, 4, 1});
  CHECK(m->shape().gating == ExpertGating::sigmoid);
  CHECK_FALSE(m->shape().gating_from_file);
}

TEST_CASE("Model rejects bad files with clear errors", "[model]") {
  SECTION("wrong architecture") {
    Tiny t;
    t.keys["general.architecture"] = gguf_scalar(std::string("llama"));
    auto st = load_error(t);
    CHECK(st.code() == ErrorCode::unsupported);
    CHECK_THAT(st.message(), Contains("architecture 'llama' is not supported"));
  }
  SECTION("missing required key") {
    Tiny t;
    t.keys["smallthinker.attention.layer_norm_rms_epsilon"] = std::nullopt;
    CHECK_THAT(load_error(t).message(),
               Contains("key 'smallthinker.attention.layer_norm_rms_epsilon' not found"));
  }
  SECTION("key of the wrong type") {
    Tiny t;
    t.keys["smallthinker.block_count"] = gguf_scalar(int32_t{8});
    CHECK_THAT(load_error(t).message(), Contains("key 'smallthinker.block_count'") &&
                                            Contains("has type int32, expected uint32"));
  }
  SECTION("optional key of the wrong type") {
    Tiny t;
    t.keys["smallthinker.rope.freq_base"] = gguf_scalar(10000.0);
    CHECK_THAT(load_error(t).message(), Contains("has type float64, expected float32"));
  }
  SECTION("per-layer head counts that differ") {
    Tiny t;
    t.keys["smallthinker.attention.head_count"] =
        gguf_array(std::vector<uint32_t>{4, 4, 4, 4, 4, 4, 4, 2});
    CHECK_THAT(load_error(t).message(), Contains("differs between layers"));
  }
  SECTION("per-layer head counts of the wrong length") {
    Tiny t;
    t.keys["smallthinker.attention.head_count"] = gguf_array(std::vector<uint32_t>{4, 4});
    CHECK_THAT(load_error(t).message(), Contains("has 2 values but block_count is 8"));
  }
  SECTION("n_head not divisible by n_head_kv") {
    Tiny t;
    t.keys["smallthinker.attention.head_count_kv"] = gguf_scalar(uint32_t{3});
    CHECK_THAT(load_error(t).message(), Contains("n_head=4 is not a multiple of n_head_kv=3"));
  }
  SECTION("key_length missing where n_embd / n_head is not whole") {
    Tiny t;
    t.n_head = 3;
    t.n_head_kv = 3;
    t.keys["smallthinker.attention.key_length"] = std::nullopt;
    CHECK_THAT(load_error(t).message(),
               Contains("key_length is missing and n_embd=64 is not a multiple of n_head=3"));
  }
  SECTION("n_expert_used > n_expert") {
    Tiny t;
    t.keys["smallthinker.expert_used_count"] = gguf_scalar(uint32_t{5});
    CHECK_THAT(load_error(t).message(), Contains("n_expert_used <= n_expert"));
  }
  SECTION("unknown gating function") {
    Tiny t;
    t.keys["smallthinker.expert_gating_func"] = gguf_scalar(uint32_t{0});
    CHECK_THAT(load_error(t).message(), Contains("expert_gating_func = 0 is not supported"));
  }
  SECTION("no vocabulary size") {
    Tiny t;
    t.keys["tokenizer.ggml.tokens"] = std::nullopt;
    CHECK_THAT(load_error(t).message(), Contains("vocabulary size"));
  }
  SECTION("missing tensor") {
    Tiny t;
    t.tensors["blk.5.ffn_gate_exps.weight"] = std::nullopt;
    CHECK_THAT(load_error(t).message(), Contains("tensor 'blk.5.ffn_gate_exps.weight' is missing"));
  }
  SECTION("mis-shaped tensor") {
    Tiny t;
    t.tensors["blk.3.attn_k.weight"] = {{{64, 48, 1, 1}, 2}};
    CHECK_THAT(
        load_error(t).message(),
        Contains(
            "tensor 'blk.3.attn_k.weight' has shape [64, 48] but n_embd=64, n_head_kv*head_dim=32 "
            "requires [64, 32]"));
  }
  SECTION("mis-shaped down experts") {
    Tiny t;
    t.tensors["blk.0.ffn_down_exps.weight"] = {{{32, 64, 3, 1}, 3}};
    CHECK_THAT(load_error(t).message(),
               Contains("'blk.0.ffn_down_exps.weight' has shape [32, 64, 3]"));
  }
  SECTION("token_embd disagrees with the vocabulary") {
    Tiny t;
    t.keys["smallthinker.vocab_size"] = gguf_scalar(uint32_t{101});
    CHECK_THAT(load_error(t).message(),
               Contains("'token_embd.weight' has shape [64, 100] but n_embd=64, n_vocab=101"));
  }
  SECTION("norm that is not f32") {
    Tiny t;
    t.dtypes["blk.2.ffn_norm.weight"] = DType::f16;
    CHECK_THAT(load_error(t).message(),
               Contains("'blk.2.ffn_norm.weight' has dtype f16, expected f32"));
  }
  SECTION("quantized router") {
    Tiny t;
    t.dtypes["blk.1.ffn_gate_inp.weight"] = DType::q8_0;
    CHECK_THAT(load_error(t).message(), Contains("has dtype q8_0, expected f32 or f16"));
  }
  SECTION("block_count larger than the tensors allow") {
    Tiny t;
    t.keys["smallthinker.block_count"] = gguf_scalar(uint32_t{4000000000u});
    CHECK_THAT(load_error(t).message(), Contains("block_count=4000000000"));
  }
}

TEST_CASE("read_model_shape works on the metadata alone", "[model]") {
  test::TempDir dir("tandem-model");
  Tiny t;
  t.tensors["token_embd.weight"] = std::nullopt;  // tensors are not its business
  auto f = GgufFile::open(write_tiny(dir, t));
  REQUIRE(f.ok());
  auto s = read_model_shape(*f);
  REQUIRE(s.ok());
  CHECK(s->n_embd_k_gqa() == 32);
  CHECK(s->n_embd_q() == 64);
}
