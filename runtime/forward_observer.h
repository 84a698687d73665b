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

  // Per-neuron gate activity, for the profiler (spec §5.1): only when wants_gate_neurons()
  // returns true (else the forward pass does not count per neuron and costs nothing extra).
  // After layer `layer`'s expert FFN, once per expert used in the ubatch:
  //   active_count_per_neuron (n_ff_exp): of the `n_rows` rows routed to `expert`, how many
  //   had gate pre-activation j > 0.
  // Not called when the ForwardOps in use do not count per neuron (their counts do not add
  // up to the on_expert_gate_activity total).
  virtual bool wants_gate_neurons() const { return false; }
  virtual void on_expert_gate_neurons(uint32_t /*layer*/, uint32_t /*expert*/,
                                      std::span<const uint32_t> /*active_count_per_neuron*/, uint32_t /*n_rows*/) {}
};

}  // namespace tandem
