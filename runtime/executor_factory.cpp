#include "runtime/executor_factory.h"

#include "runtime/cpu_executor.h"
#include "runtime/forward_ops.h"
#include "runtime/gpu_executor.h"

#include <cstdlib>
#include <cstring>

namespace tandem {

Result<std::unique_ptr<Executor>> make_executor(const Model& model, const ExecutorOptions& options) {
  std::unique_ptr<ForwardOps> ops;
  if (options.cpu_ops == "plain") {
    ops = make_cpu_ops();
  } else if (options.cpu_ops != "fast") {
    return make_error(ErrorCode::invalid_argument, "unknown CPU ops '{}' (expected fast or plain)", options.cpu_ops);
  }
  if (options.placement == "cpu") {
    CpuExecutorOptions co;
    co.n_ctx = options.n_ctx;
    co.n_ubatch = options.n_ubatch;
    co.n_threads = options.n_threads;
    co.cache_type = options.cache_type;
    TANDEM_ASSIGN_OR_RETURN(auto ex, CpuExecutor::create(model, co, std::move(ops)));
    return std::unique_ptr<Executor>(std::move(ex));
  }
  if (options.placement == "gpu") {
    GpuExecutorOptions go;
    go.device = options.device;
    go.n_ctx = options.n_ctx;
    go.n_ubatch = options.n_ubatch;
    go.cache_type = options.cache_type;
    const char* check = std::getenv("TANDEM_CHECK_GPU");
    go.check = check != nullptr && std::strcmp(check, "") != 0 && std::strcmp(check, "0") != 0;
    return make_gpu_executor(model, go);
  }
  if (options.placement == "hybrid") {
    return make_error(ErrorCode::unsupported, "--placement {} is not available in this build yet", options.placement);
  }
  return make_error(ErrorCode::invalid_argument, "unknown placement '{}' (expected cpu, gpu or hybrid)",
                    options.placement);
}

}  // namespace tandem
