#include "runtime/calibrate.h"

#include <sys/sysinfo.h>

#include <algorithm>

#include "runtime/calibrate_probes.h"

namespace tandem {

using namespace calibrate_detail;

namespace {

Status check_options(const CalibrateOptions& o) {
  if (o.expert_dtype != DType::q4_0 && o.expert_dtype != DType::q8_0) {
    return make_error(ErrorCode::unsupported, "calibrate: expert dtype {} (the CPU expert kernels take q4_0 or q8_0)",
                      dtype_name(o.expert_dtype));
  }
  if (o.shape.n_embd == 0 || o.shape.n_ff_exp == 0 || o.shape.n_embd % 32 != 0 || o.shape.n_ff_exp % 32 != 0) {
    return make_error(ErrorCode::invalid_argument,
                      "calibrate: expert shape n_embd {} x n_ff_exp {} ({}): both must be positive multiples of 32",
                      o.shape.n_embd, o.shape.n_ff_exp, o.shape_source);
  }
  if (o.storage_file.empty() && o.storage_temp_bytes < (16ull << 20)) {
    return make_error(ErrorCode::invalid_argument, "calibrate: storage test file of {} bytes is under 16 MiB",
                      o.storage_temp_bytes);
  }
  if (o.max_threads < 0) return make_error(ErrorCode::invalid_argument, "calibrate: max_threads {} < 0", o.max_threads);
  return Status::success();
}

}  // namespace

Result<HardwareProfile> calibrate(const CalibrateOptions& o) {
  TANDEM_RETURN_IF_ERROR(check_options(o));
  HardwareProfile hw;
  hw.name = o.name;
  struct sysinfo si {};
  if (sysinfo(&si) != 0) return make_error(ErrorCode::io_error, "calibrate: sysinfo failed");
  hw.ram_bytes = static_cast<uint64_t>(si.totalram) * si.mem_unit;
  hw.notes.push_back(fmt::format(
      "Measured by `tandem calibrate`{} (Tandem {} build). Expert figures at n_embd {} x n_ff_exp {} {} ({}): "
      "expert_ffn_* are per expert and token, dense = every neuron, gate = no neuron active; "
      "compute_gflops from a {}-token batch; attention_us 0 = derived by the cost model.",
      o.quick ? " --quick (rough figures)" : "",
#ifdef NDEBUG
      "release",
#else
      "debug (kernel figures understate a release build)",
#endif
      o.shape.n_embd, o.shape.n_ff_exp, dtype_name(o.expert_dtype), o.shape_source, k_prefill_tokens));

  TANDEM_RETURN_IF_ERROR(probe_cpu(o, hw));
  TANDEM_RETURN_IF_ERROR(probe_gpu(o, hw));
  TANDEM_RETURN_IF_ERROR(probe_storage(o, hw));

  // On unified memory the CPU and the GPU read weights over one bus; its ceiling is the best
  // either side reached alone.
  for (const GpuProfile& g : hw.gpus) {
    if (!g.unified_memory) continue;
    hw.shared_memory_bus = true;
    hw.shared_bandwidth_gbps = std::max({hw.shared_bandwidth_gbps, hw.cpu.best().read_bandwidth_gbps, g.bandwidth_gbps});
  }
  return hw;
}

}  // namespace tandem
