#include "cpu/attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "core/fp16.h"

namespace tandem::cpu {
namespace {

// V cells in f16 are widened by table: the bit-exact conversion branches on subnormals, and
// the kernel table has no f16 axpy.
const float* f16_table() {
  static const std::vector<float> table = [] {
    std::vector<float> t(65536);
    for (uint32_t i = 0; i < 65536; ++i) t[i] = fp16_to_fp32(static_cast<uint16_t>(i));
    return t;
  }();
  return table.data();
}

struct Geometry {
  int64_t hd = 0;
  int64_t n_head = 0;
  int64_t n_head_kv = 0;
  int64_t n_gqa = 0;
  size_t row_bytes = 0;  // one kv head's row within a cell
  int64_t part = 0;      // floats of one chunk's partial: n_gqa x (acc[hd], m, l)
};

struct Scratch {
  std::vector<float> s, vrow, pj;
  std::vector<double> dacc;
  std::vector<float> parts;
};

// Per thread: tasks never nest, so one scratch per thread is never shared.
Scratch& scratch() {
  thread_local Scratch s;
  return s;
}

int64_t window_lo(const AttentionKv& kv, int64_t p) {
  return kv.n_swa > 0 ? std::max<int64_t>(0, p - kv.n_swa + 1) : 0;
}

// Partial of query row i, kv head hk over positions [j0, j1] (one chunk).
void compute_chunk(const KernelTable& kt, const AttentionKv& kv, const AttentionArgs& a, const Geometry& g, int64_t i,
                   int64_t hk, int64_t j0, int64_t j1, float* part) {
  Scratch& sc = scratch();
  const int64_t n = j1 - j0 + 1;
  const int64_t hd = g.hd;
  const size_t koff = static_cast<size_t>(hk) * g.row_bytes;
  sc.s.resize(static_cast<size_t>(g.n_gqa * k_attn_chunk));
  sc.vrow.resize(static_cast<size_t>(hd));
  sc.pj.resize(static_cast<size_t>(g.n_gqa));
  float* s = sc.s.data();
  const float* q = a.q + (i * g.n_head + hk * g.n_gqa) * hd;
  const bool f16 = kv.type == DType::f16;
  const GemmFn gemm = f16 ? kt.gemm_f16_f32 : kt.gemm_f32;
  // Scores of all n_gqa heads at once (each K row read once for the group); the ring may
  // wrap inside the chunk, which splits it into two runs of consecutive cells.
  for (int64_t done = 0; done < n;) {
    const int64_t cell = (j0 + done) % kv.n_cells;
    const int64_t len = std::min(n - done, kv.n_cells - cell);
    gemm(hd, len, kv.k + static_cast<size_t>(cell) * kv.cell_bytes + koff, kv.cell_bytes, q,
         static_cast<size_t>(hd) * sizeof(float), g.n_gqa, s + done, k_attn_chunk);
    done += len;
  }
  for (int64_t h = 0; h < g.n_gqa; ++h) {
    float* sh = s + h * k_attn_chunk;
    float mx = -std::numeric_limits<float>::infinity();
    for (int64_t j = 0; j < n; ++j) mx = std::max(mx, sh[j] * a.scale);
    kt.soft_max(n, sh, nullptr, a.scale, sh);
    float pmax = 0.0f;
    for (int64_t j = 0; j < n; ++j) pmax = std::max(pmax, sh[j]);
    float* ph = part + h * (hd + 2);
    std::fill_n(ph, hd, 0.0f);
    ph[hd] = mx;
    ph[hd + 1] = 1.0f / pmax;
  }
  const float* h16 = f16_table();
  for (int64_t j = 0; j < n; ++j) {
    bool any = false;
    for (int64_t h = 0; h < g.n_gqa; ++h) {
      sc.pj[static_cast<size_t>(h)] = s[h * k_attn_chunk + j];
      any = any || sc.pj[static_cast<size_t>(h)] != 0.0f;
    }
    if (!any) continue;  // underflowed for every head: adds nothing
    const uint8_t* vc = kv.v + static_cast<size_t>((j0 + j) % kv.n_cells) * kv.cell_bytes + koff;
    const void* vrow = vc;
    if (f16) {
      for (int64_t d = 0; d < hd; ++d) {
        uint16_t bits;
        std::memcpy(&bits, vc + 2 * d, 2);
        sc.vrow[static_cast<size_t>(d)] = h16[bits];
      }
      vrow = sc.vrow.data();
    }
    kt.axpy_f32(hd, g.n_gqa, sc.pj.data(), vrow, part, hd + 2);
  }
}

// Combines n_chunks consecutive partials (ascending chunks) into out for the
// n_gqa heads of one (row, kv head).
void merge(const Geometry& g, const float* parts, int64_t n_chunks, float* out) {
  const int64_t hd = g.hd;
  if (n_chunks == 1) {
    for (int64_t h = 0; h < g.n_gqa; ++h) std::copy_n(parts + h * (hd + 2), hd, out + h * hd);
    return;
  }
  Scratch& sc = scratch();
  sc.dacc.resize(static_cast<size_t>(hd));
  for (int64_t h = 0; h < g.n_gqa; ++h) {
    double mx = -std::numeric_limits<double>::infinity();
    for (int64_t c = 0; c < n_chunks; ++c) mx = std::max(mx, static_cast<double>(parts[c * g.part + h * (hd + 2) + hd]));
    std::fill(sc.dacc.begin(), sc.dacc.end(), 0.0);
    double den = 0.0;
    for (int64_t c = 0; c < n_chunks; ++c) {
      const float* ph = parts + c * g.part + h * (hd + 2);
      const double w = static_cast<double>(ph[hd + 1]) * std::exp(static_cast<double>(ph[hd]) - mx);
      den += w;
      for (int64_t d = 0; d < hd; ++d) sc.dacc[static_cast<size_t>(d)] += w * ph[d];
    }
    for (int64_t d = 0; d < hd; ++d) out[h * hd + d] = static_cast<float>(sc.dacc[static_cast<size_t>(d)] / den);
  }
}

struct ChunkTask {
  int64_t i, hk, c;  // row, kv head, absolute chunk index
  int64_t slot;      // partial slot
};

}  // namespace

Status attention(const KernelTable& kt, const AttentionKv& kv, const AttentionArgs& a, const ChunkRunner& runner) {
  if (kv.type != DType::f16 && kv.type != DType::f32) {
    return make_error(ErrorCode::unsupported, "attention: KV cache type {} (want f16 or f32)", dtype_name(kv.type));
  }
  if (a.m < 0 || a.n_head <= 0 || kv.n_head_kv <= 0 || kv.head_dim <= 0 || kv.n_cells <= 0 ||
      a.n_head % kv.n_head_kv != 0) {
    return make_error(ErrorCode::invalid_argument,
                      "attention: bad shape m {} n_head {} n_head_kv {} head_dim {} n_cells {} (n_head must be a "
                      "positive multiple of n_head_kv)",
                      a.m, a.n_head, kv.n_head_kv, kv.head_dim, kv.n_cells);
  }
  Geometry g;
  g.hd = kv.head_dim;
  g.n_head = a.n_head;
  g.n_head_kv = kv.n_head_kv;
  g.n_gqa = a.n_head / kv.n_head_kv;
  g.row_bytes = dtype_row_size(kv.type, kv.head_dim);
  g.part = g.n_gqa * (g.hd + 2);
  if (kv.cell_bytes < g.row_bytes * static_cast<size_t>(kv.n_head_kv)) {
    return make_error(ErrorCode::invalid_argument, "attention: cell of {} bytes cannot hold {} kv heads of {} bytes",
                      kv.cell_bytes, kv.n_head_kv, g.row_bytes);
  }
  if (a.m == 0) return Status::success();
  if (a.q == nullptr || a.pos == nullptr || a.out == nullptr || kv.k == nullptr || kv.v == nullptr) {
    return make_error(ErrorCode::invalid_argument, "attention: null q, pos, out or cache pointer");
  }
  std::vector<int64_t> first_chunk(static_cast<size_t>(a.m)), n_chunks(static_cast<size_t>(a.m));
  for (int64_t i = 0; i < a.m; ++i) {
    const int64_t p = a.pos[i];
    const int64_t lo = window_lo(kv, p);
    if (p < 0 || p - lo + 1 > kv.n_cells) {
      return make_error(ErrorCode::invalid_argument,
                        "attention: query row {} at position {} needs {} positions but the layer holds {} cells", i,
                        p, p - lo + 1, kv.n_cells);
    }
    first_chunk[static_cast<size_t>(i)] = lo / k_attn_chunk;
    n_chunks[static_cast<size_t>(i)] = p / k_attn_chunk - lo / k_attn_chunk + 1;
  }
  auto chunk_range = [&](int64_t i, int64_t c, int64_t& j0, int64_t& j1) {
    const int64_t p = a.pos[i];
    j0 = std::max(window_lo(kv, p), c * k_attn_chunk);
    j1 = std::min(p, c * k_attn_chunk + k_attn_chunk - 1);
  };
  auto out_of = [&](int64_t i, int64_t hk) { return a.out + (i * g.n_head + hk * g.n_gqa) * g.hd; };

  const int64_t n_pairs = a.m * kv.n_head_kv;
  const int64_t max_chunks = *std::max_element(n_chunks.begin(), n_chunks.end());
  if (n_pairs >= 8 || max_chunks == 1) {
    // Prompt: enough (row, kv head) pairs to share; each runs its chunks in order. A decode
    // row whose window is one chunk also runs here: one parallel region, not two.
    runner.parallel_for(n_pairs, [&](int64_t t) {
      const int64_t i = t / kv.n_head_kv, hk = t % kv.n_head_kv;
      const int64_t nc = n_chunks[static_cast<size_t>(i)];
      std::vector<float>& parts = scratch().parts;  // compute_chunk and merge use other fields
      parts.resize(static_cast<size_t>(nc * g.part));
      for (int64_t c = 0; c < nc; ++c) {
        int64_t j0 = 0, j1 = 0;
        chunk_range(i, first_chunk[static_cast<size_t>(i)] + c, j0, j1);
        compute_chunk(kt, kv, a, g, i, hk, j0, j1, parts.data() + c * g.part);
      }
      merge(g, parts.data(), nc, out_of(i, hk));
    });
    return Status::success();
  }
  // Decode: few pairs, so the chunks themselves are the tasks; partials merge afterwards.
  std::vector<ChunkTask> tasks;
  std::vector<int64_t> base(static_cast<size_t>(n_pairs));
  for (int64_t t = 0; t < n_pairs; ++t) {
    const int64_t i = t / kv.n_head_kv, hk = t % kv.n_head_kv;
    base[static_cast<size_t>(t)] = static_cast<int64_t>(tasks.size());
    for (int64_t c = 0; c < n_chunks[static_cast<size_t>(i)]; ++c)
      tasks.push_back({i, hk, first_chunk[static_cast<size_t>(i)] + c, static_cast<int64_t>(tasks.size())});
  }
  std::vector<float> parts(tasks.size() * static_cast<size_t>(g.part));
  runner.parallel_for(static_cast<int64_t>(tasks.size()), [&](int64_t t) {
    const ChunkTask& ct = tasks[static_cast<size_t>(t)];
    int64_t j0 = 0, j1 = 0;
    chunk_range(ct.i, ct.c, j0, j1);
    compute_chunk(kt, kv, a, g, ct.i, ct.hk, j0, j1, parts.data() + ct.slot * g.part);
  });
  runner.parallel_for(n_pairs, [&](int64_t t) {
    const int64_t i = t / kv.n_head_kv, hk = t % kv.n_head_kv;
    merge(g, parts.data() + base[static_cast<size_t>(t)] * g.part, n_chunks[static_cast<size_t>(i)], out_of(i, hk));
  });
  return Status::success();
}

}  // namespace tandem::cpu
