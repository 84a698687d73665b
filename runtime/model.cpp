// SmallThinker model loading: hyperparameters as llama.cpp's loader reads them
// (src/llama-model.cpp load_hparams + src/models/smallthinker.cpp, spec §3.2 and §2.4), then
// every tensor of spec §3.3 checked for presence, shape and dtype.
#include "runtime/model.h"

#include <algorithm>

#include "core/log.h"

namespace tandem {

namespace {

constexpr std::string_view k_arch = "smallthinker";

std::string key(std::string_view suffix) {
  return fmt::format("{}.{}", k_arch, suffix);
}

std::string format_ne(const std::array<int64_t, 4>& ne, uint32_t n_dims) {
  std::string s = "[";
  for (uint32_t i = 0; i < n_dims; ++i) s += fmt::format("{}{}", i ? ", " : "", ne[i]);
  return s + "]";
}

Result<uint32_t> required_u32(const GgufFile& f, std::string_view suffix) {
  return f.get_u32(key(suffix));
}

// An optional u32: absent -> fallback; present with another type -> the getter's type error.
Result<uint32_t> optional_u32(const GgufFile& f, std::string_view suffix, uint32_t fallback) {
  if (!f.has_key(key(suffix))) return fallback;
  return f.get_u32(key(suffix));
}

Result<float> optional_f32(const GgufFile& f, std::string_view suffix, float fallback) {
  if (!f.has_key(key(suffix))) return fallback;
  return f.get_f32(key(suffix));
}

// "u32 or per-layer array" keys (head counts): Tandem needs one value for all layers.
Result<uint32_t> uniform_u32(const GgufFile& f, std::string_view suffix, uint32_t n_layer) {
  // A scalar is the common case; materialising n_layer copies of it would let a hostile
  // block_count allocate gigabytes, so only real arrays (bounded by the file) are expanded.
  const GgufKv* kv = f.find_kv(key(suffix));
  if (kv == nullptr || kv->value.type != GgufType::array) return f.get_u32(key(suffix));
  if (kv->value.array_size() != n_layer) {
    return make_error(ErrorCode::invalid_file,
                      "{}: key '{}' at byte {} has {} values but block_count is {}",
                      f.path().string(), key(suffix), kv->offset, kv->value.array_size(), n_layer);
  }
  auto v = f.get_u32_or_array(key(suffix), n_layer);
  if (!v.ok()) return v.status();
  const auto& a = *v;
  if (a.empty())
    return make_error(ErrorCode::invalid_file, "{}: key '{}' is empty", f.path().string(),
                      key(suffix));
  if (std::any_of(a.begin(), a.end(), [&](uint32_t x) { return x != a[0]; })) {
    return make_error(ErrorCode::unsupported,
                      "{}: key '{}' differs between layers; per-layer values are not supported",
                      f.path().string(), key(suffix));
  }
  return a[0];
}

// One tensor expectation: the exact ne (ggml order) and the hyperparameters that imply it.
struct Expect {
  std::string name;
  std::array<int64_t, 4> ne;
  uint32_t n_dims;
  std::string because;
};

}  // namespace

Result<ModelShape> read_model_shape(const GgufFile& f) {
  const std::string file = f.path().string();
  auto arch = f.get_string("general.architecture");
  if (!arch.ok()) return arch.status();
  if (*arch != k_arch) {
    return make_error(ErrorCode::unsupported,
                      "{}: architecture '{}' is not supported (expected '{}')", file, *arch,
                      k_arch);
  }
  ModelShape s;
  TANDEM_ASSIGN_OR_RETURN(s.n_ctx_train, required_u32(f, "context_length"));
  TANDEM_ASSIGN_OR_RETURN(s.n_embd, required_u32(f, "embedding_length"));
  TANDEM_ASSIGN_OR_RETURN(s.n_layer, required_u32(f, "block_count"));
  if (s.n_embd == 0 || s.n_layer == 0) {
    return make_error(ErrorCode::invalid_file, "{}: n_embd={} and n_layer={} must be positive",
                      file, s.n_embd, s.n_layer);
  }
  TANDEM_ASSIGN_OR_RETURN(s.n_head, uniform_u32(f, "attention.head_count", s.n_layer));
  if (s.n_head == 0)
    return make_error(ErrorCode::invalid_file, "{}: {} is 0", file, key("attention.head_count"));
  // llama.cpp: head_count_kv defaults to head_count.
  if (f.has_key(key("attention.head_count_kv"))) {
    TANDEM_ASSIGN_OR_RETURN(s.n_head_kv, uniform_u32(f, "attention.head_count_kv", s.n_layer));
  } else {
    s.n_head_kv = s.n_head;
  }
  if (s.n_head_kv == 0 || s.n_head % s.n_head_kv != 0) {
    return make_error(ErrorCode::invalid_file, "{}: n_head={} is not a multiple of n_head_kv={}",
                      file, s.n_head, s.n_head_kv);
  }
  // llama.cpp: key_length defaults to n_embd / n_head, which is wrong whenever it is not whole
  // (the 21B has 2560 / 28): refuse to guess there.
  if (f.has_key(key("attention.key_length"))) {
    TANDEM_ASSIGN_OR_RETURN(s.n_embd_head_k, required_u32(f, "attention.key_length"));
  } else if (s.n_embd % s.n_head != 0) {
    return make_error(
        ErrorCode::invalid_file,
        "{}: {} is missing and n_embd={} is not a multiple of n_head={}, so head_dim is unknown",
        file, key("attention.key_length"), s.n_embd, s.n_head);
  } else {
    s.n_embd_head_k = s.n_embd / s.n_head;
  }
  TANDEM_ASSIGN_OR_RETURN(s.n_embd_head_v,
                          optional_u32(f, "attention.value_length", s.n_embd_head_k));
  TANDEM_ASSIGN_OR_RETURN(s.n_rot, optional_u32(f, "rope.dimension_count", s.n_embd_head_k));
  if (s.n_embd_head_k == 0 || s.n_embd_head_v == 0 || s.n_rot > s.n_embd_head_k ||
      s.n_rot % 2 != 0) {
    return make_error(ErrorCode::invalid_file,
                      "{}: key_length={}, value_length={}, rope.dimension_count={}: head sizes "
                      "must be positive and "
                      "n_rot even and <= key_length",
                      file, s.n_embd_head_k, s.n_embd_head_v, s.n_rot);
  }
  TANDEM_ASSIGN_OR_RETURN(s.n_expert, required_u32(f, "expert_count"));
  TANDEM_ASSIGN_OR_RETURN(s.n_expert_used, required_u32(f, "expert_used_count"));
  TANDEM_ASSIGN_OR_RETURN(s.n_ff_exp, required_u32(f, "expert_feed_forward_length"));
  if (s.n_expert == 0 || s.n_expert_used == 0 || s.n_expert_used > s.n_expert || s.n_ff_exp == 0) {
    return make_error(
        ErrorCode::invalid_file,
        "{}: n_expert={}, n_expert_used={}, n_ff_exp={}: need 0 < n_expert_used <= n_expert and "
        "n_ff_exp > 0",
        file, s.n_expert, s.n_expert_used, s.n_ff_exp);
  }
  TANDEM_ASSIGN_OR_RETURN(s.rms_norm_eps, f.get_f32(key("attention.layer_norm_rms_epsilon")));
  TANDEM_ASSIGN_OR_RETURN(s.rope_freq_base, optional_f32(f, "rope.freq_base", 10000.0f));
  TANDEM_ASSIGN_OR_RETURN(s.rope_freq_base_swa,
                          optional_f32(f, "rope.freq_base_swa", s.rope_freq_base));

  if (f.has_key(key("expert_gating_func"))) {
    TANDEM_ASSIGN_OR_RETURN(const uint32_t g, required_u32(f, "expert_gating_func"));
    if (g != static_cast<uint32_t>(ExpertGating::softmax) &&
        g != static_cast<uint32_t>(ExpertGating::sigmoid)) {
      return make_error(ErrorCode::unsupported,
                        "{}: {} = {} is not supported (1 softmax, 2 sigmoid)", file,
                        key("expert_gating_func"), g);
    }
    s.gating = static_cast<ExpertGating>(g);
    s.gating_from_file = true;
  } else {
    // PowerInfer's converter omits the key for sigmoid models; HF's default is sigmoid (spec §6.2).
    s.gating = ExpertGating::sigmoid;
    s.gating_from_file = false;
    log_warn("{}: {} is missing; assuming sigmoid gating (the HF default)", file,
             key("expert_gating_func"));
  }

  // Spec §2.4: presence of sliding_window > 0 switches on SWA + NoPE; the value is discarded.
  TANDEM_ASSIGN_OR_RETURN(const uint32_t window, optional_u32(f, "attention.sliding_window", 0));
  s.swa = window > 0;
  s.n_swa = s.swa ? 4096 : 0;
  TANDEM_ASSIGN_OR_RETURN(s.swa_pattern, optional_u32(f, "attention.sliding_window_pattern", 4));
  if (s.swa_pattern == 0) {
    return make_error(ErrorCode::invalid_file, "{}: {} is 0", file,
                      key("attention.sliding_window_pattern"));
  }

  if (f.has_key(key("vocab_size"))) {
    TANDEM_ASSIGN_OR_RETURN(s.n_vocab, required_u32(f, "vocab_size"));
  } else if (const GgufKv* tokens = f.find_kv("tokenizer.ggml.tokens")) {
    if (tokens->value.type != GgufType::array || tokens->value.array_type != GgufType::string) {
      return make_error(ErrorCode::invalid_file,
                        "{}: key 'tokenizer.ggml.tokens' at byte {} is not an array of string",
                        file, tokens->offset);
    }
    s.n_vocab = static_cast<uint32_t>(std::min<size_t>(tokens->value.array_size(), UINT32_MAX));
  } else {
    return make_error(ErrorCode::invalid_file,
                      "{}: neither {} nor tokenizer.ggml.tokens gives the vocabulary size", file,
                      key("vocab_size"));
  }
  if (s.n_vocab == 0)
    return make_error(ErrorCode::invalid_file, "{}: the vocabulary is empty", file);
  // Tensor-dependent fields (down_layout, tied_output) are filled by Model::from_file.
  return s;
}

Result<Model> Model::load(const std::filesystem::path& path, FileLoad load) {
  auto f = GgufFile::open(path, load);
  if (!f.ok()) return f.status();
  return from_file(std::move(f).value());
}

namespace {

uint64_t fnv1a(uint64_t h, std::span<const uint8_t> bytes) {
  for (uint8_t b : bytes) {
    h ^= b;
    h *= 0x100000001b3ull;
  }
  return h;
}

// Hash of everything before the data section plus the first and last 4 KiB of every tensor:
// catches re-quantisation and edited metadata without reading gigabytes.
std::string hash_content(const GgufFile& f) {
  constexpr size_t k_sample = 4096;
  const auto all = f.mapping();
  uint64_t h = 0xcbf29ce484222325ull;
  h = fnv1a(h, all.first(static_cast<size_t>(std::min<uint64_t>(f.data_offset(), all.size()))));
  for (const auto& t : f.tensors()) {
    const auto b = f.tensor_bytes(t);
    if (b.size() <= 2 * k_sample) {
      h = fnv1a(h, b);
    } else {
      h = fnv1a(h, b.first(k_sample));
      h = fnv1a(h, b.last(k_sample));
    }
  }
  return fmt::format("{:016x}", h);
}

}  // namespace

Result<Model> Model::from_file(GgufFile file) {
  Model m(std::move(file));
  const GgufFile& f = m.file_;
  const std::string fname = f.path().string();
  TANDEM_ASSIGN_OR_RETURN(m.shape_, read_model_shape(f));
  ModelShape& s = m.shape_;
  const int64_t d = s.n_embd;
  const int64_t V = s.n_vocab;

  auto get = [&](const Expect& e) -> Result<const GgufTensorInfo*> {
    const GgufTensorInfo* t = f.find_tensor(e.name);
    if (t == nullptr)
      return make_error(ErrorCode::invalid_file, "{}: tensor '{}' is missing", fname, e.name);
    std::array<int64_t, 4> want = {1, 1, 1, 1};
    for (uint32_t i = 0; i < e.n_dims; ++i) want[i] = e.ne[i];
    if (t->ne != want) {
      return make_error(ErrorCode::invalid_file, "{}: tensor '{}' has shape {} but {} requires {}",
                        fname, e.name, format_ne(t->ne, t->n_dims), e.because,
                        format_ne(want, e.n_dims));
    }
    return t;
  };
  auto require_dtype = [&](const GgufTensorInfo* t, std::initializer_list<DType> ok) -> Status {
    if (std::find(ok.begin(), ok.end(), t->dtype) != ok.end()) return {};
    std::string names;
    for (DType x : ok) names += fmt::format("{}{}", names.empty() ? "" : " or ", dtype_name(x));
    return make_error(ErrorCode::invalid_file, "{}: tensor '{}' has dtype {}, expected {}", fname,
                      t->name, dtype_name(t->dtype), names);
  };
  auto view = [&](const Expect& e, std::initializer_list<DType> dtypes = {}) -> Result<TensorView> {
    auto t = get(e);
    if (!t.ok()) return t.status();
    if (dtypes.size() != 0) TANDEM_RETURN_IF_ERROR(require_dtype(*t, dtypes));
    return f.tensor_view(**t);
  };
  const std::string by_embd = fmt::format("n_embd={}", d);
  const std::string by_vocab = fmt::format("n_embd={}, n_vocab={}", d, V);

  TANDEM_ASSIGN_OR_RETURN(m.weights_.token_embd,
                          view({"token_embd.weight", {d, V, 1, 1}, 2, by_vocab}));
  TANDEM_ASSIGN_OR_RETURN(m.weights_.output_norm,
                          view({"output_norm.weight", {d, 1, 1, 1}, 1, by_embd}, {DType::f32}));
  s.tied_output = f.find_tensor("output.weight") == nullptr;
  if (s.tied_output) {
    m.weights_.output = m.weights_.token_embd;
  } else {
    TANDEM_ASSIGN_OR_RETURN(m.weights_.output, view({"output.weight", {d, V, 1, 1}, 2, by_vocab}));
  }

  // 9 tensors per layer: a block_count beyond that is a lie we must not allocate for.
  if (s.n_layer > f.tensors().size() / 9) {
    return make_error(ErrorCode::invalid_file,
                      "{}: block_count={} needs {} layer tensors but the file holds {} tensors",
                      fname, s.n_layer, uint64_t{9} * s.n_layer, f.tensors().size());
  }
  const int64_t q = s.n_embd_q();
  const int64_t kv = s.n_embd_k_gqa();
  const int64_t vv = s.n_embd_v_gqa();
  const int64_t E = s.n_expert;
  const int64_t ff = s.n_ff_exp;
  m.weights_.layers.resize(s.n_layer);
  for (uint32_t il = 0; il < s.n_layer; ++il) {
    auto n = [&](std::string_view t) { return fmt::format("blk.{}.{}.weight", il, t); };
    LayerWeights& L = m.weights_.layers[il];
    TANDEM_ASSIGN_OR_RETURN(L.attn_norm,
                            view({n("attn_norm"), {d, 1, 1, 1}, 1, by_embd}, {DType::f32}));
    TANDEM_ASSIGN_OR_RETURN(L.ffn_norm,
                            view({n("ffn_norm"), {d, 1, 1, 1}, 1, by_embd}, {DType::f32}));
    TANDEM_ASSIGN_OR_RETURN(
        L.attn_q,
        view({n("attn_q"), {d, q, 1, 1}, 2, fmt::format("n_embd={}, n_head*head_dim={}", d, q)}));
    TANDEM_ASSIGN_OR_RETURN(L.attn_k,
                            view({n("attn_k"),
                                  {d, kv, 1, 1},
                                  2,
                                  fmt::format("n_embd={}, n_head_kv*head_dim={}", d, kv)}));
    TANDEM_ASSIGN_OR_RETURN(L.attn_v,
                            view({n("attn_v"),
                                  {d, vv, 1, 1},
                                  2,
                                  fmt::format("n_embd={}, n_head_kv*head_dim_v={}", d, vv)}));
    TANDEM_ASSIGN_OR_RETURN(L.attn_output,
                            view({n("attn_output"),
                                  {q, d, 1, 1},
                                  2,
                                  fmt::format("n_head*head_dim={}, n_embd={}", q, d)}));
    TANDEM_ASSIGN_OR_RETURN(
        L.ffn_gate_inp,
        view({n("ffn_gate_inp"), {d, E, 1, 1}, 2, fmt::format("n_embd={}, n_expert={}", d, E)},
             {DType::f32, DType::f16}));
    const std::string by_exp = fmt::format("n_embd={}, n_ff_exp={}, n_expert={}", d, ff, E);
    TANDEM_ASSIGN_OR_RETURN(L.ffn_gate_exps, view({n("ffn_gate_exps"), {d, ff, E, 1}, 3, by_exp}));
    TANDEM_ASSIGN_OR_RETURN(L.ffn_up_exps, view({n("ffn_up_exps"), {d, ff, E, 1}, 3, by_exp}));
    // Spec §3.4: standard [n_ff, d, E] or PowerInfer's transposed [d, n_ff, E] (= up's shape).
    // When n_ff == n_embd the two coincide; upstream's reading (standard) wins then.
    const GgufTensorInfo* down = f.find_tensor(n("ffn_down_exps"));
    DownLayout layout = DownLayout::standard;
    if (down != nullptr && ff != d && down->ne == std::array<int64_t, 4>{d, ff, E, 1}) {
      layout = DownLayout::transposed;
    }
    if (il > 0 && layout != s.down_layout) {
      return make_error(
          ErrorCode::unsupported, "{}: tensor '{}' is {} but layer 0's ffn_down_exps is {}", fname,
          n("ffn_down_exps"), layout == DownLayout::transposed ? "transposed" : "standard",
          s.down_layout == DownLayout::transposed ? "transposed" : "standard");
    }
    s.down_layout = layout;
    if (layout == DownLayout::standard) {
      TANDEM_ASSIGN_OR_RETURN(
          L.ffn_down_exps,
          view({n("ffn_down_exps"),
                {ff, d, E, 1},
                3,
                fmt::format("n_ff_exp={}, n_embd={}, n_expert={} (or transposed [{}, {}, {}])", ff,
                            d, E, d, ff, E)}));
    } else {
      TANDEM_ASSIGN_OR_RETURN(L.ffn_down_exps,
                              view({n("ffn_down_exps"), {d, ff, E, 1}, 3, by_exp}));
    }
  }

  if (f.has_key("general.name")) {
    TANDEM_ASSIGN_OR_RETURN(m.name_, f.get_string("general.name"));
  } else {
    m.name_ = f.path().stem().string();
  }
  m.content_hash_ = hash_content(f);
  return m;
}

}  // namespace tandem
