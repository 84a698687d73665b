#include <cassert>
#include <vector>

#include "cpu/reference/ops.h"

namespace tandem::cpu::reference {

int64_t expert_reglu(const TensorView& gate_exps, const TensorView& up_exps,
                     const TensorView& down_exps, DownLayout layout, int32_t expert,
                     std::span<const float> x, std::span<float> y) {
  const int64_t n_embd = gate_exps.ne[0];
  const int64_t n_ff = gate_exps.ne[1];
  assert(static_cast<int64_t>(x.size()) == n_embd && static_cast<int64_t>(y.size()) == n_embd);
  assert(up_exps.ne[0] == n_embd && up_exps.ne[1] == n_ff);

  std::vector<float> g(static_cast<size_t>(n_ff));
  std::vector<float> u(static_cast<size_t>(n_ff));
  mul_mat_vec(gate_exps, expert, x, g);
  mul_mat_vec(up_exps, expert, x, u);
  std::vector<float> a(static_cast<size_t>(n_ff));
  int64_t active = 0;
  for (size_t j = 0; j < a.size(); ++j) {
    // ggml_vec_reglu_f32: (g > 0) ? g * u : 0 — the relu sits on the gate only.
    a[j] = g[j] > 0.0f ? g[j] * u[j] : 0.0f;
    active += g[j] > 0.0f ? 1 : 0;
  }

  if (layout == DownLayout::standard) {
    assert(down_exps.ne[0] == n_ff && down_exps.ne[1] == n_embd);
    mul_mat_vec(down_exps, expert, a, y);
  } else {
    assert(down_exps.ne[0] == n_embd && down_exps.ne[1] == n_ff);
    std::vector<double> acc(static_cast<size_t>(n_embd), 0.0);
    std::vector<float> row(static_cast<size_t>(n_embd));
    for (int64_t j = 0; j < n_ff; ++j) {
      get_row(down_exps, j, expert, row);
      const double aj = a[static_cast<size_t>(j)];
      for (size_t o = 0; o < acc.size(); ++o) acc[o] += aj * row[o];
    }
    for (size_t o = 0; o < acc.size(); ++o) y[o] = static_cast<float>(acc[o]);
  }
  return active;
}

}  // namespace tandem::cpu::reference
