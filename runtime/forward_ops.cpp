// The plain CPU ForwardOps. Scalar loops written so the compiler can vectorise them (several
// independent f32 accumulators, integer block dots); oneTBB splits work over output rows,
// (row, head) pairs or column chunks, never inside one output element, which keeps every
// result independent of the thread count and of how rows are grouped into ubatches.
#include "runtime/forward_ops.h"

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include <algorithm>
#include <cstring>
#include <cmath>
#include <vector>

#include "core/fp16.h"
#include "core/quant_blocks.h"
#include "cpu/expert_ffn.h"
#include "cpu/kernel_table.h"
#include "cpu/quants.h"

namespace tandem {
namespace {

// Eight partial sums: vectorisable without -ffast-math, and a fixed order.
float dot_f32(const float* a, const float* b, int64_t n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int l = 0; l < 8; ++l) acc[l] += a[i + l] * b[i + l];
  }
  float tail = 0.0f;
  for (; i < n; ++i) tail += a[i] * b[i];
  return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail;
}

// f16 -> f32 of block scales by table, as ggml's ggml_table_f32_f16: the bit-exact
// conversion has branches (subnormals) that would dominate the block dot products.
const float* f16_table() {
  static const std::vector<float> table = [] {
    std::vector<float> t(65536);
    for (uint32_t i = 0; i < 65536; ++i) t[i] = fp16_to_fp32(static_cast<uint16_t>(i));
    return t;
  }();
  return table.data();
}

// ggml_vec_dot_q4_0_q8_0 (generic): integer dot per block, scaled by both block scales.
float dot_q4_0_q8_0(const block_q4_0* x, const block_q8_0* y, int64_t nb) {
  const float* h = f16_table();
  float sum = 0.0f;
  for (int64_t b = 0; b < nb; ++b) {
    // Unpacked first so that the products form the same vectorisable loop as q8_0's.
    int8_t v[QK4_0];
    for (int j = 0; j < QK4_0 / 2; ++j) {
      v[j] = static_cast<int8_t>((x[b].qs[j] & 0x0f) - 8);
      v[j + QK4_0 / 2] = static_cast<int8_t>((x[b].qs[j] >> 4) - 8);
    }
    int32_t sumi = 0;
    for (int j = 0; j < QK4_0; ++j) sumi += v[j] * y[b].qs[j];
    sum += static_cast<float>(sumi) * h[x[b].d] * h[y[b].d];
  }
  return sum;
}

// ggml_vec_dot_q8_0_q8_0 (generic).
float dot_q8_0_q8_0(const block_q8_0* x, const block_q8_0* y, int64_t nb) {
  const float* h = f16_table();
  float sum = 0.0f;
  for (int64_t b = 0; b < nb; ++b) {
    int32_t sumi = 0;
    for (int j = 0; j < QK8_0; ++j) sumi += x[b].qs[j] * y[b].qs[j];
    sum += static_cast<float>(sumi) * (h[x[b].d] * h[y[b].d]);
  }
  return sum;
}

bool is_q8_0_dot_type(DType d) { return d == DType::q4_0 || d == DType::q8_0; }

// Rows per task: enough work per task to amortise scheduling, small enough to balance.
size_t row_grain(int64_t k, int64_t m) {
  const int64_t work = std::max<int64_t>(1, k * m);
  return static_cast<size_t>(std::clamp<int64_t>(16384 / work, 1, 64));
}

// The plain ops read rows as ggml lays them out, not repacked ones (runtime/convert.h).
Status check_ggml_layout(const TensorView& w, const char* op) {
  if (w.layout == RowLayout::ggml) return Status::success();
  return make_error(ErrorCode::invalid_argument,
                    "{}: {} is repacked as {} for the fast CPU kernels; the plain CPU ops read only ggml rows", op,
                    w.name, row_layout_name(w.layout));
}

class CpuOps final : public ForwardOps {
 public:
  std::string_view name() const override { return "cpu-plain"; }

  Status mul_mat(const TensorView& w, const float* x, int64_t m, float* y) override {
    const int64_t k = w.ne[0];
    const int64_t n = w.ne[1];
    TANDEM_RETURN_IF_ERROR(check_ggml_layout(w, "mul_mat"));
    if (k % dtype_block_size(w.dtype) != 0) {
      return make_error(ErrorCode::invalid_argument, "mul_mat: {} has ne0 = {}, not a multiple of the {} block",
                        w.name, k, dtype_name(w.dtype));
    }
    const size_t grain = row_grain(k, m);
    if (is_q8_0_dot_type(w.dtype)) {
      const int64_t nb = k / QK8_0;
      std::vector<block_q8_0> xq(static_cast<size_t>(m * nb));
      for (int64_t i = 0; i < m; ++i) cpu::quantize_row_q8_0(x + i * k, xq.data() + i * nb, k);
      const bool q4 = w.dtype == DType::q4_0;
      tbb::parallel_for(tbb::blocked_range<int64_t>(0, n, grain), [&](const tbb::blocked_range<int64_t>& r) {
        for (int64_t o = r.begin(); o < r.end(); ++o) {
          const uint8_t* row = w.row(o);
          for (int64_t i = 0; i < m; ++i) {
            const block_q8_0* xi = xq.data() + i * nb;
            y[i * n + o] = q4 ? dot_q4_0_q8_0(reinterpret_cast<const block_q4_0*>(row), xi, nb)
                              : dot_q8_0_q8_0(reinterpret_cast<const block_q8_0*>(row), xi, nb);
          }
        }
      });
      return Status::success();
    }
    if (w.dtype == DType::f32) {
      tbb::parallel_for(tbb::blocked_range<int64_t>(0, n, grain), [&](const tbb::blocked_range<int64_t>& r) {
        std::vector<float> buf;  // rows of a view at an odd byte offset (GGUF data is aligned)
        for (int64_t o = r.begin(); o < r.end(); ++o) {
          const uint8_t* raw = w.row(o);
          const float* row = reinterpret_cast<const float*>(raw);
          if (reinterpret_cast<uintptr_t>(raw) % alignof(float) != 0) {
            buf.resize(static_cast<size_t>(k));
            std::memcpy(buf.data(), raw, static_cast<size_t>(k) * sizeof(float));
            row = buf.data();
          }
          for (int64_t i = 0; i < m; ++i) y[i * n + o] = dot_f32(row, x + i * k, k);
        }
      });
      return Status::success();
    }
    // f16, bf16, q4_K, q6_K: the weight row converted to f32 once per task row.
    tbb::parallel_for(tbb::blocked_range<int64_t>(0, n, grain), [&](const tbb::blocked_range<int64_t>& r) {
      std::vector<float> buf(static_cast<size_t>(k));
      for (int64_t o = r.begin(); o < r.end(); ++o) {
        cpu::dequantize_row(w.dtype, w.row(o), buf.data(), k);
        for (int64_t i = 0; i < m; ++i) y[i * n + o] = dot_f32(buf.data(), x + i * k, k);
      }
    });
    return Status::success();
  }

  Status get_rows(const TensorView& w, const int32_t* ids, int64_t m, float* y) override {
    const int64_t k = w.ne[0];
    TANDEM_RETURN_IF_ERROR(check_ggml_layout(w, "get_rows"));
    for (int64_t i = 0; i < m; ++i) {
      if (ids[i] < 0 || ids[i] >= w.ne[1]) {
        return make_error(ErrorCode::invalid_argument, "get_rows: row {} out of range for {} ({} rows)", ids[i],
                          w.name, w.ne[1]);
      }
      cpu::dequantize_row(w.dtype, w.row(ids[i]), y + i * k, k);
    }
    return Status::success();
  }

  void rms_norm(const float* x, const float* weight, int64_t m, int64_t n, float eps, float* y) override {
    tbb::parallel_for(tbb::blocked_range<int64_t>(0, m, 8), [&](const tbb::blocked_range<int64_t>& r) {
      for (int64_t i = r.begin(); i < r.end(); ++i) {
        const float* xi = x + i * n;
        double sum = 0.0;
        for (int64_t j = 0; j < n; ++j) sum += static_cast<double>(xi[j]) * xi[j];
        const float mean = static_cast<float>(sum / static_cast<double>(n));
        const float scale = 1.0f / std::sqrt(mean + eps);
        float* yi = y + i * n;
        for (int64_t j = 0; j < n; ++j) yi[j] = (xi[j] * scale) * weight[j];
      }
    });
  }

  void rope_neox(float* x, const int32_t* pos, int64_t m, int64_t n_head, int64_t head_dim, int64_t n_rot,
                 float base) override {
    const int64_t half = n_rot / 2;
    tbb::parallel_for(tbb::blocked_range<int64_t>(0, m, 4), [&](const tbb::blocked_range<int64_t>& r) {
      std::vector<float> cs(static_cast<size_t>(half)), sn(static_cast<size_t>(half));
      for (int64_t i = r.begin(); i < r.end(); ++i) {
        // θ in f64 with a direct power, as cpu/reference: ggml's f32 running product drifts
        // by ~1e-4 rad at positions near 4096, which is visible against the reference.
        for (int64_t p = 0; p < half; ++p) {
          const double theta = static_cast<double>(pos[i]) *
                               std::pow(static_cast<double>(base), -2.0 * static_cast<double>(p) / static_cast<double>(n_rot));
          cs[static_cast<size_t>(p)] = static_cast<float>(std::cos(theta));
          sn[static_cast<size_t>(p)] = static_cast<float>(std::sin(theta));
        }
        for (int64_t h = 0; h < n_head; ++h) {
          float* v = x + (i * n_head + h) * head_dim;
          for (int64_t p = 0; p < half; ++p) {
            const float x0 = v[p];
            const float x1 = v[p + half];
            v[p] = x0 * cs[static_cast<size_t>(p)] - x1 * sn[static_cast<size_t>(p)];
            v[p + half] = x0 * sn[static_cast<size_t>(p)] + x1 * cs[static_cast<size_t>(p)];
          }
        }
      }
    });
  }

  void attention(const float* q, const int32_t* pos, int64_t m, int64_t n_head, const KvLayerView& kv, float scale,
                 float* out) override {
    const int64_t hd = kv.head_dim;
    const int64_t n_gqa = n_head / kv.n_head_kv;
    const bool f16 = kv.type == DType::f16;
    tbb::parallel_for(tbb::blocked_range<int64_t>(0, m * n_head, 1), [&](const tbb::blocked_range<int64_t>& r) {
      std::vector<float> s;
      std::vector<float> row(static_cast<size_t>(hd));
      std::vector<float> acc(static_cast<size_t>(hd));
      for (int64_t task = r.begin(); task < r.end(); ++task) {
        const int64_t i = task / n_head;
        const int64_t h = task % n_head;
        const int64_t hk = h / n_gqa;
        const int64_t p = pos[i];
        const int64_t lo = kv.n_swa ? std::max<int64_t>(0, p - kv.n_swa + 1) : 0;
        const float* qi = q + (i * n_head + h) * hd;
        auto load = [&](const uint8_t* cell) -> const float* {
          const uint8_t* src = cell + static_cast<size_t>(hk) * dtype_row_size(kv.type, hd);
          if (!f16) return reinterpret_cast<const float*>(src);
          cpu::convert_row_f16_to_f32(src, row.data(), hd);
          return row.data();
        };
        s.resize(static_cast<size_t>(p - lo + 1));
        float mx = -INFINITY;
        for (int64_t j = lo; j <= p; ++j) {
          const float v = dot_f32(qi, load(kv.k_cell(j)), hd) * scale;
          s[static_cast<size_t>(j - lo)] = v;
          mx = std::max(mx, v);
        }
        double sum = 0.0;
        for (float& v : s) {
          v = std::exp(v - mx);
          sum += v;
        }
        const float inv = static_cast<float>(1.0 / sum);
        std::fill(acc.begin(), acc.end(), 0.0f);
        for (int64_t j = lo; j <= p; ++j) {
          const float pj = s[static_cast<size_t>(j - lo)] * inv;
          const float* vj = load(kv.v_cell(j));
          for (int64_t d = 0; d < hd; ++d) acc[static_cast<size_t>(d)] += pj * vj[d];
        }
        std::copy(acc.begin(), acc.end(), out + (i * n_head + h) * hd);
      }
    });
  }

  Status moe(const MoeArgs& a, float* out, std::span<uint64_t> gate_active) override {
    for (const TensorView* t : {a.gate_exps, a.up_exps, a.down_exps}) TANDEM_RETURN_IF_ERROR(check_ggml_layout(*t, "moe"));
    const int64_t d = a.n_embd;
    const int64_t n_ff = a.n_ff_exp;
    const int64_t k = a.n_expert_used;
    // Rows grouped by expert (ascending expert, then row), so each expert's weights are read
    // once per ubatch; y[(row, slot)] keeps every slot's output for the ordered sum below.
    std::vector<std::vector<std::pair<int64_t, int64_t>>> by_expert(static_cast<size_t>(a.n_expert));
    for (int64_t i = 0; i < a.n_rows; ++i) {
      for (int64_t s = 0; s < k; ++s) {
        const int32_t e = a.expert_ids[i * k + s];
        if (e < 0 || e >= a.n_expert) {
          return make_error(ErrorCode::internal, "moe: expert id {} out of range [0, {})", e, a.n_expert);
        }
        by_expert[static_cast<size_t>(e)].push_back({i, s});
      }
    }
    std::vector<float> y(static_cast<size_t>(a.n_rows * k * d));
    std::vector<float> xe, g, u, ye;
    for (int64_t e = 0; e < a.n_expert; ++e) {
      const auto& rows = by_expert[static_cast<size_t>(e)];
      if (rows.empty()) continue;
      const int64_t me = static_cast<int64_t>(rows.size());
      xe.resize(static_cast<size_t>(me * d));
      for (int64_t r = 0; r < me; ++r)
        std::copy_n(a.x + rows[static_cast<size_t>(r)].first * d, d, xe.data() + r * d);
      g.resize(static_cast<size_t>(me * n_ff));
      u.resize(static_cast<size_t>(me * n_ff));
      TANDEM_RETURN_IF_ERROR(mul_mat(a.gate_exps->slice2(e), xe.data(), me, g.data()));
      TANDEM_RETURN_IF_ERROR(mul_mat(a.up_exps->slice2(e), xe.data(), me, u.data()));
      // g is (me, n_ff) row-major: element j belongs to neuron j % n_ff.
      uint32_t* per_neuron = a.gate_neuron_active != nullptr ? a.gate_neuron_active + e * n_ff : nullptr;
      uint64_t active = 0;
      for (size_t j = 0; j < g.size(); ++j) {
        // ggml_vec_reglu_f32: relu on the gate only.
        const bool on = g[j] > 0.0f;
        active += on ? 1 : 0;
        if (per_neuron != nullptr && on) ++per_neuron[j % static_cast<size_t>(n_ff)];
        g[j] = on ? g[j] * u[j] : 0.0f;
      }
      gate_active[static_cast<size_t>(e)] += active;
      ye.resize(static_cast<size_t>(me * d));
      const TensorView down = a.down_exps->slice2(e);
      if (a.down_layout == DownLayout::standard) {
        TANDEM_RETURN_IF_ERROR(mul_mat(down, g.data(), me, ye.data()));
      } else {
        down_transposed(down, g.data(), me, n_ff, d, ye.data());
      }
      for (int64_t r = 0; r < me; ++r) {
        const auto [row, slot] = rows[static_cast<size_t>(r)];
        std::copy_n(ye.data() + r * d, d, y.data() + (row * k + slot) * d);
      }
    }
    // Slot order, as llama.cpp sums the weighted expert views (spec §2.5).
    for (int64_t i = 0; i < a.n_rows; ++i) {
      float* oi = out + i * d;
      for (int64_t s = 0; s < k; ++s) {
        const float w = a.weights[i * k + s];
        const float* ys = y.data() + (i * k + s) * d;
        if (s == 0) {
          for (int64_t c = 0; c < d; ++c) oi[c] = w * ys[c];
        } else {
          for (int64_t c = 0; c < d; ++c) oi[c] += w * ys[c];
        }
      }
    }
    return Status::success();
  }

 private:
  // PowerInfer layout: row j of `down` (ne = [d, n_ff]) is what neuron j adds to the output.
  // q4_0 / q8_0 rows: y[r] = sum over chunks of k_ffn_chunk neurons (ascending) of the scalar
  // table's down_rows over the chunk's rows (8-bit coefficients act * d per chunk and column
  // block, kernel_table.h); every row of the chunk is listed, which gives the same bits as the
  // active ones only. Other dtypes: y[r] = sum_j act[r, j] * row_j in ascending j, split over
  // column chunks (block-aligned so that a chunk of a row dequantizes on its own); inactive
  // neurons are skipped.
  static void down_transposed(const TensorView& down, const float* act, int64_t m, int64_t n_ff, int64_t d,
                              float* y) {
    if (down.dtype == DType::q4_0 || down.dtype == DType::q8_0) {
      const cpu::KernelTable& ref = *cpu::kernels_for(cpu::Isa::scalar);
      const cpu::DownRowsFn down_rows = down.dtype == DType::q4_0 ? ref.down_rows_q4_0 : ref.down_rows_q8_0;
      tbb::parallel_for(int64_t{0}, m, [&](int64_t i) {
        std::vector<float> part(static_cast<size_t>(d));
        std::vector<int32_t> rows(static_cast<size_t>(cpu::k_ffn_chunk));
        float* yi = y + i * d;
        for (int64_t j0 = 0; j0 < n_ff; j0 += cpu::k_ffn_chunk) {
          const int64_t n = std::min(cpu::k_ffn_chunk, n_ff - j0);
          for (int64_t j = 0; j < n; ++j) rows[static_cast<size_t>(j)] = static_cast<int32_t>(j0 + j);
          down_rows(d, n, rows.data(), down.data, down.nb[1], act + i * n_ff, j0 == 0 ? yi : part.data());
          if (j0 > 0) {
            for (int64_t c = 0; c < d; ++c) yi[c] += part[static_cast<size_t>(c)];
          }
        }
      });
      return;
    }
    const int64_t blk = dtype_block_size(down.dtype);
    int64_t chunk = blk * std::max<int64_t>(1, 256 / blk);
    if (d % chunk != 0) chunk = d;
    const size_t blk_bytes = dtype_type_size(down.dtype);
    tbb::parallel_for(tbb::blocked_range<int64_t>(0, d / chunk, 1), [&](const tbb::blocked_range<int64_t>& r) {
      std::vector<float> buf(static_cast<size_t>(chunk));
      for (int64_t c = r.begin(); c < r.end(); ++c) {
        const int64_t c0 = c * chunk;
        for (int64_t i = 0; i < m; ++i) std::fill_n(y + i * d + c0, chunk, 0.0f);
        for (int64_t j = 0; j < n_ff; ++j) {
          bool any = false;
          for (int64_t i = 0; i < m && !any; ++i) any = act[i * n_ff + j] != 0.0f;
          if (!any) continue;
          cpu::dequantize_row(down.dtype, down.row(j) + static_cast<size_t>(c0 / blk) * blk_bytes, buf.data(), chunk);
          for (int64_t i = 0; i < m; ++i) {
            const float aj = act[i * n_ff + j];
            if (aj == 0.0f) continue;
            float* yi = y + i * d + c0;
            for (int64_t t = 0; t < chunk; ++t) yi[t] += aj * buf[static_cast<size_t>(t)];
          }
        }
      }
    });
  }
};

}  // namespace

std::unique_ptr<ForwardOps> make_cpu_ops() { return std::make_unique<CpuOps>(); }

}  // namespace tandem
