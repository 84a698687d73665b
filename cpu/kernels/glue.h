// Internal to cpu/: the ISA-independent half of every SIMD kernel table. Row lists, token and
// row tiling, activation preparation buffers, prefetch targets, the vec_dot/gemv/gemm/
// gemm_rows/gemm_pairs/axpy entry points and the table fill are written once here, as
// Glue<I>, and instantiated by each ISA file (x86/kernels_avx2.cpp, x86/kernels_avx512.cpp,
// arm/kernels_neon.cpp) with a traits struct I that holds only that ISA's intrinsics.
//
// Include only from an ISA file: nothing here is compiled on its own, and every instantiation
// gets the including file's compiler flags.
//
// Traits contract (all static; `K` a WKind or FKind, NR rows x NT tokens, NT <= k_tok_tile):
//   k_tok_tile (constexpr int)         most tokens of a quantized GEMM tile
//   PrepFor<K>                         aligned per-activation-row unit for weights of
//                                      kind K, any layout
//   prep_units<K>(nb) -> int64_t       units per activation row of nb q8_0 blocks
//   prepare<K>(x, nb, out, single)     nb blocks of q8_0 -> prep_units<K>(nb) units; single:
//                                      the call has one token (a layout may be skipped otherwise)
//   q_rows(NT) -> int (constexpr)      row tile of the quantized GEMM for NT tokens
//   dot_q<K, NR, NT>(nb, w, pf, xp, out)
//        out[r][t] = dot(row w[r], prepared row xp[t]); pf[r] (may be nullptr) is the row
//        to prefetch meanwhile, at the same block offsets
//   f_rows(NT) -> int (constexpr)      row tile of the float GEMM
//   load_w<K>(row, i) -> V             k_lanes weights from element i as floats
//   dequant_block<K>(row, ib, V (&w)[32 / k_lanes], float& d)   block ib's integers, scale
//   f16_to_f32(uint16_t) -> float      one half to float (IEEE, as core/fp16.h)
//   quantize_row_q8_0                  (KernelTable signature)
//   V, k_lanes; V load(p), store(p, V), set1(f), add, sub, mul, fma(a, b, c) = a * b + c,
//   hsum(V) -> float, exp_ps(V)        float vectors for axpy_f32, rms_norm, soft_max, rope
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <utility>
#include <vector>

#include "core/quant_blocks.h"
#include "cpu/kernels/isa_kernels.h"

namespace tandem::cpu::detail {
// Internal linkage throughout: each ISA file compiles its own copy with its own flags, so the
// linker can never pick an AVX-512 copy of a helper for a caller on an AVX2-only host.
namespace {

// q4_0x16: q4_0 rows in the repacked layout of cpu/quants.h (only ISAs that fill_q4_0x16).
enum class WKind { q4_0, q8_0, q4_0x16 };
enum class FKind { f16, bf16, f32 };

template <WKind K>
inline constexpr size_t k_block_bytes = K == WKind::q8_0 ? sizeof(block_q8_0) : sizeof(block_q4_0);

// Rows and scales sit at any byte address (18- and 34-byte blocks): read through memcpy.
inline uint16_t load_u16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}

// Element i of a float-family weight row as f32 (for tails); I::f16_to_f32 converts halves.
template <class I, FKind K>
inline float w_at(const uint8_t* row, int64_t i) {
  if constexpr (K == FKind::f16) return I::f16_to_f32(load_u16(row + 2 * i));
  if constexpr (K == FKind::bf16) {
    const uint32_t b = static_cast<uint32_t>(load_u16(row + 2 * i)) << 16;
    float v;
    std::memcpy(&v, &b, 4);
    return v;
  }
  float v;
  std::memcpy(&v, row + 4 * i, 4);
  return v;
}

// Which rows a GEMM reads: rows 0..n-1 of (base, stride), or rows idx[0..n-1]; list entry i
// writes column row(i) of y.
struct RowList {
  const uint8_t* base;
  size_t wrb;
  const int32_t* idx;  // nullptr: consecutive rows
  int64_t n;           // rows in the list
  int64_t row(int64_t i) const { return idx ? idx[i] : i; }
  const uint8_t* ptr(int64_t i) const { return base + static_cast<size_t>(row(i)) * wrb; }
};

// Weight rows stream from DRAM once; the out-of-order window covers too few of their bytes
// to hide DRAM latency, so a tile prefetches the rows this many list entries ahead (which
// also covers the scattered rows of gemm_rows).
// 4 beat 2, 6, 8 and 16 on this machine's output-head GEMV (bench/RESULTS.md, session 4).
inline constexpr int64_t k_prefetch_rows = 4;

// down_rows (kernel_table.h DownRowsFn) in the SIMD tables: the listed rows in groups of 4, the
// last group padded with the last listed row and coefficient 0 (its products are exact zeros).
// n_idx >= 1.
struct DownRowGroups {
  int64_t ng;
  const uint8_t* rows[k_down_rows_max];
  alignas(16) float a[k_down_rows_max];  // a of row 4 g + r, 0 for padding
  DownRowGroups(int64_t n_idx, const int32_t* idx, const void* w, size_t wrb, const float* av) : ng((n_idx + 3) / 4) {
    const auto* wb = static_cast<const uint8_t*>(w);
    for (int64_t i = 0; i < 4 * ng; ++i) {
      rows[i] = wb + static_cast<size_t>(idx[std::min(i, n_idx - 1)]) * wrb;
      a[i] = i < n_idx ? av[idx[i]] : 0.0f;
    }
  }
};

template <class I>
struct Glue {
  template <WKind K>
  using Prep = typename I::template PrepFor<K>;

  // Per-thread scratch: activations are small (k/32 blocks x n_tok); weights are the stream.
  template <WKind K>
  static std::vector<Prep<K>>& prep_buffer(size_t n) {
    thread_local std::vector<Prep<K>> buf;
    if (buf.size() < n) buf.resize(n);
    return buf;
  }

  // The n_tok q8_0 activation rows (xrb bytes apart) in I's Prep form, prep_units(nb) each,
  // in this thread's scratch. A call whose rows hold the same bytes as this thread's previous
  // call for K (the same nb and n_tok) reuses its result: an expert's gate and up calls all
  // multiply the same activations, and comparing the bytes costs far less than preparing them.
  template <WKind K>
  static const std::vector<Prep<K>>& prepare_all(int64_t nb, const void* x, size_t xrb, int64_t n_tok) {
    const int64_t nu = I::template prep_units<K>(nb);
    std::vector<Prep<K>>& buf = prep_buffer<K>(static_cast<size_t>(nu * n_tok));
    thread_local std::vector<uint8_t> last;  // the q8_0 rows buf was made from, back to back
    thread_local int64_t last_nb = -1, last_n_tok = -1;
    const auto* xb = static_cast<const uint8_t*>(x);
    const size_t rb = static_cast<size_t>(nb) * sizeof(block_q8_0);
    bool same = last_nb == nb && last_n_tok == n_tok;
    for (int64_t t = 0; same && t < n_tok; ++t)
      same = std::memcmp(last.data() + static_cast<size_t>(t) * rb, xb + static_cast<size_t>(t) * xrb, rb) == 0;
    if (same) return buf;
    last.resize(rb * static_cast<size_t>(n_tok));
    for (int64_t t = 0; t < n_tok; ++t) {
      std::memcpy(last.data() + static_cast<size_t>(t) * rb, xb + static_cast<size_t>(t) * xrb, rb);
      I::template prepare<K>(reinterpret_cast<const block_q8_0*>(xb + t * xrb), nb, buf.data() + t * nu, n_tok == 1);
    }
    last_nb = nb;
    last_n_tok = n_tok;
    return buf;
  }

  // f(std::integral_constant<int, nt>) for 1 <= nt <= I::k_tok_tile: token tiles are templates.
  template <class F, int... N>
  static void with_nt_seq(int nt, F&& f, std::integer_sequence<int, N...>) {
    ((nt == N + 1 ? (f(std::integral_constant<int, N + 1>{}), 0) : 0), ...);
  }
  template <class F>
  static void with_nt(int nt, F&& f) {
    with_nt_seq(nt, f, std::make_integer_sequence<int, I::k_tok_tile>{});
  }

  template <WKind K, int NR, int NT>
  static void tile_q(int64_t nb, const RowList& rl, int64_t i0, const Prep<K>* const* xp, float* y, int64_t ys) {
    const uint8_t* w[NR];
    const uint8_t* pf[NR];
    for (int r = 0; r < NR; ++r) {
      w[r] = rl.ptr(i0 + r);
      const int64_t j = i0 + k_prefetch_rows + r;
      pf[r] = j < rl.n ? rl.ptr(j) : nullptr;
    }
    float out[NR][NT];
    I::template dot_q<K, NR, NT>(nb, w, pf, xp, out);
    for (int r = 0; r < NR; ++r)
      for (int t = 0; t < NT; ++t) y[t * ys + rl.row(i0 + r)] = out[r][t];
  }

  template <WKind K, int NT>
  static void rows_q(int64_t nb, const RowList& rl, const Prep<K>* const* xp, float* y, int64_t ys) {
    constexpr int NR = I::q_rows(NT);
    int64_t r = 0;
    for (; r + NR <= rl.n; r += NR) tile_q<K, NR, NT>(nb, rl, r, xp, y, ys);
    for (; r < rl.n; ++r) tile_q<K, 1, NT>(nb, rl, r, xp, y, ys);
  }

  template <WKind K>
  static void gemm_list(int64_t k, const RowList& rl, const void* x, size_t xrb, int64_t n_tok, float* y,
                        int64_t ys) {
    const int64_t nb = k / QK8_0;
    const int64_t nu = I::template prep_units<K>(nb);
    const std::vector<Prep<K>>& buf = prepare_all<K>(nb, x, xrb, n_tok);
    const Prep<K>* xp[I::k_tok_tile];
    for (int64_t t = 0; t < n_tok; t += I::k_tok_tile) {
      const int nt = static_cast<int>(std::min<int64_t>(I::k_tok_tile, n_tok - t));
      for (int i = 0; i < nt; ++i) xp[i] = buf.data() + (t + i) * nu;
      with_nt(nt, [&](auto c) { rows_q<K, decltype(c)::value>(nb, rl, xp, y + t * ys, ys); });
    }
  }

  template <WKind K>
  static void gemm_q(int64_t k, int64_t n_rows, const void* w, size_t wrb, const void* x, size_t xrb, int64_t n_tok,
                     float* y, int64_t ys) {
    gemm_list<K>(k, RowList{static_cast<const uint8_t*>(w), wrb, nullptr, n_rows}, x, xrb, n_tok, y, ys);
  }

  template <WKind K>
  static void gemm_rows_q(int64_t k, int64_t n_idx, const int32_t* idx, const void* w, size_t wrb, const void* x,
                          size_t xrb, int64_t n_tok, float* y, int64_t ys) {
    gemm_list<K>(k, RowList{static_cast<const uint8_t*>(w), wrb, idx, n_idx}, x, xrb, n_tok, y, ys);
  }

  template <WKind K, int NT>
  static void pair_tile(int64_t nb, const uint8_t* const* w, const uint8_t* const* pf, const Prep<K>* const* xp,
                        const int32_t* toks, int32_t row, float* y, int64_t ys) {
    float out[1][NT];
    I::template dot_q<K, 1, NT>(nb, w, pf, xp, out);
    for (int q = 0; q < NT; ++q) y[static_cast<int64_t>(toks[q]) * ys + row] = out[0][q];
  }

  // One row at a time with up to k_tok_tile of its tokens per tile (the row's unpacking shared
  // by them, as in gemm_list's tiles); each pair takes dot_q's per-pair sequence, so the same
  // bits as gemm_rows.
  template <WKind K>
  static void gemm_pairs_q(int64_t k, int64_t n_idx, const int32_t* idx, const int32_t* tok_off, const int32_t* tok,
                           const void* w, size_t wrb, const void* x, size_t xrb, int64_t n_tok, float* y, int64_t ys) {
    const int64_t nb = k / QK8_0;
    const int64_t nu = I::template prep_units<K>(nb);
    const std::vector<Prep<K>>& buf = prepare_all<K>(nb, x, xrb, n_tok);
    const RowList rl{static_cast<const uint8_t*>(w), wrb, idx, n_idx};
    for (int64_t i = 0; i < n_idx; ++i) {
      const uint8_t* wr[1] = {rl.ptr(i)};
      const uint8_t* pf[1] = {i + k_prefetch_rows < n_idx ? rl.ptr(i + k_prefetch_rows) : nullptr};
      for (int32_t j = tok_off[i]; j < tok_off[i + 1]; j += I::k_tok_tile) {
        const int nt = static_cast<int>(std::min<int32_t>(I::k_tok_tile, tok_off[i + 1] - j));
        const Prep<K>* xp[I::k_tok_tile];
        for (int q = 0; q < nt; ++q) xp[q] = buf.data() + static_cast<int64_t>(tok[j + q]) * nu;
        with_nt(nt, [&](auto c) { pair_tile<K, decltype(c)::value>(nb, wr, pf, xp, tok + j, idx[i], y, ys); });
        pf[0] = nullptr;  // once per row is enough
      }
    }
  }

  template <WKind K>
  static void gemv_q(int64_t k, int64_t n_rows, const void* w, size_t wrb, const void* x, float* y) {
    gemm_q<K>(k, n_rows, w, wrb, x, 0, 1, y, 0);
  }

  template <WKind K>
  static float vec_dot_q(int64_t k, const void* w, const void* x) {
    float y = 0.0f;
    gemm_q<K>(k, 1, w, 0, x, 0, 1, &y, 0);
    return y;
  }

  // ---- f16 / bf16 / f32 weights x f32 activations ----

  template <FKind K, int NT>
  static void rows_f(int64_t k, int64_t n_rows, const uint8_t* w, size_t wrb, const float* const* x, float* y,
                     int64_t ys) {
    constexpr int NR = I::f_rows(NT);
    int64_t r = 0;
    for (; r + NR <= n_rows; r += NR) store_f<K, NR, NT>(k, w + r * wrb, wrb, x, y + r, ys);
    for (; r < n_rows; ++r) store_f<K, 1, NT>(k, w + r * wrb, wrb, x, y + r, ys);
  }

  template <FKind K, int NR, int NT>
  static void dot_f(int64_t k, const uint8_t* w, size_t wrb, const float* const* x, float (&out)[NR][NT]) {
    constexpr int64_t L = I::k_lanes;
    typename I::V acc[NR][NT];
    for (int r = 0; r < NR; ++r)
      for (int t = 0; t < NT; ++t) acc[r][t] = I::set1(0.0f);
    int64_t i = 0;
    for (; i + L <= k; i += L) {
      typename I::V wv[NR];
      for (int r = 0; r < NR; ++r) wv[r] = I::template load_w<K>(w + r * wrb, i);
      for (int t = 0; t < NT; ++t) {
        const auto xv = I::load(x[t] + i);
        for (int r = 0; r < NR; ++r) acc[r][t] = I::fma(wv[r], xv, acc[r][t]);
      }
    }
    for (int r = 0; r < NR; ++r) {
      for (int t = 0; t < NT; ++t) {
        float s = I::hsum(acc[r][t]);
        for (int64_t j = i; j < k; ++j) s += w_at<I, K>(w + r * wrb, j) * x[t][j];
        out[r][t] = s;
      }
    }
  }

  template <FKind K, int NR, int NT>
  static void store_f(int64_t k, const uint8_t* w, size_t wrb, const float* const* x, float* y, int64_t ys) {
    float out[NR][NT];
    dot_f<K, NR, NT>(k, w, wrb, x, out);
    for (int r = 0; r < NR; ++r)
      for (int t = 0; t < NT; ++t) y[t * ys + r] = out[r][t];
  }

  template <FKind K>
  static void gemm_f(int64_t k, int64_t n_rows, const void* w, size_t wrb, const void* x, size_t xrb, int64_t n_tok,
                     float* y, int64_t ys) {
    const auto* wb = static_cast<const uint8_t*>(w);
    const auto* xb = static_cast<const uint8_t*>(x);
    const float* xp[4];
    for (int64_t t = 0; t < n_tok; t += 4) {
      const int64_t nt = std::min<int64_t>(4, n_tok - t);
      for (int i = 0; i < nt; ++i) xp[i] = reinterpret_cast<const float*>(xb + (t + i) * xrb);
      switch (nt) {
        case 4: rows_f<K, 4>(k, n_rows, wb, wrb, xp, y + t * ys, ys); break;
        case 3: rows_f<K, 3>(k, n_rows, wb, wrb, xp, y + t * ys, ys); break;
        case 2: rows_f<K, 2>(k, n_rows, wb, wrb, xp, y + t * ys, ys); break;
        default: rows_f<K, 1>(k, n_rows, wb, wrb, xp, y + t * ys, ys); break;
      }
    }
  }

  template <FKind K>
  static void gemv_f(int64_t k, int64_t n_rows, const void* w, size_t wrb, const void* x, float* y) {
    gemm_f<K>(k, n_rows, w, wrb, x, 0, 1, y, 0);
  }

  template <FKind K, class W>
  static float vec_dot_f(int64_t k, const W* w, const float* x) {
    float y = 0.0f;
    gemm_f<K>(k, 1, w, 0, x, 0, 1, &y, 0);
    return y;
  }

  // ---- axpy ----

  // Blocks of a q row are dequantised once (I::dequant_block: 32 / k_lanes vectors of the
  // block's integers as floats, and its scale) and used for every token.
  static constexpr int k_dq = 32 / static_cast<int>(I::k_lanes);

  template <WKind K>
  static void axpy_q(int64_t k, int64_t n_tok, const float* a, const void* row, float* y, int64_t ys) {
    const auto* rb = static_cast<const uint8_t*>(row);
    for (int64_t ib = 0; ib < k / QK8_0; ++ib) {
      typename I::V w[k_dq];
      float d;
      I::template dequant_block<K>(rb, ib, w, d);
      for (int64_t t = 0; t < n_tok; ++t) {
        const auto c = I::set1(a[t] * d);
        float* yt = y + t * ys + ib * 32;
        for (int j = 0; j < k_dq; ++j) I::store(yt + j * I::k_lanes, I::fma(c, w[j], I::load(yt + j * I::k_lanes)));
      }
    }
  }

  // ---- float vector ops, on I's vector type V of I::k_lanes floats (scalar tails) ----

  static void axpy_f32(int64_t k, int64_t n_tok, const float* a, const void* row, float* y, int64_t ys) {
    constexpr int64_t L = I::k_lanes;
    const auto* w = static_cast<const float*>(row);
    for (int64_t t = 0; t < n_tok; ++t) {
      const auto v = I::set1(a[t]);
      float* yt = y + t * ys;
      int64_t i = 0;
      for (; i + L <= k; i += L) I::store(yt + i, I::fma(v, I::load(w + i), I::load(yt + i)));
      for (; i < k; ++i) {
        float wi;  // the row may sit at any byte offset
        std::memcpy(&wi, reinterpret_cast<const uint8_t*>(w + i), sizeof wi);
        yt[i] += a[t] * wi;
      }
    }
  }

  static void rms_norm(int64_t n, const float* x, const float* w, float eps, float* y) {
    constexpr int64_t L = I::k_lanes;
    auto acc = I::set1(0.0f);
    int64_t i = 0;
    for (; i + L <= n; i += L) acc = I::fma(I::load(x + i), I::load(x + i), acc);
    float sum = I::hsum(acc);
    for (; i < n; ++i) sum += x[i] * x[i];
    const float scale = 1.0f / std::sqrt(sum / static_cast<float>(n) + eps);
    const auto s = I::set1(scale);
    for (i = 0; i + L <= n; i += L) {
      auto v = I::mul(I::load(x + i), s);
      if (w) v = I::mul(v, I::load(w + i));
      I::store(y + i, v);
    }
    for (; i < n; ++i) y[i] = w ? (x[i] * scale) * w[i] : x[i] * scale;
  }

  // I::exp_ps is a Cephes expf (about 2 ulp; inputs far below the max may flush to 0, which
  // changes a sum by < 2^-125 of its largest term).
  static void soft_max(int64_t n, const float* x, const float* mask, float scale, float* y) {
    constexpr int64_t L = I::k_lanes;
    float max = -INFINITY;
    for (int64_t i = 0; i < n; ++i) {
      y[i] = x[i] * scale + (mask ? mask[i] : 0.0f);
      max = std::max(max, y[i]);
    }
    const auto mx = I::set1(max);
    auto acc = I::set1(0.0f);
    int64_t i = 0;
    for (; i + L <= n; i += L) {
      const auto e = I::exp_ps(I::sub(I::load(y + i), mx));
      I::store(y + i, e);
      acc = I::add(acc, e);
    }
    float sum = I::hsum(acc);
    for (; i < n; ++i) {
      y[i] = std::exp(y[i] - max);
      sum += y[i];
    }
    const float inv = 1.0f / sum;
    const auto vinv = I::set1(inv);
    for (i = 0; i + L <= n; i += L) I::store(y + i, I::mul(I::load(y + i), vinv));
    for (; i < n; ++i) y[i] *= inv;
  }

  // ---- rope ----

  static void rope_rotate(float* xh, const float* c, const float* s, int64_t half) {
    constexpr int64_t L = I::k_lanes;
    int64_t i = 0;
    for (; i + L <= half; i += L) {
      const auto vc = I::load(c + i), vs = I::load(s + i);
      const auto x0 = I::load(xh + i), x1 = I::load(xh + i + half);
      I::store(xh + i, I::sub(I::mul(x0, vc), I::mul(x1, vs)));
      I::store(xh + i + half, I::add(I::mul(x0, vs), I::mul(x1, vc)));
    }
    for (; i < half; ++i) {
      const float x0 = xh[i], x1 = xh[i + half];
      xh[i] = x0 * c[i] - x1 * s[i];
      xh[i + half] = x0 * s[i] + x1 * c[i];
    }
  }

  static void rope_neox(float* x, int64_t n_head, int64_t head_dim, int64_t n_rot, int64_t pos, float freq_base) {
    if (n_rot > k_max_rot) {  // beyond the stack cache: the scalar kernel (no model does this)
      KernelTable t;
      fill_scalar(t);
      t.rope_neox(x, n_head, head_dim, n_rot, pos, freq_base);
      return;
    }
    float c[k_max_rot / 2], s[k_max_rot / 2];
    rope_neox_cache(n_rot, pos, freq_base, c, s);
    for (int64_t h = 0; h < n_head; ++h) rope_rotate(x + h * head_dim, c, s, n_rot / 2);
  }

  static void fill(KernelTable& t, Isa isa) {
    t.isa = isa;
    t.quantize_row_q8_0 = I::quantize_row_q8_0;
    t.vec_dot_q4_0_q8_0 = vec_dot_q<WKind::q4_0>;
    t.vec_dot_q8_0_q8_0 = vec_dot_q<WKind::q8_0>;
    t.vec_dot_f16_f32 = vec_dot_f<FKind::f16, void>;
    t.vec_dot_bf16_f32 = vec_dot_f<FKind::bf16, void>;
    t.vec_dot_f32 = vec_dot_f<FKind::f32, float>;
    t.gemv_q4_0_q8_0 = gemv_q<WKind::q4_0>;
    t.gemv_q8_0_q8_0 = gemv_q<WKind::q8_0>;
    t.gemv_f16_f32 = gemv_f<FKind::f16>;
    t.gemv_bf16_f32 = gemv_f<FKind::bf16>;
    t.gemv_f32 = gemv_f<FKind::f32>;
    t.gemm_q4_0_q8_0 = gemm_q<WKind::q4_0>;
    t.gemm_q8_0_q8_0 = gemm_q<WKind::q8_0>;
    t.gemm_f16_f32 = gemm_f<FKind::f16>;
    t.gemm_bf16_f32 = gemm_f<FKind::bf16>;
    t.gemm_f32 = gemm_f<FKind::f32>;
    t.gemm_rows_q4_0_q8_0 = gemm_rows_q<WKind::q4_0>;
    t.gemm_rows_q8_0_q8_0 = gemm_rows_q<WKind::q8_0>;
    t.gemm_pairs_q4_0_q8_0 = gemm_pairs_q<WKind::q4_0>;
    t.gemm_pairs_q8_0_q8_0 = gemm_pairs_q<WKind::q8_0>;
    t.axpy_q4_0_f32 = axpy_q<WKind::q4_0>;
    t.axpy_q8_0_f32 = axpy_q<WKind::q8_0>;
    t.axpy_f32 = axpy_f32;
    t.rms_norm = rms_norm;
    t.soft_max = soft_max;
    t.rope_neox = rope_neox;
  }

  // The q4_0x16 entries, for an I whose PrepFor / prepare / dot_q take WKind::q4_0x16.
  static void fill_q4_0x16(KernelTable& t) {
    t.gemv_q4_0x16_q8_0 = gemv_q<WKind::q4_0x16>;
    t.gemm_q4_0x16_q8_0 = gemm_q<WKind::q4_0x16>;
    t.gemm_rows_q4_0x16_q8_0 = gemm_rows_q<WKind::q4_0x16>;
    t.gemm_pairs_q4_0x16_q8_0 = gemm_pairs_q<WKind::q4_0x16>;
    t.prefer_q4_0x16 = true;
  }
};

}  // namespace
}  // namespace tandem::cpu::detail
