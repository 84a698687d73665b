// CpuFeatures: what the host CPU can run, detected once (x86: cpuid + xgetbv; aarch64:
// getauxval(AT_HWCAP)), and the instruction-set level (Isa) the kernel table is built for.
//
// Isa levels and what each requires:
//   scalar  always
//   avx2    x86: avx2 + fma + f16c, OS saves ymm state (XCR0 bits 1,2)
//   avx512  x86: avx2 level + avx512f/bw/vl/vnni/vbmi, OS saves zmm state (XCR0 bits 5,6,7)
//   neon    aarch64: asimd + asimddp (sdot/udot, used by the q4_0/q8_0 dots) + fphp
// TANDEM_MAX_ISA=scalar|avx2|avx512|neon caps best_isa() (read once, at first call);
// an unknown value is ignored with a warning on stderr.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace tandem::cpu {

enum class Isa { scalar = 0, avx2 = 1, avx512 = 2, neon = 3 };
inline constexpr Isa k_all_isas[] = {Isa::scalar, Isa::avx2, Isa::avx512, Isa::neon};

std::string_view isa_name(Isa isa);
std::optional<Isa> isa_from_name(std::string_view name);

struct CpuFeatures {
  // x86
  bool avx2 = false;
  bool fma = false;
  bool f16c = false;
  bool avx512f = false;
  bool avx512bw = false;
  bool avx512vl = false;
  bool avx512vnni = false;
  bool avx512vbmi = false;
  bool os_ymm = false;  // XCR0 enables SSE+AVX state
  bool os_zmm = false;  // XCR0 enables opmask + zmm state
  // aarch64
  bool asimd = false;
  bool asimddp = false;
  bool fphp = false;

  bool supports(Isa isa) const;
  std::string summary() const;  // "avx2 fma f16c avx512f ..." for logs and bench records
};

// The host's features, detected on first call (thread-safe).
const CpuFeatures& cpu_features();

// Highest Isa the host supports, capped by TANDEM_MAX_ISA. Levels are ordered
// scalar < avx2 < avx512 on x86 and scalar < neon on aarch64; a cap from the other family
// (neon on x86) leaves scalar.
Isa best_isa();
// The same rule for an explicit cap (nullopt: no cap); what best_isa() uses.
Isa best_isa_capped(const CpuFeatures& f, std::optional<Isa> cap);

// "model name" (x86) or "CPU part"/"Model" (arm) from /proc/cpuinfo; "unknown" if absent.
std::string cpu_model_name();

}  // namespace tandem::cpu
