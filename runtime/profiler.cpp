#include "runtime/profiler.h"

#include <algorithm>
#include <chrono>

namespace tandem {

namespace {

bool blank_line(std::string_view line) {
  return std::all_of(line.begin(), line.end(), [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v'; });
}

std::string_view trim(std::string_view s) {
  const auto ws = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v'; };
  while (!s.empty() && ws(s.front())) s.remove_prefix(1);
  while (!s.empty() && ws(s.back())) s.remove_suffix(1);
  return s;
}

// The eval API has no "no logits" mode and routes only logit rows on the last layer, so the
// profiler asks for every row's logits; slices bound the logits buffer (rows * n_vocab f32)
// to about 256 MiB for real vocabularies.
uint32_t slice_tokens(Session& session) {
  const uint64_t n_vocab = std::max<uint64_t>(1, session.model().shape().n_vocab);
  const uint64_t by_memory = std::max<uint64_t>(16, (uint64_t{256} << 20) / (n_vocab * sizeof(float)));
  return static_cast<uint32_t>(std::min<uint64_t>({by_memory, session.options().n_ubatch}));
}

}  // namespace

std::vector<std::string> split_prompts(std::string_view text) {
  std::vector<std::string> out;
  size_t block_begin = 0;
  size_t pos = 0;
  auto flush = [&](size_t end) {
    const std::string_view b = trim(text.substr(block_begin, end - block_begin));
    if (!b.empty()) out.emplace_back(b);
  };
  while (pos <= text.size()) {
    const size_t nl = text.find('\n', pos);
    const size_t line_end = nl == std::string_view::npos ? text.size() : nl;
    if (blank_line(text.substr(pos, line_end - pos))) {
      flush(pos);
      block_begin = line_end;
    }
    if (nl == std::string_view::npos) break;
    pos = nl + 1;
  }
  flush(text.size());
  return out;
}

ProfileRecorder::ProfileRecorder(std::string model_name, std::string model_hash, const ModelShape& shape,
                                 bool record_trace)
    : builder_(std::move(model_name), model_hash, profile_shape(shape)),
      n_layer_(shape.n_layer),
      n_expert_used_(shape.n_expert_used),
      record_trace_(record_trace) {
  trace_.model_hash = std::move(model_hash);
  trace_.n_layer = shape.n_layer;
  trace_.n_expert = shape.n_expert;
}

void ProfileRecorder::on_routing(uint32_t layer, std::span<const int32_t> positions,
                                 std::span<const int32_t> expert_ids, std::span<const float> weights) {
  if (!status_.ok()) return;
  const size_t k = n_expert_used_;
  if (layer >= n_layer_ || expert_ids.size() < positions.size() * k || weights.size() < positions.size() * k) {
    status_ = make_error(ErrorCode::internal, "routing event of layer {}: {} rows but {} expert ids and {} weights",
                         layer, positions.size(), expert_ids.size(), weights.size());
    return;
  }
  for (size_t i = 0; i < positions.size(); ++i) {
    if (positions[i] < 0) {
      status_ = make_error(ErrorCode::internal, "routing event of layer {}: negative position {}", layer, positions[i]);
      return;
    }
    const uint64_t token = chunk_base_ + static_cast<uint64_t>(positions[i]);
    const auto ids = expert_ids.subspan(i * k, k);
    Status s = builder_.add_routing(layer, token, ids, weights.subspan(i * k, k));
    if (!s.ok()) {
      status_ = s;
      return;
    }
    if (record_trace_) {
      if (trace_.tokens.size() <= token) trace_.tokens.resize(token + 1, std::vector<std::vector<int32_t>>(n_layer_));
      trace_.tokens[token][layer].assign(ids.begin(), ids.end());
    }
  }
}

void ProfileRecorder::on_expert_gate_neurons(uint32_t layer, uint32_t expert,
                                             std::span<const uint32_t> active_count_per_neuron, uint32_t n_rows) {
  if (!status_.ok()) return;
  Status s = builder_.add_gate_counts(layer, expert, active_count_per_neuron, n_rows);
  if (!s.ok()) status_ = s;
}

Result<ProfileRun> profile_session(Session& session, std::string_view text, const ProfileOptions& options,
                                   const ProfileProgress& progress) {
  const std::vector<std::string> prompts = split_prompts(text);
  if (prompts.empty()) return make_error(ErrorCode::invalid_argument, "profile: the text holds no prompt");

  const Tokenizer& tok = session.tokenizer();
  std::vector<std::vector<int32_t>> tokenized;
  uint64_t total = 0;
  for (const std::string& p : prompts) {
    if (options.max_tokens > 0 && total >= options.max_tokens) break;
    std::vector<int32_t> ids;
    if (options.chat) {
      const ChatMessage msg{"user", p};
      ids = tok.encode(render_chatml(std::span(&msg, 1), /*add_generation_prompt=*/true), tok.add_bos(), true);
    } else {
      ids = tok.encode(p, tok.add_bos(), false);
    }
    if (options.max_tokens > 0) ids.resize(std::min<uint64_t>(ids.size(), options.max_tokens - total));
    total += ids.size();
    if (!ids.empty()) tokenized.push_back(std::move(ids));
  }
  if (total == 0) return make_error(ErrorCode::invalid_argument, "profile: the text tokenizes to no token");

  const Model& model = session.model();
  ProfileRecorder recorder(model.name(), model.content_hash(), model.shape(), options.record_trace);
  Executor& ex = session.executor();
  const uint32_t n_ctx = ex.n_ctx();
  const uint32_t slice = slice_tokens(session);

  ProfileRun run;
  session.reset();
  std::vector<float> logits;
  uint64_t done = 0;
  const auto t0 = std::chrono::steady_clock::now();
  auto elapsed = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); };
  ex.set_observer(&recorder);
  Status status = Status::success();
  for (size_t pi = 0; pi < tokenized.size() && status.ok(); ++pi) {
    const std::vector<int32_t>& ids = tokenized[pi];
    ++run.n_prompts;
    for (size_t c0 = 0; c0 < ids.size() && status.ok(); c0 += n_ctx) {
      const size_t c1 = std::min<size_t>(ids.size(), c0 + n_ctx);
      ex.clear();
      recorder.begin_chunk(done);
      ++run.n_chunks;
      for (size_t s0 = c0; s0 < c1; s0 += slice) {
        const size_t s1 = std::min<size_t>(c1, s0 + slice);
        status = ex.eval(std::span(ids).subspan(s0, s1 - s0), LogitsRows::all, logits);
        if (!status.ok()) {
          status = status.with_context(fmt::format("profile: prompt {} (tokens {}..{})", pi, s0, s1));
          break;
        }
        if (!recorder.status().ok()) {
          status = recorder.status().with_context(fmt::format("profile: prompt {}", pi));
          break;
        }
        done += s1 - s0;
        if (progress) progress({done, total, elapsed()});
      }
    }
  }
  ex.set_observer(nullptr);
  session.reset();
  TANDEM_RETURN_IF_ERROR(status);
  run.seconds = elapsed();
  run.profile = recorder.finish();
  if (options.record_trace) run.trace = recorder.take_trace();
  return run;
}

}  // namespace tandem
