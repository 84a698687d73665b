// Helpers shared by the executor tests that compare a Vulkan backend with the CPU path
// (gpu_executor_test.cpp, hybrid_executor_test.cpp): the device the tests use, greedy and
// teacher-forced generation through any eval function, argmax.
#pragma once

#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "core/status.h"
#include "gpu/testing/vulkan_fixture.h"
#include "runtime/forward.h"

namespace tandem::testing {

// "auto" where a real GPU exists, else the software device (as gpu/testing's fixtures).
inline const std::string& test_device() {
  static const std::string choice = [] {
    auto inst = gpu::Instance::create(gpu::GpuOptions{});
    if (!inst.ok()) return std::string("cpu");
    gpu::testing::pin_software_icd();
    return gpu::testing::test_device_choice(**inst);
  }();
  return choice;
}

inline int32_t argmax(std::span<const float> v) {
  return static_cast<int32_t>(std::max_element(v.begin(), v.end()) - v.begin());
}

struct Run {
  std::vector<float> prompt_logits;  // (n_prompt, n_vocab): LogitsRows::all
  std::vector<int32_t> generated;    // greedy
  std::vector<float> decode_logits;  // the logits of every one-token step
};

using EvalFn = std::function<Status(std::span<const int32_t>, LogitsRows, std::vector<float>&)>;

// Evaluates `prompt` (LogitsRows::all, so every ubatch returns rows) then `n_gen` one-token
// evals: of the greedy choice, or of `forced[i]` when given (teacher forcing, so that two
// backends see the same tokens and their argmaxes can be compared step by step).
inline Run greedy(const EvalFn& eval, std::span<const int32_t> prompt, int n_gen,
                  const std::vector<int32_t>* forced = nullptr) {
  Run r;
  std::vector<float> logits;
  Status st = eval(prompt, LogitsRows::all, logits);
  INFO(st.message());
  REQUIRE(st.ok());
  r.prompt_logits = logits;
  const size_t nv = logits.size() / prompt.size();
  int32_t next = argmax(std::span<const float>(logits).subspan(logits.size() - nv));
  for (int i = 0; i < n_gen; ++i) {
    r.generated.push_back(next);
    const int32_t tok[] = {forced ? (*forced)[static_cast<size_t>(i)] : next};
    st = eval(tok, LogitsRows::last, logits);
    INFO(st.message());
    REQUIRE(st.ok());
    r.decode_logits.insert(r.decode_logits.end(), logits.begin(), logits.end());
    next = argmax(logits);
  }
  return r;
}

}  // namespace tandem::testing
