// End-to-end test of `tandem calibrate` (the built binary, TANDEM_BIN): its output is a hardware
// profile that `tandem plan`'s loader accepts.
#include <catch2/catch.hpp>

#include <sys/wait.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "planner/hardware_profile.h"
#include "support/test_support.h"

#ifdef TANDEM_BIN

namespace {

struct CalibrateRun {
  int code = -1;
  std::string err;
};

CalibrateRun calibrate_cmd(const test::TempDir& dir, const std::string& args) {
  const auto err = dir / "calibrate.err";
  const std::string cmd = "'" + std::string(TANDEM_BIN) + "' calibrate " + args + " > /dev/null 2> '" + err.string() + "'";
  const int st = std::system(cmd.c_str());
  std::ifstream in(err);
  std::stringstream ss;
  ss << in.rdbuf();
  return {WIFEXITED(st) ? WEXITSTATUS(st) : -1, ss.str()};
}

}  // namespace

TEST_CASE("cli: tandem calibrate --quick -o F writes a loadable, plausible hardware profile", "[cli][calibrate]") {
  test::TempDir dir;
  const auto out = dir / "hw.json";
  auto r = calibrate_cmd(dir, "--quick --preset tiny --device none -t 2 --dir '" + dir.path().string() + "' -o '" +
                                  out.string() + "'");
  INFO(r.err);
  REQUIRE(r.code == 0);
  CHECK(r.err.find("calibrate: storage qd 32:") != std::string::npos);  // progress on stderr
  auto hw = tandem::load_hardware_profile(out);
  INFO(hw.status().message());
  REQUIRE(hw.ok());
  REQUIRE(!hw->cpu.isa.empty());
  for (const auto& e : hw->cpu.isa) {
    CHECK(e.read_bandwidth_gbps > 0.1);
    CHECK(e.read_bandwidth_gbps < 1000);
    CHECK(e.expert_ffn_dense_us > 0);
  }
  for (const auto& p : hw->storage.random_read) {
    CHECK(p.throughput_gbps > 0);
    CHECK(p.throughput_gbps < 1000);
  }
}

TEST_CASE("cli: tandem calibrate refuses an unwritable output before measuring", "[cli][calibrate]") {
  test::TempDir dir;
  auto r = calibrate_cmd(dir, "--quick --device none -o '" + (dir / "no-such-dir" / "hw.json").string() + "'");
  CHECK(r.code != 0);
  CHECK(r.err.find("no-such-dir") != std::string::npos);
  CHECK(r.err.find("calibrate: cpu") == std::string::npos);  // nothing was measured
}

#endif  // TANDEM_BIN
