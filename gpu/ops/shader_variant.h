// ShaderVariant: which form of an op's shader runs. Every op has a portable variant that needs
// no optional device feature; feature variants are built only where the GLSL compiler supports
// the extension (shaders/CMakeLists.txt) and run only where the device has the feature
// (DeviceCaps; Device::create enables every feature the caps report). Variant names append a
// suffix to the portable name, as ggml-vulkan does:
//   portable  "mul_mat_vec_q4_0_f32"            shared-memory reductions, f32 arithmetic
//   subgroup  "..._subgroup"  subgroupAdd / subgroupMax reductions   (DeviceCaps::subgroup_arithmetic)
//   intdot    "..._intdot"    packed int8x4 dot products over q8_1 activations
//                                                               (DeviceCaps::integer_dot_product)
//   fp16      "..._fp16"      f16 products, f32 accumulation     (DeviceCaps::fp16)
// Selection (automatic): the first variant in the op's preference list that the build and the
// device both have, else portable. Ops offer: mul_mat_vec(_id) q4_0/q8_0: intdot > subgroup;
// f16: fp16 > subgroup; f32: subgroup. flash_attn: f16 cache fp16 > subgroup; f32 subgroup.
// mul_mat_id, top_k: subgroup.
// fp16 is never chosen automatically, only on request: the ops that have it (decode GEMV, decode
// attention) are bound by memory reads, which f16 math does not shorten, while it costs
// accuracy (NMSE ~1e-7 instead of ~1e-14 against f64) that end-to-end bounds on f32 models
// notice. It is there for devices whose f32 ALU rate is the limit.
// TANDEM_VK_PORTABLE_SHADERS=1 in the environment makes every automatic choice portable (to rule
// out a driver bug in a feature path); an explicitly requested variant is unaffected.
// An explicit request for a variant the op does not offer, the build lacks or the device cannot
// run is not_found naming the variant and the missing feature.
#pragma once

#include <span>
#include <string>
#include <vector>

#include "core/status.h"
#include "gpu/device.h"

namespace tandem::gpu::ops {

enum class ShaderVariant { automatic, portable, subgroup, intdot, fp16 };
// The name mul_mat_vec's API had before the feature variants; the same enum.
using ReductionVariant = ShaderVariant;

const char* shader_variant_name(ShaderVariant v);    // "automatic", "portable", "subgroup", ...
const char* shader_variant_suffix(ShaderVariant v);  // "", "", "_subgroup", "_intdot", "_fp16"

// TANDEM_VK_PORTABLE_SHADERS is set to something other than "" or "0" (read at each call).
bool portable_shaders_forced();

// The device has what the variant needs (portable and automatic: always true).
bool device_supports(const DeviceCaps& caps, ShaderVariant v);

// Why device_supports is false ("device has no integer dot product"), empty when true.
std::string missing_feature(const DeviceCaps& caps, ShaderVariant v);

// The variant name for an op whose portable shader is `base`, given the feature variants the
// op offers for this dtype in preference order; see the header comment for the rules.
Result<std::string> pick_shader_variant(const DeviceCaps& caps, std::string_view op, const std::string& base,
                                        std::span<const ShaderVariant> offered, ShaderVariant requested);

// The variants (portable first) that pick_shader_variant would accept explicitly on this device:
// what conformance tests iterate over.
std::vector<ShaderVariant> runnable_variants(const DeviceCaps& caps, const std::string& base,
                                             std::span<const ShaderVariant> offered);

}  // namespace tandem::gpu::ops
