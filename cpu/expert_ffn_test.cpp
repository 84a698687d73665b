#include "cpu/expert_ffn.h"

#include <catch2/catch.hpp>
#include <tbb/global_control.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <vector>

#include "core/fp16.h"
#include "core/quant_blocks.h"
#include "cpu/kernel_table_check.h"
#include "cpu/quants.h"
#include "support/test_support.h"

namespace tandem::cpu {
namespace {

// A random expert whose gate rows are built so that a chosen set of neurons is inactive
// for every token (gate row entries all negative against all-positive inputs) and the rest
// are active for every token (entries all positive) — unless `mixed`, where gate rows are
// random and activity differs per token.
struct TestExpert {
  int64_t n_embd, n_ff;
  std::vector<uint8_t> gate, up, down;
  ExpertFfnWeights w;
  int64_t n_inactive = 0;

  TestExpert(int64_t n_embd_, int64_t n_ff_, DType gu, DType dd, DownLayout layout, double inactive, bool mixed,
             uint64_t seed)
      : n_embd(n_embd_), n_ff(n_ff_) {
    check::Rng rng(seed);
    const size_t gur = dtype_row_size(gu, n_embd);
    gate.resize(gur * static_cast<size_t>(n_ff));
    up.resize(gate.size());
    std::vector<int64_t> perm(static_cast<size_t>(n_ff));
    std::iota(perm.begin(), perm.end(), 0);
    for (int64_t i = n_ff - 1; i > 0; --i) std::swap(perm[i], perm[rng.next() % static_cast<uint64_t>(i + 1)]);
    n_inactive = mixed ? -1 : static_cast<int64_t>(std::llround(inactive * static_cast<double>(n_ff)));
    std::vector<bool> off(static_cast<size_t>(n_ff), false);
    for (int64_t i = 0; i < std::max<int64_t>(n_inactive, 0); ++i) off[perm[i]] = true;
    for (int64_t j = 0; j < n_ff; ++j) {
      uint8_t* grow = gate.data() + j * gur;
      check::fill_row(gu, n_embd, grow, rng);
      check::fill_row(gu, n_embd, up.data() + j * gur, rng);
      if (mixed) continue;
      const size_t bs = gu == DType::q4_0 ? sizeof(block_q4_0) : sizeof(block_q8_0);
      for (int64_t b = 0; b < n_embd / 32; ++b) {
        uint8_t* p = grow + b * bs;
        const uint16_t d = fp32_to_fp16(0.01f + 0.01f * static_cast<float>(rng.next() % 4));
        std::memcpy(p, &d, 2);
        for (size_t i = 2; i < bs; ++i) {
          const unsigned r = static_cast<unsigned>(rng.next());
          if (gu == DType::q4_0) {  // nibbles 0..7 -> q-8 < 0; 9..15 -> q-8 > 0
            const unsigned lo = off[j] ? r % 8 : 9 + r % 7, hi = off[j] ? (r >> 8) % 8 : 9 + (r >> 8) % 7;
            p[i] = static_cast<uint8_t>(lo | (hi << 4));
          } else {
            const int q = 1 + static_cast<int>(r % 127);
            p[i] = static_cast<uint8_t>(static_cast<int8_t>(off[j] ? -q : q));
          }
        }
      }
    }
    const int64_t dn0 = layout == DownLayout::transposed ? n_embd : n_ff;
    const int64_t dn1 = layout == DownLayout::transposed ? n_ff : n_embd;
    const size_t dr = dtype_row_size(dd, dn0);
    down.resize(dr * static_cast<size_t>(dn1));
    for (int64_t r = 0; r < dn1; ++r) check::fill_row(dd, dn0, down.data() + r * dr, rng);
    w.gate = TensorView::contiguous(gate.data(), gu, {n_embd, n_ff, 1, 1}, "blk.0.ffn_gate_exps.weight");
    w.up = TensorView::contiguous(up.data(), gu, {n_embd, n_ff, 1, 1}, "blk.0.ffn_up_exps.weight");
    w.down = TensorView::contiguous(down.data(), dd, {dn0, dn1, 1, 1}, "blk.0.ffn_down_exps.weight");
    w.down_layout = layout;
  }
};

// Copies through memcpy: GCC 12 reports a false -Wnull-dereference in vector's copy
// constructor here.
std::vector<float> copy_of(const std::vector<float>& v) {
  std::vector<float> out(v.size());
  if (!v.empty()) std::memcpy(out.data(), v.data(), v.size() * sizeof(float));
  return out;
}

struct Batch {
  std::vector<float> x, route_w, acc;
  int64_t n_tok, n_embd;
  Batch(int64_t n_tok_, int64_t n_embd_, bool positive, uint64_t seed) : n_tok(n_tok_), n_embd(n_embd_) {
    check::Rng rng(seed);
    for (int64_t i = 0; i < n_tok * n_embd; ++i) x.push_back(positive ? rng.uniform(0.1f, 1.0f) : rng.uniform(-1.0f, 1.0f));
    for (int64_t t = 0; t < n_tok; ++t) route_w.push_back(rng.uniform(0.1f, 0.9f));
    for (int64_t i = 0; i < n_tok * n_embd; ++i) acc.push_back(rng.uniform(-0.5f, 0.5f));
  }
  ExpertFfnBatch view(std::vector<float>& out) const {
    return ExpertFfnBatch{x.data(), n_embd, n_tok, route_w.data(), out.data(), n_embd};
  }
};

std::vector<float> run(const KernelTable& kt, const TestExpert& e, FfnMode mode, const Batch& b,
                       const ChunkRunner& runner, ExpertFfnStats* stats = nullptr) {
  std::vector<float> out = copy_of(b.acc);
  ExpertFfnWorkspace ws;
  const Status s = expert_ffn(kt, e.w, mode, b.view(out), ws, runner, stats);
  REQUIRE(s.ok());
  return out;
}

// Plain reference: dequantise everything (cpu/quants.h) and multiply in double; the
// activation rows are q8_0-quantised first, as the kernels (and ggml) do, and so are the
// down's inputs: a (standard: q8_0) or the transposed down's coefficients a * d (8 bits per
// k_ffn_chunk neurons and 32-column block, kernel_table.h DownRowsFn). exact_down: neither.
std::vector<float> reference(const TestExpert& e, const Batch& b, bool exact_down = false) {
  const int64_t d = e.n_embd, f = e.n_ff;
  auto deq = [](const TensorView& t) {
    std::vector<float> m(static_cast<size_t>(t.ne[0] * t.ne[1]));
    for (int64_t r = 0; r < t.ne[1]; ++r) dequantize_row(t.dtype, t.row(r), m.data() + r * t.ne[0], t.ne[0]);
    return m;
  };
  auto q8 = [](const float* x, int64_t n) {
    std::vector<uint8_t> q(dtype_row_size(DType::q8_0, n));
    quantize_row_q8_0(x, q.data(), n);
    std::vector<float> v(static_cast<size_t>(n));
    dequantize_row(DType::q8_0, q.data(), v.data(), n);
    return v;
  };
  const auto G = deq(e.w.gate), U = deq(e.w.up), D = deq(e.w.down);
  std::vector<float> out = copy_of(b.acc);
  for (int64_t t = 0; t < b.n_tok; ++t) {
    const auto x = q8(b.x.data() + t * d, d);
    std::vector<float> a(static_cast<size_t>(f));
    for (int64_t j = 0; j < f; ++j) {
      double g = 0, u = 0;
      for (int64_t i = 0; i < d; ++i) {
        g += static_cast<double>(G[j * d + i]) * x[i];
        u += static_cast<double>(U[j * d + i]) * x[i];
      }
      a[j] = static_cast<float>(std::max(g, 0.0) * u);
    }
    std::vector<double> y(static_cast<size_t>(d), 0.0);
    if (e.w.down_layout == DownLayout::transposed && exact_down) {
      for (int64_t j = 0; j < f; ++j)
        for (int64_t i = 0; i < d; ++i) y[i] += static_cast<double>(a[j]) * D[j * d + i];
    } else if (e.w.down_layout == DownLayout::transposed) {
      // D[j * d + i] = w_ji * d_j,b (b = i / 32): the block scale is D / integer, read back
      // from the row's block instead.
      const size_t bs = e.w.down.dtype == DType::q4_0 ? sizeof(block_q4_0) : sizeof(block_q8_0);
      for (int64_t j0 = 0; j0 < f; j0 += k_ffn_chunk) {
        const int64_t j1 = std::min(f, j0 + k_ffn_chunk);
        for (int64_t blk = 0; blk < d / 32; ++blk) {
          std::vector<float> c(static_cast<size_t>(j1 - j0));
          float amax = 0.0f;
          for (int64_t j = j0; j < j1; ++j) {
            uint16_t h;
            std::memcpy(&h, e.w.down.row(j) + blk * bs, 2);
            c[static_cast<size_t>(j - j0)] = a[j] * fp16_to_fp32(h);
            amax = std::max(amax, std::fabs(c[static_cast<size_t>(j - j0)]));
          }
          const float sc = amax / 127.0f, id = sc != 0.0f ? 1.0f / sc : 0.0f;
          for (int64_t j = j0; j < j1; ++j) {
            uint16_t h;
            std::memcpy(&h, e.w.down.row(j) + blk * bs, 2);
            const double dj = fp16_to_fp32(h);
            const double q = std::nearbyint(c[static_cast<size_t>(j - j0)] * id);
            for (int64_t i = blk * 32; i < blk * 32 + 32 && dj != 0.0; ++i)
              y[i] += q * sc * (static_cast<double>(D[j * d + i]) / dj);
          }
        }
      }
    } else {
      const auto aq = exact_down ? a : q8(a.data(), f);
      for (int64_t o = 0; o < d; ++o)
        for (int64_t j = 0; j < f; ++j) y[o] += static_cast<double>(D[o * f + j]) * aq[j];
    }
    for (int64_t i = 0; i < d; ++i) out[t * d + i] += static_cast<float>(b.route_w[t] * y[i]);
  }
  return out;
}

struct DtypeCase { DType gu, down; };
constexpr DtypeCase k_dtype_cases[] = {{DType::q4_0, DType::q4_0}, {DType::q8_0, DType::q8_0}, {DType::q4_0, DType::q8_0}};

// The tables of every ISA this host can run (a warning for the others).
std::vector<const KernelTable*> host_tables() {
  std::vector<const KernelTable*> out;
  for (Isa isa : k_all_isas) {
    if (const KernelTable* kt = kernels_for(isa)) {
      out.push_back(kt);
    } else {
      WARN("skipping ISA " << isa_name(isa) << ": host cannot run it");
    }
  }
  return out;
}

TEST_CASE("sparse expert FFN equals the dense one at forced inactivity", "[cpu][expert_ffn]") {
  SerialRunner serial;
  for (const KernelTable* kt : host_tables()) {
    const Isa isa = kt->isa;
    for (DownLayout layout : {DownLayout::standard, DownLayout::transposed}) {
      for (const DtypeCase& dc : k_dtype_cases) {
        for (double inactive : {0.0, 0.6, 0.99, 1.0}) {
          for (int64_t n_tok : {1, 4, 9}) {
            const TestExpert e(160, 224, dc.gu, dc.down, layout, inactive, false, 17 + n_tok);
            const Batch b(n_tok, 160, true, 5 + n_tok);
            ExpertFfnStats st;
            const auto dense = run(*kt, e, FfnMode::dense, b, serial);
            const auto sparse = run(*kt, e, FfnMode::sparse, b, serial, &st);
            INFO(isa_name(isa) << " layout " << (layout == DownLayout::transposed ? "transposed" : "standard") << " "
                               << dtype_name(dc.gu) << "/" << dtype_name(dc.down) << " inactive " << inactive
                               << " n_tok " << n_tok);
            CHECK(st.n_active == e.n_ff - e.n_inactive);
            CHECK(sparse == dense);  // inactive neurons add exact zeros
            if (n_tok == 4) CHECK(test::nmse(dense, reference(e, b)) < 1e-5);
            if (inactive == 1.0) CHECK(dense == b.acc);
          }
        }
      }
    }
  }
}

TEST_CASE("sparse expert FFN equals dense with per-token activity", "[cpu][expert_ffn]") {
  SerialRunner serial;
  const KernelTable& kt = kernels();
  for (DownLayout layout : {DownLayout::standard, DownLayout::transposed}) {
    for (int64_t n_tok : {1, 3, 9}) {
      const TestExpert e(96, 320, DType::q4_0, DType::q4_0, layout, 0.0, true, 99 + n_tok);
      const Batch b(n_tok, 96, false, 3);
      ExpertFfnStats st;
      const auto sparse = run(kt, e, FfnMode::sparse, b, serial, &st);
      CHECK(sparse == run(kt, e, FfnMode::dense, b, serial));
      CHECK(test::nmse(sparse, reference(e, b)) < 1e-5);
      CHECK(st.n_active > 0);
      CHECK(st.n_active <= e.n_ff);
    }
  }
}

TEST_CASE("sparse expert FFN: a batch computes up only where the gate is on, same bits as alone",
          "[cpu][expert_ffn]") {
  SerialRunner serial;
  for (const KernelTable* kt : host_tables()) {
    const Isa isa = kt->isa;
    for (DownLayout layout : {DownLayout::standard, DownLayout::transposed}) {
      for (int64_t n_tok : {2, 5, 9}) {
        INFO(isa_name(isa) << " n_tok " << n_tok << (layout == DownLayout::transposed ? " transposed" : " standard"));
        const TestExpert e(160, 320, DType::q4_0, DType::q4_0, layout, 0.0, true, 7 + n_tok);
        const Batch b(n_tok, 160, false, 11 + n_tok);
        std::vector<float> out = copy_of(b.acc);
        std::vector<uint32_t> on(static_cast<size_t>(e.n_ff), 0);
        ExpertFfnWorkspace ws;
        ExpertFfnStats st;
        REQUIRE(expert_ffn(*kt, e.w, FfnMode::sparse, b.view(out), ws, serial, &st, on.data()).ok());
        // Exactly the pairs with g > 0 (what the per-neuron activity counts), fewer than the
        // union's rows times the tokens.
        CHECK(st.n_up_pairs == std::accumulate(on.begin(), on.end(), int64_t{0}));
        CHECK(st.n_up_pairs < st.n_active * n_tok);
        CHECK(st.n_up_pairs > 0);
        if (layout == DownLayout::transposed) {
          // Each token alone: the very bits of its row of the batch.
          for (int64_t t = 0; t < n_tok; ++t) {
            std::vector<float> x1(b.x.begin() + t * 160, b.x.begin() + (t + 1) * 160);
            std::vector<float> acc1(b.acc.begin() + t * 160, b.acc.begin() + (t + 1) * 160);
            float rw1 = b.route_w[static_cast<size_t>(t)];
            ExpertFfnWorkspace ws1;
            REQUIRE(expert_ffn(*kt, e.w, FfnMode::sparse, ExpertFfnBatch{x1.data(), 160, 1, &rw1, acc1.data(), 160},
                               ws1, serial)
                        .ok());
            CHECK(std::equal(acc1.begin(), acc1.end(), out.begin() + t * 160));
          }
        }
        CHECK(test::nmse(out, reference(e, b)) < 1e-5);
      }
    }
  }
}

TEST_CASE("expert FFN is bit-identical across thread counts", "[cpu][expert_ffn]") {
  const KernelTable& kt = kernels();
  SerialRunner serial;
  // Let TBB start 3 threads even on a 2-core CI machine (its default cap is the core count).
  tbb::global_control allow(tbb::global_control::max_allowed_parallelism, 3);
  ThreadPool p1(1), p2(2), p3(3);
  for (DownLayout layout : {DownLayout::standard, DownLayout::transposed}) {
    for (FfnMode mode : {FfnMode::dense, FfnMode::sparse}) {
      const TestExpert e(1536, 768, DType::q4_0, DType::q4_0, layout, 0.6, false, 1);
      const Batch b(3, 1536, true, 2);
      const auto want = run(kt, e, mode, b, serial);
      CHECK(run(kt, e, mode, b, p1) == want);
      CHECK(run(kt, e, mode, b, p2) == want);
      CHECK(run(kt, e, mode, b, p3) == want);
      CHECK(test::nmse(want, reference(e, b)) < 1e-5);
    }
  }
}

TEST_CASE("expert FFN: the transposed down's 8-bit coefficients cost about what q8_0 activations do",
          "[cpu][expert_ffn]") {
  SerialRunner serial;
  const KernelTable& kt = kernels();
  double err[2] = {0, 0};
  for (int layout = 0; layout < 2; ++layout) {
    for (uint64_t seed = 1; seed <= 4; ++seed) {
      const TestExpert e(1536, 768, DType::q4_0, DType::q4_0, layout ? DownLayout::transposed : DownLayout::standard,
                         0.0, true, seed);
      const Batch b(2, 1536, false, seed + 10);
      const auto got = run(kt, e, FfnMode::sparse, b, serial);
      // Against exact down inputs; acc is subtracted out so that only the expert's y counts.
      const auto exact = reference(e, b, true);
      std::vector<float> dy(got.size()), dx(got.size());
      for (size_t i = 0; i < got.size(); ++i) {
        dy[i] = got[i] - b.acc[i];
        dx[i] = exact[i] - b.acc[i];
      }
      err[layout] += test::nmse(dy, dx) / 4;
    }
  }
  INFO("NMSE of the expert's output against exact down inputs: standard (q8_0 a) " << err[0]
                                                                                      << ", transposed (8-bit a * d) "
                                                                                      << err[1]);
  WARN("NMSE standard " << err[0] << " transposed " << err[1]);
  CHECK(err[1] < 4 * err[0]);
}

TEST_CASE("expert FFN rejects tensors that do not fit", "[cpu][expert_ffn]") {
  SerialRunner serial;
  TestExpert e(64, 64, DType::q4_0, DType::q4_0, DownLayout::standard, 0.5, false, 4);
  const Batch b(2, 64, true, 1);
  std::vector<float> out = copy_of(b.acc);
  ExpertFfnWorkspace ws;

  ExpertFfnWeights bad = e.w;
  bad.up.dtype = DType::f16;
  Status s = expert_ffn(kernels(), bad, FfnMode::sparse, b.view(out), ws, serial);
  CHECK(s.code() == ErrorCode::unsupported);
  CHECK(s.message().find("blk.0.ffn_up_exps.weight") != std::string::npos);

  bad = e.w;
  bad.down.ne = {32, 64, 1, 1};
  s = expert_ffn(kernels(), bad, FfnMode::dense, b.view(out), ws, serial);
  CHECK(s.code() == ErrorCode::invalid_argument);
  CHECK(s.message().find("ffn_down_exps") != std::string::npos);

  bad = e.w;
  bad.down_layout = DownLayout::transposed;  // square 64x64 fits either way: accepted
  CHECK(expert_ffn(kernels(), bad, FfnMode::dense, b.view(out), ws, serial).ok());
  out = copy_of(b.acc);

  ExpertFfnBatch nb = b.view(out);
  nb.x_stride = 10;
  CHECK(expert_ffn(kernels(), e.w, FfnMode::dense, nb, ws, serial).code() == ErrorCode::invalid_argument);
  CHECK(out == b.acc);
}

TEST_CASE("ThreadPool runs every chunk exactly once", "[cpu][thread_pool]") {
  for (int n : {1, 2, 3}) {
    ThreadPool pool(n);
    CHECK(pool.n_threads() == n);
    std::vector<int> hits(1000, 0);
    pool.parallel_for(1000, [&](int64_t c) { hits[c] += 1; });
    CHECK(std::all_of(hits.begin(), hits.end(), [](int h) { return h == 1; }));
    pool.parallel_for(0, [&](int64_t) { FAIL("called for an empty range"); });
  }
}

}  // namespace
}  // namespace tandem::cpu
