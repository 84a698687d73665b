#include "runtime/prefetcher.h"

#include <algorithm>

namespace tandem {

Prefetcher::Prefetcher(const ExpertStore& store, Trace* trace, bool enabled)
    : store_(store), trace_(trace), enabled_(enabled) {}

void Prefetcher::on_routing(uint32_t layer, std::span<const int32_t> positions,
                            std::span<const int32_t> expert_ids,
                            std::span<const float> /*weights*/) {
  ExpertCache* cache = store_.cache();
  if (cache == nullptr || positions.empty()) return;
  const int64_t t0 = trace_ != nullptr ? trace_->now_us() : 0;
  const size_t n_rows = positions.size();
  const size_t k = expert_ids.size() / n_rows;
  seen_.assign(store_.config().n_expert, 0);
  ids_.clear();
  for (size_t s = 0; s < k; ++s) {
    for (size_t i = 0; i < n_rows; ++i) {
      const int32_t e = expert_ids[i * k + s];
      if (e < 0 || uint32_t(e) >= store_.config().n_expert || seen_[size_t(e)]) continue;
      seen_[size_t(e)] = 1;
      const ExpertId id{int32_t(layer), e};
      if (store_.tier(id) == StoreTier::stream) ids_.push_back(id);
    }
  }
  for (const ExpertId id : ids_) {
    ExpertState found = cache->state(id);
    if (enabled_) {
      auto r = cache->request(id);
      if (!r.ok()) {
        if (status_.ok()) status_ = r.status();
        continue;
      }
      found = *r;
      if (found == ExpertState::not_present) {
        (cache->state(id) == ExpertState::not_present ? stats_.dropped : stats_.loads_started) += 1;
      }
    }
    const bool hit = found == ExpertState::present;
    (hit ? stats_.hits : stats_.misses) += 1;
    if (trace_ != nullptr) {
      trace_->instant(hit ? "hit" : "miss", "cache", trace_->now_us(),
                      {{"layer", id.layer}, {"expert", id.expert}, {"pass", int64_t(pass_)}});
    }
  }
  if (trace_ != nullptr) {
    trace_->complete(
        "prefetch", "prefetch", t0, trace_->now_us() - t0,
        {{"layer", layer}, {"pass", int64_t(pass_)}, {"requests", int64_t(ids_.size())}});
  }
}

}  // namespace tandem
