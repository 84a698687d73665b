// BenchRunner: `tandem bench`, in the spirit of llama.cpp's llama-bench — prompt processing and
// generation speed of one model over every combination of the swept settings, one record per
// combination, with the weight bytes read per generated token and the roofline they imply at
// the memory bandwidth measured in the same process.
//
// Per combination (placement x device x plan x mem_limit x threads x ubatch x n_prompt x n_gen,
// in that nesting order, the last varying fastest):
//   * the executor comes from make_executor (executor_factory.h); when it fails (a placement
//     this build or machine cannot run) the record says "not available" with the reason and
//     the sweep goes on;
//   * warm-up, not timed: one prompt of n_prompt tokens and one decode, then from an empty
//     cache two single-token evals, then (n_gen > 0) one whole tg run as below, so that the
//     weights the timed runs read are resident (a mapped model faults pages in on first touch);
//   * pp, r times: n_prompt random valid token ids (fixed seed) evaluated from an empty cache
//     in ONE eval call (the executor splits it into ubatches), logits for the last row only;
//     then one single-token eval, so that time to first token = pp time + that first decode;
//   * tg, r times: as llama-bench, decode from an (almost) empty cache: one untimed prompt
//     token, then n_gen timed single-token evals, each one eval call;
//   * tokens/s per repetition; mean and sample standard deviation over the r repetitions
//     (llama-bench's avg_ts / stddev_ts).
// Figures for tg (over all its repetitions):
//   * weight bytes per token: ExecutorCounters::weight_bytes / tokens when the executor counts
//     them (bytes_source "counters"); else estimated from the model (bytes_source "model"):
//     non-expert bytes of one decode step (attention, norms, router, the whole output head,
//     one token_embd row) + n_expert_used x per layer (gate + (up + down) x active fraction)
//     for the transposed down layout, (gate + up x active + down) for the standard one (a
//     standard down row mixes every neuron, so it is read whole), where the active fraction
//     = 1 - inactive fraction measured during the same tg runs (ForwardObserver gate activity);
//   * read bandwidth: cpu::measure_read_bandwidth(threads) (cpu/mem_bandwidth.h), in this
//     process, just before each tg repetition (a shared or throttled machine's bandwidth
//     drifts between runs); mean and sample sd over those probes;
//   * roofline tokens/s = mean bandwidth / bytes per token; % of roofline = the mean over the
//     repetitions of tg tokens/s / (the probe just before it / bytes per token).
//   * streaming/hybrid counters per tg token: RAM and GPU expert-cache hit rates, storage and
//     upload bytes, CPU<->GPU synchronisations (0 lookups -> rate NaN, printed "-").
// Peak RSS: the kernel's VmHWM (proc(5)) for the combination: it is reset through
// /proc/self/clear_refs before each combination and after each bandwidth probe (whose buffer
// would otherwise dominate; the peak before a probe is kept); peak_rss_reset says whether the
// reset worked (else the figure is the process peak so far, and only one probe runs, before
// the first tg repetition). It includes the model's mapped file pages that were touched.
//
// Errors (before anything runs): invalid_argument for an empty list, -r 0, a combination with
// n_prompt == n_gen == 0, n_prompt + 1 or n_gen + 1 beyond the model's context (naming -p/-n
// and n_ctx_train), threads < 0, ubatch 0, an unknown placement name; Model::load's for the
// model file. Errors of a run (an eval that fails) end the bench with that error.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "core/dtype.h"
#include "core/status.h"

namespace tandem {

struct BenchOptions {
  std::filesystem::path model;
  // Swept lists (llama-bench flag names in brackets); each must be non-empty.
  std::vector<uint32_t> n_prompt = {128};           // -p (0 = no pp test)
  std::vector<uint32_t> n_gen = {64};               // -n (0 = no tg test)
  std::vector<int> n_threads = {0};                 // -t (0 = every hardware thread)
  std::vector<uint32_t> n_ubatch = {512};           // -ub
  std::vector<std::string> placement = {"cpu"};     // --placement
  std::vector<std::string> device = {""};           // --device
  std::vector<std::filesystem::path> plan = {""};   // --plan
  std::vector<uint64_t> mem_limit = {0};            // --mem-limit, bytes (0 = none)
  std::vector<int> use_mmap = {1};                  // --mmap (0 = --no-mmap: the model read into memory)
  std::vector<int> repack = {1};                    // --repack (0 = --no-repack; cpu placement, cpu_executor.h)
  uint32_t repetitions = 5;                         // -r
  std::string cpu_ops = "fast";                     // --cpu-ops
  DType cache_type = DType::f16;                    // -ctk
  uint64_t seed = 1234;                             // token ids of the prompts
  // Bandwidth probe buffer (bytes) and passes; 0 bytes = skip the probe (roofline 0).
  uint64_t bandwidth_bytes = 512ull << 20;
  int bandwidth_reps = 5;
};

struct BenchRecord {
  // Build and machine.
  std::string commit;       // git describe --always --dirty (runtime/build_info.h)
  bool dirty = false;
  std::string compiler;     // "GNU 12.2.0"
  std::string build_type;   // "Release"
  std::string flags;        // compiler flags of generic code
  std::string cpu_model;    // /proc/cpuinfo
  std::string cpu_features; // CpuFeatures::summary()
  std::string isa;          // cpu::kernels().isa ("avx512"; TANDEM_MAX_ISA caps it)
  std::string date;         // UTC, ISO 8601, when the combination started
  // Model.
  std::string model_filename;  // file name (no folder)
  uint64_t model_size = 0;     // bytes of the file
  uint64_t model_n_params = 0; // elements of every tensor
  std::string model_type;      // "smallthinker <general.name> q4_0 down transposed"
  // Configuration.
  std::string placement, device, plan, cpu_ops, type_k;
  uint64_t mem_limit = 0;
  bool use_mmap = true;        // false: the model was read into anonymous huge-page memory
  bool repack = true;          // false: --no-repack (only the cpu placement repacks)
  int n_threads = 0;           // resolved (never 0)
  uint32_t n_ubatch = 0, n_prompt = 0, n_gen = 0, repetitions = 0;
  // Availability: false when make_executor failed; `error` says why and no figure is set.
  bool available = true;
  std::string error;
  // pp (n_prompt > 0): tokens/s per repetition, mean and sample sd; mean time to first token.
  std::vector<double> pp_samples_ts;
  double pp_avg_ts = 0, pp_stddev_ts = 0;
  double ttft_ms = 0;
  // tg (n_gen > 0).
  std::vector<double> tg_samples_ts;
  double tg_avg_ts = 0, tg_stddev_ts = 0;
  double bytes_per_token = 0;     // weight bytes read per generated token
  std::string bytes_source;       // "counters" or "model"
  double inactive_fraction = 0;   // measured during tg (NaN when the forward pass reported none)
  std::vector<double> bandwidth_samples_gbps;  // read bandwidth probes, one before each tg repetition
  double bandwidth_gbps = 0;      // their mean at n_threads (1e9 B/s); 0 when not measured
  double bandwidth_stddev_gbps = 0;
  double roofline_ts = 0;         // bandwidth_gbps / bytes_per_token
  double roofline_pct = 0;        // mean over repetitions of 100 * tg / (probe before it / bytes per token)
  // Streaming / hybrid, per tg token (rates NaN without lookups).
  double ram_hit_rate = 0, gpu_hit_rate = 0;
  double storage_bytes_per_token = 0, upload_bytes_per_token = 0, syncs_per_token = 0;
  // Memory.
  double peak_rss_mib = 0;        // VmHWM over the combination (MiB = 2^20 B)
  bool peak_rss_reset = false;    // false: the process peak so far (clear_refs not allowed)
  double gpu_memory_mib = 0;      // ExecutorCounters::gpu_memory_bytes after the runs
};

// Progress lines for stderr ("bench: [2/4] cpu t=2 pp 128: 3 of 5").
using BenchProgress = std::function<void(std::string_view line)>;

Result<std::vector<BenchRecord>> run_bench(const BenchOptions& options, const BenchProgress& progress = {});

class Model;
// The model estimate of the weight bytes one decode step reads (the formula above), for an
// active-neuron fraction in [0, 1].
double bench_model_bytes_per_token(const Model& model, double active_fraction);

// Output formats (md: a table like llama-bench's, one row per record, then the build line and
// how tg was measured; json: an array of objects, one per record, keys = the field names
// above; csv: a header line, then one line per record, RFC 4180 quoting).
std::string bench_markdown(const std::vector<BenchRecord>& records);
std::string bench_json(const std::vector<BenchRecord>& records);
std::string bench_csv(const std::vector<BenchRecord>& records);

}  // namespace tandem
