// Header-only conformance check of one KernelTable against the scalar reference table, shared
// by the Catch2 tests (kernel_table_test.cpp) and the dependency-free NEON runner
// (tests/neon/neon_main.cpp, which cannot use Catch2 under qemu). Test code: include only
// from tests.
//
// Shapes: k in {32, 64, 96, 160, 256, 512, 992, 1536, 2592} (below/at/above the 32-block, the
// 64-pair, 16-float and 16-block tiles, odd block counts: 992 is 31 blocks, 2592 is 81), rows in {1, 3, 7, 8, 9, 17, 64, 768} (row tiles of
// 2 and 4), tokens 1..9 (token tiles of 4). Weights sit at 2- or 4-byte (not 16/64-byte)
// aligned addresses with padded row strides. Bounds are the ones kernel_table.h states.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/fp16.h"
#include "core/quant_blocks.h"
#include "cpu/kernel_table.h"
#include "cpu/quants.h"

namespace tandem::cpu::check {

struct Rng {
  uint64_t s;
  explicit Rng(uint64_t seed) : s(seed * 0x9E3779B97F4A7C15ull + 1) {}
  uint64_t next() {  // splitmix64
    uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  float uniform(float lo, float hi) { return lo + (hi - lo) * static_cast<float>(next() >> 40) / 16777216.0f; }
};

inline constexpr int64_t k_ks[] = {32, 64, 96, 160, 256, 512, 992, 1536, 2592};
inline constexpr int64_t k_rows[] = {1, 3, 7, 8, 9, 17, 64, 768};
inline constexpr double k_u = 1.0 / 8388608.0;  // 2^-23

struct Report {
  std::vector<std::string> failures;
  int64_t checks = 0;
  void fail(std::string s) {
    if (failures.size() < 20) failures.push_back(std::move(s));
  }
};

// A byte buffer whose data() is `misalign` bytes past a 64-byte boundary.
struct Buf {
  std::vector<uint8_t> raw;
  size_t off = 0;
  Buf(size_t n, size_t misalign) : raw(n + 128) {
    const auto addr = reinterpret_cast<uintptr_t>(raw.data());
    off = ((64 - addr % 64) % 64) + misalign;
  }
  uint8_t* data() { return raw.data() + off; }
  float* f() { return reinterpret_cast<float*>(data()); }
};

inline size_t row_bytes(DType d, int64_t k) { return dtype_row_size(d, k); }

// Fills a weight row of dtype d with random data (valid f16 scales, any nibbles/quants).
inline void fill_row(DType d, int64_t k, uint8_t* row, Rng& r) {
  if (d == DType::q4_0 || d == DType::q8_0) {
    const size_t bs = d == DType::q4_0 ? sizeof(block_q4_0) : sizeof(block_q8_0);
    for (int64_t b = 0; b < k / 32; ++b) {
      uint8_t* p = row + b * bs;
      const uint16_t h = fp32_to_fp16(r.uniform(-0.05f, 0.05f));
      std::memcpy(p, &h, 2);
      for (size_t j = 2; j < bs; ++j) {
        p[j] = static_cast<uint8_t>(r.next());
        if (d == DType::q8_0 && p[j] == 0x80) p[j] = 0x81;  // quantize_row_q8_0 never makes -128
      }
    }
  } else {
    for (int64_t i = 0; i < k; ++i) {
      const float v = r.uniform(-1.0f, 1.0f);
      if (d == DType::f32) {
        std::memcpy(row + 4 * i, &v, 4);
      } else {
        const uint16_t h = d == DType::f16 ? fp32_to_fp16(v) : fp32_to_bf16(v);
        std::memcpy(row + 2 * i, &h, 2);
      }
    }
  }
}

// Scale of a dot product for error bounds: sum_i |w_i x_i| (float rows) or
// sum_b |d_w d_x| * sum_j |q_w,j q_x,j| (q rows; SIMD kernels scale partial sums of a block).
inline double abs_terms(DType d, int64_t k, const uint8_t* w, const uint8_t* x) {
  double s = 0.0;
  if (d == DType::q4_0 || d == DType::q8_0) {
    for (int64_t b = 0; b < k / 32; ++b) {
      const auto* xb = reinterpret_cast<const block_q8_0*>(x) + b;
      int isum = 0;
      uint16_t dw;
      if (d == DType::q4_0) {
        const auto* wb = reinterpret_cast<const block_q4_0*>(w) + b;
        for (int j = 0; j < 16; ++j) {
          isum += std::abs(((wb->qs[j] & 15) - 8) * xb->qs[j]) + std::abs(((wb->qs[j] >> 4) - 8) * xb->qs[j + 16]);
        }
        dw = wb->d;
      } else {
        const auto* wb = reinterpret_cast<const block_q8_0*>(w) + b;
        for (int j = 0; j < 32; ++j) isum += std::abs(wb->qs[j] * xb->qs[j]);
        dw = wb->d;
      }
      s += std::fabs(static_cast<double>(fp16_to_fp32(dw)) * fp16_to_fp32(xb->d) * isum);
    }
  } else {
    const auto* xf = reinterpret_cast<const float*>(x);
    for (int64_t i = 0; i < k; ++i) {
      uint16_t h = 0;
      float wv;
      if (d == DType::f32) {
        std::memcpy(&wv, w + 4 * i, 4);
      } else {
        std::memcpy(&h, w + 2 * i, 2);
        wv = d == DType::f16 ? fp16_to_fp32(h) : bf16_to_fp32(h);
      }
      s += std::fabs(static_cast<double>(wv) * xf[i]);
    }
  }
  return s;
}

inline GemmFn gemm_of(const KernelTable& t, DType d) {
  switch (d) {
    case DType::q4_0: return t.gemm_q4_0_q8_0;
    case DType::q8_0: return t.gemm_q8_0_q8_0;
    case DType::f16: return t.gemm_f16_f32;
    case DType::bf16: return t.gemm_bf16_f32;
    default: return t.gemm_f32;
  }
}
inline GemvFn gemv_of(const KernelTable& t, DType d) {
  switch (d) {
    case DType::q4_0: return t.gemv_q4_0_q8_0;
    case DType::q8_0: return t.gemv_q8_0_q8_0;
    case DType::f16: return t.gemv_f16_f32;
    case DType::bf16: return t.gemv_bf16_f32;
    default: return t.gemv_f32;
  }
}
inline float dot_of(const KernelTable& t, DType d, int64_t k, const void* w, const void* x) {
  const auto* xf = static_cast<const float*>(x);
  switch (d) {
    case DType::q4_0: return t.vec_dot_q4_0_q8_0(k, w, x);
    case DType::q8_0: return t.vec_dot_q8_0_q8_0(k, w, x);
    case DType::f16: return t.vec_dot_f16_f32(k, w, xf);
    case DType::bf16: return t.vec_dot_bf16_f32(k, w, xf);
    default: return t.vec_dot_f32(k, static_cast<const float*>(w), xf);
  }
}

inline std::string where(const KernelTable& t, const char* what, DType d, int64_t k, int64_t rows,
                         int64_t n_tok, int64_t r, int64_t tok) {
  return std::string(isa_name(t.isa)) + " " + what + "_" + std::string(dtype_name(d)) +
         " k=" + std::to_string(k) + " rows=" + std::to_string(rows) + " n_tok=" + std::to_string(n_tok) +
         " at row " + std::to_string(r) + " token " + std::to_string(tok);
}

// One (dtype, k, rows, n_tok) case: vec_dot (rows == 1, n_tok == 1), gemv (n_tok == 1) and gemm.
inline void check_matmul(const KernelTable& fast, const KernelTable& ref, DType d, int64_t k, int64_t rows,
                         int64_t n_tok, Report& rep, uint64_t seed) {
  Rng rng(seed);
  const bool q = d == DType::q4_0 || d == DType::q8_0;
  const size_t misalign = d == DType::f32 ? 4 : 2;
  const size_t wrb = row_bytes(d, k) + misalign * 3;
  Buf w(wrb * static_cast<size_t>(rows), misalign);
  for (int64_t r = 0; r < rows; ++r) fill_row(d, k, w.data() + r * wrb, rng);
  const size_t xrb = q ? row_bytes(DType::q8_0, k) + 2 : static_cast<size_t>(k) * 4 + 4;
  Buf x(xrb * static_cast<size_t>(n_tok), q ? 2 : 4);  // f32 activations keep float alignment
  std::vector<float> xf(static_cast<size_t>(k));
  for (int64_t t = 0; t < n_tok; ++t) {
    for (auto& v : xf) v = rng.uniform(-1.0f, 1.0f);
    if (q) {
      ref.quantize_row_q8_0(xf.data(), x.data() + t * xrb, k);
    } else {
      std::memcpy(x.data() + t * xrb, xf.data(), xf.size() * 4);
    }
  }
  std::vector<float> want(static_cast<size_t>(rows * n_tok)), got(want.size(), NAN);
  gemm_of(ref, d)(k, rows, w.data(), wrb, x.data(), xrb, n_tok, want.data(), rows);
  const char* what = "gemm";
  if (n_tok == 1 && rows == 1) {
    what = "vec_dot";
    got[0] = dot_of(fast, d, k, w.data(), x.data());
  } else if (n_tok == 1) {
    what = "gemv";
    gemv_of(fast, d)(k, rows, w.data(), wrb, x.data(), got.data());
  } else {
    gemm_of(fast, d)(k, rows, w.data(), wrb, x.data(), xrb, n_tok, got.data(), rows);
  }
  const double n_terms = q ? static_cast<double>(k / 32) : static_cast<double>(k);
  for (int64_t t = 0; t < n_tok; ++t) {
    for (int64_t r = 0; r < rows; ++r) {
      const double bound = (n_terms + 4) * k_u * abs_terms(d, k, w.data() + r * wrb, x.data() + t * xrb) + 1e-30;
      const double e = std::fabs(static_cast<double>(got[t * rows + r]) - want[t * rows + r]);
      ++rep.checks;
      if (!(e <= bound)) {
        rep.fail(where(fast, what, d, k, rows, n_tok, r, t) + ": got " + std::to_string(got[t * rows + r]) +
                 " want " + std::to_string(want[t * rows + r]) + " bound " + std::to_string(bound));
      }
    }
  }
}

inline void check_quantize(const KernelTable& fast, const KernelTable& ref, Report& rep, uint64_t seed) {
  Rng rng(seed);
  for (int64_t k : k_ks) {
    Buf xb(static_cast<size_t>(k) * 4, 4);
    float* x = xb.f();
    for (int64_t i = 0; i < k; ++i) x[i] = rng.uniform(-3.0f, 3.0f);
    // Block 0 hits exact .5 ties (amax 127 -> d 1): roundf rounds them away from zero.
    for (int j = 0; j < 32; ++j) x[j] = (j == 0) ? 127.0f : static_cast<float>(j % 9) - 4.5f;
    if (k >= 64) {
      for (int j = 32; j < 64; ++j) x[j] = 0.0f;  // all-zero block: d = 0
    }
    std::vector<uint8_t> want(row_bytes(DType::q8_0, k)), got(want.size() + 2);
    ref.quantize_row_q8_0(x, want.data(), k);
    fast.quantize_row_q8_0(x, got.data() + 2, k);
    ++rep.checks;
    if (std::memcmp(want.data(), got.data() + 2, want.size()) != 0) {
      rep.fail(std::string(isa_name(fast.isa)) + " quantize_row_q8_0 k=" + std::to_string(k) + " not bit-exact");
    }
  }
}

inline void check_axpy(const KernelTable& fast, const KernelTable& ref, DType d, Report& rep, uint64_t seed) {
  Rng rng(seed);
  const AxpyFn f = d == DType::q4_0 ? fast.axpy_q4_0_f32 : d == DType::q8_0 ? fast.axpy_q8_0_f32 : fast.axpy_f32;
  const AxpyFn g = d == DType::q4_0 ? ref.axpy_q4_0_f32 : d == DType::q8_0 ? ref.axpy_q8_0_f32 : ref.axpy_f32;
  for (int64_t k : k_ks) {
    for (int64_t n_tok = 1; n_tok <= 9; ++n_tok) {
      const size_t misalign = d == DType::f32 ? 4 : 2;
      Buf row(row_bytes(d, k), misalign);
      fill_row(d, k, row.data(), rng);
      std::vector<float> a(static_cast<size_t>(n_tok));
      for (auto& v : a) v = rng.uniform(-2.0f, 2.0f);
      const int64_t ys = k + 3;
      std::vector<float> y0(static_cast<size_t>(ys * n_tok));
      for (auto& v : y0) v = rng.uniform(-1.0f, 1.0f);
      std::vector<float> want = y0, got = y0;
      g(k, n_tok, a.data(), row.data(), want.data(), ys);
      f(k, n_tok, a.data(), row.data(), got.data(), ys);
      // |a * w_i| <= |a| * max|w|: dequantised values are below 128 * 0.05 (q) or 1 (float).
      const double wmax = d == DType::f32 ? 1.0 : (d == DType::q4_0 ? 8.0 : 128.0) * 0.05;
      for (int64_t t = 0; t < n_tok; ++t) {
        for (int64_t i = 0; i < k; ++i) {
          const size_t j = static_cast<size_t>(t * ys + i);
          const double bound = 2 * k_u * (std::fabs(y0[j]) + std::fabs(a[t]) * wmax + std::fabs(want[j])) + 1e-30;
          ++rep.checks;
          if (!(std::fabs(static_cast<double>(got[j]) - want[j]) <= bound)) {
            rep.fail(where(fast, "axpy", d, k, 1, n_tok, i, t) + ": got " + std::to_string(got[j]) + " want " +
                     std::to_string(want[j]));
            break;
          }
        }
      }
    }
  }
}

inline void check_elementwise(const KernelTable& fast, const KernelTable& ref, Report& rep, uint64_t seed) {
  Rng rng(seed);
  for (int64_t n : {1, 7, 8, 16, 17, 33, 128, 1536, 2590}) {
    std::vector<float> x(static_cast<size_t>(n)), w(x.size()), mask(x.size()), want(x.size()), got(x.size());
    for (int64_t i = 0; i < n; ++i) {
      x[i] = rng.uniform(-4.0f, 4.0f);
      w[i] = rng.uniform(0.5f, 1.5f);
      mask[i] = (i % 5 == 3 && i != 0) ? -INFINITY : 0.0f;
    }
    for (const float* wp : {static_cast<const float*>(nullptr), static_cast<const float*>(w.data())}) {
      ref.rms_norm(n, x.data(), wp, 1e-6f, want.data());
      fast.rms_norm(n, x.data(), wp, 1e-6f, got.data());
      for (int64_t i = 0; i < n; ++i) {
        ++rep.checks;
        if (!(std::fabs(got[i] - want[i]) <= 1e-5 * std::fabs(want[i]) + 1e-30)) {
          rep.fail(std::string(isa_name(fast.isa)) + " rms_norm n=" + std::to_string(n) + " at " + std::to_string(i));
          break;
        }
      }
    }
    for (const float* mp : {static_cast<const float*>(nullptr), static_cast<const float*>(mask.data())}) {
      ref.soft_max(n, x.data(), mp, 0.7f, want.data());
      fast.soft_max(n, x.data(), mp, 0.7f, got.data());
      for (int64_t i = 0; i < n; ++i) {
        ++rep.checks;
        if (!(std::fabs(got[i] - want[i]) <= 1e-5 * std::fabs(want[i]) + 1e-7)) {
          rep.fail(std::string(isa_name(fast.isa)) + " soft_max n=" + std::to_string(n) + " at " + std::to_string(i) +
                   ": got " + std::to_string(got[i]) + " want " + std::to_string(want[i]));
          break;
        }
      }
    }
  }
  // rope_neox: head_dim 128 (SmallThinker) and odd partial rotations. Same angles on every
  // ISA; the two products of a pair may be fused (FMA contraction), so 2^-22 (|x0| + |x1|).
  struct RopeCase { int64_t n_head, head_dim, n_rot, pos; };
  for (RopeCase c : {RopeCase{16, 128, 128, 0}, RopeCase{3, 128, 128, 4097}, RopeCase{2, 96, 64, 77},
                     RopeCase{5, 20, 18, 12345}, RopeCase{1, 34, 34, 1}}) {
    std::vector<float> orig(static_cast<size_t>(c.n_head * c.head_dim));
    for (auto& v : orig) v = rng.uniform(-2.0f, 2.0f);
    std::vector<float> want = orig, got = orig;
    ref.rope_neox(want.data(), c.n_head, c.head_dim, c.n_rot, c.pos, 1.5e6f);
    fast.rope_neox(got.data(), c.n_head, c.head_dim, c.n_rot, c.pos, 1.5e6f);
    const int64_t half = c.n_rot / 2;
    for (int64_t h = 0; h < c.n_head; ++h) {
      for (int64_t i = 0; i < c.head_dim; ++i) {
        const size_t j = static_cast<size_t>(h * c.head_dim + i);
        double bound = 0.0;  // dims past n_rot are copied exactly
        if (i < c.n_rot) {
          const int64_t i0 = i < half ? i : i - half;
          bound = 2 * k_u * (std::fabs(orig[h * c.head_dim + i0]) + std::fabs(orig[h * c.head_dim + i0 + half]));
        }
        ++rep.checks;
        if (!(std::fabs(static_cast<double>(got[j]) - want[j]) <= bound)) {
          rep.fail(std::string(isa_name(fast.isa)) + " rope_neox n_rot=" + std::to_string(c.n_rot) + " pos=" +
                   std::to_string(c.pos) + " head " + std::to_string(h) + " dim " + std::to_string(i));
          break;
        }
      }
    }
  }
}

// gemm_rows / gemm_pairs over a shuffled subset of rows (the sparse FFN's active lists);
// gemm_rows must leave unlisted columns untouched.
inline void check_rows(const KernelTable& fast, const KernelTable& ref, DType d, Report& rep, uint64_t seed) {
  Rng rng(seed);
  const GemmRowsFn gf = d == DType::q4_0 ? fast.gemm_rows_q4_0_q8_0 : fast.gemm_rows_q8_0_q8_0;
  const GemmRowsFn gr = d == DType::q4_0 ? ref.gemm_rows_q4_0_q8_0 : ref.gemm_rows_q8_0_q8_0;
  for (int64_t k : {int64_t{32}, int64_t{96}, int64_t{1536}}) {
    for (int64_t n_tok : {1, 2, 4, 5, 9}) {
      // 37 or 83 rows (odd row tiles and tails)
      const int64_t rows = n_tok == 5 || n_tok == 9 ? 83 : 37;
      const size_t wrb = row_bytes(d, k) + 2;
      Buf w(wrb * rows, 2);
      for (int64_t r = 0; r < rows; ++r) fill_row(d, k, w.data() + r * wrb, rng);
      std::vector<int32_t> idx;
      for (int32_t r = 0; r < rows; ++r) {
        if (rng.next() % 3 != 0) idx.push_back(r);
      }
      for (size_t i = idx.size(); i > 1; --i) std::swap(idx[i - 1], idx[rng.next() % i]);
      const auto n_idx = static_cast<int64_t>(idx.size());
      // gemm_rows
      const size_t xrb = row_bytes(DType::q8_0, k);
      std::vector<uint8_t> x(xrb * static_cast<size_t>(n_tok));
      std::vector<float> xf(static_cast<size_t>(k));
      for (int64_t t = 0; t < n_tok; ++t) {
        for (auto& v : xf) v = rng.uniform(-1.0f, 1.0f);
        ref.quantize_row_q8_0(xf.data(), x.data() + t * xrb, k);
      }
      std::vector<float> want(static_cast<size_t>(rows * n_tok), -7.0f), got(want.size(), -7.0f);
      gr(k, n_idx, idx.data(), w.data(), wrb, x.data(), xrb, n_tok, want.data(), rows);
      gf(k, n_idx, idx.data(), w.data(), wrb, x.data(), xrb, n_tok, got.data(), rows);
      for (int64_t t = 0; t < n_tok; ++t) {
        for (int64_t r = 0; r < rows; ++r) {
          const bool listed = std::find(idx.begin(), idx.end(), static_cast<int32_t>(r)) != idx.end();
          const double bound =
              listed ? (static_cast<double>(k / 32) + 4) * k_u * abs_terms(d, k, w.data() + r * wrb, x.data() + t * xrb) : 0.0;
          const float g = got[t * rows + r], wv = want[t * rows + r];
          ++rep.checks;
          if (!(std::fabs(static_cast<double>(g) - wv) <= bound) || (!listed && g != -7.0f)) {
            rep.fail(where(fast, "gemm_rows", d, k, rows, n_tok, r, t) + ": got " + std::to_string(g) + " want " +
                     std::to_string(wv));
          }
        }
      }
      // gemm_pairs: a random ascending token subset per listed row (some empty, some full);
      // each pair within the bound of the reference and with the very bits gemm_rows gave it.
      {
        const GemmPairsFn pf = d == DType::q4_0 ? fast.gemm_pairs_q4_0_q8_0 : fast.gemm_pairs_q8_0_q8_0;
        const GemmPairsFn pr = d == DType::q4_0 ? ref.gemm_pairs_q4_0_q8_0 : ref.gemm_pairs_q8_0_q8_0;
        std::vector<int32_t> off{0}, tok;
        for (int64_t i = 0; i < n_idx; ++i) {
          const uint64_t mode = rng.next() % 4;  // 0: none, 1: all, else random
          for (int32_t t = 0; t < n_tok; ++t)
            if (mode == 1 || (mode > 1 && rng.next() % 2 == 0)) tok.push_back(t);
          off.push_back(static_cast<int32_t>(tok.size()));
        }
        std::vector<float> pw(static_cast<size_t>(rows * n_tok), -7.0f), pg(pw.size(), -7.0f);
        pr(k, n_idx, idx.data(), off.data(), tok.data(), w.data(), wrb, x.data(), xrb, n_tok, pw.data(), rows);
        pf(k, n_idx, idx.data(), off.data(), tok.data(), w.data(), wrb, x.data(), xrb, n_tok, pg.data(), rows);
        std::vector<uint8_t> is_pair(pw.size(), 0);
        for (int64_t i = 0; i < n_idx; ++i)
          for (int32_t j = off[static_cast<size_t>(i)]; j < off[static_cast<size_t>(i) + 1]; ++j)
            is_pair[static_cast<size_t>(tok[static_cast<size_t>(j)] * rows + idx[static_cast<size_t>(i)])] = 1;
        for (int64_t t = 0; t < n_tok; ++t) {
          for (int64_t r = 0; r < rows; ++r) {
            const size_t e = static_cast<size_t>(t * rows + r);
            ++rep.checks;
            if (!is_pair[e]) {
              if (pg[e] != -7.0f || pw[e] != -7.0f) {
                rep.fail(where(fast, "gemm_pairs", d, k, rows, n_tok, r, t) + ": wrote a pair not listed");
                break;
              }
              continue;
            }
            const double bound = (static_cast<double>(k / 32) + 4) * k_u *
                                 abs_terms(d, k, w.data() + r * wrb, x.data() + t * xrb);
            if (!(std::fabs(static_cast<double>(pg[e]) - pw[e]) <= bound) || pg[e] != got[e]) {
              rep.fail(where(fast, "gemm_pairs", d, k, rows, n_tok, r, t) + ": got " + std::to_string(pg[e]) +
                       " want " + std::to_string(pw[e]) + " (gemm_rows " + std::to_string(got[e]) + ")");
              break;
            }
          }
        }
      }
    }
  }
}

// down_rows: bit-identical to the reference table (its definition), over k with odd unit
// tails (q4_0 units of 4 blocks, q8_0 of 2), 0..k_down_rows_max rows in groups of 4 and
// partial ones, zero coefficients; and within the rounding the definition implies of the
// exact sum: per block |y - sum_i a_i d_i w_i| <= (sum_i |w_i|) * s / 2 + 2^-22 |y|, since each
// 8-bit coefficient is off by at most s / 2 (s = the block's max |a d| / 127).
inline void check_down_rows(const KernelTable& fast, const KernelTable& ref, DType d, Report& rep, uint64_t seed) {
  Rng rng(seed);
  const DownRowsFn f = d == DType::q4_0 ? fast.down_rows_q4_0 : fast.down_rows_q8_0;
  const DownRowsFn r = d == DType::q4_0 ? ref.down_rows_q4_0 : ref.down_rows_q8_0;
  const size_t bs = d == DType::q4_0 ? sizeof(block_q4_0) : sizeof(block_q8_0);
  for (int64_t k : {int64_t{32}, int64_t{64}, int64_t{96}, int64_t{160}, int64_t{1536}, int64_t{2592}}) {
    for (int64_t n_idx : {int64_t{0}, int64_t{1}, int64_t{3}, int64_t{4}, int64_t{5}, int64_t{26}, int64_t{64},
                          k_down_rows_max}) {
      const int64_t rows = std::max<int64_t>(n_idx + 7, 16);
      const size_t wrb = row_bytes(d, k) + 2;
      Buf w(wrb * static_cast<size_t>(rows), 2);
      for (int64_t i = 0; i < rows; ++i) fill_row(d, k, w.data() + i * wrb, rng);
      std::vector<int32_t> idx(static_cast<size_t>(rows));
      for (int32_t i = 0; i < rows; ++i) idx[static_cast<size_t>(i)] = i;
      for (size_t i = idx.size(); i > 1; --i) std::swap(idx[i - 1], idx[rng.next() % i]);
      idx.resize(static_cast<size_t>(n_idx));
      std::vector<float> a(static_cast<size_t>(rows));
      for (auto& v : a) v = rng.next() % 5 == 0 ? 0.0f : rng.uniform(-2.0f, 2.0f);
      std::vector<float> want(static_cast<size_t>(k), -7.0f), got(want.size() + 16, -7.0f);
      r(k, n_idx, idx.data(), w.data(), wrb, a.data(), want.data());
      f(k, n_idx, idx.data(), w.data(), wrb, a.data(), got.data());
      for (size_t j = static_cast<size_t>(k); j < got.size(); ++j) {
        if (got[j] != -7.0f) {
          rep.fail(where(fast, "down_rows", d, k, n_idx, 1, static_cast<int64_t>(j), 0) + ": wrote past y");
          break;
        }
      }
      for (int64_t b = 0; b < k / 32; ++b) {
        double amax = 0.0;
        std::vector<double> exact(32, 0.0), wabs(32, 0.0);
        for (int64_t i = 0; i < n_idx; ++i) {
          const uint8_t* blk = w.data() + static_cast<size_t>(idx[static_cast<size_t>(i)]) * wrb + b * bs;
          uint16_t h;
          std::memcpy(&h, blk, 2);
          const float c = a[static_cast<size_t>(idx[static_cast<size_t>(i)])] * fp16_to_fp32(h);
          amax = std::max(amax, std::fabs(static_cast<double>(c)));
          for (int j = 0; j < 32; ++j) {
            const int wj = d == DType::q4_0 ? (j < 16 ? blk[2 + j] & 0x0F : blk[2 + j - 16] >> 4) - 8
                                            : static_cast<int8_t>(blk[2 + j]);
            exact[static_cast<size_t>(j)] += static_cast<double>(c) * wj;
            wabs[static_cast<size_t>(j)] += std::abs(wj);
          }
        }
        for (int j = 0; j < 32; ++j) {
          const size_t e = static_cast<size_t>(b * 32 + j);
          ++rep.checks;
          const double bound = wabs[static_cast<size_t>(j)] * amax / 127.0 * (0.5 + 1e-4) + 2 * k_u * std::fabs(want[e]);
          if (std::memcmp(&got[e], &want[e], sizeof(float)) != 0 ||
              !(std::fabs(want[e] - exact[static_cast<size_t>(j)]) <= bound)) {
            rep.fail(where(fast, "down_rows", d, k, n_idx, 1, static_cast<int64_t>(e), 0) + ": got " +
                     std::to_string(got[e]) + " want " + std::to_string(want[e]) + " exact " +
                     std::to_string(exact[static_cast<size_t>(j)]));
            b = k;
            break;
          }
        }
      }
    }
  }
}

// down_rows_q4_0_split on rows repacked as q4_0_split: the bits down_rows_q4_0 of the reference
// table gives on the rows before the repack (k with unit tails, 0..k_down_rows_max rows).
inline void check_down_rows_split(const KernelTable& fast, const KernelTable& ref, Report& rep, uint64_t seed) {
  if (fast.down_rows_q4_0_split == nullptr) return;
  Rng rng(seed);
  for (int64_t k : {int64_t{32}, int64_t{96}, int64_t{160}, int64_t{1536}, int64_t{2592}}) {
    for (int64_t n_idx : {int64_t{0}, int64_t{1}, int64_t{5}, int64_t{26}, k_down_rows_max}) {
      const int64_t rows = std::max<int64_t>(n_idx + 7, 16);
      const size_t rb = row_bytes(DType::q4_0, k), wrb = rb + 2;
      Buf w(wrb * static_cast<size_t>(rows), 2), ws(wrb * static_cast<size_t>(rows), 2);
      for (int64_t i = 0; i < rows; ++i) {
        fill_row(DType::q4_0, k, w.data() + i * wrb, rng);
        repack_row_q4_0_split(w.data() + i * wrb, ws.data() + i * wrb, k);
      }
      std::vector<int32_t> idx(static_cast<size_t>(rows));
      for (int32_t i = 0; i < rows; ++i) idx[static_cast<size_t>(i)] = i;
      for (size_t i = idx.size(); i > 1; --i) std::swap(idx[i - 1], idx[rng.next() % i]);
      idx.resize(static_cast<size_t>(n_idx));
      std::vector<float> a(static_cast<size_t>(rows));
      for (auto& v : a) v = rng.next() % 5 == 0 ? 0.0f : rng.uniform(-2.0f, 2.0f);
      std::vector<float> want(static_cast<size_t>(k)), got(want.size() + 16, -7.0f);
      ref.down_rows_q4_0(k, n_idx, idx.data(), w.data(), wrb, a.data(), want.data());
      fast.down_rows_q4_0_split(k, n_idx, idx.data(), ws.data(), wrb, a.data(), got.data());
      ++rep.checks;
      if (std::memcmp(got.data(), want.data(), want.size() * sizeof(float)) != 0) {
        rep.fail(where(fast, "down_rows_split", DType::q4_0, k, n_idx, 1, 0, 0) + ": differs from down_rows_q4_0");
      }
      for (size_t j = want.size(); j < got.size(); ++j) {
        if (got[j] != -7.0f) {
          rep.fail(where(fast, "down_rows_split", DType::q4_0, k, n_idx, 1, static_cast<int64_t>(j), 0) + ": wrote past y");
          break;
        }
      }
    }
  }
}

// down_rows rounds ties to even: one block whose coefficients a * d (d = 1) put c * id exactly
// on .5 (s = 127 / 127 = 1), checked against hand-computed sums.
inline void check_down_rows_ties(const KernelTable& fast, DType d, Report& rep) {
  const float a[] = {127.0f, 2.5f, 3.5f, -0.5f, 0.5f, -2.5f, 1.5f, -126.5f};
  const int32_t q[] = {127, 2, 4, 0, 0, -2, 2, -126};  // nearbyint, ties to even
  const size_t bs = d == DType::q4_0 ? sizeof(block_q4_0) : sizeof(block_q8_0);
  Buf w(bs * 8, 2);
  const uint16_t one = fp32_to_fp16(1.0f);
  for (int i = 0; i < 8; ++i) {
    uint8_t* b = w.data() + i * bs;
    std::memcpy(b, &one, 2);
    for (size_t j = 2; j < bs; ++j) b[j] = static_cast<uint8_t>(d == DType::q4_0 ? 0x9A ^ (i + j) : 3 + i + j);
  }
  const int32_t idx[] = {0, 1, 2, 3, 4, 5, 6, 7};
  float y[32];
  (d == DType::q4_0 ? fast.down_rows_q4_0 : fast.down_rows_q8_0)(32, 8, idx, w.data(), bs, a, y);
  for (int j = 0; j < 32; ++j) {
    int64_t sum = 0;
    for (int i = 0; i < 8; ++i) {
      const uint8_t* qs = w.data() + i * bs + 2;
      const int wj = d == DType::q4_0 ? (j < 16 ? qs[j] & 0x0F : qs[j - 16] >> 4) - 8 : static_cast<int8_t>(qs[j]);
      sum += q[i] * wj;
    }
    ++rep.checks;
    if (y[j] != static_cast<float>(sum)) {
      rep.fail(where(fast, "down_rows ties", d, 32, 8, 1, j, 0) + ": got " + std::to_string(y[j]) + " want " +
               std::to_string(sum));
      break;
    }
  }
}

inline constexpr DType k_weight_dtypes[] = {DType::q4_0, DType::q8_0, DType::f16, DType::bf16, DType::f32};

// vec_dot + gemv over all k x rows (768 rows up to k = 1536), gemm over tokens 1..9.
inline void check_matmuls(const KernelTable& fast, const KernelTable& ref, DType d, Report& rep, uint64_t seed) {
  for (int64_t k : k_ks) {
    for (int64_t rows : k_rows) {
      if (rows == 768 && k > 1536) continue;
      check_matmul(fast, ref, d, k, rows, 1, rep, seed++);
    }
  }
  for (int64_t k : {int64_t{32}, int64_t{160}, int64_t{2592}}) {
    for (int64_t rows : {int64_t{1}, int64_t{3}, int64_t{8}, int64_t{9}, int64_t{17}}) {
      for (int64_t n_tok = 2; n_tok <= 9; ++n_tok) check_matmul(fast, ref, d, k, rows, n_tok, rep, seed++);
    }
  }
}

// The q4_0x16 entries (tables that have them): rows repacked by cpu/quants.h unpack back to the
// same bytes, and every entry is within the reference bound of the scalar table; a table that
// runs them natively (prefer_q4_0x16) or the scalar one gives the very bits of its own q4_0
// entry on the rows before the repack (gemv path at 1 token, token tiles and tails at 2..11,
// listed rows, (row, token) pairs). Others keep the scalar entries: bound only.
inline void check_q4_0x16(const KernelTable& fast, const KernelTable& ref, Report& rep, uint64_t seed) {
  if (fast.gemm_q4_0x16_q8_0 == nullptr) return;
  const bool same_bits = fast.prefer_q4_0x16 || fast.isa == Isa::scalar;
  Rng rng(seed);
  const DType d = DType::q4_0;
  for (int64_t k : {int64_t{512}, int64_t{1536}, int64_t{2560}}) {
    for (int64_t n_tok : {1, 2, 3, 8, 9, 11}) {
      const int64_t rows = n_tok == 1 ? 37 : 9;
      const size_t rb = row_bytes(d, k), wrb = rb + 2;
      Buf w(wrb * static_cast<size_t>(rows), 2), wx(wrb * static_cast<size_t>(rows), 2);
      std::vector<uint8_t> back(rb);
      for (int64_t r = 0; r < rows; ++r) {
        fill_row(d, k, w.data() + r * wrb, rng);
        repack_row_q4_0x16(w.data() + r * wrb, wx.data() + r * wrb, k);
        unpack_row_q4_0x16(wx.data() + r * wrb, back.data(), k);
        ++rep.checks;
        if (std::memcmp(back.data(), w.data() + r * wrb, rb) != 0) {
          rep.fail("q4_0x16 unpack(repack(row)) differs from the row, k=" + std::to_string(k));
        }
      }
      const size_t xrb = row_bytes(DType::q8_0, k);
      std::vector<uint8_t> x(xrb * static_cast<size_t>(n_tok));
      std::vector<float> xf(static_cast<size_t>(k));
      for (int64_t t = 0; t < n_tok; ++t) {
        for (auto& v : xf) v = rng.uniform(-1.0f, 1.0f);
        ref.quantize_row_q8_0(xf.data(), x.data() + t * xrb, k);
      }
      const size_t n = static_cast<size_t>(rows * n_tok);
      std::vector<float> want(n), own(n), got(n, NAN);
      ref.gemm_q4_0_q8_0(k, rows, w.data(), wrb, x.data(), xrb, n_tok, want.data(), rows);
      if (n_tok == 1) {
        fast.gemv_q4_0_q8_0(k, rows, w.data(), wrb, x.data(), own.data());
        fast.gemv_q4_0x16_q8_0(k, rows, wx.data(), wrb, x.data(), got.data());
      } else {
        fast.gemm_q4_0_q8_0(k, rows, w.data(), wrb, x.data(), xrb, n_tok, own.data(), rows);
        fast.gemm_q4_0x16_q8_0(k, rows, wx.data(), wrb, x.data(), xrb, n_tok, got.data(), rows);
      }
      // Listed rows (every other row, reversed) and pairs (tokens of a row: all, or the odd ones).
      std::vector<int32_t> idx, off{0}, tok;
      for (auto r = static_cast<int32_t>(rows - 1); r >= 0; r -= 2) {
        idx.push_back(r);
        for (int32_t t = 0; t < n_tok; ++t)
          if (r % 4 == 0 || t % 2 == 1) tok.push_back(t);
        off.push_back(static_cast<int32_t>(tok.size()));
      }
      const auto n_idx = static_cast<int64_t>(idx.size());
      std::vector<float> rows_own(n, -7.0f), rows_got(n, -7.0f), pairs_own(n, -7.0f), pairs_got(n, -7.0f);
      fast.gemm_rows_q4_0_q8_0(k, n_idx, idx.data(), w.data(), wrb, x.data(), xrb, n_tok, rows_own.data(), rows);
      fast.gemm_rows_q4_0x16_q8_0(k, n_idx, idx.data(), wx.data(), wrb, x.data(), xrb, n_tok, rows_got.data(), rows);
      fast.gemm_pairs_q4_0_q8_0(k, n_idx, idx.data(), off.data(), tok.data(), w.data(), wrb, x.data(), xrb, n_tok,
                                pairs_own.data(), rows);
      fast.gemm_pairs_q4_0x16_q8_0(k, n_idx, idx.data(), off.data(), tok.data(), wx.data(), wrb, x.data(), xrb, n_tok,
                                   pairs_got.data(), rows);
      // Same bits as the q4_0 entry, or (no native entries) within the bound of the reference;
      // entries a call must not write stay -7 either way.
      const auto agrees = [&](float g, float o, float ref_v, double bound) {
        if (same_bits) return std::memcmp(&g, &o, 4) == 0;
        return o == -7.0f ? g == -7.0f : std::fabs(static_cast<double>(g) - ref_v) <= bound;
      };
      for (int64_t t = 0; t < n_tok; ++t) {
        for (int64_t r = 0; r < rows; ++r) {
          const size_t e = static_cast<size_t>(t * rows + r);
          const double bound = (static_cast<double>(k / 32) + 4) * k_u * abs_terms(d, k, w.data() + r * wrb, x.data() + t * xrb);
          rep.checks += 3;
          if (!(std::fabs(static_cast<double>(got[e]) - want[e]) <= bound) || !agrees(got[e], own[e], want[e], bound)) {
            rep.fail(where(fast, n_tok == 1 ? "gemv" : "gemm", DType::q4_0, k, rows, n_tok, r, t) + " q4_0x16: got " +
                     std::to_string(got[e]) + ", q4_0 " + std::to_string(own[e]) + ", reference " + std::to_string(want[e]));
          }
          if (!agrees(rows_got[e], rows_own[e], want[e], bound)) {
            rep.fail(where(fast, "gemm_rows", DType::q4_0, k, rows, n_tok, r, t) + " q4_0x16: got " +
                     std::to_string(rows_got[e]) + ", q4_0 " + std::to_string(rows_own[e]));
          }
          if (!agrees(pairs_got[e], pairs_own[e], want[e], bound)) {
            rep.fail(where(fast, "gemm_pairs", DType::q4_0, k, rows, n_tok, r, t) + " q4_0x16: got " +
                     std::to_string(pairs_got[e]) + ", q4_0 " + std::to_string(pairs_own[e]));
          }
        }
      }
    }
  }
}

// The prepared activations a kernel keeps from its previous call (cpu/kernels/glue.h) must
// follow the bytes at x, not its address: one buffer is refilled between calls (new values,
// then one scale of the last block made large), and each call must match the reference on
// what the buffer holds then. Also q4_0x16 rows, whose prepared form differs from q4_0's.
inline void check_activation_reuse(const KernelTable& fast, const KernelTable& ref, Report& rep, uint64_t seed) {
  Rng rng(seed);
  const int64_t k = 1536, rows = 5;
  for (DType d : {DType::q4_0, DType::q8_0}) {
    for (bool x16 : {false, true}) {
      if (x16 && (d != DType::q4_0 || fast.gemm_q4_0x16_q8_0 == nullptr)) continue;
      const size_t rb = row_bytes(d, k);
      Buf w(rb * rows, 0), wx(rb * rows, 0);
      for (int64_t r = 0; r < rows; ++r) {
        fill_row(d, k, w.data() + r * rb, rng);
        if (x16) repack_row_q4_0x16(w.data() + r * rb, wx.data() + r * rb, k);
      }
      for (int64_t n_tok : {1, 3}) {
        const size_t xrb = row_bytes(DType::q8_0, k);
        Buf x(xrb * static_cast<size_t>(n_tok), 0);
        std::vector<float> xf(static_cast<size_t>(k));
        for (int round = 0; round < 3; ++round) {
          if (round < 2) {
            for (int64_t t = 0; t < n_tok; ++t) {
              for (auto& v : xf) v = rng.uniform(-1.0f, 1.0f);
              ref.quantize_row_q8_0(xf.data(), x.data() + t * xrb, k);
            }
          } else {
            const uint16_t big = fp32_to_fp16(50.0f);  // last token, last block's scale
            std::memcpy(x.data() + (n_tok - 1) * xrb + xrb - sizeof(block_q8_0), &big, 2);
          }
          std::vector<float> want(static_cast<size_t>(rows * n_tok)), got(want.size(), NAN);
          gemm_of(ref, d)(k, rows, w.data(), rb, x.data(), xrb, n_tok, want.data(), rows);
          (x16 ? fast.gemm_q4_0x16_q8_0 : gemm_of(fast, d))(k, rows, (x16 ? wx : w).data(), rb, x.data(), xrb, n_tok,
                                                           got.data(), rows);
          for (int64_t t = 0; t < n_tok; ++t) {
            for (int64_t r = 0; r < rows; ++r) {
              const double bound = (k / 32 + 4) * k_u * abs_terms(d, k, w.data() + r * rb, x.data() + t * xrb) + 1e-30;
              ++rep.checks;
              if (!(std::fabs(static_cast<double>(got[t * rows + r]) - want[t * rows + r]) <= bound)) {
                rep.fail(where(fast, x16 ? "gemm(reused x, q4_0x16 rows)" : "gemm(reused x)", d, k, rows, n_tok, r, t) +
                         " round " + std::to_string(round) + ": got " + std::to_string(got[t * rows + r]) + " want " +
                         std::to_string(want[t * rows + r]));
              }
            }
          }
        }
      }
    }
  }
}

inline Report check_table(const KernelTable& fast, const KernelTable& ref, uint64_t seed = 1) {
  Report rep;
  check_quantize(fast, ref, rep, seed);
  for (DType d : k_weight_dtypes) check_matmuls(fast, ref, d, rep, seed + 100);
  for (DType d : {DType::q4_0, DType::q8_0, DType::f32}) check_axpy(fast, ref, d, rep, seed + 200);
  for (DType d : {DType::q4_0, DType::q8_0}) check_rows(fast, ref, d, rep, seed + 250);
  for (DType d : {DType::q4_0, DType::q8_0}) check_down_rows(fast, ref, d, rep, seed + 270);
  for (DType d : {DType::q4_0, DType::q8_0}) check_down_rows_ties(fast, d, rep);
  check_q4_0x16(fast, ref, rep, seed + 280);
  check_activation_reuse(fast, ref, rep, seed + 285);
  check_down_rows_split(fast, ref, rep, seed + 290);
  check_elementwise(fast, ref, rep, seed + 300);
  return rep;
}

}  // namespace tandem::cpu::check
