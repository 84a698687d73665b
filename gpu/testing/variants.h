// Test-only: the shader variants a conformance test runs. Every variant an op offers is either
// run or reported with a Catch2 WARN naming it and the reason (device feature or build): a
// variant the device cannot run is skipped visibly, never counted as passed.
#pragma once

#include <catch2/catch.hpp>

#include <algorithm>
#include <initializer_list>
#include <string>
#include <vector>

#include "gpu/ops/shader_variant.h"

namespace tandem::gpu::testing {

inline std::vector<ops::ShaderVariant> variants_or_warn(const DeviceCaps& caps, std::vector<ops::ShaderVariant> runnable,
                                                        std::initializer_list<ops::ShaderVariant> offered,
                                                        const std::string& what) {
  for (ops::ShaderVariant v : offered) {
    if (std::find(runnable.begin(), runnable.end(), v) != runnable.end()) continue;
    const std::string why = ops::missing_feature(caps, v);
    WARN("SKIPPED " << what << " " << ops::shader_variant_name(v) << ": "
                    << (why.empty() ? "not in this build (GLSL compiler lacks the extension)" : why));
  }
  return runnable;
}

}  // namespace tandem::gpu::testing
