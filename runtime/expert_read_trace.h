// ExpertReadTrace: the storage-read spans of a Chrome trace (trace.h) — ExpertCache load hooks
// (expert_cache.h on_load_start / on_load_done) that record each expert load as one "read"
// span from the submission of its reads to their completion, on the completing thread, with
// args layer, expert, pass (the forward pass that was running) and bytes (the three slabs),
// and the load's error message when it failed. Shared by the streaming and hybrid executors.
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <unordered_map>

#include "runtime/expert_cache.h"
#include "runtime/model.h"
#include "runtime/trace.h"

namespace tandem {

class ExpertReadTrace {
 public:
  // trace, model and pass must outlive every cache the hooks are installed in.
  ExpertReadTrace(Trace& trace, const Model& model, const std::atomic<uint64_t>& pass)
      : trace_(trace), model_(model), pass_(pass) {}
  ExpertReadTrace(const ExpertReadTrace&) = delete;
  ExpertReadTrace& operator=(const ExpertReadTrace&) = delete;

  // Sets options.on_load_start / on_load_done to this object's hooks.
  void install(ExpertCacheOptions& options);

 private:
  Trace& trace_;
  const Model& model_;
  const std::atomic<uint64_t>& pass_;
  std::mutex mu_;
  std::unordered_map<uint64_t, int64_t> start_us_;  // key layer * n_expert + expert
};

}  // namespace tandem
