// run_bench on a tiny model: every field of a record filled, sweeps giving one record per
// combination in order, unavailable placements reported as rows, the three output formats
// parsing back, and the argument errors.
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include <sstream>

#include "gpu/testing/vulkan_fixture.h"
#include "runtime/bench_runner.h"
#include "runtime/model.h"
#include "runtime/model_maker.h"
#include "support/test_support.h"

using namespace tandem;
using Catch::Matchers::Contains;

namespace {

// The placement sweeps below create Vulkan instances whose GPU rows then fail cleanly; keep
// lavapipe loaded so LeakSanitizer can see its per-instance buffer (gpu/testing/vulkan_fixture.h).
const bool k_icd_pinned = gpu::testing::preload_software_icd();

struct TinyModel {
  test::TempDir dir;
  std::filesystem::path path = dir / "tiny.gguf";
  TinyModel() {
    MakeModelOptions o;
    o.preset = "tiny";
    o.dtype = DType::q4_0;
    o.transpose_down = true;
    REQUIRE(make_model(o, path).ok());
  }
};

BenchOptions small(const std::filesystem::path& model) {
  BenchOptions o;
  o.model = model;
  o.n_prompt = {8};
  o.n_gen = {4};
  o.repetitions = 2;
  o.n_threads = {1};
  o.bandwidth_bytes = 4ull << 20;
  o.bandwidth_reps = 2;
  return o;
}

// RFC 4180 fields of one line (quotes doubled inside quoted fields).
std::vector<std::string> csv_fields(const std::string& line) {
  std::vector<std::string> f(1);
  bool quoted = false;
  for (size_t i = 0; i < line.size(); ++i) {
    const char c = line[i];
    if (quoted) {
      if (c == '"' && i + 1 < line.size() && line[i + 1] == '"') {
        f.back() += '"';
        ++i;
      } else if (c == '"') {
        quoted = false;
      } else {
        f.back() += c;
      }
    } else if (c == '"') {
      quoted = true;
    } else if (c == ',') {
      f.emplace_back();
    } else {
      f.back() += c;
    }
  }
  return f;
}

std::vector<std::string> lines_of(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream in(s);
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

size_t count_cells(const std::string& row) { return static_cast<size_t>(std::count(row.begin(), row.end(), '|')) - 1; }

}  // namespace

TEST_CASE("bench: a tiny model gives a complete record", "[bench]") {
  TinyModel m;
  const std::string ops = GENERATE("fast", "plain");
  BenchOptions o = small(m.path);
  o.cpu_ops = ops;
  auto r = run_bench(o);
  INFO(r.status().message());
  REQUIRE(r.ok());
  REQUIRE(r->size() == 1);
  const BenchRecord& b = r->front();
  CAPTURE(ops, b.bytes_source);
  CHECK(b.available);
  CHECK(b.error.empty());
  CHECK_FALSE(b.commit.empty());
  CHECK_FALSE(b.compiler.empty());
  CHECK_FALSE(b.build_type.empty());
  CHECK_FALSE(b.cpu_model.empty());
  CHECK_FALSE(b.isa.empty());
  CHECK(b.date.size() == 20);  // 2026-11-21T10:00:00Z
  CHECK(b.model_filename == "tiny.gguf");
  CHECK(b.model_size == std::filesystem::file_size(m.path));
  CHECK(b.model_n_params > 0);
  CHECK_THAT(b.model_type, Contains("q4_0") && Contains("transposed"));
  CHECK(b.n_threads == 1);
  CHECK(b.pp_samples_ts.size() == 2);
  CHECK(b.tg_samples_ts.size() == 2);
  CHECK(b.pp_avg_ts > 0);
  CHECK(b.tg_avg_ts > 0);
  CHECK(b.pp_stddev_ts >= 0);
  CHECK(b.ttft_ms > 0);
  CHECK(b.ttft_ms >= 1e3 * 8 / b.pp_samples_ts[0] * 0.5);
  CHECK(b.peak_rss_mib > 0);
  CHECK(b.bandwidth_gbps > 0);
  CHECK(b.bytes_per_token > 0);
  // One probe before each tg repetition (one in all when the peak RSS cannot be reset).
  REQUIRE(b.bandwidth_samples_gbps.size() == (b.peak_rss_reset ? 2u : 1u));
  double bw_mean = 0;
  for (double g : b.bandwidth_samples_gbps) {
    CHECK(g > 0);
    bw_mean += g / static_cast<double>(b.bandwidth_samples_gbps.size());
  }
  CHECK(b.bandwidth_gbps == Approx(bw_mean));
  CHECK(b.roofline_ts == Approx(b.bandwidth_gbps * 1e9 / b.bytes_per_token));
  double pct = 0;
  for (size_t rep = 0; rep < 2; ++rep) {
    const double g = b.bandwidth_samples_gbps[std::min(rep, b.bandwidth_samples_gbps.size() - 1)];
    pct += 0.5 * 100.0 * b.tg_samples_ts[rep] * b.bytes_per_token / (g * 1e9);
  }
  CHECK(b.roofline_pct == Approx(pct));
  // The forward pass reports gate activity; the maker's tiny model is about 60% inactive.
  REQUIRE_FALSE(std::isnan(b.inactive_fraction));
  CHECK(b.inactive_fraction > 0.2);
  CHECK(b.inactive_fraction < 0.95);

  // The model estimate: between the non-expert bytes alone and every expert read densely.
  auto model = Model::load(m.path);
  REQUIRE(model.ok());
  const ModelWeights& w = model->weights();
  double non_expert = static_cast<double>(w.output.nbytes()), dense = non_expert;
  for (const LayerWeights& l : w.layers) {
    const double att = static_cast<double>(l.attn_q.nbytes() + l.attn_k.nbytes() + l.attn_v.nbytes() + l.attn_output.nbytes());
    non_expert += att;
    dense += att + static_cast<double>(model->shape().n_expert_used *
                                       (l.ffn_gate_exps.nb[2] + l.ffn_up_exps.nb[2] + l.ffn_down_exps.nb[2]));
  }
  if (ops == "plain") CHECK(b.bytes_source == "model");  // the plain ops do not count
  if (b.bytes_source == "model") {
    CHECK(b.bytes_per_token > non_expert);
    CHECK(b.bytes_per_token < dense * 1.05);
  } else {
    // The fast ops count what they read: the model's estimate is the same arithmetic.
    CHECK(b.bytes_source == "counters");
    const double estimate = bench_model_bytes_per_token(*model, 1.0 - b.inactive_fraction);
    CHECK(b.bytes_per_token == Approx(estimate).epsilon(0.15));
  }
}

TEST_CASE("bench: sweeps give one record per combination, unavailable ones as rows", "[bench]") {
  TinyModel m;
  BenchOptions o = small(m.path);
  o.repetitions = 1;
  o.placement = {"cpu", "gpu"};
  o.n_threads = {1, 2};
  o.n_prompt = {4, 0};
  o.n_gen = {3};
  std::vector<std::string> progress;
  auto r = run_bench(o, [&](std::string_view line) { progress.emplace_back(line); });
  INFO(r.status().message());
  REQUIRE(r.ok());
  REQUIRE(r->size() == 8);
  CHECK_FALSE(progress.empty());
  size_t i = 0;
  for (const char* placement : {"cpu", "gpu"}) {
    for (int t : {1, 2}) {
      for (uint32_t p : {4u, 0u}) {
        const BenchRecord& b = (*r)[i++];
        CAPTURE(i, placement, t, p);
        CHECK(b.placement == placement);
        CHECK(b.n_threads == t);
        CHECK(b.n_prompt == p);
        CHECK(b.n_gen == 3);
        if (b.available) {
          CHECK(b.tg_avg_ts > 0);
          CHECK((p == 0) == b.pp_samples_ts.empty());
          CHECK((p == 0) == (b.ttft_ms == 0));
        } else {
          CHECK(b.placement == "gpu");
          CHECK_FALSE(b.error.empty());
          CHECK(b.tg_samples_ts.empty());
        }
      }
    }
  }
  CHECK((*r)[0].available);

  SECTION("markdown: one row per record, every row as wide as the header") {
    const auto lines = lines_of(bench_markdown(*r));
    REQUIRE(lines.size() >= 2 + r->size());
    const size_t cells = count_cells(lines[0]);
    CHECK(cells >= 15);
    CHECK_THAT(lines[1], Contains("---"));
    for (size_t k = 0; k < 2 + r->size(); ++k) {
      CAPTURE(lines[k]);
      CHECK(count_cells(lines[k]) == cells);
    }
    CHECK_THAT(lines[2], Contains("pp4") && Contains("tg3"));
    CHECK_THAT(bench_markdown(*r), Contains("not available") && Contains("build: "));
  }
  SECTION("json: an array of objects with every field") {
    const auto j = nlohmann::json::parse(bench_json(*r));
    REQUIRE(j.is_array());
    REQUIRE(j.size() == r->size());
    for (const char* k : {"build_commit", "compiler", "flags", "cpu_info", "isa", "n_threads", "model_filename",
                          "model_size", "model_type", "pp_avg_ts", "tg_avg_ts", "ttft_ms", "bytes_per_token",
                          "roofline_ts", "peak_rss_mib", "gpu_memory_mib", "available", "test_time"}) {
      CAPTURE(k);
      CHECK(j[0].contains(k));
    }
    CHECK(j[0]["tg_avg_ts"].get<double>() == Approx((*r)[0].tg_avg_ts));
    CHECK(j[0]["placement"] == "cpu");
    CHECK(j[4]["available"] == false);
  }
  SECTION("csv: a header and one line per record with as many fields") {
    const auto lines = lines_of(bench_csv(*r));
    REQUIRE(lines.size() == 1 + r->size());
    const auto header = csv_fields(lines[0]);
    CHECK(header.size() > 30);
    const auto col = std::find(header.begin(), header.end(), "n_threads") - header.begin();
    for (size_t k = 1; k < lines.size(); ++k) {
      const auto f = csv_fields(lines[k]);
      REQUIRE(f.size() == header.size());
      CHECK(f[static_cast<size_t>(col)] == std::to_string((*r)[k - 1].n_threads));
    }
  }
}

TEST_CASE("bench: --mmap 1,0 benches the mapped model and the one read into memory", "[bench]") {
  TinyModel m;
  BenchOptions o = small(m.path);
  o.repetitions = 1;
  o.use_mmap = {1, 0};
  o.n_threads = {1, 2};
  auto r = run_bench(o, nullptr);
  INFO(r.status().message());
  REQUIRE(r.ok());
  REQUIRE(r->size() == 4);
  for (size_t i = 0; i < 4; ++i) {
    CAPTURE(i);
    CHECK((*r)[i].use_mmap == (i < 2));
    CHECK((*r)[i].n_threads == (i % 2 == 0 ? 1 : 2));
    CHECK((*r)[i].available);
    CHECK((*r)[i].tg_avg_ts > 0);
    CHECK((*r)[i].bytes_per_token == (*r)[0].bytes_per_token);  // same weights read either way
  }
  const std::string md = bench_markdown(*r);
  CHECK_THAT(md, Contains("| cpu no-mmap |"));
  const auto j = nlohmann::json::parse(bench_json(*r));
  CHECK(j[0]["use_mmap"] == true);
  CHECK(j[2]["use_mmap"] == false);
  o.use_mmap.clear();
  CHECK_FALSE(run_bench(o, nullptr).ok());
}

TEST_CASE("bench: --repack 1,0 gives a record each, marked, with the same bytes per token", "[bench]") {
  TinyModel m;
  BenchOptions o = small(m.path);
  o.repetitions = 1;
  o.repack = {1, 0};
  auto r = run_bench(o, nullptr);
  INFO(r.status().message());
  REQUIRE(r.ok());
  REQUIRE(r->size() == 2);
  CHECK((*r)[0].repack);
  CHECK_FALSE((*r)[1].repack);
  for (const BenchRecord& rec : *r) {
    CHECK(rec.available);
    CHECK(rec.tg_avg_ts > 0);
    CHECK(rec.bytes_per_token == (*r)[0].bytes_per_token);
  }
  const std::string md = bench_markdown(*r);
  CHECK_THAT(md, Contains("| cpu no-repack |"));
  const auto j = nlohmann::json::parse(bench_json(*r));
  CHECK(j[0]["repack"] == true);
  CHECK(j[1]["repack"] == false);
  o.repack.clear();
  CHECK_FALSE(run_bench(o, nullptr).ok());
}

TEST_CASE("bench: bad values and a missing model are errors", "[bench]") {
  TinyModel m;
  BenchOptions o = small(m.path);
  const auto fails = [](const BenchOptions& b, const char* what) {
    auto r = run_bench(b);
    REQUIRE_FALSE(r.ok());
    CHECK_THAT(r.status().message(), Contains(what));
  };
  SECTION("-r 0") {
    o.repetitions = 0;
    fails(o, "-r 0");
  }
  SECTION("-p 0 -n 0") {
    o.n_prompt = {0};
    o.n_gen = {0};
    fails(o, "-p 0 with -n 0");
  }
  SECTION("-p beyond the model's context") {
    o.n_prompt = {8, 9000};
    fails(o, "n_ctx_train");
  }
  SECTION("-n beyond the model's context") {
    o.n_gen = {8192};
    fails(o, "n_ctx_train");
  }
  SECTION("negative threads, ubatch 0, unknown placement, empty list") {
    o.n_threads = {-1};
    fails(o, "-t -1");
    o = small(m.path);
    o.n_ubatch = {0};
    fails(o, "-ub 0");
    o = small(m.path);
    o.placement = {"tpu"};
    fails(o, "tpu");
    o = small(m.path);
    o.n_gen = {};
    fails(o, "-n");
  }
  SECTION("missing model") {
    o.model = m.dir / "missing.gguf";
    fails(o, "missing.gguf");
  }
}

TEST_CASE("bench: the bandwidth probes' buffers do not count in the peak RSS", "[bench]") {
#if defined(__SANITIZE_ADDRESS__)
  WARN("AddressSanitizer keeps freed memory resident (quarantine): RSS comparisons say nothing here");
#else
  TinyModel m;
  // The same combination with a 384 MiB probe and with a 4 MiB one: the big probe's buffer
  // must not show in the peak (it would add about 380 MiB).
  double peak[2] = {0, 0};
  bool reset = true;
  const uint64_t probe_mib[2] = {384, 4};
  for (int i = 0; i < 2; ++i) {
    BenchOptions o = small(m.path);
    o.n_prompt = {0};
    o.bandwidth_bytes = probe_mib[i] << 20;
    o.bandwidth_reps = 1;
    auto recs = run_bench(o);
    REQUIRE(recs.ok());
    REQUIRE(recs->size() == 1);
    const BenchRecord& b = recs->front();
    CHECK(b.bandwidth_gbps > 0);
    peak[i] = b.peak_rss_mib;
    reset = reset && b.peak_rss_reset;
    if (b.peak_rss_reset) CHECK(b.bandwidth_samples_gbps.size() == 2);
  }
  if (reset) {
    CHECK(peak[0] - peak[1] < 128.0);
  } else {
    WARN("clear_refs refused: the peak RSS is the process peak, probe buffer included");
  }
#endif
}
