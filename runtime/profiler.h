// The offline profiler (`tandem profile`): runs calibration text through a model and turns
// the forward pass's routing events into a Profile (planner/profile.h) and, optionally, a
// RoutingTrace (planner/simulate.h) for `tandem simulate`.
//
// Workload: the text is cut into prompts at blank lines (split_prompts). Each prompt is
// tokenized on its own (BOS first when the vocabulary adds one; with `chat` it is first
// wrapped as a ChatML user turn followed by the assistant header, spec §4.4) and evaluated
// from an empty KV cache; a prompt longer than the context is evaluated as consecutive
// chunks of n_ctx tokens, each from an empty cache (as llama-perplexity cuts its text).
// Every token of every chunk is routed in every layer: the evaluation asks for all rows'
// logits because the forward pass routes only logit rows on its last layer (forward.h).
// Tokens are numbered 0, 1, 2, ... in evaluation order across prompts, so the profile's
// per-layer LRU curves treat the workload as one stream (an expert cache lives across
// requests).
//
// Gate activity per neuron comes from ForwardObserver::on_expert_gate_neurons (the recorder
// asks for it); where the ForwardOps in use do not count per neuron, the forward pass does
// not call it and every expert's gate_observations stays 0 (the profile then says "dense").
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "planner/profile.h"
#include "planner/simulate.h"
#include "runtime/forward_observer.h"
#include "runtime/profiler_progress.h"
#include "runtime/session.h"

namespace tandem {

// Blocks of text separated by one or more blank lines (lines empty or all whitespace),
// trimmed of surrounding whitespace; empty blocks are dropped. '\r\n' line ends work too.
std::vector<std::string> split_prompts(std::string_view text);

// A ForwardObserver feeding a ProfileBuilder and (optionally) a RoutingTrace.
// Token numbering: call begin_chunk(first_token) before evaluating a chunk; a row at
// position p of that chunk is token first_token + p. Errors from the builder (a malformed
// event) are kept: the first one is returned by status(), later events are ignored.
class ProfileRecorder final : public ForwardObserver {
 public:
  ProfileRecorder(std::string model_name, std::string model_hash, const ModelShape& shape, bool record_trace);

  void begin_chunk(uint64_t first_token) { chunk_base_ = first_token; }

  void on_routing(uint32_t layer, std::span<const int32_t> positions, std::span<const int32_t> expert_ids,
                  std::span<const float> weights) override;
  // Per-neuron gate activity of `expert` over `n_rows` routed rows: active_count_per_neuron
  // (n_ff_exp values) counts the rows whose gate pre-activation j was > 0.
  bool wants_gate_neurons() const override { return true; }
  void on_expert_gate_neurons(uint32_t layer, uint32_t expert, std::span<const uint32_t> active_count_per_neuron,
                              uint32_t n_rows) override;

  const Status& status() const { return status_; }
  Profile finish() const { return builder_.finish(); }
  // The trace so far ([token][layer][rank]); empty unless record_trace. Tokens not routed in
  // some layer (none, when driven by profile_session) have an empty list there.
  const RoutingTrace& trace() const { return trace_; }
  RoutingTrace take_trace() { return std::move(trace_); }

 private:
  ProfileBuilder builder_;
  uint32_t n_layer_;
  uint32_t n_expert_used_;
  bool record_trace_;
  RoutingTrace trace_;
  uint64_t chunk_base_ = 0;
  Status status_ = Status::success();
};

struct ProfileOptions {
  bool chat = false;         // --chat: wrap each prompt in ChatML user/assistant turns
  uint64_t max_tokens = 0;   // -n: stop after this many tokens (0 = the whole text)
  bool record_trace = false; // --trace
};

using ProfileProgress = std::function<void(const ProfileProgressInfo&)>;

struct ProfileRun {
  Profile profile;
  RoutingTrace trace;        // empty unless options.record_trace
  uint64_t n_prompts = 0;    // prompts (at least partly) evaluated
  uint64_t n_chunks = 0;     // evaluations from an empty cache
  double seconds = 0.0;      // evaluation wall time
};

// Runs `text` through the session's model as described above (the session's KV cache is
// cleared before each chunk and left cleared; its observer is restored to none). `progress`
// is called after each evaluation slice. Errors: invalid_argument when the text holds no
// prompt or tokenizes to nothing; the forward pass's errors (naming the prompt index).
Result<ProfileRun> profile_session(Session& session, std::string_view text, const ProfileOptions& options,
                                   const ProfileProgress& progress = {});

}  // namespace tandem
