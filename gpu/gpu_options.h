// GpuOptions: every knob of the Vulkan backend in one struct, passed explicitly to
// Instance::create and Device::create. CLI flags and the TANDEM_* environment variables below
// only fill it (from_env); nothing in gpu/ reads the environment elsewhere.
#pragma once

#include <string>

namespace tandem::gpu {

struct GpuOptions {
  // Which device: "auto" (best discrete, else integrated, else none: CPU only), "cpu" (a
  // software device such as lavapipe; never chosen by "auto"), "none", or an index into
  // Instance::devices() as `tandem devices` lists them.
  std::string device = "auto";
  // Khronos validation layer + a debug messenger that counts warnings and errors.
  // TANDEM_VK_VALIDATION=1, or on when VK_INSTANCE_LAYERS names VK_LAYER_KHRONOS_validation.
  bool validation = false;
  // Treat a unified-memory device as discrete: device-local weights filled through the
  // staging ring, no host-pointer import. TANDEM_VK_FORCE_DISCRETE=1.
  bool force_discrete = false;
  // Never import host memory (VK_EXT_external_memory_host) even where it is supported.
  // TANDEM_VK_DISABLE_HOST_IMPORT=1.
  bool disable_host_import = false;

  // Defaults overridden by the environment variables named above.
  static GpuOptions from_env();
};

}  // namespace tandem::gpu
