// `tandem devices [--json]`: every Vulkan device with its capabilities, and which one
// `--device auto` would use.
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <memory>

#include "command.h"
#include "gpu/device_select.h"
#include "gpu/instance.h"

namespace tandem::tools {
namespace {

struct DevicesOptions {
  bool json = false;
  std::string device = "auto";
};

std::string mib(uint64_t bytes) { return fmt::format("{:.0f} MiB", static_cast<double>(bytes) / 1048576.0); }

nlohmann::json to_json(const gpu::DeviceCaps& c) {
  nlohmann::json heaps = nlohmann::json::array();
  for (const auto& h : c.heaps) heaps.push_back({{"size", h.size}, {"device_local", h.device_local}});
  nlohmann::json types = nlohmann::json::array();
  for (const auto& t : c.memory_types) {
    types.push_back({{"heap", t.heap},
                     {"device_local", (t.flags & gpu::mem_device_local) != 0},
                     {"host_visible", (t.flags & gpu::mem_host_visible) != 0},
                     {"host_coherent", (t.flags & gpu::mem_host_coherent) != 0},
                     {"host_cached", (t.flags & gpu::mem_host_cached) != 0}});
  }
  nlohmann::json j = {
      {"index", c.index},
      {"name", c.name},
      {"type", gpu::device_type_name(c.type)},
      {"vendor_id", c.vendor_id},
      {"device_id", c.device_id},
      {"driver_name", c.driver_name},
      {"driver_info", c.driver_info},
      {"api_version", c.api_version_string()},
      {"unified_memory", c.unified_memory},
      {"heaps", heaps},
      {"memory_types", types},
      {"subgroup_size", c.subgroup_size},
      {"subgroup_arithmetic", c.subgroup_arithmetic},
      {"fp16", c.fp16},
      {"int8", c.int8},
      {"integer_dot_product", c.integer_dot_product},
      {"external_memory_host", c.external_memory_host},
      {"min_imported_host_pointer_alignment", c.min_imported_host_pointer_alignment},
      {"timeline_semaphore", c.timeline_semaphore},
      {"timestamps", c.timestamps},
      {"max_memory_allocation_size", c.max_memory_allocation_size},
      {"max_storage_buffer_range", c.max_storage_buffer_range},
      {"compute_queue_families", c.compute_queue_families},
      {"transfer_queue_family", c.transfer_queue_family ? nlohmann::json(*c.transfer_queue_family) : nlohmann::json()},
  };
  return j;
}

void print_text(const gpu::DeviceCaps& c, bool chosen, const std::string& choice) {
  std::printf("%u: %s%s\n", c.index, c.name.c_str(), chosen ? fmt::format("  [chosen by --device {}]", choice).c_str() : "");
  std::printf("   type %s, driver %s (%s), Vulkan %s, vendor 0x%04x device 0x%04x\n", gpu::device_type_name(c.type),
              c.driver_name.c_str(), c.driver_info.c_str(), c.api_version_string().c_str(), c.vendor_id, c.device_id);
  std::printf("   memory: %s", c.unified_memory ? "unified" : "discrete");
  for (size_t h = 0; h < c.heaps.size(); ++h) {
    std::printf("%s heap %zu %s%s", h ? "," : ";", h, mib(c.heaps[h].size).c_str(),
                c.heaps[h].device_local ? " device-local" : "");
  }
  std::printf("\n   memory types:");
  for (const auto& t : c.memory_types) {
    std::string f;
    if (t.flags & gpu::mem_device_local) f += "L";
    if (t.flags & gpu::mem_host_visible) f += "V";
    if (t.flags & gpu::mem_host_coherent) f += "C";
    if (t.flags & gpu::mem_host_cached) f += "$";
    std::printf(" %s@%u", f.empty() ? "-" : f.c_str(), t.heap);
  }
  std::printf("   (L device-local, V host-visible, C coherent, $ cached)\n");
  std::printf("   subgroup %u%s, fp16 %s, int8 %s, integer dot %s, timeline semaphores %s, timestamps %s\n",
              c.subgroup_size, c.subgroup_arithmetic ? " (arithmetic)" : "", c.fp16 ? "yes" : "no",
              c.int8 ? "yes" : "no", c.integer_dot_product ? "yes" : "no", c.timeline_semaphore ? "yes" : "no",
              c.timestamps ? "yes" : "no");
  if (c.external_memory_host) {
    std::printf("   host memory import: yes (alignment %llu)\n",
                static_cast<unsigned long long>(c.min_imported_host_pointer_alignment));
  } else {
    std::printf("   host memory import: no\n");
  }
  std::printf("   max allocation %s, max storage buffer range %s\n", mib(c.max_memory_allocation_size).c_str(),
              mib(c.max_storage_buffer_range).c_str());
  std::string compute;
  for (uint32_t q : c.compute_queue_families) compute += (compute.empty() ? "" : ",") + std::to_string(q);
  std::printf("   queue families: compute %s, transfer-only %s\n", compute.c_str(),
              c.transfer_queue_family ? std::to_string(*c.transfer_queue_family).c_str() : "none");
}

int run_devices(const DevicesOptions& o) {
  gpu::GpuOptions g = gpu::GpuOptions::from_env();
  g.device = o.device;
  auto inst = gpu::Instance::create(g);
  if (!inst.ok()) {
    // No driver / no loader-visible device is an answer, not a failure: the CPU path remains.
    if (o.json) {
      std::printf("%s\n", nlohmann::json({{"devices", nlohmann::json::array()}, {"chosen", nullptr},
                                          {"error", inst.status().message()}}).dump(2).c_str());
    } else {
      std::printf("no Vulkan devices: %s\n", inst.status().message().c_str());
    }
    return 0;
  }
  const auto& devs = (*inst)->devices();
  auto chosen = gpu::select_device(devs, o.device);
  if (o.json) {
    nlohmann::json arr = nlohmann::json::array();
    for (const auto& c : devs) arr.push_back(to_json(c));
    nlohmann::json out = {{"devices", arr}};
    out["chosen"] = chosen.ok() && chosen.value() ? nlohmann::json(*chosen.value()) : nlohmann::json();
    std::printf("%s\n", out.dump(2).c_str());
  } else {
    if (devs.empty()) std::printf("no Vulkan devices\n");
    for (const auto& c : devs) print_text(c, chosen.ok() && chosen.value() == std::optional<size_t>(c.index), o.device);
    if (chosen.ok() && !chosen.value()) std::printf("--device %s: none chosen, CPU only\n", o.device.c_str());
  }
  if (!chosen.ok()) return report_error(chosen.status());
  return 0;
}

const CommandRegistration k_reg{
    "devices", "List Vulkan devices and their capabilities", 90, [](CLI::App& sub) {
      auto o = std::make_shared<DevicesOptions>();
      sub.add_flag("--json", o->json, "Print JSON");
      sub.add_option("--device", o->device, "Device to mark as chosen: auto, cpu, none or an index")
          ->capture_default_str();
      return [o] { return run_devices(*o); };
    }};

}  // namespace
}  // namespace tandem::tools
