#include "cpu/expert_ffn.h"

#include <algorithm>
#include <cstring>
#include <string_view>

#include "core/quant_blocks.h"
#include "cpu/quants.h"

namespace tandem::cpu {
namespace {

bool is_q(DType d) { return d == DType::q4_0 || d == DType::q8_0; }

GemmFn gemm_for(const KernelTable& kt, const TensorView& w) {
  if (w.dtype == DType::q4_0) return w.layout == RowLayout::q4_0x16 ? kt.gemm_q4_0x16_q8_0 : kt.gemm_q4_0_q8_0;
  return kt.gemm_q8_0_q8_0;
}
Status check_matrix(const TensorView& t, const char* role, int64_t ne0, int64_t ne1) {
  if (!is_q(t.dtype)) {
    return make_error(ErrorCode::unsupported, "expert_ffn: {} tensor '{}' is {}, want q4_0 or q8_0", role, t.name,
                      dtype_name(t.dtype));
  }
  if (t.data == nullptr || t.ne[0] != ne0 || t.ne[1] != ne1 || t.ne[2] != 1 || t.ne[3] != 1) {
    return make_error(ErrorCode::invalid_argument,
                      "expert_ffn: {} tensor '{}' has ne=[{}, {}, {}, {}], want [{}, {}, 1, 1]", role, t.name,
                      t.ne[0], t.ne[1], t.ne[2], t.ne[3], ne0, ne1);
  }
  if (t.nb[1] < t.row_size()) {
    return make_error(ErrorCode::invalid_argument, "expert_ffn: {} tensor '{}' row stride {} < row size {}", role,
                      t.name, t.nb[1], t.row_size());
  }
  // Repacked rows (cpu/quants.h): q4_0x16 for gate and up (dotted with x), q4_0_split for the
  // transposed down (summed by down_rows).
  const bool is_down = std::string_view(role).starts_with("down");
  const bool transposed_down = std::string_view(role) == "down (transposed)";
  if ((t.layout == RowLayout::q4_0x16 && (t.dtype != DType::q4_0 || ne0 % k_q4_0x16_elems != 0 || is_down)) ||
      (t.layout == RowLayout::q4_0_split && (t.dtype != DType::q4_0 || !transposed_down))) {
    return make_error(ErrorCode::invalid_argument,
                      "expert_ffn: {} tensor '{}' is repacked as {}, which only q4_0 gate and up rows of a multiple "
                      "of {} elements (q4_0x16) or q4_0 transposed down rows (q4_0_split) may be",
                      role, t.name, row_layout_name(t.layout), k_q4_0x16_elems);
  }
  return Status::success();
}

}  // namespace

Status expert_ffn(const KernelTable& kt, const ExpertFfnWeights& w, FfnMode mode, const ExpertFfnBatch& b,
                  ExpertFfnWorkspace& ws, const ChunkRunner& runner, ExpertFfnStats* stats,
                  uint32_t* gate_neuron_active) {
  const int64_t n_embd = w.gate.ne[0];
  const int64_t n_ff = w.gate.ne[1];
  const bool transposed = w.down_layout == DownLayout::transposed;
  if (n_embd <= 0 || n_ff <= 0 || n_embd % QK8_0 != 0 || n_ff % QK8_0 != 0) {
    return make_error(ErrorCode::invalid_argument,
                      "expert_ffn: gate tensor '{}' ne=[{}, {}]: n_embd and n_ff must be positive multiples of 32",
                      w.gate.name, n_embd, n_ff);
  }
  TANDEM_RETURN_IF_ERROR(check_matrix(w.gate, "gate", n_embd, n_ff));
  TANDEM_RETURN_IF_ERROR(check_matrix(w.up, "up", n_embd, n_ff));
  TANDEM_RETURN_IF_ERROR(transposed ? check_matrix(w.down, "down (transposed)", n_embd, n_ff)
                                    : check_matrix(w.down, "down", n_ff, n_embd));
  if (w.up.dtype != w.gate.dtype) {
    return make_error(ErrorCode::unsupported, "expert_ffn: up tensor '{}' is {} but gate '{}' is {}", w.up.name,
                      dtype_name(w.up.dtype), w.gate.name, dtype_name(w.gate.dtype));
  }
  if (b.n_tok < 0 || (b.n_tok > 0 && (b.x == nullptr || b.acc == nullptr || b.route_w == nullptr ||
                                      b.x_stride < n_embd || b.acc_stride < n_embd))) {
    return make_error(ErrorCode::invalid_argument,
                      "expert_ffn: batch of {} tokens needs x, acc and route_w with strides >= n_embd {}", b.n_tok,
                      n_embd);
  }
  if (b.n_tok == 0) return Status::success();

  const int64_t T = b.n_tok;
  const size_t xrb = dtype_row_size(DType::q8_0, n_embd);
  const int64_t n_chunk = (n_ff + k_ffn_chunk - 1) / k_ffn_chunk;
  ws.xq.resize(xrb * static_cast<size_t>(T));
  ws.g.resize(static_cast<size_t>(T * n_ff));
  ws.u.resize(ws.g.size());
  ws.a.resize(ws.g.size());
  ws.active.resize(static_cast<size_t>(n_ff));
  ws.idx.resize(static_cast<size_t>(n_ff));
  ws.y.resize(static_cast<size_t>(T * n_embd));
  ws.n_idx.resize(static_cast<size_t>(n_chunk));
  ws.mask.resize(static_cast<size_t>(T * n_chunk));

  for (int64_t t = 0; t < T; ++t) kt.quantize_row_q8_0(b.x + t * b.x_stride, ws.xq.data() + t * xrb, n_embd);

  const GemmFn gemm_gu = gemm_for(kt, w.gate);
  const auto* gate = static_cast<const uint8_t*>(w.gate.data);
  const auto* up = static_cast<const uint8_t*>(w.up.data);
  const auto* down = static_cast<const uint8_t*>(w.down.data);
  const bool sparse = mode == FfnMode::sparse;
  const bool up_x16 = w.up.layout == RowLayout::q4_0x16;
  const GemmRowsFn gemm_rows_gu = w.up.dtype != DType::q4_0 ? kt.gemm_rows_q8_0_q8_0
                                  : up_x16                  ? kt.gemm_rows_q4_0x16_q8_0
                                                            : kt.gemm_rows_q4_0_q8_0;
  const DownRowsFn down_rows = w.down.dtype != DType::q4_0             ? kt.down_rows_q8_0
                               : w.down.layout == RowLayout::q4_0_split ? kt.down_rows_q4_0_split
                                                                        : kt.down_rows_q4_0;
  // Transposed down: y_t = sum over neuron chunks c (ascending) of part_c,t, where part_c,t =
  // down_rows over the chunk's rows whose gate is on for token t (8-bit coefficients a * d per
  // chunk and 32-column block, exact integer sums). One token: each chunk's part is made in its
  // task, right after its up rows, while the rows are in that core's cache. A batch: one task
  // per token goes through the chunks in order (phase 2; the active rows are cache-resident by
  // then, and no (chunk, token) buffer is needed). A token's lists and coefficients are the
  // same alone or in a batch, so are its bits.
  const bool pairs = sparse && T > 1;
  const GemmPairsFn gemm_pairs_gu =
      w.up.dtype != DType::q4_0 ? kt.gemm_pairs_q8_0_q8_0
      : up_x16                  ? kt.gemm_pairs_q4_0x16_q8_0
                                : kt.gemm_pairs_q4_0_q8_0;
  ws.n_pairs.resize(static_cast<size_t>(n_chunk));
  if (pairs) {
    ws.pair_off.resize(static_cast<size_t>(n_ff + n_chunk));
    ws.pair_tok.resize(static_cast<size_t>(n_ff * T));
  }
  if (transposed && T == 1) ws.part.resize(static_cast<size_t>(n_chunk * n_embd));

  // Phase 1, per neuron chunk: gate for all tokens, up for the active rows (a batch: only the
  // pairs whose gate is on), a = relu(g) * u, and (one token, transposed) the chunk's part of
  // the down.
  runner.parallel_for(n_chunk, [&](int64_t c) {
    const int64_t j0 = c * k_ffn_chunk, j1 = std::min(n_ff, j0 + k_ffn_chunk);
    float* g = ws.g.data();
    float* u = ws.u.data();
    float* a = ws.a.data();
    int32_t* idx = ws.idx.data() + j0;  // this chunk's active list lives in its own slice
    int64_t n_idx = 0;
    gemm_gu(n_embd, j1 - j0, gate + j0 * w.gate.nb[1], w.gate.nb[1], ws.xq.data(), xrb, T, g + j0, n_ff);
    // Per token, a bit per neuron of the chunk whose gate is on (contiguous scans of g); the
    // chunk's active list is their union (every neuron when dense). a starts at 0 and only the
    // (token, neuron) pairs whose gate is on are written below.
    uint64_t* mk = ws.mask.data() + c;  // token t's mask at mk[t * n_chunk]
    uint64_t any = 0;
    for (int64_t t = 0; t < T; ++t) {
      const float* gt = g + t * n_ff + j0;
      uint64_t m = 0;
      for (int64_t j = 0; j < j1 - j0; ++j) m |= static_cast<uint64_t>(gt[j] > 0.0f) << j;
      mk[t * n_chunk] = m;
      any |= m;
      std::fill(a + t * n_ff + j0, a + t * n_ff + j1, 0.0f);
      if (gate_neuron_active != nullptr) {  // this chunk's neurons only: no two chunks share an element
        for (; m != 0; m &= m - 1) gate_neuron_active[j0 + __builtin_ctzll(m)] += 1;
      }
    }
    if (!sparse) any = j1 - j0 == 64 ? ~uint64_t{0} : (uint64_t{1} << (j1 - j0)) - 1;
    for (int64_t j = j0; j < j1; ++j) {
      const bool on = (any >> (j - j0)) & 1;
      ws.active[j] = on;
      if (on) idx[n_idx++] = static_cast<int32_t>(j);
    }
    // The active rows are scattered, which the hardware prefetchers do not follow: ask for all
    // of this chunk's up (and transposed down) rows now, into L2 (tens of KiB), so their DRAM
    // latencies overlap each other instead of adding up row by row in the kernels below.
    const size_t up_bytes = w.up.row_size();
    const size_t down_bytes = transposed ? w.down.row_size() : 0;
    for (int64_t i = 0; i < n_idx; ++i) {
      const uint8_t* ur = up + static_cast<size_t>(idx[i]) * w.up.nb[1];
      for (size_t off = 0; off < up_bytes; off += 64) __builtin_prefetch(ur + off, 0, 2);
    }
    for (int64_t i = 0; i < n_idx; ++i) {
      const uint8_t* dr = down + static_cast<size_t>(idx[i]) * (transposed ? w.down.nb[1] : 0);
      for (size_t off = 0; off < down_bytes; off += 64) __builtin_prefetch(dr + off, 0, 2);
    }
    if (pairs) {
      // A batch: up only for the (neuron, token) pairs whose gate is on (PowerInfer's per-token
      // sparsity; the union of a batch's active neurons is most of them).
      int32_t* off = ws.pair_off.data() + j0 + c;  // n_idx + 1 entries of this chunk
      int32_t* tok = ws.pair_tok.data() + j0 * T;  // up to (j1 - j0) * T entries
      int32_t n = 0;
      off[0] = 0;
      for (int64_t i = 0; i < n_idx; ++i) {
        const int64_t bit = idx[i] - j0;
        for (int64_t t = 0; t < T; ++t)
          if ((mk[t * n_chunk] >> bit) & 1) tok[n++] = static_cast<int32_t>(t);
        off[i + 1] = n;
      }
      ws.n_pairs[static_cast<size_t>(c)] = n;
      gemm_pairs_gu(n_embd, n_idx, idx, off, tok, up, w.up.nb[1], ws.xq.data(), xrb, T, u, n_ff);
    } else {
      ws.n_pairs[static_cast<size_t>(c)] = n_idx * T;
      gemm_rows_gu(n_embd, n_idx, idx, up, w.up.nb[1], ws.xq.data(), xrb, T, u, n_ff);
    }
    // a = relu(g) * u where the gate is on (a is 0 elsewhere; u is not computed there).
    for (int64_t t = 0; t < T; ++t) {
      for (uint64_t m = mk[t * n_chunk]; m != 0; m &= m - 1) {
        const int64_t j = t * n_ff + j0 + __builtin_ctzll(m);
        a[j] = g[j] * u[j];
      }
    }
    ws.n_idx[static_cast<size_t>(c)] = n_idx;
    if (transposed && T == 1) down_rows(n_embd, n_idx, idx, down, w.down.nb[1], a, ws.part.data() + c * n_embd);
  });

  // Phase 2: the down's sums: one token's parts in chunk order; a batch's tokens, one task each,
  // through the chunks in order; or (standard layout) output rows, each written by one chunk.
  if (transposed && T == 1) {
    // y = part_0 + part_1 + ... (chunk order), then acc += route_w * y.
    float* y = ws.y.data();
    std::copy_n(ws.part.data(), n_embd, y);
    // y += 1 * part_c: an exact product, so the same bits as y += part_c, at the table's width.
    const float one = 1.0f;
    for (int64_t c = 1; c < n_chunk; ++c) kt.axpy_f32(n_embd, 1, &one, ws.part.data() + c * n_embd, y, 0);
    const float rw = b.route_w[0];
    for (int64_t i = 0; i < n_embd; ++i) b.acc[i] += rw * y[i];
  } else if (transposed) {
    // Per token: the same parts in the same order as alone, through one reused buffer.
    runner.parallel_for(T, [&](int64_t t) {
      thread_local std::vector<float> part_buf;
      part_buf.resize(static_cast<size_t>(n_embd));
      float* y = ws.y.data() + t * n_embd;
      for (int64_t c = 0; c < n_chunk; ++c) {
        int32_t rows[k_ffn_chunk];
        int64_t n = 0;
        for (uint64_t m = ws.mask[static_cast<size_t>(t * n_chunk + c)]; m != 0; m &= m - 1)
          rows[n++] = static_cast<int32_t>(c * k_ffn_chunk + __builtin_ctzll(m));
        down_rows(n_embd, n, rows, down, w.down.nb[1], ws.a.data() + t * n_ff, c == 0 ? y : part_buf.data());
        if (c > 0) {
          const float one = 1.0f;  // y += part, as above
          kt.axpy_f32(n_embd, 1, &one, part_buf.data(), y, 0);
        }
      }
      float* acc = b.acc + t * b.acc_stride;
      const float rw = b.route_w[t];
      for (int64_t i = 0; i < n_embd; ++i) acc[i] += rw * y[i];
    });
  } else {
    const size_t arb = dtype_row_size(DType::q8_0, n_ff);
    ws.aq.resize(arb * static_cast<size_t>(T));
    for (int64_t t = 0; t < T; ++t) kt.quantize_row_q8_0(ws.a.data() + t * n_ff, ws.aq.data() + t * arb, n_ff);
    const GemmFn gemm_d = gemm_for(kt, w.down);
    runner.parallel_for((n_embd + k_ffn_down_chunk - 1) / k_ffn_down_chunk, [&](int64_t oc) {
      const int64_t o0 = oc * k_ffn_down_chunk, o1 = std::min(n_embd, o0 + k_ffn_down_chunk);
      gemm_d(n_ff, o1 - o0, down + o0 * w.down.nb[1], w.down.nb[1], ws.aq.data(), arb, T, ws.y.data() + o0, n_embd);
      for (int64_t t = 0; t < T; ++t) {
        for (int64_t o = o0; o < o1; ++o) b.acc[t * b.acc_stride + o] += b.route_w[t] * ws.y[t * n_embd + o];
      }
    });
  }

  if (stats) {
    int64_t n_active = 0;
    for (int64_t j = 0; j < n_ff; ++j) n_active += ws.active[j] ? 1 : 0;
    stats->n_ff = n_ff;
    stats->n_active = n_active;
    stats->n_up_pairs = 0;
    for (int64_t c = 0; c < n_chunk; ++c) stats->n_up_pairs += ws.n_pairs[static_cast<size_t>(c)];
    const auto gate_bytes = static_cast<int64_t>(w.gate.row_size()) * n_ff;
    const auto up_row = static_cast<int64_t>(w.up.row_size());
    const auto down_bytes = static_cast<int64_t>(w.down.row_size()) * w.down.ne[1];
    stats->bytes_read = transposed ? gate_bytes + n_active * (up_row + static_cast<int64_t>(w.down.row_size()))
                                   : gate_bytes + n_active * up_row + down_bytes;
  }
  return Status::success();
}

}  // namespace tandem::cpu
