#include "cpu/cpu_features.h"

#include <catch2/catch.hpp>

namespace tandem::cpu {
namespace {

TEST_CASE("isa names round-trip", "[cpu][features]") {
  for (Isa isa : k_all_isas) CHECK(isa_from_name(isa_name(isa)) == isa);
  CHECK_FALSE(isa_from_name("sse9").has_value());
}

TEST_CASE("best_isa_capped picks the highest supported level under the cap", "[cpu][features]") {
  CpuFeatures x86;
  x86.avx2 = x86.fma = x86.f16c = x86.os_ymm = true;
  CHECK(best_isa_capped(x86, std::nullopt) == Isa::avx2);
  x86.avx512f = x86.avx512bw = x86.avx512vl = x86.avx512vnni = x86.avx512vbmi = true;
  CHECK(best_isa_capped(x86, std::nullopt) == Isa::avx2);  // OS does not save zmm state
  x86.os_zmm = true;
  CHECK(best_isa_capped(x86, std::nullopt) == Isa::avx512);
  CHECK(best_isa_capped(x86, Isa::avx2) == Isa::avx2);
  CHECK(best_isa_capped(x86, Isa::scalar) == Isa::scalar);
  CHECK(best_isa_capped(x86, Isa::neon) == Isa::scalar);
  x86.avx512vnni = false;
  CHECK(best_isa_capped(x86, std::nullopt) == Isa::avx2);

  CpuFeatures arm;
  arm.asimd = arm.fphp = true;
  CHECK(best_isa_capped(arm, std::nullopt) == Isa::scalar);  // no dotprod
  arm.asimddp = true;
  CHECK(best_isa_capped(arm, std::nullopt) == Isa::neon);
  CHECK(best_isa_capped(arm, Isa::scalar) == Isa::scalar);
  CHECK(best_isa_capped(arm, Isa::avx512) == Isa::scalar);
}

TEST_CASE("detected features are consistent and name the host", "[cpu][features]") {
  const CpuFeatures& f = cpu_features();
  CHECK(f.supports(Isa::scalar));
  if (f.supports(Isa::avx512)) CHECK(f.supports(Isa::avx2));
  CHECK(f.supports(best_isa()));
  CHECK_FALSE(cpu_model_name().empty());
  CHECK_FALSE(f.summary().empty());
#if defined(__x86_64__)
  CHECK_FALSE(f.supports(Isa::neon));
#endif
}

}  // namespace
}  // namespace tandem::cpu
