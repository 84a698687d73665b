// Internal to cpu/: how each per-ISA file contributes its kernels to a KernelTable, and the
// helpers every ISA shares so that the shared parts stay bit-identical (q8_0 scale choice,
// rope angles).
#pragma once

#include <cstdint>

#include "cpu/kernel_table.h"

namespace tandem::cpu::detail {

// Each fills every entry of `t` (scalar) or overrides the entries it accelerates, on top
// of the scalar table (the rest keep the scalar kernel). Defined in kernels_scalar.cpp,
// x86/kernels_avx2.cpp, x86/kernels_avx512.cpp, arm/kernels_neon.cpp.
void fill_scalar(KernelTable& t);
void fill_avx2(KernelTable& t);
void fill_avx512(KernelTable& t);
void fill_neon(KernelTable& t);

// rope_neox angles as ggml_rope_cache_init computes them (theta *= theta_scale per pair,
// cosf/sinf in f32): c[i] = cos(theta_i), s[i] = sin(theta_i), i < n_rot/2.
// Defined in kernels_scalar.cpp (base flags): an inline definition here would be compiled
// with AVX-512 flags in one file and could be the copy the linker keeps for all callers.
void rope_neox_cache(int64_t n_rot, int64_t pos, float freq_base, float* c, float* s);

// Largest n_rot the kernels rotate with a stack cache (head dims are 128 in SmallThinker).
inline constexpr int64_t k_max_rot = 1024;

}  // namespace tandem::cpu::detail
