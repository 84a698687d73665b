// attention: causal multi-head attention of query rows against one layer's KV cache, for
// decode (one row) and prompt (many rows) alike (spec §2.3 GQA, causal mask; §2.4 sliding
// window). The same contract as ForwardOps::attention (runtime/forward_ops.h) and
// cpu::reference::attention_head, which are the plain versions it is tested against.
//
// For query row i at position p = pos[i] and query head h (kv head hk = h / (n_head /
// n_head_kv), consecutive q heads share a kv head as ggml's broadcast):
//   lo = n_swa ? max(0, p - n_swa + 1) : 0                    (window, spec §2.4)
//   s_j = scale * dot(q_ih, K[j, hk])            for j in [lo, p]   (causal, spec §2.3)
//   out_ih = sum_j softmax(s)_j V[j, hk]
// Position j lives in cell j % n_cells of the cache (full layers: n_cells >= n_ctx; window
// layers: a ring, see runtime/kv_cache.h). The kernel does not rotate anything: on RoPE
// layers q and K arrive rotated, on NoPE layers unrotated.
//
// How it is computed (fixed, so results do not depend on threads or on how rows are batched):
// [lo, p] is cut at multiples of k_attn_chunk absolute positions. Per chunk c and head:
// scores by the table's gemm over the chunk's K rows (f16 or f32 cells), m_c = max scaled
// score, p = KernelTable::soft_max of the chunk (normalised within the chunk), l_c = 1 /
// max(p) (= sum exp(s - m_c), since the top score's exp is 1), acc_c = sum p_j V_j by the
// table's axpy_f32 in ascending j (V f16 cells converted to f32 first). One chunk: out =
// acc_0. Several (flash-decoding's merge): w_c = l_c exp(m_c - M), M = max m_c, out =
// sum_c w_c acc_c / sum_c w_c in f64, chunks in ascending order. Decode splits the chunks
// over threads; prompts give each (row, kv head) to one task; both run the same chunk and
// merge code, so a row's output is bit-identical either way.
// Accuracy against the f64 reference: the table's soft_max bound (1e-5 relative) plus f32
// dot/axpy rounding; measured |out - ref| <= 8.2e-8 for |V| <= 1, tests use 1e-6.
//
// Shapes: q (m, n_head, head_dim) f32 row-major; out the same (ggml ne = [head_dim, n_head, m]).
// Errors (nothing written): invalid_argument for n_head not a multiple of n_head_kv, a
// position < 0, a window that does not fit the cells (p - lo + 1 > n_cells), zero sizes or
// a cell smaller than n_head_kv rows; unsupported for a cache type other than f16/f32.
// Threading: work runs on `runner`; re-entrant.
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/dtype.h"
#include "core/status.h"
#include "cpu/kernel_table.h"
#include "cpu/thread_pool.h"

namespace tandem::cpu {

// One layer of the cache as the kernel reads it (mirrors runtime's KvLayerView, which cpu/
// cannot include).
struct AttentionKv {
  const uint8_t* k = nullptr;  // (n_cells, n_head_kv, head_dim) of `type`
  const uint8_t* v = nullptr;  // (n_cells, n_head_kv, head_dim) of `type`
  DType type = DType::f16;     // f16 or f32
  int64_t n_cells = 0;
  int64_t n_head_kv = 0;
  int64_t head_dim = 0;
  size_t cell_bytes = 0;       // bytes of one cell's K (same for V)
  int64_t n_swa = 0;           // sliding window in positions; 0 = full attention
};

struct AttentionArgs {
  const float* q = nullptr;      // (m, n_head, head_dim)
  const int32_t* pos = nullptr;  // (m) absolute positions
  int64_t m = 0;
  int64_t n_head = 0;
  float scale = 1.0f;            // 1 / sqrt(head_dim) for SmallThinker
  float* out = nullptr;          // (m, n_head, head_dim)
};

// Positions per chunk (absolute, aligned): 256 keeps a chunk's scores and the K rows it
// reads in L1/L2 and gives decode enough chunks to share among threads at long contexts.
inline constexpr int64_t k_attn_chunk = 256;

Status attention(const KernelTable& kt, const AttentionKv& kv, const AttentionArgs& args, const ChunkRunner& runner);

}  // namespace tandem::cpu
