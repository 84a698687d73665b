#include "planner/hardware_profile.h"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "planner/test_fixtures.h"

using namespace tandem;
using J = nlohmann::json;

TEST_CASE("hardware profile: JSON round trip is exact", "[planner][hardware]") {
  for (uint64_t seed = 1; seed <= 5; ++seed) {
    HardwareProfile hw = planner_test::random_machine(seed);
    hw.notes = {"estimate", "from a spec sheet"};
    const std::string text = hardware_profile_to_json(hw);
    auto back = hardware_profile_from_json(text, "hw.json");
    REQUIRE(back.ok());
    CHECK(hardware_profile_to_json(*back) == text);
    CHECK(back->cpu.isa[0].read_bandwidth_gbps == hw.cpu.isa[0].read_bandwidth_gbps);
    CHECK(back->gpus.size() == hw.gpus.size());
    CHECK(back->notes == hw.notes);
  }
}

TEST_CASE("hardware profile: malformed files are rejected naming the JSON path", "[planner][hardware]") {
  const std::string good = hardware_profile_to_json(planner_test::test_machine(true));
  auto edit = [&](auto fn) {
    J j = J::parse(good);
    fn(j);
    return j.dump();
  };
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"not json", "hardware.json: not valid JSON (byte offset"},
      {edit([](J& j) { j["schema_version"] = 7; }), "schema_version 7 is not supported"},
      {edit([](J& j) { j["schema_version"] = "1"; }), "schema_version must be an integer"},
      {edit([](J& j) { j.erase("cpu"); }), "hardware.json: cpu is missing"},
      {edit([](J& j) { j["cpu"]["isa"].push_back(j["cpu"]["isa"][0]); j["cpu"]["isa"][1]["read_bandwidth_gbps"] = 0; }),
       "hardware.json: cpu.isa[1].read_bandwidth_gbps must be > 0"},
      {edit([](J& j) { j["cpu"]["isa"] = J::array(); }), "cpu.isa must have at least one entry"},
      {edit([](J& j) { j["cpu"]["n_cores"] = 0; }), "cpu.n_cores must be in [1, 4096], is 0"},
      {edit([](J& j) { j["gpus"][0]["type"] = "external"; }), "gpus[0].type must be \"integrated\" or \"discrete\""},
      {edit([](J& j) { j["gpus"][0]["unified_memory"] = 1; }), "gpus[0].unified_memory must be true or false"},
      {edit([](J& j) { j["gpus"][0]["upload_gpbs"] = 3; }), "gpus[0].upload_gpbs is not a known field"},
      {edit([](J& j) { j["gpus"][0].erase("submit_wait_us"); }), "gpus[0].submit_wait_us is missing"},
      {edit([](J& j) { j["gpus"][0]["memory_bytes"] = -5; }), "gpus[0].memory_bytes must be a non-negative integer"},
      {edit([](J& j) { j["gpus"] = J::object(); }), "gpus must be an array"},
      {edit([](J& j) { j["shared_bandwidth_gbps"] = 0; }), "shared_bandwidth_gbps must be > 0"},
      {edit([](J& j) { j["storage"]["random_read"][1]["queue_depth"] = 0; }),
       "storage.random_read[1].queue_depth must be in [1, 65536], is 0"},
      {edit([](J& j) { j["cpu"]["isa"][0]["expert_ffn_dense_us"] = 10; j["cpu"]["isa"][0]["expert_ffn_gate_us"] = 20; }),
       "cpu.isa[0].expert_ffn_gate_us must be <= expert_ffn_dense_us"},
      {edit([](J& j) { j["notes"] = J::array({"ok", 3}); }), "notes[1] must be a string"},
  };
  for (const auto& [text, fragment] : cases) {
    INFO(fragment);
    auto r = hardware_profile_from_json(text, "hardware.json");
    REQUIRE_FALSE(r.ok());
    CHECK_THAT(r.status().message(), Catch::Contains(fragment));
  }
}

TEST_CASE("hardware profile: storage throughput picks the measured block size", "[planner][hardware]") {
  StorageProfile s;
  s.random_read = {{4096, 1, 0.05}, {4096, 64, 0.8}, {1 << 20, 1, 1.0}, {1 << 20, 32, 3.0}};
  CHECK(s.throughput_gbps(1 << 20) == 3.0);
  CHECK(s.throughput_gbps(3 << 20) == 3.0);   // largest measured block not above it
  CHECK(s.throughput_gbps(65536) == 0.8);     // 4 KiB points, best queue depth
  CHECK(s.throughput_gbps(512) == 0.8);       // below every point: the smallest block size
}

TEST_CASE("hardware profile: the shipped machine files parse", "[planner][hardware]") {
  const auto dir = std::filesystem::path(__FILE__).parent_path() / "hardware";
  for (const char* name : {"steam-deck.json", "desktop-dgpu.json"}) {
    INFO(name);
    auto hw = load_hardware_profile(dir / name);
    REQUIRE(hw.ok());
    CHECK_FALSE(hw->notes.empty());
    REQUIRE(hw->gpus.size() == 1);
  }
  auto deck = load_hardware_profile(dir / "steam-deck.json");
  REQUIRE(deck.ok());
  CHECK(deck->shared_memory_bus);
  CHECK(deck->gpus[0].unified_memory);
  CHECK(deck->gpus[0].type == GpuType::integrated);
  auto missing = load_hardware_profile(dir / "no-such-machine.json");
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.status().code() == ErrorCode::not_found);
}

TEST_CASE("CpuProfile::best picks the fastest measured expert, not the widest bandwidth probe", "[hardware]") {
  CpuProfile cpu;
  CpuIsaPerf scalar;
  scalar.isa = "scalar";
  scalar.read_bandwidth_gbps = 30;  // a lucky probe on a noisy machine
  scalar.expert_ffn_dense_us = 2100;
  CpuIsaPerf avx512;
  avx512.isa = "avx512";
  avx512.read_bandwidth_gbps = 20;
  avx512.expert_ffn_dense_us = 170;
  cpu.isa = {scalar, avx512};
  CHECK(cpu.best().isa == "avx512");
  // Without measured expert times, the bandwidth decides.
  cpu.isa[0].expert_ffn_dense_us = 0;
  cpu.isa[1].expert_ffn_dense_us = 0;
  CHECK(cpu.best().isa == "scalar");
}
