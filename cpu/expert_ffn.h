// One SmallThinker expert's FFN on a batch of tokens routed to it (spec §2.1, §2.5, §5.1):
//   g = W_gate x,  u = W_up x,  a = relu(g) * u  (ReGLU: relu on the gate only),
//   y = W_down a,  acc += route_w * y.
// x is quantized to q8_0 first (ggml's mul_mat with q4_0/q8_0 weights does the same).
//
// Shapes in ggml ne order, per expert (the slice2(e) of the *_exps tensors):
//   gate, up : ne = [n_embd, n_ff]    (n_ff rows of n_embd), q4_0 or q8_0; q4_0 rows may be
//              repacked (TensorView::layout q4_0x16, n_embd % 512 == 0: the kt's *_q4_0x16_*
//              entries, the same bits)
//   down     : standard   ne = [n_ff, n_embd] (n_embd rows of n_ff), q4_0 or q8_0
//              transposed ne = [n_embd, n_ff] (row j = the n_embd-vector neuron j adds); q4_0
//              rows may be repacked (layout q4_0_split: kt.down_rows_q4_0_split, the same bits)
//   batch.x  : (n_tok, n_embd) f32, already rms-normed and scaled by ffn_norm
//   batch.acc: (n_tok, n_embd) f32, y * route_w[t] is ADDED to row t
//
// Modes:
//   dense  — every row of gate, up and down is read (the comparison baseline).
//   sparse — PowerInfer's ReLU sparsity: gate is computed densely; neuron j is active when
//            g[t][j] > 0 for some token t of the batch; up is read only for active rows;
//            a[t][j] = relu(g) * u (0 for inactive j); in a batch, u[t][j] is computed only
//            where g[t][j] > 0 (kt.gemm_pairs: the same bits as the whole row would give). Down:
//            transposed: y_t = sum over neuron chunks (ascending) of kt.down_rows over the
//              chunk's rows whose gate is on for token t: 8-bit coefficients a * d (one scale
//              per chunk and 32-column block, like a q8_0 activation), exact integer sums.
//              Inactive rows are never read: bytes read ~ gate + active * (up row + down row).
//            standard: y[o] = sum_j down[o][j] * a_j needs every down row, so only up is
//              skipped (bytes read ~ gate + down + active * up row).
//   sparse equals dense up to the sign of zeros (inactive neurons contribute exact zeros).
//
// Tokens of the batch share every weight read (each row is read once for all n_tok).
// Threading: work is cut into fixed chunks of k_ffn_chunk neurons (gate, up; one token: also
// the transposed down's parts), then tokens (a batch's transposed down) or output rows
// (standard down). The transposed down's parts are added in chunk order, so the result is
// bit-identical on any ChunkRunner, and a token's result is the same alone or in a batch (its
// rows and coefficients do not depend on the other tokens).
// Precision: the transposed down rounds each coefficient a * d to 8 bits of its chunk and
// block's largest (error <= scale / 2 per term, the scale = max |a d| / 127); the standard
// down quantizes a to q8_0 (ggml). Both are the cost of an integer product, of a similar size.
// Errors: invalid_argument / unsupported naming the tensor, for shapes or dtypes that do not
// fit; nothing is written to acc then.
#pragma once

#include <cstdint>
#include <vector>

#include "core/model_shape.h"
#include "core/status.h"
#include "core/tensor_view.h"
#include "cpu/kernel_table.h"
#include "cpu/thread_pool.h"

namespace tandem::cpu {

struct ExpertFfnWeights {
  TensorView gate;
  TensorView up;
  TensorView down;
  DownLayout down_layout = DownLayout::standard;
};

struct ExpertFfnBatch {
  const float* x = nullptr;        // (n_tok, n_embd), rows x_stride floats apart
  int64_t x_stride = 0;
  int64_t n_tok = 0;
  const float* route_w = nullptr;  // (n_tok) routing weight of this expert per token
  float* acc = nullptr;            // (n_tok, n_embd), rows acc_stride floats apart
  int64_t acc_stride = 0;
};

enum class FfnMode { dense, sparse };

// Reusable scratch; grows to the largest call. One per concurrent caller.
struct ExpertFfnWorkspace {
  std::vector<uint8_t> xq;       // (n_tok) q8_0 rows of n_embd
  std::vector<float> g, u, a;    // (n_tok, n_ff)
  std::vector<uint8_t> active;   // (n_ff)
  std::vector<int32_t> idx;      // (n_ff) active neurons, listed per chunk
  std::vector<int64_t> n_idx;    // (n_chunk) active neurons per chunk
  std::vector<uint64_t> mask;    // (n_tok, n_chunk) bit j: gate of neuron 64 c + j on for token t
  std::vector<uint8_t> aq;       // (n_tok) q8_0 rows of n_ff (standard down)
  std::vector<float> y;          // (n_tok, n_embd)
  std::vector<float> part;       // (n_chunk, n_embd) per-chunk down sums (transposed, one token)
  std::vector<int32_t> pair_off; // (n_ff + n_chunk) per chunk: offsets of its rows' token lists
  std::vector<int32_t> pair_tok; // (n_ff * n_tok) tokens whose gate is on, per active row
  std::vector<int64_t> n_pairs;  // (n_chunk) up pairs computed
};

struct ExpertFfnStats {
  int64_t n_ff = 0;
  int64_t n_active = 0;      // neurons active for at least one token
  int64_t bytes_read = 0;    // weight bytes the call had to read
  int64_t n_up_pairs = 0;    // (neuron, token) up dot products computed (sparse batch: gate on only)
};

// Neurons per work chunk (fixed: results do not depend on the thread count).
inline constexpr int64_t k_ffn_chunk = 64;
static_assert(k_ffn_chunk <= 64, "a chunk's gate activity is one 64-bit mask per token");
// Output rows per chunk of the standard-layout down projection.
inline constexpr int64_t k_ffn_down_chunk = 128;
static_assert(k_ffn_chunk <= k_down_rows_max, "a chunk's rows are one down_rows call");

// gate_neuron_active (optional, n_ff): element j += the number of tokens t of the batch with
// g[t][j] > 0 (the per-neuron ReLU activity a profiler records; same count in both modes).
Status expert_ffn(const KernelTable& kt, const ExpertFfnWeights& w, FfnMode mode,
                  const ExpertFfnBatch& batch, ExpertFfnWorkspace& ws, const ChunkRunner& runner,
                  ExpertFfnStats* stats = nullptr, uint32_t* gate_neuron_active = nullptr);

}  // namespace tandem::cpu
