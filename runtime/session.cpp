#include "runtime/session.h"

#include <sys/resource.h>

#include <algorithm>
#include <cmath>
#include <chrono>
#include <cstdio>
#include <system_error>
#include <thread>

#include "runtime/model_maker.h"

namespace tandem {
namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

Session::Session(Model model, Tokenizer tokenizer, SessionOptions options)
    : model_(std::move(model)), tokenizer_(std::move(tokenizer)), options_(std::move(options)),
      sampler_(options_.sampling) {
  // Padding entries ([PAD{i}], type UNUSED) are not text: never sample them. Real Qwen2 models
  // give them very low logits anyway; synthetic models (a 151936-entry vocabulary around a small
  // BPE) would otherwise emit invisible tokens.
  for (int32_t id = 0; id < tokenizer_.n_vocab(); ++id) {
    if (tokenizer_.token_type(id) == TokenType::unused) unused_ids_.push_back(id);
  }
}

Result<std::unique_ptr<Session>> Session::open(const SessionOptions& options) {
  TANDEM_ASSIGN_OR_RETURN(Model model,
                          Model::load(options.model_path, options.use_mmap ? FileLoad::mmap : FileLoad::read));
  TANDEM_ASSIGN_OR_RETURN(Tokenizer tokenizer, Tokenizer::from_gguf(model.file()));
  if (tokenizer.n_vocab() > static_cast<int32_t>(model.shape().n_vocab)) {
    return make_error(ErrorCode::invalid_file, "{}: the tokenizer has {} tokens but the model's vocabulary is {}",
                      options.model_path.string(), tokenizer.n_vocab(), model.shape().n_vocab);
  }
  SessionOptions opts = options;
  if (opts.n_ctx == 0) opts.n_ctx = model.shape().n_ctx_train;
  if (opts.n_threads <= 0) opts.n_threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  opts.executor.n_ctx = opts.n_ctx;
  opts.executor.n_ubatch = opts.n_ubatch;
  opts.executor.n_threads = opts.n_threads;
  opts.executor.cache_type = opts.cache_type;
  std::unique_ptr<Session> s(new Session(std::move(model), std::move(tokenizer), opts));
  // The executor views the Session's own Model, which never moves again.
  TANDEM_ASSIGN_OR_RETURN(s->executor_, make_executor(s->model_, s->options_.executor));
  return s;
}

void Session::reset() {
  executor_->clear();
  cached_.clear();
  sampler_.reset();
}

Result<GenerateStats> Session::generate(std::span<const int32_t> prompt, int32_t n_predict,
                                        const TokenCallback& on_token) {
  const uint32_t n_ctx = executor_->n_ctx();
  if (prompt.empty()) return make_error(ErrorCode::invalid_argument, "empty prompt: nothing to evaluate");
  if (prompt.size() > n_ctx) {
    return make_error(ErrorCode::invalid_argument, "prompt has {} tokens but the context is {} (-c)", prompt.size(),
                      n_ctx);
  }
  if (n_predict > 0 && prompt.size() + static_cast<size_t>(n_predict) > n_ctx) {
    return make_error(ErrorCode::invalid_argument,
                      "-n {}: prompt ({} tokens) + {} generated tokens exceed the context of {} (-c)", n_predict,
                      prompt.size(), n_predict, n_ctx);
  }
  const auto t_start = std::chrono::steady_clock::now();
  GenerateStats st;

  // Reuse the cached prefix; always evaluate at least the last prompt token for its logits.
  size_t keep = 0;
  while (keep < cached_.size() && keep < prompt.size() && cached_[keep] == prompt[keep]) ++keep;
  keep = std::min(keep, prompt.size() - 1);
  if (!executor_->truncate(static_cast<uint32_t>(keep)).ok()) {
    keep = 0;  // a sliding-window layer already overwrote what the prefix needs
    executor_->clear();
  }
  cached_.resize(keep);
  st.n_prompt_reused = static_cast<uint32_t>(keep);

  const auto fresh = prompt.subspan(keep);
  for (int32_t t : fresh) sampler_.accept(t);
  TANDEM_RETURN_IF_ERROR(executor_->eval(fresh, LogitsRows::last, logits_));
  cached_.insert(cached_.end(), fresh.begin(), fresh.end());
  st.n_prompt_eval = static_cast<uint32_t>(fresh.size());
  st.prompt_seconds = seconds_since(t_start);

  Detokenizer detok(tokenizer_, /*special=*/false);
  while (n_predict < 0 || st.n_generated < static_cast<uint32_t>(n_predict)) {
    for (int32_t id : unused_ids_) logits_[static_cast<size_t>(id)] = -INFINITY;
    const int32_t tok = sampler_.sample(logits_);
    sampler_.accept(tok);
    ++st.n_generated;
    if (st.n_generated == 1) st.ttft_seconds = seconds_since(t_start);
    const bool eog = tokenizer_.is_eog(tok);
    std::string text = eog ? detok.flush() : detok.push(tok);
    const bool more = on_token ? on_token(tok, text) : true;
    if (eog) {
      st.stopped_at_eog = true;
      break;
    }
    if (!more) break;
    if (n_predict >= 0 && st.n_generated >= static_cast<uint32_t>(n_predict)) break;
    if (executor_->n_past() >= n_ctx) break;  // context full (n_predict < 0)
    const auto t_dec = std::chrono::steady_clock::now();
    const int32_t one[1] = {tok};
    TANDEM_RETURN_IF_ERROR(executor_->eval(one, LogitsRows::last, logits_));
    cached_.push_back(tok);
    st.decode_seconds += seconds_since(t_dec);
    ++st.n_decode;
  }
  if (!st.stopped_at_eog && on_token) {
    const std::string rest = detok.flush();
    if (!rest.empty()) on_token(-1, rest);
  }
  return st;
}

uint64_t peak_rss_bytes() {
  struct rusage ru {};
  if (getrusage(RUSAGE_SELF, &ru) != 0) return 0;
  return static_cast<uint64_t>(ru.ru_maxrss) * 1024u;  // Linux reports KiB
}

Status ensure_default_model(const std::filesystem::path& path) {
  std::error_code ec;
  if (std::filesystem::exists(path, ec)) return Status::success();
  if (path.has_parent_path()) std::filesystem::create_directories(path.parent_path(), ec);
  std::fprintf(stderr, "no model at %s: creating the built-in default model there (make-model --preset default)\n",
               path.string().c_str());
  MakeModelOptions mo;
  mo.preset = "default";
  return make_model(mo, path).with_context("while creating the default model");
}

}  // namespace tandem
