#include "runtime/calibrate.h"

#include <catch2/catch.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <regex>
#include <string>
#include <utility>
#include <vector>

#include "core/fp16.h"
#include "core/quant_blocks.h"
#include "gpu/testing/vulkan_fixture.h"
#include "runtime/calibrate_probes.h"
#include "runtime/model_maker.h"
#include "support/test_support.h"

namespace tandem {
namespace {

const bool k_probe = test::register_probe("vulkan", gpu::testing::vulkan_probe);

CalibrateOptions quick_options(const test::TempDir& dir, std::vector<std::string>* lines = nullptr) {
  MakeModelOptions mo;
  mo.preset = "tiny";
  CalibrateOptions o;
  o.shape = resolve_model_shape(mo).value();
  o.shape_source = "preset tiny";
  o.quick = true;
  o.device = "none";
  o.max_threads = 2;
  o.storage_dir = dir.path();
  o.storage_temp_bytes = 16ull << 20;
  if (lines) o.progress = [lines](std::string_view l) { lines->emplace_back(l); };
  return o;
}

// Every figure of a measured profile: > 0 and within what any machine of this decade reaches.
void check_plausible(const HardwareProfile& hw) {
  CHECK(hw.ram_bytes > (64ull << 20));
  CHECK(hw.cpu.n_cores >= 1);
  CHECK(hw.cpu.n_threads >= hw.cpu.n_cores);
  CHECK(!hw.cpu.name.empty());
  REQUIRE(!hw.cpu.isa.empty());
  for (const CpuIsaPerf& e : hw.cpu.isa) {
    INFO(e.isa << " x" << e.n_threads);
    CHECK(e.read_bandwidth_gbps > 0.1);
    CHECK(e.read_bandwidth_gbps < 1000);
    CHECK(e.compute_gflops > 0.01);
    CHECK(e.compute_gflops < 1e5);
    CHECK(e.expert_ffn_dense_us > 0);
    CHECK(e.expert_ffn_dense_us < 1e6);
    CHECK(e.expert_ffn_gate_us > 0);
    CHECK(e.expert_ffn_gate_us <= e.expert_ffn_dense_us);
  }
  REQUIRE(hw.storage.random_read.size() == 4);
  for (const StorageReadPoint& p : hw.storage.random_read) {
    INFO("queue depth " << p.queue_depth);
    CHECK(p.throughput_gbps > 0.0001);
    CHECK(p.throughput_gbps < 1000);
  }
  CHECK(hw.storage.latency_us > 0);
  CHECK(hw.storage.latency_us < 1e6);
  for (const GpuProfile& g : hw.gpus) {
    INFO(g.name);
    // lavapipe runs shaders on the (shared, in CI loaded) CPU: tens of MB/s are real there.
    const bool software = g.name.find("llvmpipe") != std::string::npos || g.name.find("SwiftShader") != std::string::npos;
    const double floor = software ? 0.001 : 0.1;
    CHECK(g.memory_bytes > 0);
    CHECK(g.upload_gbps > floor);
    CHECK(g.upload_gbps < 1000);
    CHECK(g.bandwidth_gbps > floor);
    CHECK(g.bandwidth_gbps < 20000);
    CHECK(g.zero_copy_gbps >= 0);
    CHECK(g.compute_gflops > 0.01);
    CHECK(g.expert_ffn_us > 0);
    CHECK(g.submit_wait_us > 0);
  }
}

TEST_CASE("calibrate --quick writes a profile the planner's loader accepts, figures plausible", "[calibrate]") {
  test::TempDir dir;
  std::vector<std::string> lines;
  auto hw = calibrate(quick_options(dir, &lines));
  REQUIRE(hw.ok());
  check_plausible(*hw);
  CHECK(hw->gpus.empty());  // device "none"
  CHECK_FALSE(hw->shared_memory_bus);
  // One entry per host isa and thread count 1, 2 (max_threads 2) or 1 on a 1-thread host.
  for (const CpuIsaPerf& e : hw->cpu.isa) CHECK(e.n_threads <= 2);
  CHECK(hw->cpu.isa.front().isa == "scalar");
  CHECK(hw->storage.random_read[0].block_bytes == calibrate_detail::expert_slab_bytes(quick_options(dir)));
  CHECK(!lines.empty());
  // The temporary storage file is gone.
  CHECK(std::filesystem::is_empty(dir.path()));

  const auto path = dir / "hw.json";
  REQUIRE(save_hardware_profile(*hw, path).ok());
  auto back = load_hardware_profile(path);
  INFO(back.status().message());
  REQUIRE(back.ok());
  check_plausible(*back);
  CHECK(back->name == "this-machine");
  CHECK(back->cpu.isa.size() == hw->cpu.isa.size());
}

TEST_CASE("calibrate reads an existing file instead of writing one", "[calibrate]") {
  test::TempDir dir;
  const auto file = dir / "model.bin";
  {
    std::vector<char> bytes(8 << 20, 'x');
    FILE* f = std::fopen(file.c_str(), "wb");
    REQUIRE(f);
    REQUIRE(std::fwrite(bytes.data(), 1, bytes.size(), f) == bytes.size());
    std::fclose(f);
  }
  auto o = quick_options(dir);
  o.storage_file = file;
  HardwareProfile hw;
  REQUIRE(calibrate_detail::probe_storage(o, hw).ok());
  REQUIRE(hw.storage.random_read.size() == 4);
  CHECK(hw.storage.random_read[3].queue_depth == 32);
  CHECK(hw.storage.latency_us > 0);
  // Only the file we made is there.
  CHECK(std::distance(std::filesystem::directory_iterator(dir.path()), {}) == 1);
}

TEST_CASE("calibrate names what is wrong: shape, dtype, storage directory and space", "[calibrate]") {
  test::TempDir dir;
  auto o = quick_options(dir);
  o.shape.n_embd = 100;
  auto bad_shape = calibrate(o);
  REQUIRE_FALSE(bad_shape.ok());
  CHECK(bad_shape.status().code() == ErrorCode::invalid_argument);
  CHECK(bad_shape.status().message().find("n_embd 100") != std::string::npos);

  o = quick_options(dir);
  o.expert_dtype = DType::f32;
  auto bad_dtype = calibrate(o);
  REQUIRE_FALSE(bad_dtype.ok());
  CHECK(bad_dtype.status().code() == ErrorCode::unsupported);

  HardwareProfile hw;
  o = quick_options(dir);
  o.storage_dir = dir / "missing";
  Status missing = calibrate_detail::probe_storage(o, hw);
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.code() == ErrorCode::io_error);
  CHECK(missing.message().find("missing") != std::string::npos);

  o = quick_options(dir);
  o.storage_temp_bytes = 1ull << 60;  // more than any disk
  Status no_space = calibrate_detail::probe_storage(o, hw);
  REQUIRE_FALSE(no_space.ok());
  CHECK(no_space.code() == ErrorCode::io_error);
  CHECK(no_space.message().find("no space") != std::string::npos);
  CHECK(std::filesystem::is_empty(dir.path()));

  if (::geteuid() != 0) {  // root writes anywhere
    const auto ro = dir / "read-only";
    std::filesystem::create_directory(ro);
    ::chmod(ro.c_str(), 0555);
    o = quick_options(dir);
    o.storage_dir = ro;
    Status denied = calibrate_detail::probe_storage(o, hw);
    REQUIRE_FALSE(denied.ok());
    CHECK(denied.message().find("read-only") != std::string::npos);
    ::chmod(ro.c_str(), 0755);
  }
}

// The gate outputs of a fill_gate_slab slab for x = k_expert_probe_x, from the dequantized rows.
std::vector<float> gate_outputs(DType dtype, const std::vector<uint8_t>& slab, int64_t n_embd,
                                int64_t n_ff) {
  const uint64_t row = dtype_row_size(dtype, n_embd);
  std::vector<float> g(static_cast<size_t>(n_ff), 0.0f);
  for (int64_t r = 0; r < n_ff; ++r) {
    const uint8_t* p = slab.data() + static_cast<uint64_t>(r) * row;
    double sum = 0;
    for (int64_t b = 0; b < n_embd / 32; ++b) {
      if (dtype == DType::q4_0) {
        const auto* blk = reinterpret_cast<const block_q4_0*>(p) + b;
        for (uint8_t q : blk->qs)
          sum += fp16_to_fp32(blk->d) * ((q & 0x0F) - 8 + (q >> 4) - 8) *
                 calibrate_detail::k_expert_probe_x;
      } else {
        const auto* blk = reinterpret_cast<const block_q8_0*>(p) + b;
        for (int8_t q : blk->qs)
          sum += fp16_to_fp32(blk->d) * q * calibrate_detail::k_expert_probe_x;
      }
    }
    g[static_cast<size_t>(r)] = static_cast<float>(sum);
  }
  return g;
}

TEST_CASE("calibrate's GPU gate weights leave exactly the asked fraction of gate outputs <= 0",
          "[calibrate]") {
  using calibrate_detail::fill_gate_slab;
  for (DType dt : {DType::q4_0, DType::q8_0}) {
    for (auto [n_embd, n_ff] :
         {std::pair<int64_t, int64_t>{32, 1}, {64, 37}, {96, 128}, {256, 768}}) {
      for (int64_t n_inactive : {int64_t{0}, n_ff / 3, (n_ff * 3) / 5, n_ff}) {
        INFO(dtype_name(dt) << " n_embd " << n_embd << " n_ff " << n_ff << " inactive "
                            << n_inactive);
        std::vector<uint8_t> slab(static_cast<size_t>(n_ff) * dtype_row_size(dt, n_embd), 0xAB);
        fill_gate_slab(dt, slab.data(), n_embd, n_ff, n_inactive, 5);
        const auto g = gate_outputs(dt, slab, n_embd, n_ff);
        CHECK(std::count_if(g.begin(), g.end(), [](float v) { return v <= 0.0f; }) == n_inactive);
        if (n_inactive > 1 && n_inactive < n_ff - 1) {
          // Scattered, not the first rows: some inactive row comes after some active one.
          const auto first_active =
              std::find_if(g.begin(), g.end(), [](float v) { return v > 0.0f; });
          CHECK(std::find_if(first_active, g.end(), [](float v) { return v <= 0.0f; }) != g.end());
        }
      }
    }
  }
}

TEST_CASE("calibrate measures a Vulkan device when asked for it", "[calibrate][gpu]") {
  test::TempDir dir;
  auto o = quick_options(dir);
  {
    // The GPU where there is one, else the software device (lavapipe in CI).
    auto inst = gpu::Instance::create(gpu::GpuOptions{});
    REQUIRE(inst.ok());
    gpu::testing::pin_software_icd();
    o.device = gpu::testing::test_device_choice(**inst);
  }
  std::vector<std::string> lines;
  o.progress = [&lines](std::string_view l) { lines.emplace_back(l); };
  auto hw = calibrate(o);
  for (const auto& l : lines) UNSCOPED_INFO(l);
  INFO("device " << o.device << ": " << hw.status().message());
  REQUIRE(hw.ok());
  REQUIRE(hw->gpus.size() == 1);
  check_plausible(*hw);
  // expert_ffn_us is the sparse figure of the progress line, on the inputs' 60% inactive gates
  // (77 of the tiny preset's 128 rows; reglu can add a row whose up output is exactly 0).
  const std::regex expert_line(
      R"(gpu expert \(1 token\): dense ([0-9.]+) us, sparse ([0-9.]+) us \(([0-9.]+)% of gate outputs <= 0; sparse up, standard down)");
  std::smatch m;
  const auto it = std::find_if(lines.begin(), lines.end(), [&](const std::string& l) {
    return std::regex_search(l, m, expert_line);
  });
  REQUIRE(it != lines.end());
  CHECK(std::stod(m[1].str()) > 0);
  CHECK(std::stod(m[2].str()) > 0);
  CHECK(hw->gpus[0].expert_ffn_us == Approx(std::stod(m[2].str())).margin(0.051));
  CHECK(std::stod(m[3].str()) >= 60.1);
  CHECK(std::stod(m[3].str()) < 65.0);
  CHECK(std::any_of(hw->notes.begin(), hw->notes.end(), [](const std::string& n) {
    return n.find("gpu expert_ffn_us: gate, ReLU-sparse up") != std::string::npos;
  }));

  // A transposed-down shape times the sparse mul_mat_vec_t_id, as the executors run it.
  {
    auto t = o;
    t.shape.down_layout = DownLayout::transposed;
    std::vector<std::string> t_lines;
    t.progress = [&t_lines](std::string_view l) { t_lines.emplace_back(l); };
    HardwareProfile t_hw;
    Status st = calibrate_detail::probe_gpu(t, t_hw);
    INFO(st.message());
    REQUIRE(st.ok());
    REQUIRE(t_hw.gpus.size() == 1);
    CHECK(t_hw.gpus[0].expert_ffn_us > 0);
    CHECK(std::any_of(t_lines.begin(), t_lines.end(), [](const std::string& l) {
      return l.find("sparse up, transposed down, sparse mul_mat_vec_t_id") != std::string::npos;
    }));
  }
  if (hw->gpus[0].unified_memory) {
    CHECK(hw->shared_memory_bus);
    CHECK(hw->shared_bandwidth_gbps > 0);
  }
  const auto path = dir / "hw.json";
  REQUIRE(save_hardware_profile(*hw, path).ok());
  REQUIRE(load_hardware_profile(path).ok());

  o.device = "99";
  auto missing = calibrate(o);
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.status().code() == ErrorCode::not_found);
}

}  // namespace
}  // namespace tandem
