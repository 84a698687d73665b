// `tandem calibrate`: measures this machine (CPU, the selected GPU, storage) and writes a
// hardware profile JSON for `tandem plan` / `tandem simulate` (runtime/calibrate.h).
#include <unistd.h>

#include <cstdio>
#include <memory>
#include <string>

#include "command.h"
#include "runtime/calibrate.h"
#include "runtime/model.h"
#include "runtime/model_maker.h"
#include "size_arg.h"

namespace tandem::tools {
namespace {

struct CalibrateCmdOptions {
  std::string output;
  std::string device = "auto";
  std::string model;
  std::string preset = "4b";
  std::string dir;
  std::string storage_size = "2G";
  std::string name = "this-machine";
  int threads = 0;
  bool quick = false;
};

// Refuses an output that cannot be written before minutes of measuring, not after.
Status check_writable(const std::filesystem::path& out) {
  std::error_code ec;
  if (std::filesystem::exists(out, ec)) {
    if (std::filesystem::is_directory(out, ec)) {
      return make_error(ErrorCode::invalid_argument, "-o {}: is a directory", out.string());
    }
    if (::access(out.c_str(), W_OK) != 0) {
      return make_error(ErrorCode::io_error, "-o {}: not writable", out.string());
    }
    return Status::success();
  }
  const std::filesystem::path dir = out.has_parent_path() ? out.parent_path() : std::filesystem::path(".");
  if (!std::filesystem::is_directory(dir, ec) || ::access(dir.c_str(), W_OK) != 0) {
    return make_error(ErrorCode::io_error, "-o {}: directory {} does not exist or is not writable", out.string(),
                      dir.string());
  }
  return Status::success();
}

int run_calibrate(const CalibrateCmdOptions& c) {
  if (!c.output.empty()) {
    if (Status s = check_writable(c.output); !s.ok()) return report_error(s);
  }
  CalibrateOptions o;
  o.name = c.name;
  o.device = c.device;
  o.quick = c.quick;
  o.max_threads = c.threads;
  if (!c.model.empty()) {
    auto model = Model::load(c.model);
    if (!model.ok()) return report_error(model.status());
    o.shape = model->shape();
    if (!model->weights().layers.empty()) o.expert_dtype = model->weights().layers[0].ffn_up_exps.dtype;
    o.shape_source = c.model;
    o.storage_file = c.model;
  } else {
    MakeModelOptions preset;
    preset.preset = c.preset;
    auto shape = resolve_model_shape(preset);
    if (!shape.ok()) return report_error(shape.status().with_context("--preset"));
    o.shape = *shape;
    o.shape_source = "preset " + c.preset;
  }
  if (!c.dir.empty()) {
    o.storage_dir = c.dir;
    o.storage_file.clear();  // --dir asks for a test file there, even with a model
  }
  auto size = parse_size(c.storage_size, "--storage-size");
  if (!size.ok()) return report_error(size.status());
  o.storage_temp_bytes = c.quick && c.storage_size == "2G" ? (64ull << 20) : *size;
  o.progress = [](std::string_view line) {
    std::fprintf(stderr, "calibrate: %.*s\n", static_cast<int>(line.size()), line.data());
  };
  std::fprintf(stderr, "calibrate: expert shape n_embd %u x n_ff_exp %u %s (%s), gpu device '%s', storage %s%s\n",
               o.shape.n_embd, o.shape.n_ff_exp, std::string(dtype_name(o.expert_dtype)).c_str(),
               o.shape_source.c_str(), o.device.c_str(),
               o.storage_file.empty() ? ("a temporary file in " + o.storage_dir.string()).c_str() : o.storage_file.c_str(),
               o.quick ? ", quick" : "");
  auto hw = calibrate(o);
  if (!hw.ok()) return report_error(hw.status());
  if (c.output.empty()) {
    std::fputs(hardware_profile_to_json(*hw).c_str(), stdout);
    return 0;
  }
  if (Status s = save_hardware_profile(*hw, c.output); !s.ok()) return report_error(s);
  std::fprintf(stderr, "calibrate: wrote %s\n", c.output.c_str());
  return 0;
}

const CommandRegistration reg{
    "calibrate", "Measure this machine (CPU, GPU, storage) into a hardware profile for `tandem plan`", 39,
    [](CLI::App& sub) {
      auto o = std::make_shared<CalibrateCmdOptions>();
      sub.add_option("-o,--output", o->output, "write the hardware profile JSON here (default: stdout)");
      sub.add_option("--device", o->device,
                     "Vulkan device: auto (best GPU; never a software one), none, cpu (lavapipe) or an index from "
                     "`tandem devices`")
          ->capture_default_str();
      sub.add_option("-m,--model", o->model,
                     "GGUF model: expert shape and dtype for the expert figures; its file is the storage test file");
      sub.add_option("--preset", o->preset, "expert shape when no --model: a make-model preset (4b, 21b, ...)")
          ->capture_default_str();
      sub.add_option("--dir", o->dir, "write the storage test file in this directory (default: the current one)");
      sub.add_option("--storage-size", o->storage_size, "size of the storage test file (--quick: 64M)")
          ->capture_default_str();
      sub.add_option("--name", o->name, "the profile's name")->capture_default_str();
      sub.add_option("-t,--threads", o->threads, "most CPU threads to measure (0 = all)")->capture_default_str();
      sub.add_flag("--quick", o->quick, "small buffers and short runs (seconds; rough figures, for tests)");
      return [o] { return run_calibrate(*o); };
    }};

}  // namespace
}  // namespace tandem::tools
