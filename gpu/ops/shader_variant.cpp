#include "gpu/ops/shader_variant.h"

#include <algorithm>
#include <cstdlib>
#include <string_view>

#include "shaders/spirv.h"

namespace tandem::gpu::ops {

const char* shader_variant_name(ShaderVariant v) {
  switch (v) {
    case ShaderVariant::automatic: return "automatic";
    case ShaderVariant::portable: return "portable";
    case ShaderVariant::subgroup: return "subgroup";
    case ShaderVariant::intdot: return "intdot";
    case ShaderVariant::fp16: return "fp16";
  }
  return "?";
}

const char* shader_variant_suffix(ShaderVariant v) {
  switch (v) {
    case ShaderVariant::subgroup: return "_subgroup";
    case ShaderVariant::intdot: return "_intdot";
    case ShaderVariant::fp16: return "_fp16";
    case ShaderVariant::automatic:
    case ShaderVariant::portable: break;
  }
  return "";
}

bool portable_shaders_forced() {
  // Read on every call (recording an op costs far more) so tests and tools can flip it.
  const char* v = std::getenv("TANDEM_VK_PORTABLE_SHADERS");
  return v != nullptr && std::string_view(v) != "" && std::string_view(v) != "0";
}

std::string missing_feature(const DeviceCaps& caps, ShaderVariant v) {
  switch (v) {
    case ShaderVariant::subgroup:
      return caps.subgroup_arithmetic ? "" : "device has no subgroup arithmetic in compute shaders";
    case ShaderVariant::intdot:
      return caps.integer_dot_product ? "" : "device has no VK_KHR_shader_integer_dot_product";
    case ShaderVariant::fp16: return caps.fp16 ? "" : "device has no shaderFloat16";
    case ShaderVariant::automatic:
    case ShaderVariant::portable: break;
  }
  return "";
}

bool device_supports(const DeviceCaps& caps, ShaderVariant v) { return missing_feature(caps, v).empty(); }

namespace {

bool built(const std::string& name) { return !shaders::find_spirv(name).empty(); }

}  // namespace

Result<std::string> pick_shader_variant(const DeviceCaps& caps, std::string_view op, const std::string& base,
                                        std::span<const ShaderVariant> offered, ShaderVariant requested) {
  if (requested == ShaderVariant::portable) return base;
  if (requested == ShaderVariant::automatic) {
    if (portable_shaders_forced()) return base;
    for (ShaderVariant v : offered) {
      if (v == ShaderVariant::fp16) continue;  // opt-in only: see the header
      const std::string name = base + shader_variant_suffix(v);
      if (device_supports(caps, v) && built(name)) return name;
    }
    return base;
  }
  const std::string name = base + shader_variant_suffix(requested);
  if (std::find(offered.begin(), offered.end(), requested) == offered.end()) {
    return make_error(ErrorCode::not_found, "{}: no {} variant of '{}'", op, shader_variant_name(requested), base);
  }
  if (!built(name)) {
    return make_error(ErrorCode::not_found, "{}: shader variant '{}' is not in this build (GLSL compiler lacks the "
                      "extension)", op, name);
  }
  if (!device_supports(caps, requested)) {
    return make_error(ErrorCode::not_found, "{}: '{}' unavailable: {}", op, name, missing_feature(caps, requested));
  }
  return name;
}

std::vector<ShaderVariant> runnable_variants(const DeviceCaps& caps, const std::string& base,
                                             std::span<const ShaderVariant> offered) {
  std::vector<ShaderVariant> out = {ShaderVariant::portable};
  for (ShaderVariant v : offered) {
    if (device_supports(caps, v) && built(base + shader_variant_suffix(v))) out.push_back(v);
  }
  return out;
}

}  // namespace tandem::gpu::ops
