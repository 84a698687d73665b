#include <array>
#include <string>

#include "cpu/reference/forward.h"

namespace tandem::cpu::reference {
namespace {

std::string ne_str(const std::array<int64_t, 4>& ne) {
  return fmt::format("[{}, {}, {}, {}]", ne[0], ne[1], ne[2], ne[3]);
}

// `what` names the tensor when the view carries no GGUF name (e.g. built in a test).
Status check_tensor(const TensorView& t, std::string_view what, std::array<int64_t, 4> want) {
  const std::string name =
      t.name.empty() ? std::string(what) : fmt::format("{} ({})", t.name, what);
  if (t.data == nullptr)
    return make_error(ErrorCode::invalid_argument, "tensor {} has no data", name);
  const DTypeTraits* traits = dtype_traits(static_cast<uint32_t>(t.dtype));
  if (traits == nullptr)
    return make_error(ErrorCode::invalid_argument, "tensor {} has unsupported ggml type {}", name,
                      static_cast<uint32_t>(t.dtype));
  if (t.ne != want)
    return make_error(ErrorCode::invalid_argument, "tensor {} has ne {}, expected {}", name,
                      ne_str(t.ne), ne_str(want));
  if (t.ne[0] % traits->block_size != 0)
    return make_error(ErrorCode::invalid_argument,
                      "tensor {}: ne[0] = {} is not a multiple of the {} block size {}", name,
                      t.ne[0], traits->name, traits->block_size);
  const size_t row = t.row_size();
  // Only strides that are used are checked: a 1-D view may leave nb[1] unset.
  if (t.nb[0] != traits->type_size || (t.ne[1] > 1 && t.nb[1] < row) ||
      (t.ne[2] > 1 && t.nb[2] < t.nb[1] * static_cast<size_t>(t.ne[1])))
    return make_error(ErrorCode::invalid_argument,
                      "tensor {}: strides nb = [{}, {}, {}] do not fit rows of {} bytes", name,
                      t.nb[0], t.nb[1], t.nb[2], row);
  return Status::success();
}

Status check_shape(const ModelShape& s, size_t n_layers_given) {
  auto bad = [](std::string_view what) {
    return make_error(ErrorCode::invalid_argument, "model shape: {}", what);
  };
  if (s.n_vocab == 0 || s.n_embd == 0 || s.n_layer == 0)
    return bad("n_vocab, n_embd and n_layer must be > 0");
  if (s.n_layer != n_layers_given)
    return make_error(ErrorCode::invalid_argument,
                      "model shape: n_layer = {} but the weights have {} layers", s.n_layer,
                      n_layers_given);
  if (s.n_head == 0 || s.n_head_kv == 0 || s.n_head % s.n_head_kv != 0)
    return make_error(ErrorCode::invalid_argument,
                      "model shape: n_head = {} is not a positive multiple of n_head_kv = {}",
                      s.n_head, s.n_head_kv);
  if (s.n_embd_head_k == 0 || s.n_embd_head_v == 0)
    return bad("n_embd_head_k and n_embd_head_v must be > 0");
  if (s.n_rot == 0 || s.n_rot % 2 != 0 || s.n_rot > s.n_embd_head_k)
    return make_error(ErrorCode::invalid_argument,
                      "model shape: n_rot = {} must be even and in (0, n_embd_head_k = {}]",
                      s.n_rot, s.n_embd_head_k);
  if (s.n_expert == 0 || s.n_expert_used == 0 || s.n_expert_used > s.n_expert)
    return make_error(ErrorCode::invalid_argument,
                      "model shape: n_expert_used = {} is outside [1, n_expert = {}]",
                      s.n_expert_used, s.n_expert);
  if (s.n_ff_exp == 0) return bad("n_ff_exp must be > 0");
  if (s.gating != ExpertGating::sigmoid && s.gating != ExpertGating::softmax)
    return make_error(ErrorCode::invalid_argument,
                      "model shape: expert_gating_func = {} is neither softmax (1) nor sigmoid (2)",
                      static_cast<uint32_t>(s.gating));
  if (s.swa && s.n_swa == 0) return bad("swa is on but n_swa = 0 (every key would be masked)");
  if (s.down_layout != DownLayout::standard && s.down_layout != DownLayout::transposed)
    return bad("unknown ffn_down_exps layout");
  return Status::success();
}

}  // namespace

Status check_model(const ModelShape& s, const ModelWeights& w) {
  TANDEM_RETURN_IF_ERROR(check_shape(s, w.layers.size()));
  const int64_t d = s.n_embd;
  const int64_t V = s.n_vocab;
  const int64_t n_ff = s.n_ff_exp;
  const int64_t nE = s.n_expert;
  TANDEM_RETURN_IF_ERROR(check_tensor(w.token_embd, "token_embd", {d, V, 1, 1}));
  TANDEM_RETURN_IF_ERROR(check_tensor(w.output_norm, "output_norm", {d, 1, 1, 1}));
  TANDEM_RETURN_IF_ERROR(check_tensor(w.output, "output", {d, V, 1, 1}));
  for (size_t il = 0; il < w.layers.size(); ++il) {
    const LayerWeights& L = w.layers[il];
    auto n = [&](std::string_view t) { return fmt::format("blk.{}.{}", il, t); };
    const std::array<int64_t, 4> down = s.down_layout == DownLayout::standard
                                            ? std::array<int64_t, 4>{n_ff, d, nE, 1}
                                            : std::array<int64_t, 4>{d, n_ff, nE, 1};
    TANDEM_RETURN_IF_ERROR(check_tensor(L.attn_norm, n("attn_norm"), {d, 1, 1, 1}));
    TANDEM_RETURN_IF_ERROR(check_tensor(L.attn_q, n("attn_q"), {d, s.n_embd_q(), 1, 1}));
    TANDEM_RETURN_IF_ERROR(check_tensor(L.attn_k, n("attn_k"), {d, s.n_embd_k_gqa(), 1, 1}));
    TANDEM_RETURN_IF_ERROR(check_tensor(L.attn_v, n("attn_v"), {d, s.n_embd_v_gqa(), 1, 1}));
    TANDEM_RETURN_IF_ERROR(
        check_tensor(L.attn_output, n("attn_output"),
                     {static_cast<int64_t>(s.n_head) * s.n_embd_head_v, d, 1, 1}));
    TANDEM_RETURN_IF_ERROR(check_tensor(L.ffn_norm, n("ffn_norm"), {d, 1, 1, 1}));
    TANDEM_RETURN_IF_ERROR(check_tensor(L.ffn_gate_inp, n("ffn_gate_inp"), {d, nE, 1, 1}));
    TANDEM_RETURN_IF_ERROR(check_tensor(L.ffn_gate_exps, n("ffn_gate_exps"), {d, n_ff, nE, 1}));
    TANDEM_RETURN_IF_ERROR(check_tensor(L.ffn_up_exps, n("ffn_up_exps"), {d, n_ff, nE, 1}));
    TANDEM_RETURN_IF_ERROR(check_tensor(L.ffn_down_exps, n("ffn_down_exps"), down));
  }
  return Status::success();
}

}  // namespace tandem::cpu::reference
