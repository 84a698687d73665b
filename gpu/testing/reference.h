// Test-only plain references for the GPU conformance tests (cpu/ is not visible to gpu/):
// ggml dequantization (spec §3.6) and each op in f64 accumulation, plus random inputs.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "core/dtype.h"
#include "core/fp16.h"
#include "core/quant_blocks.h"

namespace tandem::gpu::testing {

// Element k of a row of `ne0` elements of dtype t starting at `row`. Spec §3.6:
//   q8_0: y[j] = qs[j] * d;  q4_0: y[j] = ((qs[j] & 0xF) - 8) * d, y[j+16] = ((qs[j] >> 4) - 8) * d.
inline double dequant(DType t, const uint8_t* row, int64_t k) {
  switch (t) {
    case DType::f32: {
      float f;
      std::memcpy(&f, row + 4 * k, 4);
      return f;
    }
    case DType::f16: {
      uint16_t h;
      std::memcpy(&h, row + 2 * k, 2);
      return fp16_to_fp32(h);
    }
    case DType::q8_0: {
      block_q8_0 b;
      std::memcpy(&b, row + (k / 32) * sizeof(b), sizeof(b));
      return static_cast<double>(b.qs[k % 32]) * fp16_to_fp32(b.d);
    }
    case DType::q4_0: {
      block_q4_0 b;
      std::memcpy(&b, row + (k / 32) * sizeof(b), sizeof(b));
      const int j = static_cast<int>(k % 32);
      const int q = j < 16 ? (b.qs[j] & 0xF) : (b.qs[j - 16] >> 4);
      return static_cast<double>(q - 8) * fp16_to_fp32(b.d);
    }
    default: return NAN;
  }
}

// Random weights: `nrows` rows of `ncols` elements, row_size bytes each. Quant scales d are
// random f16 in [0.005, 0.05), quants uniform; floats uniform in [-1, 1).
inline std::vector<uint8_t> random_weights(DType t, int64_t ncols, int64_t nrows, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> uni(-1.f, 1.f), scale(0.005f, 0.05f);
  const size_t row = dtype_row_size(t, ncols);
  std::vector<uint8_t> w(row * static_cast<size_t>(nrows));
  for (int64_t r = 0; r < nrows; ++r) {
    uint8_t* p = w.data() + row * static_cast<size_t>(r);
    if (t == DType::f32) {
      for (int64_t k = 0; k < ncols; ++k) {
        const float f = uni(rng);
        std::memcpy(p + 4 * k, &f, 4);
      }
    } else if (t == DType::f16) {
      for (int64_t k = 0; k < ncols; ++k) {
        const uint16_t h = fp32_to_fp16(uni(rng));
        std::memcpy(p + 2 * k, &h, 2);
      }
    } else {
      const size_t bs = dtype_type_size(t);
      for (int64_t b = 0; b < ncols / 32; ++b) {
        uint8_t* blk = p + bs * static_cast<size_t>(b);
        const uint16_t d = fp32_to_fp16(scale(rng));
        std::memcpy(blk, &d, 2);
        for (size_t i = 2; i < bs; ++i) blk[i] = static_cast<uint8_t>(rng());
      }
    }
  }
  return w;
}

inline std::vector<float> random_f32(size_t n, uint32_t seed, float lo = -1.f, float hi = 1.f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> uni(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = uni(rng);
  return v;
}

// dst[j][i] = sum_k W[i][k] * x[j][k] in f64; W rows `row_stride` bytes apart.
inline std::vector<float> ref_mul_mat(DType t, const uint8_t* w, size_t row_stride, int64_t K, int64_t M,
                                      const std::vector<float>& x, int64_t N) {
  std::vector<float> out(static_cast<size_t>(M * N));
  std::vector<double> wrow(static_cast<size_t>(K));
  for (int64_t i = 0; i < M; ++i) {
    for (int64_t k = 0; k < K; ++k) wrow[k] = dequant(t, w + row_stride * static_cast<size_t>(i), k);
    for (int64_t j = 0; j < N; ++j) {
      double s = 0;
      for (int64_t k = 0; k < K; ++k) s += wrow[k] * x[static_cast<size_t>(j * K + k)];
      out[static_cast<size_t>(j * M + i)] = static_cast<float>(s);
    }
  }
  return out;
}

// flash_attn reference (ggml_flash_attn_ext with SmallThinker's mask, spec §2.4), f64 sums.
// q [head_dim, n_head, m]; k, v [head_dim, n_head_kv, n_ctx] as f32 values (f16 caches already
// converted); row i attends to j <= pos[i] with (n_swa == 0 || j > pos[i] - n_swa); GQA kv head
// h / (n_head / n_head_kv). dst [head_dim, n_head, m].
inline std::vector<float> ref_flash_attn(const std::vector<float>& q, const std::vector<float>& k,
                                         const std::vector<float>& v, const std::vector<int32_t>& pos,
                                         int64_t head_dim, int64_t n_head, int64_t n_head_kv, uint32_t n_swa,
                                         float scale) {
  const int64_t m = static_cast<int64_t>(pos.size());
  std::vector<float> out(static_cast<size_t>(head_dim * n_head * m));
  std::vector<double> s, o(static_cast<size_t>(head_dim));
  for (int64_t i = 0; i < m; ++i) {
    const int64_t lo = n_swa == 0 ? 0 : std::max<int64_t>(0, pos[i] - static_cast<int64_t>(n_swa) + 1);
    for (int64_t h = 0; h < n_head; ++h) {
      const int64_t hkv = h / (n_head / n_head_kv);
      const float* qr = q.data() + (i * n_head + h) * head_dim;
      s.assign(static_cast<size_t>(pos[i] + 1 - lo), 0.0);
      double mx = -INFINITY;
      for (int64_t j = lo; j <= pos[i]; ++j) {
        const float* kr = k.data() + (j * n_head_kv + hkv) * head_dim;
        double d = 0;
        for (int64_t c = 0; c < head_dim; ++c) d += static_cast<double>(qr[c]) * kr[c];
        s[j - lo] = d * scale;
        mx = std::max(mx, s[j - lo]);
      }
      double l = 0;
      std::fill(o.begin(), o.end(), 0.0);
      for (int64_t j = lo; j <= pos[i]; ++j) {
        const double p = std::exp(s[j - lo] - mx);
        l += p;
        const float* vr = v.data() + (j * n_head_kv + hkv) * head_dim;
        for (int64_t c = 0; c < head_dim; ++c) o[c] += p * vr[c];
      }
      for (int64_t c = 0; c < head_dim; ++c) out[(i * n_head + h) * head_dim + c] = static_cast<float>(o[c] / l);
    }
  }
  return out;
}

// Router reference (cpu/reference/ops.h route(), spec §1.3): gating 1 = softmax, 2 = sigmoid,
// probabilities computed in f64 and rounded to f32; top k best first, ties to the lower index;
// weights = p / max(sum p, 6.103515625e-5). logits [n_expert, m]; ids, weights [k, m].
struct RefRouting {
  std::vector<float> probs;  // [n_expert, m]
  std::vector<int32_t> ids;
  std::vector<float> weights;
};
// GCC 12 at -O3 reports a "potential null pointer dereference" inside vector::resize here (a
// known false positive of -Wnull-dereference on inlined allocations).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wnull-dereference"
inline RefRouting ref_top_k(uint32_t gating, const std::vector<float>& logits, int64_t n_expert, int64_t k) {
  const int64_t m = static_cast<int64_t>(logits.size()) / n_expert;
  RefRouting r;
  r.probs.resize(logits.size());
  for (int64_t row = 0; row < m; ++row) {
    const float* l = logits.data() + row * n_expert;
    float* p = r.probs.data() + row * n_expert;
    if (gating == 1) {
      double mx = -INFINITY, sum = 0;
      for (int64_t e = 0; e < n_expert; ++e) mx = std::max(mx, static_cast<double>(l[e]));
      for (int64_t e = 0; e < n_expert; ++e) sum += std::exp(l[e] - mx);
      for (int64_t e = 0; e < n_expert; ++e) p[e] = static_cast<float>(std::exp(l[e] - mx) / sum);
    } else {
      for (int64_t e = 0; e < n_expert; ++e) p[e] = static_cast<float>(1.0 / (1.0 + std::exp(-static_cast<double>(l[e]))));
    }
    std::vector<int32_t> order(static_cast<size_t>(n_expert));
    for (int64_t e = 0; e < n_expert; ++e) order[e] = static_cast<int32_t>(e);
    std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return p[a] > p[b]; });
    double sum = 0;
    for (int64_t s = 0; s < k; ++s) sum += p[order[s]];
    for (int64_t s = 0; s < k; ++s) {
      r.ids.push_back(order[s]);
      r.weights.push_back(static_cast<float>(p[order[s]] / std::max(sum, 6.103515625e-5)));
    }
  }
  return r;
}
#pragma GCC diagnostic pop

// ggml_mul_mat_id reference: weights [ncols, nrows, n_expert] of t (contiguous), ids [n_used, m],
// b [ncols, n_b1, m]; dst [nrows, n_used, m], f64 sums.
inline std::vector<float> ref_mul_mat_id(DType t, const std::vector<uint8_t>& w, int64_t ncols, int64_t nrows,
                                         const std::vector<int32_t>& ids, int64_t n_used, const std::vector<float>& b,
                                         int64_t n_b1) {
  const int64_t m = static_cast<int64_t>(ids.size()) / n_used;
  const size_t row = dtype_row_size(t, ncols);
  std::vector<float> out(static_cast<size_t>(nrows * n_used * m));
  for (int64_t tok = 0; tok < m; ++tok) {
    for (int64_t s = 0; s < n_used; ++s) {
      const uint8_t* mat = w.data() + row * static_cast<size_t>(nrows) * static_cast<size_t>(ids[tok * n_used + s]);
      const float* x = b.data() + (tok * n_b1 + s % n_b1) * ncols;
      for (int64_t i = 0; i < nrows; ++i) {
        double acc = 0;
        for (int64_t c = 0; c < ncols; ++c) acc += dequant(t, mat + row * static_cast<size_t>(i), c) * x[c];
        out[static_cast<size_t>((tok * n_used + s) * nrows + i)] = static_cast<float>(acc);
      }
    }
  }
  return out;
}

}  // namespace tandem::gpu::testing
