// The GPU executor's graph for one ubatch (Forward::eval_ubatch op for op, spec §2.1), each
// op paired with its CPU recomputation for the shadow check (gpu_check.h).
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <initializer_list>
#include <limits>
#include <numeric>

#include "core/fp16.h"
#include "gpu/ops/add.h"
#include "gpu/ops/flash_attn.h"
#include "gpu/ops/get_rows.h"
#include "gpu/ops/moe_sum.h"
#include "gpu/ops/mul_mat.h"
#include "gpu/ops/mul_mat_id.h"
#include "gpu/ops/mul_mat_vec.h"
#include "gpu/ops/mul_mat_vec_id.h"
#include "gpu/ops/mul_mat_vec_t_id.h"
#include "gpu/ops/reglu.h"
#include "gpu/ops/rms_norm.h"
#include "gpu/ops/rope.h"
#include "gpu/ops/set_rows.h"
#include "gpu/ops/top_k.h"
#include "runtime/gpu_executor_state.h"

// As TANDEM_RETURN_IF_ERROR, for steps whose lambdas use it themselves (no shadowing).
#define GPU_STEP(expr)                                                \
  do {                                                                \
    if (::tandem::Status step_status_ = (expr); !step_status_.ok()) { \
      return step_status_;                                            \
    }                                                                 \
  } while (0)

namespace tandem {
namespace {

using Bytes = GpuChecker::Bytes;
using In = std::span<const Bytes>;
namespace ops = gpu::ops;

// Rows [row0, row0 + rows) of a row-major f32 matrix with `cols` columns.
gpu::BufferSlice rows_f32(const gpu::Buffer& b, int64_t row0, int64_t rows, int64_t cols) {
  return b.slice(static_cast<uint64_t>(row0 * cols) * 4, static_cast<uint64_t>(rows * cols) * 4);
}

}  // namespace

void route_row(ExpertGating gating, const float* lg, int64_t ne, int64_t k, int32_t* ids,
               float* weights) {
  std::vector<float> p(static_cast<size_t>(ne));
  if (gating == ExpertGating::softmax) {
    const float mx = *std::max_element(lg, lg + ne);
    double sum = 0.0;
    std::vector<double> e(static_cast<size_t>(ne));
    for (int64_t j = 0; j < ne; ++j)
      sum += e[static_cast<size_t>(j)] = std::exp(static_cast<double>(lg[j]) - mx);
    for (int64_t j = 0; j < ne; ++j)
      p[static_cast<size_t>(j)] = static_cast<float>(e[static_cast<size_t>(j)] / sum);
  } else {
    for (int64_t j = 0; j < ne; ++j)
      p[static_cast<size_t>(j)] =
          static_cast<float>(1.0 / (1.0 + std::exp(-static_cast<double>(lg[j]))));
  }
  auto key = [&](int32_t j) {
    const float v = p[static_cast<size_t>(j)];
    return std::isnan(v) ? -std::numeric_limits<float>::infinity() : v;
  };
  std::vector<int32_t> idx(static_cast<size_t>(ne));
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(), [&](int32_t a, int32_t b) { return key(a) > key(b); });
  double sum = 0.0;
  for (int64_t s = 0; s < k; ++s) sum += p[static_cast<size_t>(idx[static_cast<size_t>(s)])];
  sum = std::max(sum, 6.103515625e-5);
  for (int64_t s = 0; s < k; ++s) {
    ids[s] = idx[static_cast<size_t>(s)];
    weights[s] = static_cast<float>(p[static_cast<size_t>(ids[s])] / sum);
  }
}

uint64_t GpuGraph::expert_bytes_per_slot(uint32_t il) const {
  const LayerWeights& L = model->weights().layers[il];
  return L.ffn_gate_exps.nb[2] + L.ffn_up_exps.nb[2] + L.ffn_down_exps.nb[2];
}

uint64_t GpuGraph::ubatch_weight_bytes(const GpuUbatch& ub) const {
  const ModelShape& sh = model->shape();
  const ModelWeights& W = model->weights();
  uint64_t bytes = static_cast<uint64_t>(ub.n_tokens) * W.token_embd.row_size();
  for (uint32_t il = 0; il < sh.n_layer; ++il) {
    const LayerWeights& L = W.layers[il];
    const int64_t m = il + 1 == sh.n_layer ? ub.n_tokens - ub.last_r0() : ub.n_tokens;
    bytes += L.attn_norm.nbytes() + L.attn_k.nbytes() + L.attn_v.nbytes();
    if (m == 0) continue;
    bytes +=
        L.ffn_gate_inp.nbytes() + L.attn_q.nbytes() + L.attn_output.nbytes() + L.ffn_norm.nbytes();
    bytes += static_cast<uint64_t>(m) * sh.n_expert_used * expert_bytes_per_slot(il);
  }
  if (ub.want_logits) bytes += W.output_norm.nbytes() + W.output.nbytes();
  return bytes;
}

Status GpuGraph::record_ubatch(gpu::CommandRecorder& cmd, const GpuUbatch& ub, bool check,
                              const GpuGraphParts& parts) {
  const ModelShape& sh = model->shape();
  const ModelWeights& W = model->weights();
  const int64_t t_n = ub.n_tokens;
  const int64_t d = sh.n_embd;
  const int64_t hd = sh.n_embd_head_k;
  const int64_t n_q = sh.n_embd_q();
  const int64_t n_kv = sh.n_embd_k_gqa();
  const int64_t ne = sh.n_expert;
  const int64_t n_used = sh.n_expert_used;
  const int64_t nff = sh.n_ff_exp;
  const int64_t nv = sh.n_vocab;
  const int64_t n_ctx = options.n_ctx;
  const float eps = sh.rms_norm_eps;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const DType kv_type = options.cache_type;
  const uint64_t cell_bytes = dtype_row_size(kv_type, n_kv);

  auto run = [&](const GpuStepInfo& info, std::initializer_list<gpu::BufferSlice> inputs,
                 std::initializer_list<gpu::BufferSlice> outputs, const GpuChecker::Record& record,
                 const GpuChecker::Verify& verify) -> Status {
    if (!check) return record(cmd);
    return checker->step(info, std::span<const gpu::BufferSlice>(inputs.begin(), inputs.size()),
                         std::span<const gpu::BufferSlice>(outputs.begin(), outputs.size()), record,
                         verify);
  };
  // y (m, N) = x (m, K) · Wᵀ: the GEMV form for one row, the tiled form otherwise.
  auto mul_mat = [&](const char* name, int32_t il, const TensorView& w, const gpu::BufferSlice& xs,
                     int64_t m, const gpu::BufferSlice& ys) -> Status {
    const int64_t K = w.ne[0], N = w.ne[1];
    const gpu::Buffer& wb = weight(w);
    return run(
        {fmt::format("mul_mat({})", name), il, w.dtype}, {xs}, {ys},
        [&](gpu::CommandRecorder& r) {
          ops::MulMatVecOptions mo;
          mo.q8_1 = q8_1.slice();
          return m == 1 ? ops::mul_mat_vec(r, w.dtype, wb.slice(), K, N, xs, ys, mo)
                        : ops::mul_mat(r, w.dtype, wb.slice(), K, N, xs, m, ys);
        },
        [&](In in, In out) -> Result<double> {
          const auto xv = check_f32(in[0]);
          std::vector<float> y(static_cast<size_t>(m * N));
          TANDEM_RETURN_IF_ERROR(cpu_ops->mul_mat(w, xv.data(), m, y.data()));
          return check_nmse(check_f32(out[0]), y);
        });
  };
  auto rms_norm = [&](const char* name, int32_t il, const TensorView& w, const gpu::BufferSlice& xs,
                      int64_t m, const gpu::BufferSlice& ys) -> Status {
    const gpu::Buffer& wb = weight(w);
    return run(
        {fmt::format("rms_norm({})", name), il, DType::f32}, {xs}, {ys},
        [&](gpu::CommandRecorder& r) { return ops::rms_norm(r, xs, d, m, eps, wb.slice(), ys); },
        [&](In in, In out) -> Result<double> {
          const auto xv = check_f32(in[0]);
          std::vector<float> y(xv.size());
          cpu_ops->rms_norm(xv.data(), static_cast<const float*>(w.data), m, d, eps, y.data());
          return check_nmse(check_f32(out[0]), y);
        });
  };
  auto rope = [&](const char* name, int32_t il, const gpu::BufferSlice& xs,
                  const gpu::BufferSlice& ps, int64_t m, int64_t n_head) -> Status {
    const float base = sh.rope_base(static_cast<uint32_t>(il));
    return run(
        {fmt::format("rope({})", name), il, DType::f32}, {xs, ps}, {xs},
        [&](gpu::CommandRecorder& r) {
          return ops::rope_neox(r, xs, ps, hd, n_head, m, sh.n_rot, base, xs);
        },
        [&](In in, In out) -> Result<double> {
          auto xv = check_f32(in[0]);
          const auto pv = check_i32(in[1]);
          cpu_ops->rope_neox(xv.data(), pv.data(), m, n_head, hd, sh.n_rot, base);
          return check_nmse(check_f32(out[0]), xv);
        });
  };
  auto add = [&](const char* name, int32_t il, const gpu::BufferSlice& xs,
                 const gpu::BufferSlice& bs, int64_t m) -> Status {
    return run(
        {fmt::format("add({})", name), il, DType::f32}, {xs, bs}, {xs},
        [&](gpu::CommandRecorder& r) { return ops::add(r, xs, bs, d, m, m, xs); },
        [&](In in, In out) -> Result<double> {
          auto xv = check_f32(in[0]);
          const auto bv = check_f32(in[1]);
          for (size_t i = 0; i < xv.size(); ++i) xv[i] += bv[i];
          return check_nmse(check_f32(out[0]), xv);
        });
  };
  auto store = [&](const char* name, int32_t il, const gpu::BufferSlice& src,
                   const gpu::Buffer& cache) -> Status {
    const gpu::BufferSlice written = cache.slice(static_cast<uint64_t>(ub.p0) * cell_bytes,
                                                 static_cast<uint64_t>(t_n) * cell_bytes);
    const gpu::BufferSlice ps = pos.slice(0, static_cast<uint64_t>(t_n) * 4);
    return run(
        {fmt::format("set_rows({})", name), il, DType::f32}, {src, ps}, {written},
        [&](gpu::CommandRecorder& r) {
          return ops::set_rows(r, src, n_kv, t_n, ps, kv_type, cache.slice(), n_ctx);
        },
        [&](In in, In out) -> Result<double> {
          auto sv = check_f32(in[0]);
          if (kv_type == DType::f16) {
            for (auto& e : sv) e = fp16_to_fp32(fp32_to_fp16(e));
          }
          return check_nmse(check_values(out[0], kv_type), sv);
        });
  };

  const gpu::BufferSlice tok = tokens.slice(0, static_cast<uint64_t>(t_n) * 4);
  const gpu::BufferSlice x_all = rows_f32(x, 0, t_n, d);
  if (parts.embed) {
    const gpu::Buffer& eb = weight(W.token_embd);
    // get_rows dequantizes exactly as the CPU does: f32 tolerance whatever the dtype.
    GPU_STEP(run(
        {"get_rows(token_embd)", -1, DType::f32}, {tok}, {x_all},
        [&](gpu::CommandRecorder& r) {
          return ops::get_rows(r, W.token_embd.dtype, eb.slice(), d, nv, tok, t_n, x_all);
        },
        [&](In in, In out) -> Result<double> {
          const auto ids = check_i32(in[0]);
          std::vector<float> y(static_cast<size_t>(t_n * d));
          TANDEM_RETURN_IF_ERROR(cpu_ops->get_rows(W.token_embd, ids.data(), t_n, y.data()));
          return check_nmse(check_f32(out[0]), y);
        }));
  }

  for (uint32_t ul = parts.layer_begin; ul < std::min(parts.layer_end, sh.n_layer); ++ul) {
    const int32_t il = static_cast<int32_t>(ul);
    const LayerWeights& L = W.layers[ul];
    const bool last = ul + 1 == sh.n_layer;
    const int64_t r0 = last ? ub.last_r0() : 0;
    const int64_t m = t_n - r0;
    const gpu::BufferSlice xr = rows_f32(x, r0, m, d);
    const gpu::BufferSlice ids_s = expert_ids.slice(0, static_cast<uint64_t>(m * n_used) * 4);
    const gpu::BufferSlice w_s = expert_weights.slice(0, static_cast<uint64_t>(m * n_used) * 4);

    // Router on the raw layer input, before attention (spec §2.2).
    if (m > 0 && parts.router) {
      const gpu::BufferSlice rl = rows_f32(router_logits, 0, m, ne);
      TANDEM_RETURN_IF_ERROR(mul_mat("ffn_gate_inp", il, L.ffn_gate_inp, xr, m, rl));
      GPU_STEP(run(
          {"top_k", il, DType::f32}, {rl}, {w_s, ids_s},
          [&](gpu::CommandRecorder& r) {
            return ops::top_k(r, sh.gating, rl, ne, m, n_used, ids_s, w_s);
          },
          [&](In in, In out) -> Result<double> {
            const auto lg = check_f32(in[0]);
            const auto gw = check_f32(out[0]);
            const auto gi = check_i32(out[1]);
            std::vector<int32_t> ri(static_cast<size_t>(n_used));
            std::vector<float> rw(static_cast<size_t>(n_used)),
                aligned(static_cast<size_t>(m * n_used)), expected;
            for (int64_t i = 0; i < m; ++i) {
              route_row(sh.gating, lg.data() + i * ne, ne, n_used, ri.data(), rw.data());
              // Compared as sets (STYLE: routing is a set, not an order), weights matched by id.
              for (int64_t s = 0; s < n_used; ++s) {
                const auto* hit = std::find(gi.data() + i * n_used, gi.data() + (i + 1) * n_used,
                                            ri[static_cast<size_t>(s)]);
                if (hit == gi.data() + (i + 1) * n_used) {
                  return make_error(ErrorCode::internal,
                                    "shadow check: top_k on layer {} row {}: expert {} chosen by "
                                    "the CPU is missing "
                                    "from the GPU's choice",
                                    il, i, ri[static_cast<size_t>(s)]);
                }
                aligned[static_cast<size_t>(i * n_used + s)] =
                    gw[static_cast<size_t>(hit - gi.data())];
                expected.push_back(rw[static_cast<size_t>(s)]);
              }
            }
            return check_nmse(aligned, expected);
          }));
      if (ub.read_routing) {
        const uint64_t per_layer = static_cast<uint64_t>(n_ub) * n_used * 4;
        const uint64_t base = static_cast<uint64_t>(ul) * 2 * per_layer;
        GPU_STEP(run(
            {"copy(routing)", il, DType::f32}, {}, {},
            [&](gpu::CommandRecorder& r) {
              TANDEM_RETURN_IF_ERROR(r.copy(ids_s, routing_rb.slice(base, ids_s.size)));
              return r.copy(w_s, routing_rb.slice(base + per_layer, w_s.size));
            },
            nullptr));
      }
    }

    const gpu::BufferSlice h_all = rows_f32(h, 0, t_n, d);
    const gpu::BufferSlice k_all = rows_f32(this->k, 0, t_n, n_kv);
    const gpu::BufferSlice v_all = rows_f32(v, 0, t_n, n_kv);
    const gpu::BufferSlice pos_all = pos.slice(0, static_cast<uint64_t>(t_n) * 4);
    TANDEM_RETURN_IF_ERROR(rms_norm("attn_norm", il, L.attn_norm, x_all, t_n, h_all));
    TANDEM_RETURN_IF_ERROR(mul_mat("attn_k", il, L.attn_k, h_all, t_n, k_all));
    TANDEM_RETURN_IF_ERROR(mul_mat("attn_v", il, L.attn_v, h_all, t_n, v_all));
    const bool use_rope = sh.use_rope(ul);
    // NoPE layers store K as projected (spec §6.6).
    if (use_rope) TANDEM_RETURN_IF_ERROR(rope("k", il, k_all, pos_all, t_n, sh.n_head_kv));
    TANDEM_RETURN_IF_ERROR(store("cache_k", il, k_all, k_cache[ul]));
    TANDEM_RETURN_IF_ERROR(store("cache_v", il, v_all, v_cache[ul]));
    if (m == 0) continue;

    const gpu::BufferSlice hr = rows_f32(h, r0, m, d);
    const gpu::BufferSlice pr = (r0 == 0 ? pos : pos_rows).slice(0, static_cast<uint64_t>(m) * 4);
    const gpu::BufferSlice qs = rows_f32(q, 0, m, n_q);
    const gpu::BufferSlice att = rows_f32(attn, 0, m, n_q);
    TANDEM_RETURN_IF_ERROR(mul_mat("attn_q", il, L.attn_q, hr, m, qs));
    if (use_rope) TANDEM_RETURN_IF_ERROR(rope("q", il, qs, pr, m, sh.n_head));
    {
      const uint32_t n_swa = sh.is_swa(ul) ? sh.n_swa : 0;
      const uint64_t used = static_cast<uint64_t>(ub.p0 + t_n) * cell_bytes;
      const gpu::BufferSlice kc = k_cache[ul].slice(0, used), vc = v_cache[ul].slice(0, used);
      GPU_STEP(run(
          {"flash_attn", il, DType::f32}, {qs, pr, kc, vc}, {att},
          [&](gpu::CommandRecorder& r) {
            return ops::flash_attn(r, qs, k_cache[ul].slice(), v_cache[ul].slice(), kv_type, pr, hd,
                                   sh.n_head, sh.n_head_kv, n_ctx, m, n_swa, scale,
                                   fa_scratch.slice(), att);
          },
          [&](In in, In out) -> Result<double> {
            const auto qv = check_f32(in[0]);
            const auto pv = check_i32(in[1]);
            // The GPU cache holds position p in cell p: a CPU view with n_ctx cells reads it the
            // same way.
            Bytes kb = in[2], vb = in[3];
            kb.resize(static_cast<size_t>(n_ctx) * cell_bytes);
            vb.resize(static_cast<size_t>(n_ctx) * cell_bytes);
            KvLayerView view;
            view.k = kb.data();
            view.v = vb.data();
            view.type = kv_type;
            view.n_cells = static_cast<uint32_t>(n_ctx);
            view.n_head_kv = sh.n_head_kv;
            view.head_dim = static_cast<uint32_t>(hd);
            view.cell_bytes = cell_bytes;
            view.n_swa = n_swa;
            std::vector<float> y(static_cast<size_t>(m * n_q));
            cpu_ops->attention(qv.data(), pv.data(), m, sh.n_head, view, scale, y.data());
            return check_nmse(check_f32(out[0]), y);
          }));
    }
    const gpu::BufferSlice as = rows_f32(a, 0, m, d);
    TANDEM_RETURN_IF_ERROR(mul_mat("attn_output", il, L.attn_output, att, m, as));
    TANDEM_RETURN_IF_ERROR(add("attn", il, xr, as, m));
    const gpu::BufferSlice fs = rows_f32(f, 0, m, d);
    TANDEM_RETURN_IF_ERROR(rms_norm("ffn_norm", il, L.ffn_norm, xr, m, fs));
    if (!parts.moe) continue;

    // Expert FFN (spec §2.5): gate/up for each row's experts, reglu, down, weighted sum in
    // slot order.
    const gpu::BufferSlice gs = gate.slice(0, static_cast<uint64_t>(m * n_used * nff) * 4);
    const gpu::BufferSlice us = up.slice(0, static_cast<uint64_t>(m * n_used * nff) * 4);
    const gpu::BufferSlice eo = expert_out.slice(0, static_cast<uint64_t>(m * n_used * d) * 4);
    const gpu::BufferSlice ms = rows_f32(moe, 0, m, d);
    const gpu::Buffer& gw = weight(L.ffn_gate_exps);
    const gpu::Buffer& uw = weight(L.ffn_up_exps);
    const gpu::Buffer& dw = weight(L.ffn_down_exps);
    GPU_STEP(run(
        {"moe", il, L.ffn_gate_exps.dtype}, {fs, ids_s, w_s}, {ms},
        [&](gpu::CommandRecorder& r) {
          if (m == 1) {
            // gate and up read the same f: quantized once for both (intdot variants).
            ops::MulMatVecIdOptions go;
            go.q8_1 = q8_1.slice();
            TANDEM_RETURN_IF_ERROR(ops::mul_mat_vec_id(r, L.ffn_gate_exps.dtype, gw.slice(), d, nff,
                                                       ne, ids_s, n_used, fs, true, gs, go));
            ops::MulMatVecIdOptions uo = go;
            uo.q8_1_ready = L.ffn_up_exps.dtype == L.ffn_gate_exps.dtype;  // used by intdot only
            // ReLU-sparse up: rows with gate <= 0 are 0 and unread; reglu gives 0 there either way.
            uo.skip_if_gate_le_zero = gs;
            TANDEM_RETURN_IF_ERROR(ops::mul_mat_vec_id(r, L.ffn_up_exps.dtype, uw.slice(), d, nff,
                                                       ne, ids_s, n_used, fs, true, us, uo));
          } else {
            TANDEM_RETURN_IF_ERROR(ops::mul_mat_id(r, L.ffn_gate_exps.dtype, gw.slice(), d, nff, ne,
                                                   ids_s, n_used, m, fs, 1, gs));
            TANDEM_RETURN_IF_ERROR(ops::mul_mat_id(r, L.ffn_up_exps.dtype, uw.slice(), d, nff, ne,
                                                   ids_s, n_used, m, fs, 1, us));
          }
          TANDEM_RETURN_IF_ERROR(ops::reglu(r, gs, us, m * n_used * nff, gs));
          if (sh.down_layout == DownLayout::transposed) {
            TANDEM_RETURN_IF_ERROR(ops::mul_mat_vec_t_id(r, L.ffn_down_exps.dtype, dw.slice(), d,
                                                         nff, ne, ids_s, m * n_used, gs, eo));
          } else {
            TANDEM_RETURN_IF_ERROR(ops::mul_mat_vec_id(r, L.ffn_down_exps.dtype, dw.slice(), nff, d,
                                                       ne, ids_s, m * n_used, gs, false, eo));
          }
          return ops::moe_sum(r, eo, w_s, d, n_used, m, ms);
        },
        [&](In in, In out) -> Result<double> {
          const auto fv = check_f32(in[0]);
          const auto iv = check_i32(in[1]);
          const auto wv = check_f32(in[2]);
          for (int32_t e : iv) {
            if (e < 0 || e >= ne) {
              return make_error(ErrorCode::internal,
                                "shadow check: moe on layer {}: expert id {} out of range", il, e);
            }
          }
          MoeArgs args;
          args.gate_exps = &L.ffn_gate_exps;
          args.up_exps = &L.ffn_up_exps;
          args.down_exps = &L.ffn_down_exps;
          args.down_layout = sh.down_layout;
          args.n_embd = d;
          args.n_ff_exp = nff;
          args.n_expert = ne;
          args.n_expert_used = n_used;
          args.x = fv.data();
          args.expert_ids = iv.data();
          args.weights = wv.data();
          args.n_rows = m;
          std::vector<float> y(static_cast<size_t>(m * d));
          std::vector<uint64_t> active(static_cast<size_t>(ne), 0);
          TANDEM_RETURN_IF_ERROR(cpu_ops->moe(args, y.data(), active));
          return check_nmse(check_f32(out[0]), y);
        }));
    TANDEM_RETURN_IF_ERROR(add("moe", il, xr, ms, m));
  }

  if (ub.want_logits && parts.head) {
    const int64_t r0 = ub.all_rows ? 0 : t_n - 1;
    const int64_t m = t_n - r0;
    const gpu::BufferSlice hs = rows_f32(h, 0, m, d);
    const gpu::BufferSlice ls = rows_f32(logits, 0, m, nv);
    TANDEM_RETURN_IF_ERROR(
        rms_norm("output_norm", -1, W.output_norm, rows_f32(x, r0, m, d), m, hs));
    TANDEM_RETURN_IF_ERROR(mul_mat("output", -1, W.output, hs, m, ls));
    GPU_STEP(run(
        {"copy(logits)", -1, DType::f32}, {}, {},
        [&](gpu::CommandRecorder& r) { return r.copy(ls, logits_rb.slice(0, ls.size)); }, nullptr));
  }
  return Status::success();
}

}  // namespace tandem
