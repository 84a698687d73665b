#include <cassert>
#include <cmath>
#include <limits>
#include <vector>

#include "cpu/reference/ops.h"

namespace tandem::cpu::reference {

bool kq_masked(const ModelShape& shape, uint32_t il, int64_t pos_q, int64_t pos_k) {
  if (pos_k > pos_q) return true;
  return shape.is_swa(il) && pos_q - pos_k >= static_cast<int64_t>(shape.n_swa);
}

void attention_head(const ModelShape& shape, uint32_t il, int64_t pos_q, std::span<const float> q,
                    const RowsF32& k, const RowsF32& v, std::span<float> out) {
  const int64_t hd_k = shape.n_embd_head_k;
  const int64_t hd_v = shape.n_embd_head_v;
  assert(static_cast<int64_t>(q.size()) == hd_k && k.cols == hd_k);
  assert(v.rows == k.rows && v.cols == hd_v && static_cast<int64_t>(out.size()) == hd_v);
  const double scale = 1.0 / std::sqrt(static_cast<double>(hd_k));
  std::vector<float> s(static_cast<size_t>(k.rows));
  for (int64_t j = 0; j < k.rows; ++j) {
    if (kq_masked(shape, il, pos_q, j)) {
      s[static_cast<size_t>(j)] = -std::numeric_limits<float>::infinity();
      continue;
    }
    double dot = 0.0;
    const float* kj = k.row(j);
    for (int64_t d = 0; d < hd_k; ++d)
      dot += static_cast<double>(q[static_cast<size_t>(d)]) * kj[d];
    s[static_cast<size_t>(j)] = static_cast<float>(dot * scale);
  }
  soft_max(s, s);
  std::vector<double> acc(static_cast<size_t>(hd_v), 0.0);
  for (int64_t j = 0; j < v.rows; ++j) {
    const double p = s[static_cast<size_t>(j)];
    if (p == 0.0) continue;  // masked (or underflowed): contributes nothing, and skips inf * 0
    const float* vj = v.row(j);
    for (int64_t d = 0; d < hd_v; ++d) acc[static_cast<size_t>(d)] += p * vj[d];
  }
  for (int64_t d = 0; d < hd_v; ++d)
    out[static_cast<size_t>(d)] = static_cast<float>(acc[static_cast<size_t>(d)]);
}

void self_attention(const ModelShape& shape, uint32_t il, int64_t n_tokens,
                    std::span<const float> q, std::span<const float> k, std::span<const float> v,
                    std::span<float> out) {
  const int64_t hd_k = shape.n_embd_head_k;
  const int64_t hd_v = shape.n_embd_head_v;
  const int64_t n_q = static_cast<int64_t>(shape.n_head) * hd_k;
  const int64_t n_k = static_cast<int64_t>(shape.n_head_kv) * hd_k;
  const int64_t n_v = static_cast<int64_t>(shape.n_head_kv) * hd_v;
  const int64_t n_o = static_cast<int64_t>(shape.n_head) * hd_v;
  assert(shape.n_head_kv > 0 && shape.n_head % shape.n_head_kv == 0);
  assert(static_cast<int64_t>(q.size()) == n_tokens * n_q &&
         static_cast<int64_t>(k.size()) == n_tokens * n_k);
  assert(static_cast<int64_t>(v.size()) == n_tokens * n_v &&
         static_cast<int64_t>(out.size()) == n_tokens * n_o);

  std::vector<float> qr(q.begin(), q.end());
  std::vector<float> kr(k.begin(), k.end());
  if (shape.use_rope(il)) {
    const float base = shape.rope_base(il);
    const int n_rot = static_cast<int>(shape.n_rot);
    for (int64_t t = 0; t < n_tokens; ++t) {
      for (uint32_t h = 0; h < shape.n_head; ++h)
        rope_neox(std::span<float>(qr).subspan(static_cast<size_t>(t * n_q + h * hd_k),
                                               static_cast<size_t>(hd_k)),
                  t, n_rot, base);
      for (uint32_t h = 0; h < shape.n_head_kv; ++h)
        rope_neox(std::span<float>(kr).subspan(static_cast<size_t>(t * n_k + h * hd_k),
                                               static_cast<size_t>(hd_k)),
                  t, n_rot, base);
    }
  }

  const uint32_t n_gqa = shape.n_head / shape.n_head_kv;
  for (uint32_t h = 0; h < shape.n_head; ++h) {
    const uint32_t hk = h / n_gqa;
    const RowsF32 kh{kr.data() + hk * hd_k, n_tokens, hd_k, n_k};
    const RowsF32 vh{v.data() + hk * hd_v, n_tokens, hd_v, n_v};
    for (int64_t t = 0; t < n_tokens; ++t) {
      const auto qh = std::span<const float>(qr).subspan(static_cast<size_t>(t * n_q + h * hd_k),
                                                         static_cast<size_t>(hd_k));
      attention_head(
          shape, il, t, qh, kh, vh,
          out.subspan(static_cast<size_t>(t * n_o + h * hd_v), static_cast<size_t>(hd_v)));
    }
  }
}

}  // namespace tandem::cpu::reference
