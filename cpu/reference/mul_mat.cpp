#include <cassert>
#include <vector>

#include "cpu/quants.h"
#include "cpu/reference/ops.h"

namespace tandem::cpu::reference {

void get_row(const TensorView& w, int64_t i1, int64_t i2, std::span<float> y) {
  assert(static_cast<int64_t>(y.size()) == w.ne[0]);
  assert(i1 >= 0 && i1 < w.ne[1] && i2 >= 0 && i2 < w.ne[2]);
  dequantize_row(w.dtype, w.row(i1, i2), y.data(), w.ne[0]);
}

namespace {
float dot_f64(std::span<const float> a, std::span<const float> b) {
  double acc = 0.0;
  for (size_t i = 0; i < a.size(); ++i) acc += static_cast<double>(a[i]) * b[i];
  return static_cast<float>(acc);
}
}  // namespace

float mul_mat_row(const TensorView& w, int64_t i1, int64_t i2, std::span<const float> x) {
  assert(static_cast<int64_t>(x.size()) == w.ne[0]);
  std::vector<float> row(static_cast<size_t>(w.ne[0]));
  get_row(w, i1, i2, row);
  return dot_f64(row, x);
}

void mul_mat_vec(const TensorView& w, int64_t i2, std::span<const float> x, std::span<float> y) {
  assert(static_cast<int64_t>(x.size()) == w.ne[0] && static_cast<int64_t>(y.size()) == w.ne[1]);
  std::vector<float> row(static_cast<size_t>(w.ne[0]));  // one scratch row for the whole matrix
  for (int64_t o = 0; o < w.ne[1]; ++o) {
    get_row(w, o, i2, row);
    y[static_cast<size_t>(o)] = dot_f64(row, x);
  }
}

}  // namespace tandem::cpu::reference
