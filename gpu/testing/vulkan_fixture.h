// Test-only helpers for gpu/*_test.cpp: a Vulkan device per GpuOptions variant, kept for the
// whole test binary (creating instances with the validation layer is slow), and the device
// probe the test main uses to skip [gpu] tests where no device exists.
// Device choice for tests: GpuOptions::device "auto" when it finds a GPU, else "cpu" (lavapipe).
#pragma once

#include <dlfcn.h>

#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <vector>
#include <cmath>

#include "gpu/command_recorder.h"
#include "gpu/device.h"
#include "gpu/device_select.h"
#include "gpu/instance.h"
#include "gpu/pipeline.h"
#include "gpu/staging_ring.h"

namespace tandem::gpu::testing {

struct VulkanFixture {
  std::unique_ptr<Instance> instance;
  std::unique_ptr<Device> device;
  std::unique_ptr<PipelineCache> pipelines;
  std::unique_ptr<CommandRecorder> rec;
  std::unique_ptr<StagingRing> staging;
  std::string error;  // why the fixture is unusable; empty when ok

  uint64_t messages() const { return instance ? instance->validation_message_count() : 0; }
};

// Keeps Mesa's lavapipe ICD loaded for the rest of the process once an instance loaded it.
// lavapipe (Mesa 22.3) leaves a 128-byte realloc'd buffer per instance; when vkDestroyInstance
// unloads the ICD, LeakSanitizer reports it from "<unknown module>", which no suppression can
// match. Pinned, the buffer stays reachable through the library's globals.
inline void pin_software_icd() {
  (void)dlopen("libvulkan_lvp.so", RTLD_LAZY | RTLD_NOLOAD | RTLD_NODELETE);
}

// The same for tests that create instances without a fixture and never pin (e.g. a placement
// sweep whose GPU rows fail cleanly): loads the ICD once, never to be unloaded, so that every
// later instance reuses it. Harmless where lavapipe is not installed.
inline bool preload_software_icd() {
  return dlopen("libvulkan_lvp.so", RTLD_LAZY | RTLD_NODELETE) != nullptr;
}

inline std::string test_device_choice(const Instance& inst) {
  auto automatic = select_device(inst.devices(), "auto");
  return automatic.ok() && automatic.value() ? "auto" : "cpu";
}

inline std::unique_ptr<VulkanFixture> make_fixture(const GpuOptions& options) {
  auto fx = std::make_unique<VulkanFixture>();
  auto inst = Instance::create(options);
  if (!inst.ok()) {
    fx->error = inst.status().message();
    return fx;
  }
  fx->instance = std::move(inst).value();
  pin_software_icd();
  auto choice = select_device(fx->instance->devices(), test_device_choice(*fx->instance));
  if (!choice.ok() || !choice.value()) {
    fx->error = choice.ok() ? "no usable Vulkan device" : choice.status().message();
    return fx;
  }
  auto dev = Device::create(*fx->instance, *choice.value());
  if (!dev.ok()) {
    fx->error = dev.status().message();
    return fx;
  }
  fx->device = std::move(dev).value();
  auto pc = PipelineCache::create(*fx->device);
  if (!pc.ok()) {
    fx->error = pc.status().message();
    return fx;
  }
  fx->pipelines = std::move(pc).value();
  auto rec = CommandRecorder::create(*fx->device, *fx->pipelines);
  if (!rec.ok()) {
    fx->error = rec.status().message();
    return fx;
  }
  fx->rec = std::move(rec).value();
  auto ring = StagingRing::create(*fx->device, 1u << 20, 4);
  if (!ring.ok()) {
    fx->error = ring.status().message();
    return fx;
  }
  fx->staging = std::move(ring).value();
  return fx;
}

inline std::map<std::pair<bool, bool>, std::unique_ptr<VulkanFixture>>& all_fixtures() {
  static std::map<std::pair<bool, bool>, std::unique_ptr<VulkanFixture>> all;
  return all;
}

// Destroys every fixture. Called when the test run ends (device_test.cpp's listener): static
// destruction at exit would run after the Vulkan layers' own statics are gone.
inline void release_fixtures() { all_fixtures().clear(); }

// The shared fixture for `options` (environment defaults plus the two switches).
inline VulkanFixture& fixture(bool force_discrete = false, bool disable_host_import = false) {
  auto& slot = all_fixtures()[{force_discrete, disable_host_import}];
  if (!slot) {
    GpuOptions o = GpuOptions::from_env();
    o.force_discrete = o.force_discrete || force_discrete;
    o.disable_host_import = o.disable_host_import || disable_host_import;
    slot = make_fixture(o);
  }
  return *slot;
}

// Empty when a device is usable, else why not (for test::register_probe("vulkan", ...)).
inline std::string vulkan_probe() {
  GpuOptions o;  // no validation: probing must not count messages
  auto inst = Instance::create(o);
  if (!inst.ok()) return inst.status().message();
  pin_software_icd();
  if ((*inst)->devices().empty()) return "no Vulkan device";
  o.device = test_device_choice(**inst);
  auto choice = select_device((*inst)->devices(), o.device);
  if (!choice.ok()) return choice.status().message();
  if (!choice.value()) return "no usable Vulkan device";
  return {};
}

}  // namespace tandem::gpu::testing

namespace tandem::gpu::testing {

// A host-visible buffer holding `bytes` bytes copied from `data` (nullptr: left as allocated).
inline Result<Buffer> host_buffer(const Device& device, const void* data, size_t bytes, std::string_view name,
                                  MemoryIntent intent = MemoryIntent::shared) {
  TANDEM_ASSIGN_OR_RETURN(Buffer b, Buffer::create(device, bytes, intent, name));
  if (data != nullptr) TANDEM_RETURN_IF_ERROR(b.write(data, bytes));
  return b;
}

inline std::vector<float> read_f32(const Buffer& b, size_t n, size_t offset_bytes = 0) {
  std::vector<float> v(n);
  if (!b.read(v.data(), n * 4, offset_bytes).ok()) v.assign(n, NAN);
  return v;
}

}  // namespace tandem::gpu::testing
