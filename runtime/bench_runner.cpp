#include "runtime/bench_runner.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <ctime>
#include <fstream>
#include <limits>
#include <map>
#include <memory>
#include <numeric>
#include <thread>

#include "cpu/cpu_features.h"
#include "cpu/kernel_table.h"
#include "cpu/mem_bandwidth.h"
#include "runtime/build_info.h"
#include "runtime/executor_factory.h"
#include "runtime/forward_observer.h"
#include "runtime/mem_stats.h"
#include "runtime/model.h"

namespace tandem {
namespace {

using clock_type = std::chrono::steady_clock;
constexpr double k_nan = std::numeric_limits<double>::quiet_NaN();
constexpr double k_mib = 1024.0 * 1024.0;

double seconds_since(clock_type::time_point t0) {
  return std::chrono::duration<double>(clock_type::now() - t0).count();
}

std::string utc_now() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::vector<int32_t> random_tokens(size_t n, uint32_t n_vocab, uint64_t seed) {
  std::vector<int32_t> t(n);
  for (size_t i = 0; i < n; ++i) {
    uint64_t x = seed * 0x9e3779b97f4a7c15ull + i + 1;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    x ^= x >> 31;
    t[i] = static_cast<int32_t>(x % n_vocab);
  }
  return t;
}

void mean_sd(const std::vector<double>& v, double& mean, double& sd) {
  mean = sd = 0.0;
  if (v.empty()) return;
  mean = std::accumulate(v.begin(), v.end(), 0.0) / static_cast<double>(v.size());
  if (v.size() < 2) return;
  double ss = 0.0;
  for (double x : v) ss += (x - mean) * (x - mean);
  sd = std::sqrt(ss / static_cast<double>(v.size() - 1));
}

// Gate activity reported by the forward pass (ReLU-active share of expert neurons).
class GateActivity final : public ForwardObserver {
 public:
  void on_expert_gate_activity(uint32_t, uint32_t, uint64_t n_active, uint64_t n_total) override {
    active += n_active;
    total += n_total;
  }
  uint64_t active = 0, total = 0;
};

}  // namespace

double bench_model_bytes_per_token(const Model& model, double active_fraction) {
  const ModelShape& s = model.shape();
  const ModelWeights& w = model.weights();
  double non_expert = static_cast<double>(w.output_norm.nbytes() + w.output.nbytes() + w.token_embd.row_size());
  double experts = 0.0;
  for (const LayerWeights& l : w.layers) {
    non_expert += static_cast<double>(l.attn_norm.nbytes() + l.attn_q.nbytes() + l.attn_k.nbytes() + l.attn_v.nbytes() +
                                      l.attn_output.nbytes() + l.ffn_norm.nbytes() + l.ffn_gate_inp.nbytes());
    const auto gate = static_cast<double>(l.ffn_gate_exps.nb[2]);
    const auto up = static_cast<double>(l.ffn_up_exps.nb[2]);
    const auto down = static_cast<double>(l.ffn_down_exps.nb[2]);
    const double per_expert = s.down_layout == DownLayout::transposed ? gate + active_fraction * (up + down)
                                                                      : gate + active_fraction * up + down;
    experts += s.n_expert_used * per_expert;
  }
  return non_expert + experts;
}

namespace {

Status check_options(const BenchOptions& o, const ModelShape& shape) {
  const auto empty = [](const char* flag) {
    return make_error(ErrorCode::invalid_argument, "bench: {} needs at least one value", flag);
  };
  if (o.n_prompt.empty()) return empty("-p");
  if (o.n_gen.empty()) return empty("-n");
  if (o.n_threads.empty()) return empty("-t");
  if (o.n_ubatch.empty()) return empty("-ub");
  if (o.placement.empty()) return empty("--placement");
  if (o.device.empty()) return empty("--device");
  if (o.plan.empty()) return empty("--plan");
  if (o.mem_limit.empty()) return empty("--mem-limit");
  if (o.repetitions == 0) return make_error(ErrorCode::invalid_argument, "bench: -r 0: at least one repetition is needed");
  for (int t : o.n_threads) {
    if (t < 0) return make_error(ErrorCode::invalid_argument, "bench: -t {}: threads must be >= 0 (0 = all)", t);
  }
  for (uint32_t ub : o.n_ubatch) {
    if (ub == 0) return make_error(ErrorCode::invalid_argument, "bench: -ub 0: a ubatch holds at least one token");
  }
  for (const std::string& p : o.placement) {
    if (p != "cpu" && p != "gpu" && p != "hybrid") {
      return make_error(ErrorCode::invalid_argument, "bench: --placement '{}' (expected cpu, gpu or hybrid)", p);
    }
  }
  for (uint32_t p : o.n_prompt) {
    for (uint32_t n : o.n_gen) {
      if (p == 0 && n == 0) {
        return make_error(ErrorCode::invalid_argument, "bench: -p 0 with -n 0 measures nothing");
      }
    }
    // The prompt plus the first decoded token (time to first token) must fit.
    if (uint64_t{p} + 1 > shape.n_ctx_train) {
      return make_error(ErrorCode::invalid_argument,
                        "bench: -p {}: the prompt and its first decoded token need {} positions, but the model's "
                        "context (n_ctx_train) is {}",
                        p, uint64_t{p} + 1, shape.n_ctx_train);
    }
  }
  for (uint32_t n : o.n_gen) {
    if (uint64_t{n} + 1 > shape.n_ctx_train) {
      return make_error(ErrorCode::invalid_argument,
                        "bench: -n {}: one prompt token and {} generated ones need {} positions, but the model's "
                        "context (n_ctx_train) is {}",
                        n, n, uint64_t{n} + 1, shape.n_ctx_train);
    }
  }
  return {};
}

// Resets the kernel's peak-RSS mark (proc(5), /proc/pid/clear_refs: "5").
bool reset_peak_rss() {
  std::ofstream f("/proc/self/clear_refs");
  if (!f) return false;
  f << "5";
  f.flush();
  return f.good();
}

struct Runner {
  const BenchOptions& o;
  const Model& model;
  const BenchProgress& progress;
  uint64_t peak_rss_bytes = 0;  // VmHWM before the combination's probes (their buffers excluded)

  void say(const std::string& line) const {
    if (progress) progress(line);
  }

  // One read-bandwidth probe at n_threads (0 when skipped or failed; the failure is said).
  double probe(int n_threads) const {
    if (o.bandwidth_bytes == 0) return 0.0;
    auto r = cpu::measure_read_bandwidth(n_threads, o.bandwidth_bytes, o.bandwidth_reps);
    if (!r.ok()) {
      say("bench: bandwidth probe failed (roofline not reported): " + r.status().message());
      return 0.0;
    }
    return r->gbps;
  }

  Status eval(Executor& ex, std::span<const int32_t> tokens, std::vector<float>& logits) {
    return ex.eval(tokens, LogitsRows::last, logits);
  }

  Status run_one(BenchRecord& rec, const ExecutorOptions& eo, const std::string& tag) {
    auto made = make_executor(model, eo);
    if (!made.ok()) {
      rec.available = false;
      rec.error = made.status().message();
      say(fmt::format("bench: {}: not available: {}", tag, rec.error));
      return {};
    }
    Executor& ex = **made;
    rec.peak_rss_reset = reset_peak_rss();
    peak_rss_bytes = 0;
    const uint32_t n_vocab = model.shape().n_vocab;
    const std::vector<int32_t> prompt = random_tokens(std::max<uint32_t>(rec.n_prompt, 1), n_vocab, o.seed);
    const std::vector<int32_t> gen = random_tokens(size_t{rec.n_gen} + 3, n_vocab, o.seed + 1);
    std::vector<float> logits;

    say(fmt::format("bench: {}: warm-up", tag));
    ex.clear();
    if (rec.n_prompt > 0) {
      TANDEM_RETURN_IF_ERROR(eval(ex, prompt, logits));
      TANDEM_RETURN_IF_ERROR(eval(ex, std::span(gen).subspan(0, 1), logits));
      ex.clear();
    }
    for (int i = 0; i < 2; ++i) TANDEM_RETURN_IF_ERROR(eval(ex, std::span(gen).subspan(static_cast<size_t>(i), 1), logits));
    if (rec.n_gen > 0) {
      // One whole untimed tg run: the experts its tokens route to are paged in (a mapped model
      // faults them in on first touch) before the first timed repetition, which otherwise
      // measured the page cache (7 against 38 tokens/s on the 4b).
      ex.clear();
      for (uint32_t i = 0; i <= rec.n_gen; ++i)
        TANDEM_RETURN_IF_ERROR(eval(ex, std::span(gen).subspan(static_cast<size_t>(i), 1), logits));
    }

    std::vector<double> ttft;
    for (uint32_t r = 0; rec.n_prompt > 0 && r < o.repetitions; ++r) {
      say(fmt::format("bench: {}: pp {} of {}", tag, r + 1, o.repetitions));
      ex.clear();
      const auto t0 = clock_type::now();
      TANDEM_RETURN_IF_ERROR(eval(ex, prompt, logits));
      const double t_pp = seconds_since(t0);
      TANDEM_RETURN_IF_ERROR(eval(ex, std::span(gen).subspan(0, 1), logits));
      ttft.push_back(seconds_since(t0));
      rec.pp_samples_ts.push_back(rec.n_prompt / t_pp);
    }
    mean_sd(rec.pp_samples_ts, rec.pp_avg_ts, rec.pp_stddev_ts);
    if (!ttft.empty()) rec.ttft_ms = 1e3 * std::accumulate(ttft.begin(), ttft.end(), 0.0) / static_cast<double>(ttft.size());

    ExecutorCounters sum;
    GateActivity activity;
    std::vector<double> bw;  // the probe just before each tg repetition (GB/s)
    for (uint32_t r = 0; rec.n_gen > 0 && r < o.repetitions; ++r) {
      // The bandwidth of this moment (a shared or throttled machine drifts between runs). Its
      // buffer must not count in the peak RSS: the peak so far is kept, and reset after it.
      // Without the reset (clear_refs refused), one probe before the first repetition only.
      if (o.bandwidth_bytes > 0 && (rec.peak_rss_reset || r == 0)) {
        if (auto ms = read_mem_stats(); ms.ok()) peak_rss_bytes = std::max(peak_rss_bytes, ms->peak_rss_bytes);
        say(fmt::format("bench: {}: read bandwidth probe, {} thread(s), {} MiB", tag, rec.n_threads,
                        o.bandwidth_bytes >> 20));
        bw.push_back(probe(rec.n_threads));
        if (rec.peak_rss_reset) reset_peak_rss();
      }
      say(fmt::format("bench: {}: tg {} of {}", tag, r + 1, o.repetitions));
      ex.clear();
      TANDEM_RETURN_IF_ERROR(eval(ex, std::span(gen).subspan(0, 1), logits));
      ex.reset_counters();
      ex.set_observer(&activity);
      const auto t0 = clock_type::now();
      Status st;
      for (uint32_t i = 0; i < rec.n_gen && st.ok(); ++i) st = eval(ex, std::span(gen).subspan(i + 1, 1), logits);
      const double t_tg = seconds_since(t0);
      ex.set_observer(nullptr);
      TANDEM_RETURN_IF_ERROR(st);
      rec.tg_samples_ts.push_back(rec.n_gen / t_tg);
      const ExecutorCounters c = ex.counters();
      sum.tokens += c.tokens;
      sum.weight_bytes += c.weight_bytes;
      sum.storage_bytes += c.storage_bytes;
      sum.upload_bytes += c.upload_bytes;
      sum.ram_hits += c.ram_hits;
      sum.ram_misses += c.ram_misses;
      sum.gpu_hits += c.gpu_hits;
      sum.gpu_misses += c.gpu_misses;
      sum.syncs += c.syncs;
    }
    mean_sd(rec.tg_samples_ts, rec.tg_avg_ts, rec.tg_stddev_ts);
    rec.gpu_memory_mib = static_cast<double>(ex.counters().gpu_memory_bytes) / k_mib;

    if (rec.n_gen > 0) {
      const double tokens = static_cast<double>(uint64_t{rec.n_gen} * o.repetitions);
      rec.inactive_fraction =
          activity.total > 0 ? 1.0 - static_cast<double>(activity.active) / static_cast<double>(activity.total) : k_nan;
      if (sum.weight_bytes > 0 && sum.tokens > 0) {
        rec.bytes_source = "counters";
        rec.bytes_per_token = static_cast<double>(sum.weight_bytes) / static_cast<double>(sum.tokens);
      } else {
        rec.bytes_source = "model";
        const double active = std::isnan(rec.inactive_fraction) ? 1.0 : 1.0 - rec.inactive_fraction;
        rec.bytes_per_token = bench_model_bytes_per_token(model, active);
      }
      const bool bw_ok = !bw.empty() && std::all_of(bw.begin(), bw.end(), [](double g) { return g > 0; });
      if (bw_ok) {
        rec.bandwidth_samples_gbps = bw;
        mean_sd(rec.bandwidth_samples_gbps, rec.bandwidth_gbps, rec.bandwidth_stddev_gbps);
      }
      if (bw_ok && rec.bytes_per_token > 0) {
        rec.roofline_ts = rec.bandwidth_gbps * 1e9 / rec.bytes_per_token;
        // Each repetition against the probe just before it (one probe: all against it).
        double pct = 0;
        for (size_t r = 0; r < rec.tg_samples_ts.size(); ++r) {
          pct += 100.0 * rec.tg_samples_ts[r] * rec.bytes_per_token / (bw[std::min(r, bw.size() - 1)] * 1e9);
        }
        rec.roofline_pct = pct / static_cast<double>(rec.tg_samples_ts.size());
      }
      const auto rate = [](uint64_t hits, uint64_t misses) {
        return hits + misses > 0 ? static_cast<double>(hits) / static_cast<double>(hits + misses) : k_nan;
      };
      rec.ram_hit_rate = rate(sum.ram_hits, sum.ram_misses);
      rec.gpu_hit_rate = rate(sum.gpu_hits, sum.gpu_misses);
      rec.storage_bytes_per_token = static_cast<double>(sum.storage_bytes) / tokens;
      rec.upload_bytes_per_token = static_cast<double>(sum.upload_bytes) / tokens;
      rec.syncs_per_token = static_cast<double>(sum.syncs) / tokens;
    }
    return {};
  }
};

std::string model_type(const Model& m) {
  const ModelShape& s = m.shape();
  const DType expert_dtype = m.weights().layers.empty() ? DType::f32 : m.weights().layers[0].ffn_up_exps.dtype;
  return fmt::format("smallthinker {} {} down {}", m.name(), dtype_name(expert_dtype),
                     s.down_layout == DownLayout::transposed ? "transposed" : "standard");
}

}  // namespace

namespace {

Status bench_model(const BenchOptions& o, const Model& model, bool use_mmap, const BenchProgress& progress,
                   std::vector<BenchRecord>& records) {
  TANDEM_RETURN_IF_ERROR(check_options(o, model.shape()));

  BenchRecord base;
  const BuildInfo& bi = build_info();
  base.commit = bi.commit;
  base.dirty = bi.dirty;
  base.compiler = bi.compiler;
  base.build_type = bi.build_type;
  base.flags = bi.flags;
  base.cpu_model = cpu::cpu_model_name();
  base.cpu_features = cpu::cpu_features().summary();
  base.isa = std::string(cpu::isa_name(cpu::kernels().isa));
  base.model_filename = o.model.filename().string();
  base.model_size = model.file().file_size();
  for (const GgufTensorInfo& t : model.file().tensors()) {
    base.model_n_params += static_cast<uint64_t>(t.ne[0] * t.ne[1] * t.ne[2] * t.ne[3]);
  }
  base.model_type = model_type(model);
  base.cpu_ops = o.cpu_ops;
  base.type_k = std::string(dtype_name(o.cache_type));
  base.repetitions = o.repetitions;
  base.use_mmap = use_mmap;

  const size_t n_total = o.use_mmap.size() * o.repack.size() * o.placement.size() * o.device.size() * o.plan.size() *
                         o.mem_limit.size() * o.n_threads.size() * o.n_ubatch.size() * o.n_prompt.size() * o.n_gen.size();
  Runner runner{o, model, progress, 0};
  for (int repack : o.repack)
  for (const std::string& placement : o.placement)
    for (const std::string& device : o.device)
      for (const auto& plan : o.plan)
        for (uint64_t mem_limit : o.mem_limit)
          for (int threads : o.n_threads)
            for (uint32_t ub : o.n_ubatch)
              for (uint32_t p : o.n_prompt)
                for (uint32_t n : o.n_gen) {
                  BenchRecord rec = base;
                  rec.placement = placement;
                  rec.repack = repack != 0;
                  rec.device = device;
                  rec.plan = plan.string();
                  rec.mem_limit = mem_limit;
                  rec.n_threads = threads > 0 ? threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
                  rec.n_ubatch = ub;
                  rec.n_prompt = p;
                  rec.n_gen = n;
                  const std::string tag = fmt::format("[{}/{}] {}{} t={} ub={} p={} n={}", records.size() + 1, n_total,
                                                      placement, std::string(use_mmap ? "" : " no-mmap") + (repack ? "" : " no-repack"),
                                                      rec.n_threads, ub, p, n);
                  rec.date = utc_now();
                  ExecutorOptions eo;
                  eo.placement = placement;
                  eo.device = device;
                  eo.plan = plan;
                  eo.mem_limit = mem_limit;
                  eo.cpu_ops = o.cpu_ops;
                  eo.repack = repack != 0;
                  eo.cache_type = o.cache_type;
                  eo.n_threads = rec.n_threads;
                  eo.n_ubatch = ub;
                  eo.n_ctx = std::max({p + 1, n + 1, 3u});
                  TANDEM_RETURN_IF_ERROR(runner.run_one(rec, eo, tag).with_context("bench: " + tag));
                  if (auto ms = read_mem_stats(); ms.ok() && rec.available)
                    rec.peak_rss_mib = static_cast<double>(std::max(ms->peak_rss_bytes, runner.peak_rss_bytes)) / k_mib;
                  records.push_back(std::move(rec));
                }
  return Status::success();
}

}  // namespace

Result<std::vector<BenchRecord>> run_bench(const BenchOptions& o, const BenchProgress& progress) {
  if (o.use_mmap.empty()) return make_error(ErrorCode::invalid_argument, "bench: --mmap needs at least one value");
  if (o.repack.empty()) return make_error(ErrorCode::invalid_argument, "bench: --repack needs at least one value");
  std::vector<BenchRecord> records;
  // One load of the model per --mmap value (mapped, or read into memory), the other lists inside.
  for (int mmp : o.use_mmap) {
    TANDEM_ASSIGN_OR_RETURN(Model model, Model::load(o.model, mmp ? FileLoad::mmap : FileLoad::read));
    TANDEM_RETURN_IF_ERROR(bench_model(o, model, mmp != 0, progress, records));
  }
  return records;
}

// ---- output ---------------------------------------------------------------------------------

namespace {

// The one list of fields, in output order: json keys and csv columns.
nlohmann::ordered_json to_json(const BenchRecord& r) {
  nlohmann::ordered_json j;
  j["build_commit"] = r.commit;
  j["build_dirty"] = r.dirty;
  j["compiler"] = r.compiler;
  j["build_type"] = r.build_type;
  j["flags"] = r.flags;
  j["cpu_info"] = r.cpu_model;
  j["cpu_features"] = r.cpu_features;
  j["isa"] = r.isa;
  j["test_time"] = r.date;
  j["model_filename"] = r.model_filename;
  j["model_size"] = r.model_size;
  j["model_n_params"] = r.model_n_params;
  j["model_type"] = r.model_type;
  j["placement"] = r.placement;
  j["device"] = r.device;
  j["plan"] = r.plan;
  j["mem_limit"] = r.mem_limit;
  j["use_mmap"] = r.use_mmap;
  j["repack"] = r.repack;
  j["cpu_ops"] = r.cpu_ops;
  j["type_k"] = r.type_k;
  j["n_threads"] = r.n_threads;
  j["n_ubatch"] = r.n_ubatch;
  j["n_prompt"] = r.n_prompt;
  j["n_gen"] = r.n_gen;
  j["repetitions"] = r.repetitions;
  j["available"] = r.available;
  j["error"] = r.error;
  j["pp_avg_ts"] = r.pp_avg_ts;
  j["pp_stddev_ts"] = r.pp_stddev_ts;
  j["pp_samples_ts"] = r.pp_samples_ts;
  j["ttft_ms"] = r.ttft_ms;
  j["tg_avg_ts"] = r.tg_avg_ts;
  j["tg_stddev_ts"] = r.tg_stddev_ts;
  j["tg_samples_ts"] = r.tg_samples_ts;
  j["bytes_per_token"] = r.bytes_per_token;
  j["bytes_source"] = r.bytes_source;
  j["inactive_fraction"] = r.inactive_fraction;  // NaN -> null
  j["bandwidth_gbps"] = r.bandwidth_gbps;
  j["bandwidth_stddev_gbps"] = r.bandwidth_stddev_gbps;
  j["bandwidth_samples_gbps"] = r.bandwidth_samples_gbps;
  j["roofline_ts"] = r.roofline_ts;
  j["roofline_pct"] = r.roofline_pct;
  j["ram_hit_rate"] = r.ram_hit_rate;
  j["gpu_hit_rate"] = r.gpu_hit_rate;
  j["storage_bytes_per_token"] = r.storage_bytes_per_token;
  j["upload_bytes_per_token"] = r.upload_bytes_per_token;
  j["syncs_per_token"] = r.syncs_per_token;
  j["peak_rss_mib"] = r.peak_rss_mib;
  j["peak_rss_reset"] = r.peak_rss_reset;
  j["gpu_memory_mib"] = r.gpu_memory_mib;
  return j;
}

std::string csv_cell(const nlohmann::ordered_json& v) {
  std::string s;
  if (v.is_string()) {
    s = v.get<std::string>();
  } else if (v.is_array()) {
    for (size_t i = 0; i < v.size(); ++i) {
      if (i) s += ';';
      s += v[i].dump();
    }
  } else if (v.is_null()) {
    s = "";
  } else {
    s = v.dump();
  }
  if (s.find_first_of(",\"\n\r") == std::string::npos) return s;
  std::string q = "\"";
  for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
  return q + "\"";
}

std::string fmt_or_dash(double v, const char* spec) {
  if (std::isnan(v)) return "-";
  return fmt::format(fmt::runtime(spec), v);
}

std::string human_size(uint64_t bytes) {
  const double b = static_cast<double>(bytes);
  if (b >= 1024.0 * k_mib) return fmt::format("{:.2f} GiB", b / (1024.0 * k_mib));
  return fmt::format("{:.2f} MiB", b / k_mib);
}

std::string human_params(uint64_t n) {
  const double x = static_cast<double>(n);
  if (x >= 1e9) return fmt::format("{:.2f} B", x / 1e9);
  return fmt::format("{:.2f} M", x / 1e6);
}

}  // namespace

std::string bench_json(const std::vector<BenchRecord>& records) {
  nlohmann::ordered_json a = nlohmann::ordered_json::array();
  for (const BenchRecord& r : records) a.push_back(to_json(r));
  return a.dump(2) + "\n";
}

std::string bench_csv(const std::vector<BenchRecord>& records) {
  std::string out;
  const nlohmann::ordered_json keys = to_json(BenchRecord{});
  bool first = true;
  for (const auto& [k, v] : keys.items()) {
    if (!first) out += ',';
    out += k;
    first = false;
  }
  out += "\n";
  for (const BenchRecord& r : records) {
    const nlohmann::ordered_json j = to_json(r);
    first = true;
    for (const auto& [k, v] : j.items()) {
      if (!first) out += ',';
      out += csv_cell(v);
      first = false;
    }
    out += "\n";
  }
  return out;
}

std::string bench_markdown(const std::vector<BenchRecord>& records) {
  const bool any_gpu = std::any_of(records.begin(), records.end(), [](const BenchRecord& r) { return r.gpu_memory_mib > 0; });
  const bool any_stream = std::any_of(records.begin(), records.end(), [](const BenchRecord& r) {
    return !std::isnan(r.ram_hit_rate) || !std::isnan(r.gpu_hit_rate) || r.storage_bytes_per_token > 0 ||
           r.upload_bytes_per_token > 0 || r.syncs_per_token > 0;
  });
  std::vector<std::string> head = {"model", "size", "params", "placement", "isa", "threads", "n_ubatch", "test pp",
                                   "pp t/s", "test tg", "tg t/s", "TTFT ms", "peak RSS MiB"};
  if (any_gpu) head.push_back("GPU MiB");
  for (const char* h : {"MB/token", "bytes from", "inactive", "GB/s", "roofline t/s", "% roofline"}) head.push_back(h);
  if (any_stream) {
    for (const char* h : {"RAM hit", "GPU hit", "storage MB/token", "upload MB/token", "syncs/token"}) head.push_back(h);
  }
  std::string out = "|";
  std::string sep = "|";
  for (size_t i = 0; i < head.size(); ++i) {
    out += " " + head[i] + " |";
    sep += i < 5 ? " --- |" : " ---: |";
  }
  out += "\n" + sep + "\n";
  for (const BenchRecord& r : records) {
    std::vector<std::string> c = {r.model_type, human_size(r.model_size), human_params(r.model_n_params),
                                  r.placement + (r.device.empty() ? "" : " " + r.device) + (r.plan.empty() ? "" : " plan") +
                                      (r.use_mmap ? "" : " no-mmap") + (r.repack ? "" : " no-repack"),
                                  r.isa + (r.cpu_ops == "fast" ? "" : " (" + r.cpu_ops + ")"), std::to_string(r.n_threads),
                                  std::to_string(r.n_ubatch)};
    const auto ts = [](double avg, double sd) { return fmt::format("{:.2f} ± {:.2f}", avg, sd); };
    if (!r.available) {
      c.push_back(r.n_prompt ? fmt::format("pp{}", r.n_prompt) : "-");
      c.push_back("not available: " + r.error);
      while (c.size() < head.size()) c.push_back("-");
    } else {
      c.push_back(r.n_prompt ? fmt::format("pp{}", r.n_prompt) : "-");
      c.push_back(r.n_prompt ? ts(r.pp_avg_ts, r.pp_stddev_ts) : "-");
      c.push_back(r.n_gen ? fmt::format("tg{}", r.n_gen) : "-");
      c.push_back(r.n_gen ? ts(r.tg_avg_ts, r.tg_stddev_ts) : "-");
      c.push_back(r.n_prompt ? fmt::format("{:.1f}", r.ttft_ms) : "-");
      c.push_back(fmt::format("{:.1f}", r.peak_rss_mib) + (r.peak_rss_reset ? "" : " (process)"));
      if (any_gpu) c.push_back(fmt::format("{:.1f}", r.gpu_memory_mib));
      if (r.n_gen) {
        c.push_back(fmt::format("{:.1f}", r.bytes_per_token / 1e6));
        c.push_back(r.bytes_source);
        c.push_back(std::isnan(r.inactive_fraction) ? "-" : fmt::format("{:.1f}%", 100.0 * r.inactive_fraction));
        c.push_back(r.bandwidth_gbps <= 0                       ? "-"
                    : r.bandwidth_samples_gbps.size() > 1 ? fmt::format("{:.2f} ± {:.2f}", r.bandwidth_gbps,
                                                                        r.bandwidth_stddev_gbps)
                                                          : fmt::format("{:.2f}", r.bandwidth_gbps));
        c.push_back(r.roofline_ts > 0 ? fmt::format("{:.2f}", r.roofline_ts) : "-");
        c.push_back(r.roofline_ts > 0 ? fmt::format("{:.1f}%", r.roofline_pct) : "-");
        if (any_stream) {
          c.push_back(std::isnan(r.ram_hit_rate) ? "-" : fmt::format("{:.1f}%", 100.0 * r.ram_hit_rate));
          c.push_back(std::isnan(r.gpu_hit_rate) ? "-" : fmt::format("{:.1f}%", 100.0 * r.gpu_hit_rate));
          c.push_back(fmt::format("{:.2f}", r.storage_bytes_per_token / 1e6));
          c.push_back(fmt::format("{:.2f}", r.upload_bytes_per_token / 1e6));
          c.push_back(fmt_or_dash(r.syncs_per_token, "{:.1f}"));
        }
      }
      while (c.size() < head.size()) c.push_back("-");
    }
    out += "|";
    for (std::string& cell : c) {
      std::replace(cell.begin(), cell.end(), '|', '/');
      std::replace(cell.begin(), cell.end(), '\n', ' ');
      out += " " + cell + " |";
    }
    out += "\n";
  }
  if (!records.empty()) {
    const BenchRecord& r = records.front();
    out += fmt::format("\nbuild: {} ({}, {}, flags \"{}\") | CPU: {} [{}] | cpu_ops {} | KV {} | {} repetitions | {}\n",
                       r.commit, r.compiler, r.build_type, r.flags, r.cpu_model, r.cpu_features, r.cpu_ops, r.type_k,
                       r.repetitions, r.date);
    out += "pp: n_prompt random tokens in one eval from an empty cache; TTFT = pp + the first decode. "
           "tg: as llama-bench, n_gen single-token evals after a 1-token prompt (empty cache). "
           "MB/token: weight bytes read per generated token (1e6 B), from the executor's counters or "
           "estimated from the model's tensor sizes and the measured inactive fraction; roofline t/s = "
           "read bandwidth (cpu::measure_read_bandwidth, same process, same threads, probed before each tg "
           "repetition: GB/s = mean ± sd) / bytes per token; % roofline: each repetition against the probe just "
           "before it.\n";
  }
  return out;
}

}  // namespace tandem
