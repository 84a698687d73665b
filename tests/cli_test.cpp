// End-to-end tests of `tandem run`, `chat` and `perplexity` (the built binary, TANDEM_BIN).
#include <catch2/catch.hpp>

#include <sys/wait.h>

#include <cstdlib>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>

#include "cpu/reference/forward.h"
#include "cpu/reference/perplexity.h"
#include "runtime/gguf_writer.h"
#include "runtime/model.h"
#include "runtime/model_maker.h"
#include "runtime/tokenizer.h"
#include "support/test_support.h"

// tests/CMakeLists.txt defines TANDEM_BIN when the tandem command is built
// (TANDEM_BUILD_TOOLS); without it there is nothing to test here.
#ifdef TANDEM_BIN

using namespace tandem;

namespace {

struct RunResult {
  int code = -1;
  std::string out, err;
};

std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Runs `tandem <args>` through the shell (args are already quoted), stdin from `input`.
RunResult tandem_cmd(const test::TempDir& dir, const std::string& args, const std::string& input = "",
                     const std::string& env = "") {
  const auto in = dir / "stdin.txt";
  std::ofstream(in, std::ios::binary) << input;
  const auto out = dir / "stdout.txt";
  const auto err = dir / "stderr.txt";
  const std::string cmd = env + " '" + std::string(TANDEM_BIN) + "' " + args + " < '" + in.string() + "' > '" +
                          out.string() + "' 2> '" + err.string() + "'";
  const int st = std::system(cmd.c_str());
  RunResult r;
  r.code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  r.out = slurp(out);
  r.err = slurp(err);
  return r;
}

std::string make_tiny(const test::TempDir& dir, DType dt = DType::q4_0) {
  MakeModelOptions mo;
  mo.preset = "tiny";
  mo.dtype = dt;
  const auto p = dir / ("tiny-" + std::string(dtype_name(dt)) + ".gguf");
  REQUIRE(make_model(mo, p).ok());
  return "'" + p.string() + "'";
}

}  // namespace

TEST_CASE("cli: tandem run generates N tokens and prints the timing line", "[cli]") {
  test::TempDir dir;
  const std::string m = make_tiny(dir);
  auto r = tandem_cmd(dir, "run -m " + m + " -p 'The quick brown fox' -n 8 -c 64 -t 2 --temp 0 -ub 4 -ctk f32");
  INFO(r.err);
  REQUIRE(r.code == 0);
  CHECK(!r.out.empty());
  CHECK(r.err.find("generation: 8 tokens") != std::string::npos);
  CHECK(std::regex_search(r.err, std::regex(R"(prompt: \d+ tokens in [0-9.]+ ms, [0-9.]+ tokens/s)")));
  CHECK(std::regex_search(r.err, std::regex(R"(time to first token: [0-9.]+ ms \| peak RSS: [0-9.]+ MiB)")));
  CHECK(r.err.find("ubatch 4, KV cache f32") != std::string::npos);

  // Same seed and sampling -> same text; the --chat wrapping changes the prompt.
  auto again = tandem_cmd(dir, "run -m " + m + " -p 'The quick brown fox' -n 8 -c 64 --temp 0");
  CHECK(again.out == r.out);
}

TEST_CASE("cli: tandem run errors: prompt too long, -n beyond the context, wrong architecture, bad flags",
          "[cli]") {
  test::TempDir dir;
  const std::string m = make_tiny(dir);
  auto too_long = tandem_cmd(dir, "run -m " + m + " -p 'one two three four five six seven eight nine ten' -c 4");
  CHECK(too_long.code != 0);
  CHECK(std::regex_search(too_long.err, std::regex(R"(error: prompt has \d+ tokens but the context is 4 \(-c\))")));

  auto too_many = tandem_cmd(dir, "run -m " + m + " -p 'hello' -c 32 -n 100");
  CHECK(too_many.code != 0);
  CHECK(too_many.err.find("-n 100") != std::string::npos);
  CHECK(too_many.err.find("context of 32 (-c)") != std::string::npos);

  const auto llama = dir / "llama.gguf";
  {
    auto w = GgufWriter::create(llama);
    REQUIRE(w.ok());
    REQUIRE(w->set_string("general.architecture", "llama").ok());
    REQUIRE(w->begin_data().ok());
    REQUIRE(w->finish().ok());
  }
  auto arch = tandem_cmd(dir, "run -m '" + llama.string() + "' -p hello -n 2");
  CHECK(arch.code != 0);
  CHECK(arch.err.find("llama") != std::string::npos);

  auto missing = tandem_cmd(dir, "run -m '" + (dir / "nope.gguf").string() + "' -p hello -n 2");
  CHECK(missing.code != 0);
  CHECK(missing.err.find("nope.gguf") != std::string::npos);

  auto bad_flag = tandem_cmd(dir, "run -m " + m + " -p hello -n 2 -xyz 3");
  CHECK(bad_flag.code != 0);
  CHECK(bad_flag.err.find("-xyz") != std::string::npos);
  auto bad_cache = tandem_cmd(dir, "run -m " + m + " -p hello -n 2 --cache-type-k q4_0");
  CHECK(bad_cache.code != 0);
  CHECK(bad_cache.err.find("q4_0") != std::string::npos);
}

TEST_CASE(
    "cli: tandem run --transpose-down where the placement would ignore it is an error, not silence",
    "[cli]") {
  // Refused before any Vulkan device is opened (executor_factory.h), so no GPU is needed here.
  test::TempDir dir;
  const std::string m = make_tiny(dir);  // standard ffn_down_exps layout
  auto hybrid =
      tandem_cmd(dir, "run -m " + m + " -p hello -n 2 -c 64 --placement hybrid --transpose-down");
  INFO(hybrid.err);
  CHECK(hybrid.code != 0);
  CHECK(hybrid.err.find("--transpose-down is not supported with the hybrid placement") !=
        std::string::npos);
  CHECK(hybrid.err.find("tandem convert --transpose-down IN OUT") != std::string::npos);

  // The default placement (auto) with --mem-limit resolves to cpu on the streaming executor.
  auto streaming =
      tandem_cmd(dir, "run -m " + m + " -p hello -n 2 -c 64 --mem-limit 64M --transpose-down");
  INFO(streaming.err);
  CHECK(streaming.code != 0);
  CHECK(streaming.err.find("streaming executor (selected by --mem-limit)") != std::string::npos);
  CHECK(streaming.err.find(
            "the cpu placement (what --placement auto resolved to) on the streaming executor") !=
        std::string::npos);

  // Where it is honoured: the plain cpu placement transposes at load and says so.
  auto plain =
      tandem_cmd(dir, "run -m " + m + " -p hello -n 2 -c 64 --placement cpu --transpose-down");
  INFO(plain.err);
  CHECK(plain.code == 0);
  CHECK(plain.err.find("transposed at load") != std::string::npos);
}

TEST_CASE("cli: tandem chat answers two piped turns", "[cli]") {
  test::TempDir dir;
  const std::string m = make_tiny(dir);
  auto chat = tandem_cmd(dir, "chat -m " + m + " -n 5 -c 256 --temp 0", "hi\nhow are you\n");
  INFO(chat.err);
  REQUIRE(chat.code == 0);
  CHECK(chat.out.find("> ") == std::string::npos);  // no prompt echo without a terminal
  // The first answer is what `run --chat` gives for the same single user turn.
  auto first = tandem_cmd(dir, "run -m " + m + " --chat -p hi -n 5 -c 256 --temp 0");
  REQUIRE(first.code == 0);
  REQUIRE(chat.out.size() > first.out.size());
  CHECK(chat.out.substr(0, first.out.size()) == first.out);
  CHECK(chat.out.back() == '\n');
}

TEST_CASE("cli: tandem perplexity equals the reference over the same chunks", "[cli][perplexity]") {
  test::TempDir dir;
  const std::string m = make_tiny(dir, DType::f32);
  std::string text;
  for (int i = 0; i < 60; ++i) text += "the quick brown fox jumps over the lazy dog " + std::to_string(i * 7) + ". ";
  const auto text_path = dir / "text.txt";
  std::ofstream(text_path, std::ios::binary) << text;
  auto r = tandem_cmd(dir, "perplexity -m " + m + " -f '" + text_path.string() + "' -c 32 -ctk f32");
  INFO(r.err);
  REQUIRE(r.code == 0);
  std::smatch mm;
  REQUIRE(std::regex_search(r.out, mm, std::regex(R"(Final estimate: PPL = ([0-9.]+) \+/- ([0-9.]+))")));
  const double ppl = std::stod(mm[1].str());
  CHECK(std::stod(mm[2].str()) > 0.0);
  CHECK(std::regex_search(r.out, std::regex(R"(^\[1\][0-9.]+,\[2\][0-9.]+,)")));

  // Direct computation: the reference forward over each chunk (BOS first when the vocabulary
  // adds one), scored as llama-perplexity scores it.
  auto model = Model::load(m.substr(1, m.size() - 2));
  REQUIRE(model.ok());
  auto tok = Tokenizer::from_gguf(model->file());
  REQUIRE(tok.ok());
  const auto tokens = tok->encode(text, true, false);
  const size_t n_ctx = 32;
  REQUIRE(tokens.size() >= 2 * n_ctx);
  cpu::reference::PerplexityStats total;
  for (size_t c = 0; c < tokens.size() / n_ctx; ++c) {
    std::vector<int32_t> chunk(tokens.begin() + static_cast<ptrdiff_t>(c * n_ctx),
                               tokens.begin() + static_cast<ptrdiff_t>((c + 1) * n_ctx));
    if (tok->add_bos()) chunk[0] = tok->bos();
    std::vector<float> logits;
    REQUIRE(cpu::reference::forward(model->shape(), model->weights(), chunk, logits).ok());
    auto st = cpu::reference::perplexity(logits, model->shape().n_vocab, chunk);
    REQUIRE(st.ok());
    total.nll_sum += st->nll_sum;
    total.count += st->count;
  }
  CHECK(ppl == Approx(total.ppl()).epsilon(1e-4));  // printed with 4 decimals
}

TEST_CASE("cli: without -m the default model is created first", "[cli]") {
  test::TempDir dir;
  const auto path = dir / "models" / "default.gguf";
  auto r = tandem_cmd(dir, "run -p hello -n 2 -c 64 --temp 0", "", "TANDEM_MODEL='" + path.string() + "'");
  INFO(r.err);
  CHECK(r.code == 0);
  CHECK(r.err.find("creating the built-in default model") != std::string::npos);
  CHECK(std::filesystem::exists(path));
}

TEST_CASE("cli: --auto plans on the spot (run, bench) and prints where the parts run",
          "[cli][auto_plan]") {
  test::TempDir dir;
  const std::string m = make_tiny(dir);
  // A machine without a GPU (planner/hardware_profile.h schema): the plan runs on the cpu
  // placement.
  const auto hw = dir / "H.json";
  std::ofstream(hw) << R"({"schema_version": 1, "name": "cli-test-box", "ram_bytes": 8589934592,
    "shared_memory_bus": false, "shared_bandwidth_gbps": 0,
    "cpu": {"name": "test", "n_cores": 2, "n_threads": 2, "isa": [{"isa": "avx2", "n_threads": 2,
      "read_bandwidth_gbps": 10.0, "compute_gflops": 50.0, "expert_ffn_dense_us": 0, "expert_ffn_gate_us": 0,
      "attention_us": 0}]},
    "gpus": [],
    "storage": {"name": "test", "latency_us": 80.0,
      "random_read": [{"block_bytes": 4096, "queue_depth": 1, "throughput_gbps": 0.05}]}})";
  const std::string env = "XDG_CACHE_HOME='" + (dir / "cache").string() + "' TANDEM_HARDWARE=";
  auto r = tandem_cmd(
      dir, "run --auto --hardware '" + hw.string() + "' -m " + m + " -p hello -n 4 -c 64 --temp 0",
      "", env);
  INFO(r.err);
  REQUIRE(r.code == 0);
  CHECK(r.err.find("generation: 4 tokens") != std::string::npos);
  CHECK(r.err.find("run: --auto: hardware profile " + hw.string()) != std::string::npos);
  CHECK(r.err.find("flat prior") != std::string::npos);
  CHECK(std::regex_search(
      r.err, std::regex(R"(run: plan \S+/cache/tandem/auto-[0-9a-f]+\.plan\.json -> cpu executor: )"
                        R"(attention on cpu, output head on cpu; experts: 0 GPU-resident)")));
  CHECK(r.err.find("run: placement cpu") != std::string::npos);

  auto both = tandem_cmd(dir, "run --auto --plan x.json -m " + m + " -p hello -n 1", "", env);
  CHECK(both.code != 0);
  CHECK(both.err.find("--auto and --plan") != std::string::npos);
  auto missing =
      tandem_cmd(dir, "run --auto --hardware nope.json -m " + m + " -p hello -n 1", "", env);
  CHECK(missing.code != 0);
  CHECK(missing.err.find("nope.json") != std::string::npos);

  auto bench = tandem_cmd(dir,
                          "bench --auto --hardware '" + hw.string() + "' -m " + m +
                              " -p 4 -n 2 -r 1 -t 1 --bandwidth-mib 0 -o csv",
                          "", env);
  INFO(bench.err);
  REQUIRE(bench.code == 0);
  CHECK(bench.err.find("bench: --auto: hardware profile") != std::string::npos);
  CHECK(bench.out.find("auto-") != std::string::npos);  // the plan column names the file
}

#endif  // TANDEM_BIN
