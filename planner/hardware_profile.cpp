#include "planner/hardware_profile.h"

#include <limits>

#include "planner/json_fields.h"
#include "planner/text_file.h"

namespace tandem {

using planner_json::at;
using planner_json::json;
using planner_json::Reader;
using planner_json::read_text_file;
using planner_json::write_text_file;
using planner_json::sub;

namespace {
constexpr double k_inf = std::numeric_limits<double>::max();
}

const CpuIsaPerf& CpuProfile::best() const {
  // The runtime runs the fastest kernels it has, so the planner must cost those: the entry with
  // the lowest measured dense expert time. A bandwidth probe alone can rank a scalar entry first
  // on a noisy machine while its expert FFN is several times slower.
  size_t best_i = 0;
  bool timed = false;
  for (size_t i = 0; i < isa.size(); ++i) {
    if (isa[i].expert_ffn_dense_us <= 0) continue;
    if (!timed || isa[i].expert_ffn_dense_us < isa[best_i].expert_ffn_dense_us) best_i = i;
    timed = true;
  }
  if (timed) return isa[best_i];
  for (size_t i = 1; i < isa.size(); ++i) {
    if (isa[i].read_bandwidth_gbps > isa[best_i].read_bandwidth_gbps) best_i = i;
  }
  return isa[best_i];
}

std::string_view gpu_type_name(GpuType t) {
  return t == GpuType::integrated ? "integrated" : "discrete";
}

double StorageProfile::throughput_gbps(uint64_t block_bytes) const {
  // Pick the block size first, so that a deep queue of small reads never stands in for
  // large reads it was not measured at.
  uint64_t chosen = 0;
  uint64_t smallest = UINT64_MAX;
  for (const auto& p : random_read) {
    smallest = std::min(smallest, p.block_bytes);
    if (p.block_bytes <= block_bytes) chosen = std::max(chosen, p.block_bytes);
  }
  if (chosen == 0) chosen = smallest;
  double best = 0;
  for (const auto& p : random_read) {
    if (p.block_bytes == chosen) best = std::max(best, p.throughput_gbps);
  }
  return best;
}

Result<HardwareProfile> hardware_profile_from_json(std::string_view text,
                                                   std::string_view display_name) {
  Reader r{std::string(display_name)};
  json root;
  if (!r.parse(text, root) || !r.check_header(root, HardwareProfile::k_schema_version)) {
    return r.status();
  }
  r.only_keys(root, "", {"schema_version", "name", "notes", "ram_bytes", "shared_memory_bus",
                         "shared_bandwidth_gbps", "cpu", "gpus", "storage"});
  HardwareProfile hw;
  hw.name = r.str(root, "name", "");
  if (root.contains("notes")) {
    const json* notes = &root["notes"];
    if (r.is_array(notes, "notes")) {
      for (size_t i = 0; i < notes->size(); ++i) {
        if (!(*notes)[i].is_string()) r.fail(at("notes", i), "must be a string");
        else hw.notes.push_back((*notes)[i].get<std::string>());
      }
    }
  }
  hw.ram_bytes = r.u64(root, "ram_bytes", "", 1);
  hw.shared_memory_bus = r.boolean(root, "shared_memory_bus", "");
  hw.shared_bandwidth_gbps = hw.shared_memory_bus ? r.positive(root, "shared_bandwidth_gbps", "")
                                                  : r.num(root, "shared_bandwidth_gbps", "", 0, k_inf);

  const json* cpu = r.field(root, "cpu", "");
  if (r.is_object(cpu, "cpu")) {
    r.only_keys(*cpu, "cpu", {"name", "n_cores", "n_threads", "isa"});
    hw.cpu.name = r.str(*cpu, "name", "cpu");
    hw.cpu.n_cores = static_cast<uint32_t>(r.u64(*cpu, "n_cores", "cpu", 1, 4096));
    hw.cpu.n_threads = static_cast<uint32_t>(r.u64(*cpu, "n_threads", "cpu", 1, 65536));
    const json* isa = r.field(*cpu, "isa", "cpu");
    if (r.is_array(isa, "cpu.isa")) {
      if (isa->empty()) r.fail("cpu.isa", "must have at least one entry");
      for (size_t i = 0; i < isa->size() && r.ok(); ++i) {
        const std::string p = at("cpu.isa", i);
        const json& e = (*isa)[i];
        if (!r.is_object(&e, p)) break;
        r.only_keys(e, p, {"isa", "n_threads", "read_bandwidth_gbps", "compute_gflops",
                           "expert_ffn_dense_us", "expert_ffn_gate_us", "attention_us"});
        CpuIsaPerf x;
        x.isa = r.str(e, "isa", p);
        x.n_threads = static_cast<uint32_t>(r.u64(e, "n_threads", p, 1, 65536));
        x.read_bandwidth_gbps = r.positive(e, "read_bandwidth_gbps", p);
        x.compute_gflops = r.positive(e, "compute_gflops", p);
        x.expert_ffn_dense_us = r.num(e, "expert_ffn_dense_us", p, 0, k_inf);
        x.expert_ffn_gate_us = r.num(e, "expert_ffn_gate_us", p, 0, k_inf);
        x.attention_us = r.num(e, "attention_us", p, 0, k_inf);
        if (r.ok() && x.expert_ffn_dense_us > 0 && x.expert_ffn_gate_us > x.expert_ffn_dense_us) {
          r.fail(sub(p, "expert_ffn_gate_us"), "must be <= expert_ffn_dense_us");
        }
        hw.cpu.isa.push_back(std::move(x));
      }
    }
  }

  const json* gpus = r.field(root, "gpus", "");
  if (r.is_array(gpus, "gpus")) {
    for (size_t i = 0; i < gpus->size() && r.ok(); ++i) {
      const std::string p = at("gpus", i);
      const json& g = (*gpus)[i];
      if (!r.is_object(&g, p)) break;
      r.only_keys(g, p, {"name", "type", "unified_memory", "memory_bytes", "bandwidth_gbps",
                         "upload_gbps", "zero_copy_gbps", "compute_gflops", "expert_ffn_us",
                         "attention_us", "submit_wait_us"});
      GpuProfile x;
      x.name = r.str(g, "name", p);
      const std::string type = r.str(g, "type", p);
      if (r.ok() && type != "integrated" && type != "discrete") {
        r.fail(sub(p, "type"), "must be \"integrated\" or \"discrete\", is \"" + type + "\"");
      }
      x.type = type == "integrated" ? GpuType::integrated : GpuType::discrete;
      x.unified_memory = r.boolean(g, "unified_memory", p);
      x.memory_bytes = r.u64(g, "memory_bytes", p, 1);
      x.bandwidth_gbps = r.positive(g, "bandwidth_gbps", p);
      x.upload_gbps = r.positive(g, "upload_gbps", p);
      x.zero_copy_gbps = r.num(g, "zero_copy_gbps", p, 0, k_inf);
      x.compute_gflops = r.positive(g, "compute_gflops", p);
      x.expert_ffn_us = r.num(g, "expert_ffn_us", p, 0, k_inf);
      x.attention_us = r.num(g, "attention_us", p, 0, k_inf);
      x.submit_wait_us = r.num(g, "submit_wait_us", p, 0, k_inf);
      hw.gpus.push_back(std::move(x));
    }
  }

  const json* st = r.field(root, "storage", "");
  if (r.is_object(st, "storage")) {
    r.only_keys(*st, "storage", {"name", "latency_us", "random_read"});
    hw.storage.name = r.str(*st, "name", "storage");
    hw.storage.latency_us = r.num(*st, "latency_us", "storage", 0, k_inf);
    const json* rr = r.field(*st, "random_read", "storage");
    if (r.is_array(rr, "storage.random_read")) {
      if (rr->empty()) r.fail("storage.random_read", "must have at least one entry");
      for (size_t i = 0; i < rr->size() && r.ok(); ++i) {
        const std::string p = at("storage.random_read", i);
        const json& e = (*rr)[i];
        if (!r.is_object(&e, p)) break;
        r.only_keys(e, p, {"block_bytes", "queue_depth", "throughput_gbps"});
        StorageReadPoint x;
        x.block_bytes = r.u64(e, "block_bytes", p, 1);
        x.queue_depth = static_cast<uint32_t>(r.u64(e, "queue_depth", p, 1, 65536));
        x.throughput_gbps = r.positive(e, "throughput_gbps", p);
        hw.storage.random_read.push_back(x);
      }
    }
  }
  if (!r.ok()) return r.status();
  return hw;
}

std::string hardware_profile_to_json(const HardwareProfile& hw) {
  json root;
  root["schema_version"] = HardwareProfile::k_schema_version;
  root["name"] = hw.name;
  root["notes"] = hw.notes;
  root["ram_bytes"] = hw.ram_bytes;
  root["shared_memory_bus"] = hw.shared_memory_bus;
  root["shared_bandwidth_gbps"] = hw.shared_bandwidth_gbps;
  json cpu;
  cpu["name"] = hw.cpu.name;
  cpu["n_cores"] = hw.cpu.n_cores;
  cpu["n_threads"] = hw.cpu.n_threads;
  cpu["isa"] = json::array();
  for (const auto& x : hw.cpu.isa) {
    cpu["isa"].push_back({{"isa", x.isa},
                          {"n_threads", x.n_threads},
                          {"read_bandwidth_gbps", x.read_bandwidth_gbps},
                          {"compute_gflops", x.compute_gflops},
                          {"expert_ffn_dense_us", x.expert_ffn_dense_us},
                          {"expert_ffn_gate_us", x.expert_ffn_gate_us},
                          {"attention_us", x.attention_us}});
  }
  root["cpu"] = std::move(cpu);
  root["gpus"] = json::array();
  for (const auto& g : hw.gpus) {
    root["gpus"].push_back({{"name", g.name},
                            {"type", std::string(gpu_type_name(g.type))},
                            {"unified_memory", g.unified_memory},
                            {"memory_bytes", g.memory_bytes},
                            {"bandwidth_gbps", g.bandwidth_gbps},
                            {"upload_gbps", g.upload_gbps},
                            {"zero_copy_gbps", g.zero_copy_gbps},
                            {"compute_gflops", g.compute_gflops},
                            {"expert_ffn_us", g.expert_ffn_us},
                            {"attention_us", g.attention_us},
                            {"submit_wait_us", g.submit_wait_us}});
  }
  json st;
  st["name"] = hw.storage.name;
  st["latency_us"] = hw.storage.latency_us;
  st["random_read"] = json::array();
  for (const auto& p : hw.storage.random_read) {
    st["random_read"].push_back({{"block_bytes", p.block_bytes},
                                 {"queue_depth", p.queue_depth},
                                 {"throughput_gbps", p.throughput_gbps}});
  }
  root["storage"] = std::move(st);
  return root.dump(2, ' ', false, json::error_handler_t::replace) + "\n";
}

Result<HardwareProfile> load_hardware_profile(const std::filesystem::path& path) {
  TANDEM_ASSIGN_OR_RETURN(std::string text, read_text_file(path));
  return hardware_profile_from_json(text, path.string());
}

Status save_hardware_profile(const HardwareProfile& hw, const std::filesystem::path& path) {
  return write_text_file(path, hardware_profile_to_json(hw));
}

}  // namespace tandem
