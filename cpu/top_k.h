// top_k: the router's expert selection (ggml_top_k / llama.cpp build_moe_ffn's argsort of the
// selection probabilities, spec §1.3, §2.1), without sorting the whole row.
//
// x: (n_rows, n) f32 row-major (ggml ne = [n, n_rows]), rows `x_stride` floats apart.
// k is clamped to [0, n]; call the clamped value kc. idx: (n_rows, kc) int32 row-major: row r
// holds the indices of the kc largest values of x row r in descending order. Ties go to the
// lower index first (as cpu::reference::top_k's stable sort); NaN ranks as -inf (below every
// number, tying with -inf by index).
// Cost O(n * k) per row (an insertion list of k entries), which for the router's n <= 256 and
// k <= 8 beats a sort. Pure and thread-safe.
#pragma once

#include <cstdint>

namespace tandem::cpu {

void top_k(const float* x, int64_t n, int64_t k, int32_t* idx);

void top_k_rows(const float* x, int64_t n_rows, int64_t x_stride, int64_t n, int64_t k, int32_t* idx);

}  // namespace tandem::cpu
