// Helpers for tests of the forward pass (runtime/*_test.cpp and tests/*_test.cpp): make and
// load a model, make token sequences, evaluate a sequence in steps of a given size.
// Header-only; for test binaries.
#pragma once

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <span>
#include <vector>

#include "core/status.h"
#include "runtime/forward.h"
#include "runtime/kv_cache.h"
#include "runtime/model.h"
#include "runtime/model_maker.h"

namespace tandem::testing {

inline Result<Model> make_and_load(const MakeModelOptions& options, const std::filesystem::path& path) {
  TANDEM_RETURN_IF_ERROR(make_model(options, path));
  return Model::load(path);
}

// Deterministic ids in [0, n_vocab) (splitmix64 of the seed and index).
inline std::vector<int32_t> random_tokens(size_t n, uint32_t n_vocab, uint64_t seed) {
  std::vector<int32_t> t(n);
  for (size_t i = 0; i < n; ++i) {
    uint64_t x = seed * 0x9e3779b97f4a7c15ull + i + 1;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    x ^= x >> 31;
    t[i] = static_cast<int32_t>(x % n_vocab);
  }
  return t;
}

// Evaluates `tokens` from an empty cache in eval() calls of `step` tokens each and returns
// every position's logits, (tokens.size(), n_vocab) row-major.
inline Result<std::vector<float>> eval_in_steps(Forward& forward, KvCache& kv, std::span<const int32_t> tokens,
                                                size_t step) {
  kv.clear();
  const size_t n_vocab = forward.shape().n_vocab;
  std::vector<float> all(tokens.size() * n_vocab), part;
  for (size_t b = 0; b < tokens.size(); b += step) {
    const size_t n = std::min(step, tokens.size() - b);
    TANDEM_RETURN_IF_ERROR(forward.eval(kv, tokens.subspan(b, n), LogitsRows::all, part));
    std::copy(part.begin(), part.end(), all.begin() + static_cast<ptrdiff_t>(b * n_vocab));
  }
  return all;
}

}  // namespace tandem::testing
