#define CATCH_CONFIG_EXTERNAL_INTERFACES
#include <catch2/catch.hpp>

#include <cstdlib>
#include <cstring>

#include "gpu/device_select.h"
#include "gpu/testing/vulkan_fixture.h"
#include "support/test_support.h"

namespace tandem::gpu {
namespace {

// The test main calls this for the [gpu] ctest entry and skips (exit 77) without a device.
const bool k_probe = test::register_probe("vulkan", testing::vulkan_probe);

struct ReleaseFixtures : Catch::TestEventListenerBase {
  using TestEventListenerBase::TestEventListenerBase;
  void testRunEnded(const Catch::TestRunStats& stats) override {
    testing::release_fixtures();
    TestEventListenerBase::testRunEnded(stats);
  }
};
CATCH_REGISTER_LISTENER(ReleaseFixtures)

DeviceCaps made_up(DeviceType type, uint64_t local_bytes, std::string name) {
  DeviceCaps c;
  c.name = std::move(name);
  c.type = type;
  c.heaps = {{local_bytes, true}};
  return c;
}

TEST_CASE("select_device prefers discrete, then integrated, never a CPU device", "[device]") {
  const std::vector<DeviceCaps> devs = {made_up(DeviceType::cpu, 1ull << 34, "llvmpipe"),
                                        made_up(DeviceType::integrated, 1ull << 30, "igpu"),
                                        made_up(DeviceType::discrete, 8ull << 30, "small"),
                                        made_up(DeviceType::discrete, 24ull << 30, "big")};
  CHECK(select_device(devs, "auto").value() == std::optional<size_t>(3));
  CHECK(select_device(devs, "").value() == std::optional<size_t>(3));
  CHECK(select_device(std::span(devs).first(2), "auto").value() == std::optional<size_t>(1));
  CHECK(select_device(std::span(devs).first(1), "auto").value() == std::nullopt);  // CPU only
  CHECK(select_device(devs, "cpu").value() == std::optional<size_t>(0));
  CHECK(select_device(devs, "none").value() == std::nullopt);
  CHECK(select_device(devs, "2").value() == std::optional<size_t>(2));
  CHECK(select_device(devs, "4").status().code() == ErrorCode::not_found);
  CHECK(select_device(std::span(devs).subspan(1), "cpu").status().code() == ErrorCode::not_found);
  CHECK(select_device(devs, "gpu0").status().code() == ErrorCode::invalid_argument);
  CHECK(select_device(devs, "-1").status().code() == ErrorCode::invalid_argument);
  CHECK(select_device({}, "auto").value() == std::nullopt);
}

TEST_CASE("GpuOptions::from_env reads the TANDEM_VK_* switches", "[device]") {
  const char* old_layers = std::getenv("VK_INSTANCE_LAYERS");
  const std::string saved = old_layers ? old_layers : "";
  ::setenv("VK_INSTANCE_LAYERS", "VK_LAYER_KHRONOS_validation", 1);
  ::setenv("TANDEM_VK_FORCE_DISCRETE", "1", 1);
  ::setenv("TANDEM_VK_DISABLE_HOST_IMPORT", "0", 1);
  GpuOptions o = GpuOptions::from_env();
  CHECK(o.validation);
  CHECK(o.force_discrete);
  CHECK_FALSE(o.disable_host_import);
  ::unsetenv("TANDEM_VK_FORCE_DISCRETE");
  ::unsetenv("TANDEM_VK_DISABLE_HOST_IMPORT");
  ::unsetenv("VK_INSTANCE_LAYERS");
  CHECK_FALSE(GpuOptions::from_env().validation);
  if (old_layers) ::setenv("VK_INSTANCE_LAYERS", saved.c_str(), 1);
}

TEST_CASE("devices are enumerated with their caps", "[gpu][device]") {
  auto& fx = testing::fixture();
  INFO(fx.error);
  REQUIRE(fx.device);
  const char* layers = std::getenv("VK_INSTANCE_LAYERS");
  if (layers && std::strstr(layers, "VK_LAYER_KHRONOS_validation")) REQUIRE(fx.instance->validation_enabled());
  REQUIRE_FALSE(fx.instance->devices().empty());
  for (const DeviceCaps& c : fx.instance->devices()) {
    INFO(c.name);
    CHECK_FALSE(c.name.empty());
    CHECK_FALSE(c.heaps.empty());
    CHECK_FALSE(c.memory_types.empty());
    for (const auto& t : c.memory_types) CHECK(t.heap < c.heaps.size());
    CHECK(c.max_storage_buffer_range > 0);
    CHECK(c.max_compute_workgroup_count[0] > 0);
    if (c.external_memory_host) {
      CHECK(c.min_imported_host_pointer_alignment > 0);
      CHECK((c.min_imported_host_pointer_alignment & (c.min_imported_host_pointer_alignment - 1)) == 0);
    }
  }
  const DeviceCaps& c = fx.device->caps();
  CHECK(c.api_version >= VK_API_VERSION_1_2);
  CHECK(c.timeline_semaphore);
  CHECK_FALSE(c.compute_queue_families.empty());
  CHECK(c.subgroup_size > 0);
  if (c.is_software()) {
    // lavapipe: a CPU device is unified by definition and (Mesa >= 21) imports host memory.
    CHECK(c.unified_memory);
    CHECK(fx.device->unified());
    CHECK(select_device(fx.instance->devices(), "auto").value() != std::optional<size_t>(c.index));
  }
  CHECK_FALSE(fx.device->summary().empty());
  REQUIRE(fx.messages() == 0);
}

TEST_CASE("the validation messenger counts messages", "[gpu][device]") {
  // A separate instance with validation forced on, so the shared fixtures keep their zero.
  GpuOptions o;
  o.validation = true;
  auto inst = Instance::create(o);
  if (!inst.ok() && inst.status().code() == ErrorCode::not_found) {
    WARN("validation layer not installed: " << inst.status().message());
    return;
  }
  REQUIRE(inst.ok());
  testing::pin_software_icd();
  REQUIRE((*inst)->validation_enabled());
  auto choice = select_device((*inst)->devices(), testing::test_device_choice(**inst));
  REQUIRE((choice.ok() && choice.value()));
  auto dev = Device::create(**inst, *choice.value());
  REQUIRE(dev.ok());
  REQUIRE((*inst)->validation_message_count() == 0);
  // Invalid usage the layer must report: a zero-sized buffer (VUID-VkBufferCreateInfo-size-00912).
  VkBufferCreateInfo bi{};
  bi.sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO;
  bi.size = 0;
  bi.usage = VK_BUFFER_USAGE_STORAGE_BUFFER_BIT;
  VkBuffer b = VK_NULL_HANDLE;
  if (vkCreateBuffer((*dev)->handle(), &bi, nullptr, &b) == VK_SUCCESS && b != VK_NULL_HANDLE) {
    vkDestroyBuffer((*dev)->handle(), b, nullptr);
  }
  CHECK((*inst)->validation_message_count() >= 1);
}

}  // namespace
}  // namespace tandem::gpu
