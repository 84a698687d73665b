// Prefetcher: the router-driven storage prefetch of issue 7 (spec §5.3). A ForwardObserver:
// on_routing(layer, …) fires right after layer `layer`'s router and before its attention
// (forward_observer.h); the prefetcher then asks the ExpertCache to load every chosen expert
// of that layer that the ExpertStore streams, so the reads proceed while attention runs.
//
// Order of requests: the ubatch's top-1 choices first (rows in order), then the top-2 ones, …
// (each expert once), so when the cache cannot take them all the likeliest-needed go first.
// A request for a resident expert counts as a hit (and refreshes it in the policy); one for an
// absent expert (or one whose read is already in flight) as a miss. A request the cache
// drops (every slot referenced or loading) is simply left to the op's acquire().
//
// Trace (optional): a "prefetch" span (cat "prefetch") per layer pass and an instant "hit" or
// "miss" (cat "cache") per expert, args layer/expert/pass.
//
// Threading: called on the eval thread only; stats() from any thread after the eval.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "core/status.h"
#include "runtime/expert_store.h"
#include "runtime/forward_observer.h"
#include "runtime/trace.h"

namespace tandem {

struct PrefetcherStats {
  uint64_t hits = 0;    // chosen streamed experts found in RAM at routing time
  uint64_t misses = 0;  // chosen streamed experts not in RAM (load started, in flight or dropped)
  uint64_t loads_started = 0;
  uint64_t dropped = 0;  // no slot could be freed for the request
};

class Prefetcher final : public ForwardObserver {
 public:
  // `store` (and `trace`) must outlive the prefetcher. enabled = false: counts hits/misses
  // but issues no reads (the baseline the overlap figures are compared against).
  Prefetcher(const ExpertStore& store, Trace* trace, bool enabled = true);

  void on_routing(uint32_t layer, std::span<const int32_t> positions,
                  std::span<const int32_t> expert_ids, std::span<const float> weights) override;

  void set_pass(uint64_t pass) { pass_ = pass; }
  PrefetcherStats stats() const { return stats_; }
  void reset_stats() { stats_ = {}; }
  // The first error a request returned (requests never fail for valid ids; kept so that a bug
  // surfaces instead of vanishing inside an observer that cannot return one).
  const Status& status() const { return status_; }

 private:
  const ExpertStore& store_;
  Trace* trace_;
  bool enabled_;
  uint64_t pass_ = 0;
  PrefetcherStats stats_;
  Status status_;
  std::vector<uint8_t> seen_;
  std::vector<ExpertId> ids_;
};

}  // namespace tandem
