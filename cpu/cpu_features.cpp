#include "cpu/cpu_features.h"

#include <cstdio>
#include <cstdlib>
#include <fstream>

#if defined(__x86_64__) || defined(_M_X64)
#include <cpuid.h>
#define TANDEM_X86 1
#elif defined(__aarch64__)
#include <sys/auxv.h>
#define TANDEM_ARM64 1
#endif

namespace tandem::cpu {

std::string_view isa_name(Isa isa) {
  switch (isa) {
    case Isa::scalar: return "scalar";
    case Isa::avx2: return "avx2";
    case Isa::avx512: return "avx512";
    case Isa::neon: return "neon";
  }
  return "unknown";
}

std::optional<Isa> isa_from_name(std::string_view name) {
  for (Isa isa : k_all_isas) {
    if (isa_name(isa) == name) return isa;
  }
  return std::nullopt;
}

bool CpuFeatures::supports(Isa isa) const {
  switch (isa) {
    case Isa::scalar: return true;
    case Isa::avx2: return avx2 && fma && f16c && os_ymm;
    case Isa::avx512:
      return supports(Isa::avx2) && avx512f && avx512bw && avx512vl && avx512vnni && avx512vbmi &&
             os_zmm;
    case Isa::neon: return asimd && asimddp && fphp;
  }
  return false;
}

std::string CpuFeatures::summary() const {
  std::string s;
  auto add = [&](bool on, const char* n) {
    if (!on) return;
    if (!s.empty()) s += ' ';
    s += n;
  };
  add(avx2, "avx2");
  add(fma, "fma");
  add(f16c, "f16c");
  add(avx512f, "avx512f");
  add(avx512bw, "avx512bw");
  add(avx512vl, "avx512vl");
  add(avx512vnni, "avx512vnni");
  add(avx512vbmi, "avx512vbmi");
  add(os_ymm, "os_ymm");
  add(os_zmm, "os_zmm");
  add(asimd, "asimd");
  add(asimddp, "asimddp");
  add(fphp, "fphp");
  return s.empty() ? "none" : s;
}

namespace {

CpuFeatures detect() {
  CpuFeatures f;
#if defined(TANDEM_X86)
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
  const bool osxsave = (c >> 27) & 1u;
  f.fma = (c >> 12) & 1u;
  f.f16c = (c >> 29) & 1u;
  const bool avx = (c >> 28) & 1u;
  uint64_t xcr0 = 0;
  if (osxsave) {
    // xgetbv(0) by opcode so this file needs no -mxsave.
    unsigned lo = 0, hi = 0;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    xcr0 = (static_cast<uint64_t>(hi) << 32) | lo;
  }
  f.os_ymm = avx && (xcr0 & 0x6u) == 0x6u;
  f.os_zmm = f.os_ymm && (xcr0 & 0xe0u) == 0xe0u;
  if (__get_cpuid_count(7, 0, &a, &b, &c, &d)) {
    f.avx2 = (b >> 5) & 1u;
    f.avx512f = (b >> 16) & 1u;
    f.avx512bw = (b >> 30) & 1u;
    f.avx512vl = (b >> 31) & 1u;
    f.avx512vbmi = (c >> 1) & 1u;
    f.avx512vnni = (c >> 11) & 1u;
  }
#elif defined(TANDEM_ARM64)
  const unsigned long hw = getauxval(AT_HWCAP);
  // Bit numbers from the kernel's arch/arm64/include/uapi/asm/hwcap.h.
  f.asimd = (hw >> 1) & 1ul;      // HWCAP_ASIMD
  f.fphp = (hw >> 9) & 1ul;       // HWCAP_FPHP
  f.asimddp = (hw >> 20) & 1ul;   // HWCAP_ASIMDDP
#endif
  return f;
}

std::optional<Isa> env_cap() {
  const char* v = std::getenv("TANDEM_MAX_ISA");
  if (v == nullptr || *v == '\0') return std::nullopt;
  auto isa = isa_from_name(v);
  if (!isa) std::fprintf(stderr, "tandem: ignoring TANDEM_MAX_ISA=%s (want scalar|avx2|avx512|neon)\n", v);
  return isa;
}

}  // namespace

const CpuFeatures& cpu_features() {
  static const CpuFeatures f = detect();
  return f;
}

Isa best_isa_capped(const CpuFeatures& f, std::optional<Isa> cap) {
  if (f.supports(Isa::neon) && (!cap || *cap == Isa::neon)) return Isa::neon;
  Isa best = Isa::scalar;
  for (Isa isa : {Isa::avx2, Isa::avx512}) {
    if (f.supports(isa) && (!cap || (*cap != Isa::neon && *cap >= isa))) best = isa;
  }
  return best;
}

Isa best_isa() {
  static const Isa isa = best_isa_capped(cpu_features(), env_cap());
  return isa;
}

std::string cpu_model_name() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  std::string arm_part;
  while (std::getline(in, line)) {
    const auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string key = line.substr(0, colon);
    while (!key.empty() && (key.back() == ' ' || key.back() == '\t')) key.pop_back();
    std::string value = line.substr(colon + 1);
    while (!value.empty() && value.front() == ' ') value.erase(value.begin());
    if (key == "model name" || key == "Model") return value;
    if (key == "CPU part" && arm_part.empty()) arm_part = "CPU part " + value;
  }
  return arm_part.empty() ? "unknown" : arm_part;
}

}  // namespace tandem::cpu
