#include "runtime/forward_ops_fast.h"

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>
#include <tbb/partitioner.h>
#include <tbb/task_arena.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "core/log.h"
#include "core/quant_blocks.h"
#include "cpu/attention.h"
#include "cpu/expert_ffn.h"
#include "cpu/quants.h"
#include "cpu/thread_pool.h"

namespace tandem {
namespace {

// The ops run inside the caller's arena (Forward's -t), so chunks go to the current arena
// rather than to a pool of their own; simple_partitioner keeps one task per chunk.
class ArenaRunner final : public cpu::ChunkRunner {
 public:
  void parallel_for(int64_t n_chunks, const std::function<void(int64_t)>& fn) const override {
    if (n_chunks <= 0) return;
    if (n_chunks == 1 || tbb::this_task_arena::max_concurrency() == 1) {
      for (int64_t c = 0; c < n_chunks; ++c) fn(c);
      return;
    }
    tbb::parallel_for(
        tbb::blocked_range<int64_t>(0, n_chunks, 1),
        [&](const tbb::blocked_range<int64_t>& r) {
          for (int64_t c = r.begin(); c < r.end(); ++c) fn(c);
        },
        tbb::simple_partitioner());
  }
  int n_threads() const override { return tbb::this_task_arena::max_concurrency(); }
};

bool is_q8_0_dot(DType d) { return d == DType::q4_0 || d == DType::q8_0; }

// Weight rows per task, a multiple of 4 (the row tiles). Every row's dot product is the same
// whatever the chunking, so none of this can change a bit.
//  * A prompt's products (m > 1) are compute-bound: tasks of about 32 KiB of weights balance
//    the threads.
//  * A decode GEMV (m = 1) reads each weight once, and the hardware prefetchers and the
//    kernel's software prefetch start over with every task: tasks grow up to 128 KiB while
//    each thread still gets 2 of them (never below 32 KiB). On the 4b at 2 threads attn_q and
//    attn_output then run in 148-row tasks instead of 36, attn_k and attn_v in 64-row ones, and
//    generation is 4-6% faster (bench/RESULTS.md, session 10).
//  * No more than k_tasks_per_thread tasks per thread, so that the output head (151936 rows)
//    is not cut into thousands of tasks whose scheduling costs more than their reads.
constexpr int64_t k_tasks_per_thread = 32;
int64_t rows_per_chunk(size_t row_bytes, int64_t n_rows, int n_threads, int64_t m) {
  const int64_t nt = std::max(1, n_threads);
  const auto rows_of = [&](int64_t bytes) {
    return std::clamp<int64_t>(bytes / static_cast<int64_t>(std::max<size_t>(row_bytes, 1)) / 4 * 4, 4, 512);
  };
  int64_t by_bytes = rows_of(32768);
  if (m == 1) by_bytes = std::clamp<int64_t>(n_rows / (2 * nt) / 4 * 4, by_bytes, rows_of(131072));
  const int64_t max_tasks = k_tasks_per_thread * nt;
  const int64_t by_count = (n_rows + max_tasks - 1) / max_tasks;
  return std::max(by_bytes, (by_count + 3) / 4 * 4);
}

class FastOps final : public ForwardOps {
 public:
  explicit FastOps(const cpu::KernelTable& kt)
      : kt_(kt), plain_(make_cpu_ops()), name_("cpu-fast-" + std::string(cpu::isa_name(kt.isa))) {}

  std::string_view name() const override { return name_; }
  bool reads_q4_0x16() const override { return kt_.prefer_q4_0x16; }

  Status mul_mat(const TensorView& w, const float* x, int64_t m, float* y) override {
    const MatMulJob job{&w, x, m, y};
    return mul_mat_multi(std::span<const MatMulJob>(&job, 1));
  }

  Status mul_mat_multi(std::span<const MatMulJob> jobs) override {
    plans_.clear();
    if (xqs_.size() < jobs.size()) xqs_.resize(jobs.size());
    int64_t total = 0;
    for (size_t i = 0; i < jobs.size(); ++i) {
      Plan p;
      TANDEM_RETURN_IF_ERROR(plan(jobs[i], xqs_[i], p));
      if (p.plain) {
        TANDEM_RETURN_IF_ERROR(plain_->mul_mat(*jobs[i].w, jobs[i].x, jobs[i].m, jobs[i].y));
        continue;
      }
      if (p.n_chunks == 0) continue;
      p.first = total;
      total += p.n_chunks;
      plans_.push_back(p);
    }
    // One parallel region for every job's row chunks; a chunk's rows get the same kernel call
    // whichever region or thread runs them.
    runner_.parallel_for(total, [&](int64_t c) {
      size_t j = 0;
      while (c >= plans_[j].first + plans_[j].n_chunks) ++j;
      const Plan& p = plans_[j];
      const int64_t r0 = (c - p.first) * p.rows, nr = std::min(p.rows, p.n - r0);
      if (p.m == 1) {
        p.gemv(p.k, nr, p.w->row(r0), p.w->nb[1], p.xa, p.y + r0);
      } else {
        p.gemm(p.k, nr, p.w->row(r0), p.w->nb[1], p.xa, p.xrb, p.m, p.y + r0, p.n);
      }
    });
    return Status::success();
  }

  Status get_rows(const TensorView& w, const int32_t* ids, int64_t m, float* y) override {
    const int64_t k = w.ne[0];
    // A q4_0x16 row (a tied token_embd repacked for the head's GEMV) is unpacked first.
    const bool x16 = w.layout == RowLayout::q4_0x16 && w.dtype == DType::q4_0 && k % cpu::k_q4_0x16_elems == 0;
    if (w.layout != RowLayout::ggml && !x16) {
      return make_error(ErrorCode::invalid_argument,
                        "get_rows: {} is repacked as {} (get_rows reads ggml rows and q4_0 rows as q4_0x16)", w.name,
                        row_layout_name(w.layout));
    }
    for (int64_t i = 0; i < m; ++i) {
      if (ids[i] < 0 || ids[i] >= w.ne[1]) {
        return make_error(ErrorCode::invalid_argument, "get_rows: row {} out of range for {} ({} rows)", ids[i],
                          w.name, w.ne[1]);
      }
    }
    if (x16) {
      row_.resize(w.row_size());
      for (int64_t i = 0; i < m; ++i) {
        cpu::unpack_row_q4_0x16(w.row(ids[i]), row_.data(), k);
        cpu::dequantize_row(w.dtype, row_.data(), y + i * k, k);
      }
    } else {
      for (int64_t i = 0; i < m; ++i) cpu::dequantize_row(w.dtype, w.row(ids[i]), y + i * k, k);
    }
    counters_.weight_bytes += static_cast<uint64_t>(w.row_size()) * static_cast<uint64_t>(m);
    return Status::success();
  }

  void rms_norm(const float* x, const float* weight, int64_t m, int64_t n, float eps, float* y) override {
    constexpr int64_t k_rows = 8;
    runner_.parallel_for((m + k_rows - 1) / k_rows, [&](int64_t c) {
      for (int64_t i = c * k_rows; i < std::min(m, (c + 1) * k_rows); ++i) kt_.rms_norm(n, x + i * n, weight, eps, y + i * n);
    });
  }

  void rope_neox(float* x, const int32_t* pos, int64_t m, int64_t n_head, int64_t head_dim, int64_t n_rot,
                 float base) override {
    const int64_t half = n_rot / 2;
    // cos/sin per (row, pair) depend only on the positions, base and n_rot: a layer's K and Q
    // and every later layer with the same base reuse them (a decode token computed them twice
    // per RoPE layer before).
    const bool hit = rope_.base == base && rope_.n_rot == n_rot &&
                     rope_.pos.size() == static_cast<size_t>(m) && std::equal(pos, pos + m, rope_.pos.begin());
    if (!hit) {
      rope_.base = base;
      rope_.n_rot = n_rot;
      rope_.pos.assign(pos, pos + m);
      rope_.cs.resize(static_cast<size_t>(m * half));
      rope_.sn.resize(static_cast<size_t>(m * half));
    }
    constexpr int64_t k_rows = 4;
    runner_.parallel_for((m + k_rows - 1) / k_rows, [&](int64_t c) {
      for (int64_t i = c * k_rows; i < std::min(m, (c + 1) * k_rows); ++i) {
        float* cs = rope_.cs.data() + i * half;
        float* sn = rope_.sn.data() + i * half;
        if (!hit) {
          for (int64_t p = 0; p < half; ++p) {
            const double theta = static_cast<double>(pos[i]) * std::pow(static_cast<double>(base),
                                                                         -2.0 * static_cast<double>(p) / static_cast<double>(n_rot));
            cs[p] = static_cast<float>(std::cos(theta));
            sn[p] = static_cast<float>(std::sin(theta));
          }
        }
        for (int64_t h = 0; h < n_head; ++h) {
          float* v = x + (i * n_head + h) * head_dim;
          for (int64_t p = 0; p < half; ++p) {
            const float x0 = v[p], x1 = v[p + half];
            v[p] = x0 * cs[p] - x1 * sn[p];
            v[p + half] = x0 * sn[p] + x1 * cs[p];
          }
        }
      }
    });
  }

  void attention(const float* q, const int32_t* pos, int64_t m, int64_t n_head, const KvLayerView& kv, float scale,
                 float* out) override {
    const cpu::AttentionKv ckv{kv.k, kv.v, kv.type, kv.n_cells, kv.n_head_kv, kv.head_dim, kv.cell_bytes, kv.n_swa};
    const Status s = cpu::attention(kt_, ckv, cpu::AttentionArgs{q, pos, m, n_head, scale, out}, runner_);
    if (!s.ok()) {
      // The forward pass validates shapes first, so this is a bug; the plain op still answers.
      log_warn("fast attention refused ({}); using the plain op", s.message());
      plain_->attention(q, pos, m, n_head, kv, scale, out);
    }
  }

  Status moe(const MoeArgs& a, float* out, std::span<uint64_t> gate_active) override {
    const DType gd = a.gate_exps->dtype;
    if (!is_q8_0_dot(gd) || a.up_exps->dtype != gd || !is_q8_0_dot(a.down_exps->dtype)) return plain_moe(a, out, gate_active);
    const int64_t d = a.n_embd;
    const int64_t n_ff = a.n_ff_exp;
    const int64_t k = a.n_expert_used;
    by_expert_.assign(static_cast<size_t>(a.n_expert), {});
    for (int64_t i = 0; i < a.n_rows; ++i) {
      for (int64_t s = 0; s < k; ++s) {
        const int32_t e = a.expert_ids[i * k + s];
        if (e < 0 || e >= a.n_expert) {
          return make_error(ErrorCode::internal, "moe: expert id {} out of range [0, {})", e, a.n_expert);
        }
        by_expert_[static_cast<size_t>(e)].push_back(i * k + s);
      }
    }
    used_.clear();
    for (int64_t e = 0; e < a.n_expert; ++e)
      if (!by_expert_[static_cast<size_t>(e)].empty()) used_.push_back(e);
    if (experts_.size() < static_cast<size_t>(a.n_expert)) experts_.resize(static_cast<size_t>(a.n_expert));
    // Experts run concurrently, each splitting its own neuron chunks on the same arena
    // (nested): a decode token's few experts then cost one fork-join instead of two per
    // expert. Every expert has its own buffers, and expert_ffn's result does not depend on
    // the runner, so the schedule cannot change a bit.
    runner_.parallel_for(static_cast<int64_t>(used_.size()), [&](int64_t u) {
      const int64_t e = used_[static_cast<size_t>(u)];
      ExpertJob& job = experts_[static_cast<size_t>(e)];
      const auto& rs = by_expert_[static_cast<size_t>(e)];
      const int64_t me = static_cast<int64_t>(rs.size());
      job.xe.resize(static_cast<size_t>(me * d));
      job.acc.assign(static_cast<size_t>(me * d), 0.0f);
      job.rw.resize(static_cast<size_t>(me));
      for (int64_t r = 0; r < me; ++r) {
        const int64_t rs_r = rs[static_cast<size_t>(r)];
        std::copy_n(a.x + (rs_r / k) * d, d, job.xe.data() + r * d);
        job.rw[static_cast<size_t>(r)] = a.weights[rs_r];
      }
      job.counts.assign(static_cast<size_t>(n_ff), 0u);
      job.stats = {};
      const cpu::ExpertFfnWeights w{a.gate_exps->slice2(e), a.up_exps->slice2(e), a.down_exps->slice2(e),
                                    a.down_layout};
      // acc rows start at zero, so each holds exactly the rounded weight · output, as the
      // plain op's w * y.
      job.status = cpu::expert_ffn(kt_, w, cpu::FfnMode::sparse,
                                   cpu::ExpertFfnBatch{job.xe.data(), d, me, job.rw.data(), job.acc.data(), d}, job.ws,
                                   runner_, &job.stats, job.counts.data());
    });
    y_.resize(static_cast<size_t>(a.n_rows * k * d));
    for (int64_t e : used_) {
      ExpertJob& job = experts_[static_cast<size_t>(e)];
      TANDEM_RETURN_IF_ERROR(job.status);
      counters_.weight_bytes += static_cast<uint64_t>(job.stats.bytes_read);
      counters_.expert_bytes += static_cast<uint64_t>(job.stats.bytes_read);
      uint64_t active = 0;
      uint32_t* per_neuron = a.gate_neuron_active != nullptr ? a.gate_neuron_active + e * n_ff : nullptr;
      for (int64_t j = 0; j < n_ff; ++j) {
        active += job.counts[static_cast<size_t>(j)];
        if (per_neuron != nullptr) per_neuron[j] += job.counts[static_cast<size_t>(j)];
      }
      gate_active[static_cast<size_t>(e)] += active;
      const auto& rs = by_expert_[static_cast<size_t>(e)];
      for (size_t r = 0; r < rs.size(); ++r)
        std::copy_n(job.acc.data() + static_cast<int64_t>(r) * d, d, y_.data() + rs[r] * d);
    }
    // Slot order, as llama.cpp sums the weighted expert views (spec §2.5).
    constexpr int64_t k_rows = 8;
    runner_.parallel_for((a.n_rows + k_rows - 1) / k_rows, [&](int64_t c) {
      for (int64_t i = c * k_rows; i < std::min(a.n_rows, (c + 1) * k_rows); ++i) {
        float* oi = out + i * d;
        std::copy_n(y_.data() + i * k * d, d, oi);
        for (int64_t s = 1; s < k; ++s) {
          const float* ys = y_.data() + (i * k + s) * d;
          for (int64_t col = 0; col < d; ++col) oi[col] += ys[col];
        }
      }
    });
    return Status::success();
  }

  ForwardOpsCounters counters() const override { return counters_; }

  // One mul_mat job made ready to run: its kernel, its activations (quantized to q8_0 for
  // q4_0/q8_0 weights, as ggml), its row chunks. Unsupported dtypes go to the plain op.
  struct Plan {
    const TensorView* w = nullptr;
    float* y = nullptr;
    int64_t k = 0, n = 0, m = 0;
    cpu::GemvFn gemv = nullptr;
    cpu::GemmFn gemm = nullptr;
    const void* xa = nullptr;
    size_t xrb = 0;
    int64_t rows = 0, n_chunks = 0, first = 0;
    bool plain = false;
  };

  Status plan(const MatMulJob& job, std::vector<uint8_t>& xq, Plan& p) {
    const TensorView& w = *job.w;
    const int64_t k = w.ne[0];
    const int64_t n = w.ne[1];
    const int64_t m = job.m;
    if (k % dtype_block_size(w.dtype) != 0) {
      return make_error(ErrorCode::invalid_argument, "mul_mat: {} has ne0 = {}, not a multiple of the {} block",
                        w.name, k, dtype_name(w.dtype));
    }
    if (w.layout != RowLayout::ggml && w.layout != RowLayout::q4_0x16) {
      return make_error(ErrorCode::invalid_argument, "mul_mat: {} is repacked as {}, which only the expert down reads",
                        w.name, row_layout_name(w.layout));
    }
    switch (w.dtype) {
      case DType::q4_0:
        if (w.layout == RowLayout::q4_0x16) {
          p.gemv = kt_.gemv_q4_0x16_q8_0;
          p.gemm = kt_.gemm_q4_0x16_q8_0;
        } else {
          p.gemv = kt_.gemv_q4_0_q8_0;
          p.gemm = kt_.gemm_q4_0_q8_0;
        }
        break;
      case DType::q8_0: p.gemv = kt_.gemv_q8_0_q8_0; p.gemm = kt_.gemm_q8_0_q8_0; break;
      case DType::f16: p.gemv = kt_.gemv_f16_f32; p.gemm = kt_.gemm_f16_f32; break;
      case DType::bf16: p.gemv = kt_.gemv_bf16_f32; p.gemm = kt_.gemm_bf16_f32; break;
      case DType::f32: p.gemv = kt_.gemv_f32; p.gemm = kt_.gemm_f32; break;
      default: break;
    }
    if (p.gemv == nullptr) {
      p.plain = true;  // the plain op counts nothing: count its bytes here, as before
      counters_.weight_bytes += static_cast<uint64_t>(w.row_size()) * static_cast<uint64_t>(n);
      return Status::success();
    }
    counters_.weight_bytes += static_cast<uint64_t>(w.row_size()) * static_cast<uint64_t>(n);
    if (m <= 0 || n <= 0) return Status::success();
    p.w = &w;
    p.y = job.y;
    p.k = k;
    p.n = n;
    p.m = m;
    p.xa = job.x;
    p.xrb = static_cast<size_t>(k) * sizeof(float);
    if (is_q8_0_dot(w.dtype)) {
      p.xrb = dtype_row_size(DType::q8_0, k);
      xq.resize(p.xrb * static_cast<size_t>(m));
      for (int64_t i = 0; i < m; ++i)
        kt_.quantize_row_q8_0(job.x + i * k, xq.data() + static_cast<size_t>(i) * p.xrb, k);
      p.xa = xq.data();
    }
    p.rows = rows_per_chunk(w.row_size(), n, runner_.n_threads(), m);
    p.n_chunks = (n + p.rows - 1) / p.rows;
    return Status::success();
  }
  void reset_counters() override { counters_ = {}; }

 private:
  Status plain_moe(const MoeArgs& a, float* out, std::span<uint64_t> gate_active) {
    std::vector<bool> used(static_cast<size_t>(a.n_expert), false);
    for (int64_t i = 0; i < a.n_rows * a.n_expert_used; ++i) {
      const int32_t e = a.expert_ids[i];
      if (e >= 0 && e < a.n_expert) used[static_cast<size_t>(e)] = true;
    }
    uint64_t bytes = 0;
    for (int64_t e = 0; e < a.n_expert; ++e) {
      if (!used[static_cast<size_t>(e)]) continue;
      bytes += a.gate_exps->row_size() * static_cast<uint64_t>(a.gate_exps->ne[1]) +
               a.up_exps->row_size() * static_cast<uint64_t>(a.up_exps->ne[1]) +
               a.down_exps->row_size() * static_cast<uint64_t>(a.down_exps->ne[1]);
    }
    counters_.weight_bytes += bytes;
    counters_.expert_bytes += bytes;
    return plain_->moe(a, out, gate_active);
  }

  const cpu::KernelTable& kt_;
  std::unique_ptr<ForwardOps> plain_;
  std::string name_;
  ArenaRunner runner_;
  ForwardOpsCounters counters_;
  std::vector<std::vector<uint8_t>> xqs_;  // per mul_mat_multi job: x quantized to q8_0
  std::vector<Plan> plans_;
  struct RopeTable {  // rope_neox's cos/sin (m rows x n_rot/2) for the last positions asked
    float base = 0.0f;
    int64_t n_rot = 0;
    std::vector<int32_t> pos;
    std::vector<float> cs, sn;
  } rope_;
  std::vector<uint8_t> row_;  // get_rows: one q4_0x16 row unpacked
  // One expert's share of a moe call: its rows gathered, its output rows, its counts.
  struct ExpertJob {
    std::vector<float> xe, acc, rw;
    std::vector<uint32_t> counts;
    cpu::ExpertFfnWorkspace ws;
    cpu::ExpertFfnStats stats;
    Status status;
  };
  std::vector<std::vector<int64_t>> by_expert_;  // per expert: row * n_expert_used + slot
  std::vector<int64_t> used_;                    // experts with rows, ascending
  std::vector<ExpertJob> experts_;
  std::vector<float> y_;                         // (n_rows, n_expert_used, n_embd)
};

}  // namespace

std::unique_ptr<ForwardOps> make_fast_cpu_ops(const cpu::KernelTable& kt) { return std::make_unique<FastOps>(kt); }

}  // namespace tandem
