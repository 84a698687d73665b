#include <catch2/catch.hpp>

#include <numeric>

#include "gpu/ops/add.h"
#include "gpu/testing/vulkan_fixture.h"
#include "support/test_support.h"

namespace tandem::gpu {
namespace {

TEST_CASE("dependent dispatches get barriers and see each other's writes", "[gpu][recorder]") {
  auto& fx = testing::fixture();
  INFO(fx.error);
  REQUIRE(fx.device);
  const int64_t n = 1000;
  std::vector<float> a(n), b(n);
  std::iota(a.begin(), a.end(), 0.f);
  std::fill(b.begin(), b.end(), 1.f);
  auto ab = testing::host_buffer(*fx.device, a.data(), n * 4, "a");
  auto bb = testing::host_buffer(*fx.device, b.data(), n * 4, "b");
  auto cb = testing::host_buffer(*fx.device, nullptr, n * 4, "c");
  REQUIRE((ab.ok() && bb.ok() && cb.ok()));
  REQUIRE(fx.rec->begin().ok());
  fx.rec->timestamp("start");
  // c = a + b; a = c + b (RAW on c, WAR on a); c = a + a (RAW on a, WAW on c): 10 chained adds
  for (int i = 0; i < 5; ++i) {
    REQUIRE(ops::add(*fx.rec, ab->slice(), bb->slice(), n, 1, 1, cb->slice()).ok());
    REQUIRE(ops::add(*fx.rec, cb->slice(), bb->slice(), n, 1, 1, ab->slice()).ok());
  }
  fx.rec->timestamp("end");
  REQUIRE(fx.rec->submit_and_wait().ok());
  CHECK(fx.rec->dispatch_count() == 10);
  CHECK(fx.rec->barrier_count() >= 9);
  const auto out = testing::read_f32(*ab, n);
  for (int64_t i = 0; i < n; ++i) REQUIRE(out[i] == static_cast<float>(i) + 10.f);
  auto ts = fx.rec->timestamps();
  REQUIRE(ts.ok());
  if (fx.device->caps().timestamps) {
    REQUIRE(ts->size() == 2);
    CHECK(ts->at(0).label == "start");
    CHECK(ts->at(1).ms >= 0.0);
  }
  REQUIRE(fx.messages() == 0);
}

TEST_CASE("independent dispatches need no barrier", "[gpu][recorder]") {
  auto& fx = testing::fixture();
  REQUIRE(fx.device);
  std::vector<float> a(64, 1.f);
  auto ab = testing::host_buffer(*fx.device, a.data(), 256, "a");
  auto c1 = testing::host_buffer(*fx.device, nullptr, 256, "c1");
  auto c2 = testing::host_buffer(*fx.device, nullptr, 256, "c2");
  REQUIRE((ab.ok() && c1.ok() && c2.ok()));
  REQUIRE(fx.rec->begin().ok());
  REQUIRE(ops::add(*fx.rec, ab->slice(), ab->slice(), 64, 1, 1, c1->slice()).ok());
  REQUIRE(ops::add(*fx.rec, ab->slice(), ab->slice(), 64, 1, 1, c2->slice()).ok());  // read-after-read only
  REQUIRE(fx.rec->submit_and_wait().ok());
  CHECK(fx.rec->barrier_count() == 0);
  CHECK(testing::read_f32(*c2, 64) == std::vector<float>(64, 2.f));
  REQUIRE(fx.messages() == 0);
}

TEST_CASE("the staging ring uploads more than its capacity; copies chain with dispatches", "[gpu][recorder]") {
  auto& fx = testing::fixture(true, false);  // forced discrete: device-local destination
  INFO(fx.error);
  REQUIRE(fx.device);
  const size_t n = (3u << 20) / 4 + 13;  // 3 MiB + 52 bytes through a 1 MiB ring
  std::vector<float> src(n);
  for (size_t i = 0; i < n; ++i) src[i] = static_cast<float>(i % 9973);
  auto dev_buf = Buffer::create(*fx.device, n * 4, MemoryIntent::device_weights, "device");
  auto back = Buffer::create(*fx.device, n * 4, MemoryIntent::readback, "readback");
  REQUIRE((dev_buf.ok() && back.ok()));
  REQUIRE(fx.staging->upload(dev_buf->slice(), src.data(), n * 4).ok());
  REQUIRE(fx.rec->begin().ok());
  REQUIRE(fx.rec->copy(dev_buf->slice(), back->slice()).ok());
  // The compute submission waits on the ring's timeline instead of the host waiting.
  const TimelineWait wait{&fx.staging->semaphore(), fx.staging->last_value()};
  REQUIRE(fx.rec->submit_and_wait(std::span(&wait, 1)).ok());
  CHECK(testing::read_f32(*back, n) == src);
  REQUIRE(fx.messages() == 0);
}

TEST_CASE("the pipeline cache builds each variant once", "[gpu][recorder]") {
  auto& fx = testing::fixture();
  REQUIRE(fx.device);
  auto a = fx.pipelines->get({"add_f32", 3, 24, {256}});
  auto b = fx.pipelines->get({"add_f32", 3, 24, {256}});
  auto c = fx.pipelines->get({"add_f32", 3, 24, {128}});
  REQUIRE((a.ok() && b.ok() && c.ok()));
  CHECK(*a == *b);
  CHECK(*a != *c);
  CHECK(fx.pipelines->get({"no_such_shader", 1, 0, {}}).status().code() == ErrorCode::not_found);
  REQUIRE(fx.messages() == 0);
}

}  // namespace
}  // namespace tandem::gpu
