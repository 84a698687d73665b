#include <cassert>
#include <cmath>

#include "cpu/reference/ops.h"

namespace tandem::cpu::reference {

void rms_norm(std::span<const float> x, std::span<const float> w, float eps, std::span<float> y) {
  assert(w.size() == x.size() && y.size() == x.size());
  const size_t n = x.size();
  if (n == 0) return;
  double sum_sq = 0.0;
  for (float v : x) sum_sq += static_cast<double>(v) * v;
  // ggml rounds the scale to f32 and multiplies by the weight in a separate op; the f64 scale
  // here differs by < 1 ulp, well inside any tolerance a fast path is held to.
  const double scale = 1.0 / std::sqrt(sum_sq / static_cast<double>(n) + static_cast<double>(eps));
  for (size_t i = 0; i < n; ++i) y[i] = static_cast<float>(x[i] * scale * w[i]);
}

}  // namespace tandem::cpu::reference
