// flash_attn: causal (optionally sliding-window) attention of m query rows against a KV cache
// on the device, with GQA — ggml_flash_attn_ext with SmallThinker's mask (spec §2.3, §2.4).
//
// Shapes (ggml ne order), all contiguous:
//   q       [head_dim, n_head, m]        f32 (already rotated on RoPE layers; NoPE layers not)
//   k_cache [head_dim, n_head_kv, n_ctx] kv_type (f16 or f32); position p stored at column p
//   v_cache [head_dim, n_head_kv, n_ctx] kv_type
//   pos     [m] i32, a DEVICE buffer read by the shader: the positions of the query rows. A
//           recorded command buffer can be replayed for the next token after the host rewrites
//           pos (the dispatch sizes depend on n_ctx and m, never on pos).
//   dst     [head_dim, n_head, m]        f32
// Query row i, head h attends to cache positions j with j <= pos[i] and
// (n_swa == 0 or j > pos[i] - n_swa) (spec §2.4: the window holds the last n_swa positions,
// its own included; CPU reference: cpu/reference/ops.h kq_masked / attention_head), reading kv
// head h / (n_head / n_head_kv). s_j = dot(q, k_j) * scale; soft_max over j in f32 (online,
// flash-attention style); dst = sum_j softmax(s)_j v_j.
// A row whose pos is outside [0, n_ctx) is NaN (pos lives on the device: it cannot be checked
// when recording).
//
// Two forms, picked from m (flash_attn_uses_split):
//   decode (m <= k_flash_attn_split_max_rows): split-K. Pass 1 runs one workgroup per
//     (chunk of k_flash_attn_chunk cache positions, head block, row); a chunk outside the row's
//     window only writes an empty partial. Pass 2 combines the partials (max-rescaled sums)
//     into dst. Partials live in `scratch`.
//   prompt: one workgroup per (head block, row) walking the window in tiles of 64 positions
//     with an online soft_max; no scratch. (Each row reads K/V itself; sharing tiles across
//     query rows is a later optimisation.)
//   A head block is up to 8 query heads of one kv head (the largest divisor of the GQA ratio
//   n_head / n_head_kv that is <= 8: 6 for the 4B, 7 for the 21B), so K/V are read once per block.
// Limits: head_dim in [1, 256]; n_head a multiple of n_head_kv; m <= 65535 (one dispatch
// dimension); f16 caches need head_dim even. Variants "flash_attn_{f16,f32}_f32" and
// "flash_attn_combine_f32", plus (gpu/ops/shader_variant.h):
//   "..._subgroup"         the per-tile max / sum reductions through subgroupMax / subgroupAdd
//   "flash_attn_f16_f32_fp16"  f16 caches: q rounded to f16, Q.K in f16 pairs and P.V as f16
//                          products (p rounded to f16), both accumulated in f32; soft_max state
//                          in f32. NMSE ~1e-6 against f64 (flash_attn_test.cpp).
// Automatic: subgroup > portable (fp16 only on request, see shader_variant.h).
// Errors: invalid_argument for shapes or slices that do not fit (naming the operand),
// unsupported for another kv_type. Records only: the caller submits.
#pragma once

#include <cstdint>

#include "core/dtype.h"
#include "gpu/command_recorder.h"
#include "gpu/ops/shader_variant.h"

namespace tandem::gpu::ops {

inline constexpr int64_t k_flash_attn_split_max_rows = 8;
inline constexpr int64_t k_flash_attn_chunk = 64;  // cache positions per split-K chunk

inline bool flash_attn_uses_split(int64_t m) {
  return m <= k_flash_attn_split_max_rows;
}

Status flash_attn(CommandRecorder& rec, const BufferSlice& q, const BufferSlice& k_cache,
                  const BufferSlice& v_cache, DType kv_type, const BufferSlice& pos,
                  int64_t head_dim, int64_t n_head, int64_t n_head_kv, int64_t n_ctx, int64_t m,
                  uint32_t n_swa, float scale, const BufferSlice& scratch, const BufferSlice& dst,
                  ShaderVariant variant = ShaderVariant::automatic);

// The variants this device can run for `kv_type` (portable first).
std::vector<ShaderVariant> flash_attn_variants(const Device& device, DType kv_type);

// Bytes `scratch` must hold for these shapes: m * n_head * ceil(n_ctx / k_flash_attn_chunk) *
// (head_dim + 2) * 4 when the split form is used, else 0 (then scratch may be an empty slice).
uint64_t flash_attn_scratch_bytes(int64_t head_dim, int64_t n_head, int64_t n_ctx, int64_t m);

}  // namespace tandem::gpu::ops
