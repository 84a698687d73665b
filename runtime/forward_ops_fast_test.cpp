// The fast ops (forward_ops_fast.h) op by op against the plain ops (make_cpu_ops), the
// runtime's own reference set, for every ISA table the host can run.
#include "runtime/forward_ops_fast.h"

#include <catch2/catch.hpp>
#include <tbb/task_arena.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "core/fp16.h"
#include "core/quant_blocks.h"
#include "cpu/kernel_table.h"
#include "cpu/quants.h"
#include "runtime/forward_test_support.h"
#include "support/test_support.h"

using namespace tandem;

namespace {

struct Rng {
  uint64_t s;
  explicit Rng(uint64_t seed) : s(seed * 0x9E3779B97F4A7C15ull + 1) {}
  float uniform(float lo, float hi) {
    uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return lo + (hi - lo) * static_cast<float>(z >> 40) / 16777216.0f;
  }
};

std::vector<const cpu::KernelTable*> host_tables() {
  std::vector<const cpu::KernelTable*> r;
  for (cpu::Isa isa : {cpu::Isa::scalar, cpu::Isa::avx2, cpu::Isa::avx512, cpu::Isa::neon}) {
    const cpu::KernelTable* kt = cpu::kernels_for(isa);
    if (kt == nullptr) {
      if (isa != cpu::Isa::neon) WARN("ISA " << cpu::isa_name(isa) << " not available on this host: skipped");
      continue;
    }
    r.push_back(kt);
  }
  return r;
}

// A weight matrix (n rows of k) in `dt`, stored with a padded row stride.
struct Weight {
  std::vector<uint8_t> bytes;
  TensorView view;
  Weight(DType dt, int64_t k, int64_t n, uint64_t seed) {
    Rng rng(seed);
    const size_t rb = dtype_row_size(dt, k);
    const size_t stride = rb + 6;  // odd stride: rows at 2-byte alignment
    bytes.assign(stride * static_cast<size_t>(n) + 8, 0);
    std::vector<float> row(static_cast<size_t>(k));
    for (int64_t r = 0; r < n; ++r) {
      uint8_t* dst = bytes.data() + 2 + static_cast<size_t>(r) * stride;
      if (dt == DType::q4_K) {  // no quantizer for q4_K: random quants under sane scales
        for (int64_t b = 0; b < k / QK_K; ++b) {
          block_q4_K blk;
          blk.d = fp32_to_fp16(rng.uniform(0.001f, 0.02f));
          blk.dmin = fp32_to_fp16(rng.uniform(0.001f, 0.02f));
          for (auto& s : blk.scales) s = static_cast<uint8_t>(rng.uniform(0.0f, 255.0f));
          for (auto& q : blk.qs) q = static_cast<uint8_t>(rng.uniform(0.0f, 255.0f));
          std::memcpy(dst + static_cast<size_t>(b) * sizeof(blk), &blk, sizeof(blk));
        }
        continue;
      }
      for (auto& v : row) v = rng.uniform(-1.0f, 1.0f);
      REQUIRE(cpu::quantize_row(dt, row.data(), dst, k).ok());
    }
    view = TensorView::contiguous(bytes.data() + 2, dt, {k, n, 1, 1}, "test.weight");
    view.nb[1] = stride;
  }
};

std::vector<float> random_vec(size_t n, uint64_t seed, float lo = -1.0f, float hi = 1.0f) {
  Rng rng(seed);
  std::vector<float> v(n);
  for (auto& x : v) x = rng.uniform(lo, hi);
  return v;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

}  // namespace

TEST_CASE("fast mul_mat matches the plain op for every dtype and shape and ISA", "[forward_ops_fast]") {
  auto plain = make_cpu_ops();
  tbb::task_arena arena3(3);
  for (const cpu::KernelTable* kt : host_tables()) {
    auto fast = make_fast_cpu_ops(*kt);
    for (DType dt : {DType::q4_0, DType::q8_0, DType::f16, DType::bf16, DType::f32, DType::q4_K}) {
      // k below/at/above the 64-element pair and the 256 super-block; n around the 4-row tiles
      // and the row chunks (32 KiB of rows: 600 rows of 640 bytes are 13 chunks); m 1 (gemv)
      // and token tiles of 4 with tails.
      for (int64_t k : {32, 96, 160, 256}) {
        if (dt == DType::q4_K && k % QK_K != 0) continue;
        for (int64_t n : {1, 5, 33, 600}) {
          const Weight w(dt, k, n, static_cast<uint64_t>(k * 7 + n));
          for (int64_t m : {1, 2, 5}) {
            INFO("isa " << cpu::isa_name(kt->isa) << " " << dtype_name(dt) << " k " << k << " n " << n << " m " << m);
            const auto x = random_vec(static_cast<size_t>(m * k), static_cast<uint64_t>(m + k));
            std::vector<float> want(static_cast<size_t>(m * n)), got(want.size()), got3(want.size());
            REQUIRE(plain->mul_mat(w.view, x.data(), m, want.data()).ok());
            REQUIRE(fast->mul_mat(w.view, x.data(), m, got.data()).ok());
            // Same q8_0 activations and exact integer block dots: only f32 reassociation.
            CHECK(test::nmse(got, want) < 1e-11);
            arena3.execute([&] { REQUIRE(fast->mul_mat(w.view, x.data(), m, got3.data()).ok()); });
            CHECK(same_bits(got3, got));
            if (dt == DType::q4_K) CHECK(same_bits(got, want));  // the plain op runs it
          }
        }
      }
    }
    // A row of a batch equals the same row alone (gemm's token tiles vs gemv), for q4_0 and
    // q8_0 with k over several of the SIMD kernels' units (AVX-512 q4_0: 16 blocks, so 1056 =
    // 33 blocks is two whole units and a tail) and m over the 8-token tile with a tail of 1
    // (a lone token of a batch: the tile path) or 3.
    for (DType dt : {DType::q4_0, DType::q8_0}) {
      for (int64_t k : {int64_t{160}, int64_t{1056}}) {
        for (int64_t m : {int64_t{9}, int64_t{11}}) {
          INFO("isa " << cpu::isa_name(kt->isa) << " " << dtype_name(dt) << " k " << k << " m " << m);
          const Weight w(dt, k, 37, 3);
          const auto x = random_vec(static_cast<size_t>(m * k), 9);
          std::vector<float> all(static_cast<size_t>(m * 37)), one(37);
          REQUIRE(fast->mul_mat(w.view, x.data(), m, all.data()).ok());
          for (int64_t i = 0; i < m; ++i) {
            REQUIRE(fast->mul_mat(w.view, x.data() + i * k, 1, one.data()).ok());
            CHECK(std::memcmp(one.data(), all.data() + i * 37, sizeof(float) * 37) == 0);
          }
        }
      }
    }
    const Weight bad(DType::f32, 40, 3, 1);  // 40 is fine for f32; pretend it is q8_0
    TensorView v = bad.view;
    v.dtype = DType::q8_0;
    const auto x = random_vec(40, 9);
    std::vector<float> y(3);
    CHECK(fast->mul_mat(v, x.data(), 1, y.data()).code() == ErrorCode::invalid_argument);
  }
}

TEST_CASE("fast mul_mat_multi gives every job the bits of its own mul_mat", "[forward_ops_fast]") {
  tbb::task_arena arena3(3);
  for (const cpu::KernelTable* kt : host_tables()) {
    auto fast = make_fast_cpu_ops(*kt);
    // Four dtypes (q4_K runs on the plain op), jobs of several row chunks of different sizes
    // (364, 192 and 32 rows), one input shared by two jobs (as attn_k and attn_v share the
    // normed input), at one token and at five.
    const Weight wq4(DType::q4_0, 160, 600, 1), wq8(DType::q8_0, 160, 600, 2), wf32(DType::f32, 256, 100, 3),
        wk(DType::q4_K, 256, 17, 4);
    for (int64_t m : {1, 5}) {
      INFO("isa " << cpu::isa_name(kt->isa) << " m " << m);
      const auto x160 = random_vec(static_cast<size_t>(m * 160), 11, -2.0f, 2.0f);
      const auto x256 = random_vec(static_cast<size_t>(m * 256), 12, -2.0f, 2.0f);
      struct Case {
        const Weight* w;
        const std::vector<float>* x;
      };
      const Case cases[] = {{&wq4, &x160}, {&wq8, &x160}, {&wf32, &x256}, {&wk, &x256}};
      std::vector<std::vector<float>> want, got, got3;
      std::vector<MatMulJob> jobs, jobs3;
      for (const Case& c : cases) {
        const size_t n = static_cast<size_t>(m * c.w->view.ne[1]);
        want.emplace_back(n);
        REQUIRE(fast->mul_mat(c.w->view, c.x->data(), m, want.back().data()).ok());
        got.emplace_back(n, -1.0f);
        got3.emplace_back(n, -1.0f);
      }
      for (size_t i = 0; i < 4; ++i) {
        jobs.push_back({&cases[i].w->view, cases[i].x->data(), m, got[i].data()});
        jobs3.push_back({&cases[i].w->view, cases[i].x->data(), m, got3[i].data()});
      }
      REQUIRE(fast->mul_mat_multi(jobs).ok());
      arena3.execute([&] { REQUIRE(fast->mul_mat_multi(jobs3).ok()); });
      for (size_t i = 0; i < 4; ++i) {
        INFO("job " << i << " " << dtype_name(cases[i].w->view.dtype));
        CHECK(same_bits(got[i], want[i]));
        CHECK(same_bits(got3[i], want[i]));
      }
    }
    // A bad job is named in the error, wherever it sits in the list.
    const Weight bad(DType::f32, 40, 3, 1);
    TensorView v = bad.view;
    v.dtype = DType::q8_0;  // 40 is not a multiple of the q8_0 block
    v.name = "blk.3.attn_v.weight";
    const auto x = random_vec(160, 9);
    std::vector<float> y1(600), y2(3);
    const MatMulJob jobs[] = {{&wq4.view, x.data(), 1, y1.data()}, {&v, x.data(), 1, y2.data()}};
    const Status st = fast->mul_mat_multi(jobs);
    CHECK(st.code() == ErrorCode::invalid_argument);
    CHECK_THAT(std::string(st.message()), Catch::Matchers::Contains("blk.3.attn_v.weight"));
  }
}

TEST_CASE("fast rope reuses its cos/sin table only for the same positions, base and n_rot", "[forward_ops_fast]") {
  auto plain = make_cpu_ops();
  auto fast = make_fast_cpu_ops(*cpu::kernels_for(cpu::Isa::scalar));
  const int32_t pos_a[] = {3, 4, 5}, pos_b[] = {3, 4, 6}, pos_c[] = {3, 4};
  struct Call {
    const int32_t* pos;
    int64_t m, n_head, n_rot;
    float base;
  };
  // K then Q of one layer (same positions, other head counts), a new token, another base, a
  // smaller n_rot, fewer rows: every call must match a fresh op's answer.
  const Call calls[] = {{pos_a, 3, 2, 64, 1e4f},  {pos_a, 3, 6, 64, 1e4f}, {pos_b, 3, 2, 64, 1e4f},
                        {pos_b, 3, 2, 64, 1.5e6f}, {pos_b, 3, 2, 32, 1.5e6f}, {pos_c, 2, 2, 32, 1.5e6f},
                        {pos_a, 3, 2, 64, 1e4f}};
  for (size_t i = 0; i < std::size(calls); ++i) {
    const Call& c = calls[i];
    INFO("call " << i);
    auto x = random_vec(static_cast<size_t>(c.m * c.n_head * 64), 20 + i);
    auto y = x, z = x;
    fast->rope_neox(y.data(), c.pos, c.m, c.n_head, 64, c.n_rot, c.base);
    make_fast_cpu_ops(*cpu::kernels_for(cpu::Isa::scalar))->rope_neox(z.data(), c.pos, c.m, c.n_head, 64, c.n_rot, c.base);
    CHECK(same_bits(y, z));
    plain->rope_neox(x.data(), c.pos, c.m, c.n_head, 64, c.n_rot, c.base);
    CHECK(test::max_abs_diff(y, x) <= 1e-6);
  }
}

TEST_CASE("fast get_rows and rms_norm and rope match the plain ops", "[forward_ops_fast]") {
  auto plain = make_cpu_ops();
  for (const cpu::KernelTable* kt : host_tables()) {
    INFO("isa " << cpu::isa_name(kt->isa));
    auto fast = make_fast_cpu_ops(*kt);
    for (DType dt : {DType::q4_0, DType::q8_0, DType::f16, DType::f32}) {
      const Weight w(dt, 96, 11, 5);
      const int32_t ids[] = {0, 10, 3, 3};
      std::vector<float> a(4 * 96), b(4 * 96);
      REQUIRE(plain->get_rows(w.view, ids, 4, a.data()).ok());
      REQUIRE(fast->get_rows(w.view, ids, 4, b.data()).ok());
      CHECK(same_bits(a, b));
      const int32_t bad[] = {11};
      CHECK(fast->get_rows(w.view, bad, 1, b.data()).code() == ErrorCode::invalid_argument);
    }
    for (int64_t n : {1, 17, 64, 1536}) {
      for (int64_t m : {1, 9}) {
        const auto x = random_vec(static_cast<size_t>(m * n), 3, -3.0f, 3.0f);
        const auto wt = random_vec(static_cast<size_t>(n), 4);
        std::vector<float> a(x.size()), b(x.size());
        plain->rms_norm(x.data(), wt.data(), m, n, 1e-6f, a.data());
        fast->rms_norm(x.data(), wt.data(), m, n, 1e-6f, b.data());
        CHECK(test::max_abs_diff(b, a) <= 1e-5 * 3.0 * std::sqrt(static_cast<double>(n)));
        CHECK(test::nmse(b, a) < 1e-11);
      }
    }
    // Positions up to 5000 (where an f32 running product of angles would drift), n_rot < head_dim.
    const int32_t pos[] = {0, 1, 77, 4095, 4097, 5000};
    for (int64_t n_rot : {16, 64}) {
      auto x = random_vec(6 * 3 * 64, 8);
      auto y = x;
      plain->rope_neox(x.data(), pos, 6, 3, 64, n_rot, 1.5e6f);
      fast->rope_neox(y.data(), pos, 6, 3, 64, n_rot, 1.5e6f);
      CHECK(test::max_abs_diff(y, x) <= 1e-6);
    }
  }
}

TEST_CASE("fast attention matches the plain op on a KV cache", "[forward_ops_fast]") {
  auto plain = make_cpu_ops();
  ModelShape s;
  s.n_layer = 2;
  s.n_head = 6;
  s.n_head_kv = 2;
  s.n_embd_head_k = s.n_embd_head_v = 32;
  s.n_embd = 192;
  s.swa = true;
  s.swa_pattern = 2;  // layer 1 is a window layer
  s.n_swa = 40;
  for (DType type : {DType::f16, DType::f32}) {
    auto kv = KvCache::create(s, {300, 8, type});
    REQUIRE(kv.ok());
    for (uint32_t il = 0; il < 2; ++il) {
      const KvLayerView view = kv->layer(il);
      Rng rng(il + 1);
      const size_t n = static_cast<size_t>(view.n_cells) * view.cell_bytes;
      for (size_t i = 0; i < n / dtype_type_size(type); ++i) {
        const float kx = rng.uniform(-1, 1), vx = rng.uniform(-1, 1);
        if (type == DType::f16) {
          reinterpret_cast<uint16_t*>(view.k)[i] = fp32_to_fp16(kx);
          reinterpret_cast<uint16_t*>(view.v)[i] = fp32_to_fp16(vx);
        } else {
          reinterpret_cast<float*>(view.k)[i] = kx;
          reinterpret_cast<float*>(view.v)[i] = vx;
        }
      }
      // Queries at the end of a 290-position sequence (the window layer's ring holds 48).
      const int32_t pos[] = {282, 283, 284, 285, 286, 287, 288, 289};
      for (int64_t m : {1, 8}) {
        const int32_t* p = pos + (8 - m);
        const auto q = random_vec(static_cast<size_t>(m * 6 * 32), 7, -2.0f, 2.0f);
        std::vector<float> want(q.size()), got(q.size());
        plain->attention(q.data(), p, m, 6, view, 1.0f / std::sqrt(32.0f), want.data());
        for (const cpu::KernelTable* kt : host_tables()) {
          INFO("isa " << cpu::isa_name(kt->isa) << " type " << dtype_name(type) << " layer " << il << " m " << m);
          make_fast_cpu_ops(*kt)->attention(q.data(), p, m, 6, view, 1.0f / std::sqrt(32.0f), got.data());
          CHECK(test::max_abs_diff(got, want) <= 1e-6);
        }
      }
    }
  }
}

namespace {

struct MoeModel {
  test::TempDir dir;
  Model model;
  MoeModel(DType dt, bool transposed) : model(load(dir, dt, transposed)) {}
  static Model load(const test::TempDir& d, DType dt, bool transposed) {
    MakeModelOptions mo;
    mo.preset = "tiny";
    mo.dtype = dt;
    mo.transpose_down = transposed;
    auto m = testing::make_and_load(mo, d / "m.gguf");
    REQUIRE(m.ok());
    return std::move(*m);
  }
};

struct MoeRun {
  std::vector<float> out;
  std::vector<uint64_t> gate_active;
  std::vector<uint32_t> neurons;
};

MoeRun run_moe(ForwardOps& ops, const Model& model, const std::vector<float>& x, const std::vector<int32_t>& ids,
               const std::vector<float>& weights, int64_t n_rows) {
  const ModelShape& s = model.shape();
  const LayerWeights& lw = model.weights().layers[1];
  MoeArgs a;
  a.gate_exps = &lw.ffn_gate_exps;
  a.up_exps = &lw.ffn_up_exps;
  a.down_exps = &lw.ffn_down_exps;
  a.down_layout = s.down_layout;
  a.n_embd = s.n_embd;
  a.n_ff_exp = s.n_ff_exp;
  a.n_expert = s.n_expert;
  a.n_expert_used = s.n_expert_used;
  a.x = x.data();
  a.expert_ids = ids.data();
  a.weights = weights.data();
  a.n_rows = n_rows;
  MoeRun r;
  r.out.assign(static_cast<size_t>(n_rows * s.n_embd), 0.0f);
  r.gate_active.assign(s.n_expert, 0);
  r.neurons.assign(static_cast<size_t>(s.n_expert) * s.n_ff_exp, 0);
  a.gate_neuron_active = r.neurons.data();
  REQUIRE(ops.moe(a, r.out.data(), r.gate_active).ok());
  return r;
}

}  // namespace

TEST_CASE("fast moe matches the plain op with per-neuron counts in both down layouts", "[forward_ops_fast]") {
  auto plain = make_cpu_ops();
  for (DType dt : {DType::q4_0, DType::q8_0, DType::f32}) {
    for (bool transposed : {false, true}) {
      MoeModel mm(dt, transposed);
      const ModelShape& s = mm.model.shape();
      const int64_t n_rows = 11, k = s.n_expert_used;
      const auto x = random_vec(static_cast<size_t>(n_rows * s.n_embd), 21, -2.0f, 2.0f);
      std::vector<int32_t> ids;
      std::vector<float> w;
      for (int64_t i = 0; i < n_rows; ++i) {
        for (int64_t j = 0; j < k; ++j) {
          ids.push_back(static_cast<int32_t>((i * 3 + j * 5) % s.n_expert));  // expert 7 unused in some rows
          w.push_back(0.25f + 0.5f * static_cast<float>(j));
        }
      }
      const MoeRun want = run_moe(*plain, mm.model, x, ids, w, n_rows);
      for (const cpu::KernelTable* kt : host_tables()) {
        INFO("isa " << cpu::isa_name(kt->isa) << " " << dtype_name(dt) << (transposed ? " transposed" : " standard"));
        auto fast = make_fast_cpu_ops(*kt);
        const MoeRun got = run_moe(*fast, mm.model, x, ids, w, n_rows);
        CHECK(test::nmse(got.out, want.out) < 1e-10);
        CHECK(got.gate_active == want.gate_active);
        CHECK(got.neurons == want.neurons);
        // Rows alone give the same bits as in the batch (the sparse union of active neurons
        // only adds exact zeros).
        for (int64_t i : {int64_t{0}, n_rows - 1}) {
          const std::vector<float> xi(x.begin() + i * s.n_embd, x.begin() + (i + 1) * s.n_embd);
          const std::vector<int32_t> idi(ids.begin() + i * k, ids.begin() + (i + 1) * k);
          const std::vector<float> wi(w.begin() + i * k, w.begin() + (i + 1) * k);
          const MoeRun one = run_moe(*fast, mm.model, xi, idi, wi, 1);
          CHECK(std::memcmp(one.out.data(), got.out.data() + i * s.n_embd, sizeof(float) * s.n_embd) == 0);
        }
        // Counters: expert bytes from expert_ffn; the quantized transposed layout skips rows.
        fast->reset_counters();
        CHECK(fast->counters().weight_bytes == 0);
        run_moe(*fast, mm.model, x, ids, w, n_rows);
        const ForwardOpsCounters c = fast->counters();
        const uint64_t expert_dense = (mm.model.weights().layers[1].ffn_gate_exps.nbytes() +
                                       mm.model.weights().layers[1].ffn_up_exps.nbytes() +
                                       mm.model.weights().layers[1].ffn_down_exps.nbytes()) /
                                      s.n_expert;
        CHECK(c.expert_bytes == c.weight_bytes);
        CHECK(c.expert_bytes > 0);
        CHECK(c.expert_bytes <= expert_dense * s.n_expert);
      }
    }
  }
}

TEST_CASE("fast ops count the weight bytes of mul_mat and get_rows", "[forward_ops_fast]") {
  auto fast = make_fast_cpu_ops(cpu::kernels());
  const Weight w(DType::q4_0, 64, 10, 1);
  const auto x = random_vec(3 * 64, 2);
  std::vector<float> y(3 * 10);
  REQUIRE(fast->mul_mat(w.view, x.data(), 3, y.data()).ok());
  CHECK(fast->counters().weight_bytes == 10 * dtype_row_size(DType::q4_0, 64));
  const int32_t ids[] = {1, 2};
  std::vector<float> rows(2 * 64);
  REQUIRE(fast->get_rows(w.view, ids, 2, rows.data()).ok());
  CHECK(fast->counters().weight_bytes == 12 * dtype_row_size(DType::q4_0, 64));
  CHECK(fast->counters().expert_bytes == 0);
  fast->reset_counters();
  CHECK(fast->counters().weight_bytes == 0);
  CHECK(std::string(fast->name()).find(cpu::isa_name(cpu::kernels().isa)) != std::string::npos);
}
