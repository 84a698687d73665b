// ForwardObserver: hooks the forward pass calls while it runs, for whoever wants to act on
// the routing early (expert prefetch, spec §5.3) or record it (profiler, tests).
//
// Calls come from the thread that called Forward::eval, in layer order, never concurrently.
// Spans are valid only during the call. Default implementations do nothing.
#pragma once

#include <cstdint>
#include <span>

namespace tandem {

class ForwardObserver {
 public:
  virtual ~ForwardObserver() = default;

  // Layer `layer`'s router result, called right after the router and BEFORE that layer's
  // attention starts (the router reads the raw layer input, spec §2.2).
  //   positions  (n_rows)                   : the position of each routed row
  //   expert_ids (n_rows, n_expert_used)    : row-major, best expert first
  //   weights    (n_rows, n_expert_used)    : renormalised gate weights of those experts
  // On the last layer only the rows that produce logits are routed.
  virtual void on_routing(uint32_t /*layer*/, std::span<const int32_t> /*positions*/,
                          std::span<const int32_t> /*expert_ids*/, std::span<const float> /*weights*/) {}

  // After layer `layer`'s expert FFN, once per expert that was used in the ubatch:
  // `n_active` of the `n_total` = (rows routed to it) * n_ff_exp gate pre-activations were > 0
  // (the ReLU-active neurons, spec §5.1).
  virtual void on_expert_gate_activity(uint32_t /*layer*/, uint32_t /*expert*/, uint64_t /*n_active*/,
                                       uint64_t /*n_total*/) {}
};

}  // namespace tandem
