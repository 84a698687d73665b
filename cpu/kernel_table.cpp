#include "cpu/kernel_table.h"

#include "cpu/kernels/isa_kernels.h"

namespace tandem::cpu {
namespace {

struct Tables {
  KernelTable table[4];
  bool present[4] = {false, false, false, false};

  Tables() {
    const CpuFeatures& f = cpu_features();
    for (Isa isa : k_all_isas) {
      KernelTable& t = table[static_cast<int>(isa)];
      detail::fill_scalar(t);
      bool built = isa == Isa::scalar;
#if defined(__x86_64__)
      if (isa == Isa::avx2) {
        detail::fill_avx2(t);
        built = true;
      }
      if (isa == Isa::avx512) {
        detail::fill_avx2(t);
        detail::fill_avx512(t);
        built = true;
      }
#elif defined(__aarch64__)
      if (isa == Isa::neon) {
        detail::fill_neon(t);
        built = true;
      }
#endif
      t.isa = isa;
      present[static_cast<int>(isa)] = built && f.supports(isa);
    }
  }
};

const Tables& tables() {
  static const Tables t;
  return t;
}

}  // namespace

const KernelTable* kernels_for(Isa isa) {
  const Tables& t = tables();
  const int i = static_cast<int>(isa);
  return t.present[i] ? &t.table[i] : nullptr;
}

const KernelTable& kernels() {
  static const KernelTable* best = [] {
    const KernelTable* t = kernels_for(best_isa());
    return t ? t : kernels_for(Isa::scalar);
  }();
  return *best;
}

}  // namespace tandem::cpu
