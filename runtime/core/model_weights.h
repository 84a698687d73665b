// ModelWeights: views of every SmallThinker tensor (spec §3.3), in ggml ne order.
// Filled by runtime/model.cpp from a GGUF file; read by cpu/reference, the fast CPU path
// and the GPU backend. Views only: the memory belongs to whoever filled them (the mapping).
#pragma once

#include <vector>

#include "core/model_shape.h"
#include "core/tensor_view.h"

namespace tandem {

struct LayerWeights {
  TensorView attn_norm;      // (n_embd) f32
  TensorView attn_q;         // (n_embd, n_head*head_dim)
  TensorView attn_k;         // (n_embd, n_head_kv*head_dim)
  TensorView attn_v;         // (n_embd, n_head_kv*head_dim)
  TensorView attn_output;    // (n_head*head_dim, n_embd)
  TensorView ffn_norm;       // (n_embd) f32
  TensorView ffn_gate_inp;   // (n_embd, n_expert) router, f32 in practice
  TensorView ffn_gate_exps;  // (n_embd, n_ff_exp, n_expert)
  TensorView ffn_up_exps;    // (n_embd, n_ff_exp, n_expert)
  TensorView ffn_down_exps;  // standard (n_ff_exp, n_embd, n_expert) or
                             // transposed (n_embd, n_ff_exp, n_expert): see ModelShape::down_layout
};

struct ModelWeights {
  TensorView token_embd;   // (n_embd, n_vocab)
  TensorView output_norm;  // (n_embd) f32
  TensorView output;       // (n_embd, n_vocab): output.weight, or token_embd when tied
  std::vector<LayerWeights> layers;
};

}  // namespace tandem
