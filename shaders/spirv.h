// The compute shaders, compiled from shaders/**/*.comp at build time into SPIR-V and embedded
// in the binary (cmake/TandemShaders.cmake, variant list in shaders/CMakeLists.txt).
//
// A variant's name says what it computes, as ggml-vulkan names them: op, weight dtype,
// activation dtype, then a feature suffix when it needs one the device may lack:
//   mul_mat_vec_q4_0_f32            portable (shared-memory reduction)
//   mul_mat_vec_q4_0_f32_subgroup   needs subgroup arithmetic (DeviceCaps)
//   mul_mat_vec_q4_0_f32_intdot     needs integer dot products; reads quantize_q8_1's blocks
//   mul_mat_vec_f16_f32_fp16        needs shaderFloat16
// (gpu/ops/shader_variant.h: which ops offer which, and how one is picked).
// Feature variants exist only when the build's GLSL compiler supported the extension
// (probed at configure time); the portable form of every op always exists.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>

namespace tandem::shaders {

struct SpirvModule {
  std::string_view name;
  std::span<const uint32_t> words;  // SPIR-V words (host byte order; magic 0x07230203 first)
};

// Every embedded variant, in the order shaders/CMakeLists.txt lists them.
std::span<const SpirvModule> all_spirv();

// The SPIR-V of variant `name`; an empty span when this build has no such variant.
std::span<const uint32_t> find_spirv(std::string_view name);

}  // namespace tandem::shaders
