#include "cpu/top_k.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace tandem::cpu {

void top_k(const float* x, int64_t n, int64_t k, int32_t* idx) {
  k = std::clamp<int64_t>(k, 0, n);
  if (k == 0) return;
  // The list holds (key, index) in rank order. Candidates arrive in ascending index, so a
  // candidate only displaces entries it beats strictly: equal keys keep the earlier index.
  float key[64];
  float* keys = key;
  std::vector<float> big;
  if (k > 64) {
    big.resize(static_cast<size_t>(k));
    keys = big.data();
  }
  int64_t len = 0;
  for (int64_t i = 0; i < n; ++i) {
    const float v = std::isnan(x[i]) ? -std::numeric_limits<float>::infinity() : x[i];
    if (len == k && !(v > keys[k - 1])) continue;
    int64_t p = len < k ? len : k - 1;
    while (p > 0 && v > keys[p - 1]) {
      keys[p] = keys[p - 1];
      idx[p] = idx[p - 1];
      --p;
    }
    keys[p] = v;
    idx[p] = static_cast<int32_t>(i);
    if (len < k) ++len;
  }
}

void top_k_rows(const float* x, int64_t n_rows, int64_t x_stride, int64_t n, int64_t k, int32_t* idx) {
  const int64_t kk = std::clamp<int64_t>(k, 0, n);
  for (int64_t r = 0; r < n_rows; ++r) top_k(x + r * x_stride, n, kk, idx + r * kk);
}

}  // namespace tandem::cpu
