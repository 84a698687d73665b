#include "gpu/gpu_options.h"

#include <cstdlib>
#include <cstring>

namespace tandem::gpu {
namespace {

bool env_flag(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' && std::strcmp(v, "0") != 0;
}

}  // namespace

GpuOptions GpuOptions::from_env() {
  GpuOptions o;
  const char* layers = std::getenv("VK_INSTANCE_LAYERS");
  o.validation = env_flag("TANDEM_VK_VALIDATION") ||
                 (layers != nullptr && std::strstr(layers, "VK_LAYER_KHRONOS_validation") != nullptr);
  o.force_discrete = env_flag("TANDEM_VK_FORCE_DISCRETE");
  o.disable_host_import = env_flag("TANDEM_VK_DISABLE_HOST_IMPORT");
  return o;
}

}  // namespace tandem::gpu
