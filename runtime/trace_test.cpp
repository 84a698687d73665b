#include "runtime/trace.h"

#include <catch2/catch.hpp>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <thread>

#include "support/test_support.h"

using namespace tandem;

TEST_CASE("trace: Chrome trace-event JSON with complete and instant events from several threads",
          "[trace]") {
  test::TempDir dir("tandem-trace");
  Trace t;
  t.name_thread("main");
  t.complete("attention", "layer", 10, 25, {{"layer", 3}, {"pass", 1}});
  std::thread other([&] {
    t.name_thread("io");
    for (int i = 0; i < 100; ++i)
      t.complete("read", "io", 20 + i, 5, {{"expert", i}}, i == 7 ? "EIO" : "");
  });
  t.instant("miss", "cache", 12, {{"layer", 3}, {"expert", 5}});
  other.join();
  REQUIRE(t.write(dir / "t.json").ok());

  std::ifstream in(dir / "t.json");
  std::stringstream ss;
  ss << in.rdbuf();
  const auto j = nlohmann::json::parse(ss.str(), nullptr, false);
  REQUIRE_FALSE(j.is_discarded());
  const auto& ev = j["traceEvents"];
  int n_x = 0, n_i = 0, n_m = 0;
  std::set<int64_t> read_tids;
  int64_t attention_tid = -1;
  for (const auto& e : ev) {
    REQUIRE(e.contains("pid"));
    REQUIRE(e.contains("tid"));
    const std::string ph = e["ph"];
    if (ph == "M") {
      ++n_m;
      continue;
    }
    REQUIRE(e.contains("ts"));
    if (ph == "X") {
      ++n_x;
      REQUIRE(e.contains("dur"));
      if (e["name"] == "read") read_tids.insert(int64_t(e["tid"]));
      if (e["name"] == "attention") {
        attention_tid = e["tid"];
        CHECK(e["ts"] == 10);
        CHECK(e["dur"] == 25);
        CHECK(e["args"]["layer"] == 3);
      }
      if (e["name"] == "read" && e["args"]["expert"] == 7) CHECK(e["args"]["detail"] == "EIO");
    } else {
      CHECK(ph == "i");
      CHECK(e["s"] == "t");
      ++n_i;
    }
  }
  CHECK(n_x == 101);
  CHECK(n_i == 1);
  CHECK(n_m == 2);
  REQUIRE(read_tids.size() == 1);
  CHECK(*read_tids.begin() != attention_tid);
  CHECK_FALSE(t.write(dir / "no-such-dir" / "t.json").ok());
}

TEST_CASE("trace: read_overlap counts the read time spent waiting", "[trace]") {
  auto x = [](const char* cat, int64_t ts, int64_t dur) {
    TraceEvent e;
    e.name = cat;
    e.cat = cat;
    e.ts_us = ts;
    e.dur_us = dur;
    return e;
  };
  // Reads [0,100) and [50,150) -> union [0,150); waits [120,130) and [140,200) -> exposed 10 + 10.
  const std::vector<TraceEvent> ev = {x("io", 0, 100), x("wait", 120, 10), x("io", 50, 100),
                                      x("wait", 140, 60), x("layer", 0, 1000)};
  const ReadOverlap r = read_overlap(ev);
  CHECK(r.n_reads == 2);
  CHECK(r.read_us == 150);
  CHECK(r.exposed_us == 20);
  CHECK(r.hidden_fraction() == Approx(1.0 - 20.0 / 150.0));
  CHECK(read_overlap({}).hidden_fraction() == 1.0);
  // A wait covering everything hides nothing.
  CHECK(read_overlap({x("io", 10, 10), x("wait", 0, 100)}).hidden_fraction() == 0.0);
}
