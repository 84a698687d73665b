#include <catch2/catch.hpp>

#include "gpu/memory.h"

namespace tandem::gpu {
namespace {

constexpr uint32_t DL = mem_device_local, HV = mem_host_visible, HC = mem_host_coherent, CA = mem_host_cached;

TEST_CASE("memory types by intent on a discrete GPU", "[memory]") {
  // A typical discrete layout: VRAM, BAR (VRAM visible to the host), system RAM uncached and cached.
  const std::vector<MemoryTypeInfo> types = {{DL, 0}, {DL | HV | HC, 0}, {HV | HC, 1}, {HV | HC | CA, 1}};
  const uint32_t all = 0xF;
  CHECK(choose_memory_types(types, all, MemoryIntent::device_weights, false).front() == 0);
  CHECK(choose_memory_types(types, all, MemoryIntent::upload_staging, false).front() == 2);
  CHECK(choose_memory_types(types, all, MemoryIntent::readback, false).front() == 3);
  CHECK(choose_memory_types(types, all, MemoryIntent::shared, false).front() == 1);
  // Required flags exclude, they do not just score: staging never lands in VRAM-only memory.
  const auto staging = choose_memory_types(types, all, MemoryIntent::upload_staging, false);
  CHECK(std::find(staging.begin(), staging.end(), 0u) == staging.end());
  // memoryTypeBits restricts the candidates.
  CHECK(choose_memory_types(types, 0b0100, MemoryIntent::readback, false) == std::vector<uint32_t>{2});
  CHECK(choose_memory_types(types, 0b0001, MemoryIntent::readback, false).empty());
}

TEST_CASE("memory types by intent on unified memory", "[memory]") {
  // lavapipe / integrated: one heap, every type device-local and host-visible.
  const std::vector<MemoryTypeInfo> types = {{DL, 0}, {DL | HV | HC | CA, 0}};
  CHECK(choose_memory_types(types, 0b11, MemoryIntent::device_weights, true).front() == 1);  // filled in place
  CHECK(choose_memory_types(types, 0b11, MemoryIntent::device_weights, false).front() == 0);  // forced discrete
  CHECK(choose_memory_types(types, 0b11, MemoryIntent::readback, true).front() == 1);
  // Forced discrete on a device with only host-visible device-local memory still finds one.
  const std::vector<MemoryTypeInfo> one = {{DL | HV | HC | CA, 0}};
  CHECK(choose_memory_types(one, 0b1, MemoryIntent::device_weights, false) == std::vector<uint32_t>{0});
}

}  // namespace
}  // namespace tandem::gpu
