#include "runtime/expert_read_trace.h"

#include <string>

namespace tandem {

void ExpertReadTrace::install(ExpertCacheOptions& options) {
  const uint64_t n_expert = model_.shape().n_expert;
  options.on_load_start = [this, n_expert](ExpertId id) {
    const int64_t now = trace_.now_us();
    std::lock_guard lock(mu_);
    start_us_[uint64_t(id.layer) * n_expert + uint64_t(id.expert)] = now;
  };
  options.on_load_done = [this, n_expert](ExpertId id, const Status& st) {
    const int64_t now = trace_.now_us();
    int64_t start = now;
    {
      std::lock_guard lock(mu_);
      auto it = start_us_.find(uint64_t(id.layer) * n_expert + uint64_t(id.expert));
      if (it != start_us_.end()) {
        start = it->second;
        start_us_.erase(it);
      }
    }
    const LayerWeights& lw = model_.weights().layers[size_t(id.layer)];
    const auto bytes =
        int64_t((lw.ffn_gate_exps.nbytes() + lw.ffn_up_exps.nbytes() + lw.ffn_down_exps.nbytes()) / n_expert);
    trace_.complete("read", "io", start, now - start,
                    {{"layer", id.layer}, {"expert", id.expert}, {"pass", int64_t(pass_.load())}, {"bytes", bytes}},
                    st.ok() ? std::string() : st.message());
  };
}

}  // namespace tandem
