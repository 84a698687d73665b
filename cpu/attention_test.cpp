#include "cpu/attention.h"

#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <vector>

#include "core/fp16.h"
#include "core/model_shape.h"
#include "cpu/kernel_table_check.h"
#include "cpu/reference/ops.h"

using namespace tandem;
using namespace tandem::cpu;

namespace {

struct Case {
  int64_t head_dim, n_head, n_head_kv;
  int64_t n_pos;   // positions written so far (the last query sits at n_pos - 1)
  int64_t m;       // query rows: positions n_pos - m .. n_pos - 1 (a ubatch)
  int64_t window;  // 0 = full attention
  DType type;
};

// Below, at and above the 256-position chunk; windows that cut the cache; odd head counts
// and head dims; GQA 1, 2, 3, 6; f16 and f32 cells.
const Case k_cases[] = {
    {16, 1, 1, 1, 1, 0, DType::f32},     {16, 3, 1, 5, 1, 0, DType::f16},
    {24, 3, 3, 7, 3, 0, DType::f32},     {128, 12, 2, 255, 1, 0, DType::f16},
    {128, 12, 2, 256, 1, 0, DType::f16}, {128, 12, 2, 257, 1, 0, DType::f32},
    {40, 6, 2, 600, 2, 0, DType::f16},   {16, 4, 2, 300, 1, 7, DType::f16},
    {16, 4, 2, 300, 5, 7, DType::f32},   {32, 5, 5, 700, 1, 256, DType::f16},
    {32, 2, 1, 700, 3, 300, DType::f16}, {16, 9, 3, 520, 9, 257, DType::f32},
    {64, 4, 4, 40, 40, 0, DType::f16},   {16, 2, 2, 530, 12, 0, DType::f32},
};

struct Setup {
  Case c;
  int64_t n_cells = 0;
  std::vector<float> kd, vd;  // (n_pos, n_head_kv, head_dim): every position, as stored (f16-rounded)
  std::vector<uint8_t> k, v;  // the ring the kernel reads
  std::vector<float> q;       // (m, n_head, head_dim)
  std::vector<int32_t> pos;
  AttentionKv kv;

  explicit Setup(const Case& cs, uint64_t seed) : c(cs) {
    check::Rng rng(seed);
    const int64_t w = c.n_head_kv * c.head_dim;
    // Window layers hold window + ubatch - 1 positions (a ring that really wraps), full ones all.
    n_cells = c.window ? std::min(c.n_pos, c.window + c.m - 1) : c.n_pos;
    kd.resize(static_cast<size_t>(c.n_pos * w));
    vd.resize(kd.size());
    for (auto& x : kd) x = rng.uniform(-1.0f, 1.0f);
    for (auto& x : vd) x = rng.uniform(-1.0f, 1.0f);
    if (c.type == DType::f16) {
      for (auto& x : kd) x = fp16_to_fp32(fp32_to_fp16(x));
      for (auto& x : vd) x = fp16_to_fp32(fp32_to_fp16(x));
    }
    const size_t es = dtype_type_size(c.type);
    const size_t cell = static_cast<size_t>(w) * es;
    k.assign(static_cast<size_t>(n_cells) * cell, 0xFF);  // stale cells read as NaN if touched
    v.assign(k.size(), 0xFF);
    for (int64_t p = std::max<int64_t>(0, c.n_pos - n_cells); p < c.n_pos; ++p) {
      for (int64_t e = 0; e < w; ++e) {
        const size_t at = static_cast<size_t>(p % n_cells) * cell + static_cast<size_t>(e) * es;
        const float kx = kd[static_cast<size_t>(p * w + e)], vx = vd[static_cast<size_t>(p * w + e)];
        if (c.type == DType::f16) {
          const uint16_t hk = fp32_to_fp16(kx), hv = fp32_to_fp16(vx);
          std::memcpy(&k[at], &hk, 2);
          std::memcpy(&v[at], &hv, 2);
        } else {
          std::memcpy(&k[at], &kx, 4);
          std::memcpy(&v[at], &vx, 4);
        }
      }
    }
    q.resize(static_cast<size_t>(c.m * c.n_head * c.head_dim));
    for (auto& x : q) x = rng.uniform(-2.0f, 2.0f);
    for (int64_t i = 0; i < c.m; ++i) pos.push_back(static_cast<int32_t>(c.n_pos - c.m + i));
    kv = AttentionKv{k.data(), v.data(), c.type, n_cells, c.n_head_kv, c.head_dim, cell, c.window};
  }

  AttentionArgs args(std::vector<float>& out) const {
    out.assign(q.size(), -1.0f);
    return AttentionArgs{q.data(), pos.data(), c.m, c.n_head,
                         static_cast<float>(1.0 / std::sqrt(static_cast<double>(c.head_dim))), out.data()};
  }

  // cpu::reference::attention_head over every stored position (its mask does causal + window).
  std::vector<float> expected() const {
    ModelShape s;
    s.n_embd_head_k = s.n_embd_head_v = static_cast<uint32_t>(c.head_dim);
    s.swa = c.window > 0;
    s.swa_pattern = 4;  // layer 1 is a window layer
    s.n_swa = static_cast<uint32_t>(c.window);
    const uint32_t il = 1;
    const int64_t w = c.n_head_kv * c.head_dim;
    const int64_t n_gqa = c.n_head / c.n_head_kv;
    std::vector<float> out(q.size());
    for (int64_t i = 0; i < c.m; ++i) {
      for (int64_t h = 0; h < c.n_head; ++h) {
        const int64_t hk = h / n_gqa;
        const reference::RowsF32 kr{kd.data() + hk * c.head_dim, c.n_pos, c.head_dim, w};
        const reference::RowsF32 vr{vd.data() + hk * c.head_dim, c.n_pos, c.head_dim, w};
        const size_t at = static_cast<size_t>((i * c.n_head + h) * c.head_dim);
        reference::attention_head(s, il, pos[static_cast<size_t>(i)],
                                  std::span<const float>(q).subspan(at, static_cast<size_t>(c.head_dim)), kr, vr,
                                  std::span<float>(out).subspan(at, static_cast<size_t>(c.head_dim)));
      }
    }
    return out;
  }
};

std::vector<const KernelTable*> host_tables() {
  std::vector<const KernelTable*> r;
  for (Isa isa : {Isa::scalar, Isa::avx2, Isa::avx512, Isa::neon}) {
    const KernelTable* kt = kernels_for(isa);
    if (kt == nullptr) {
      if (isa != Isa::neon) WARN("ISA " << isa_name(isa) << " not available on this host: skipped");
      continue;
    }
    r.push_back(kt);
  }
  return r;
}

}  // namespace

TEST_CASE("attention matches the reference for every host ISA", "[cpu][attention]") {
  const ThreadPool pool(3);
  for (const KernelTable* kt : host_tables()) {
    for (size_t ci = 0; ci < std::size(k_cases); ++ci) {
      const Case& c = k_cases[ci];
      INFO("isa " << isa_name(kt->isa) << " case " << ci << ": hd " << c.head_dim << " heads " << c.n_head << "/"
                  << c.n_head_kv << " n_pos " << c.n_pos << " m " << c.m << " window " << c.window << " "
                  << dtype_name(c.type));
      const Setup st(c, 100 + ci);
      std::vector<float> got;
      const SerialRunner serial;
      REQUIRE(attention(*kt, st.kv, st.args(got), serial).ok());
      const auto want = st.expected();
      double worst = 0.0;
      for (size_t e = 0; e < want.size(); ++e) worst = std::max(worst, std::abs(double{got[e]} - want[e]));
      INFO("max |fast - reference| " << worst);
      CHECK(worst <= 1e-6);  // measured 8.2e-8

      // Bit-identical on 3 threads.
      std::vector<float> threaded;
      REQUIRE(attention(*kt, st.kv, st.args(threaded), pool).ok());
      CHECK(std::memcmp(threaded.data(), got.data(), got.size() * sizeof(float)) == 0);
    }
  }
}

TEST_CASE("attention: a row's output does not depend on the batch it came in", "[cpu][attention]") {
  // Rows alone take the decode path (chunks as tasks), in a batch of 9 the prompt path (one
  // task per row and kv head); both must give the same bits, also across chunk boundaries.
  const ThreadPool pool(2);
  for (const KernelTable* kt : host_tables()) {
    const Case c{32, 6, 2, 800, 9, 0, DType::f16};
    const Setup batch(c, 5);
    std::vector<float> all;
    REQUIRE(attention(*kt, batch.kv, batch.args(all), pool).ok());
    const int64_t row = c.n_head * c.head_dim;
    for (int64_t i = 0; i < c.m; ++i) {
      AttentionArgs one{batch.q.data() + i * row, batch.pos.data() + i, 1, c.n_head, 1.0f / std::sqrt(32.0f), nullptr};
      std::vector<float> out(static_cast<size_t>(row));
      one.out = out.data();
      REQUIRE(attention(*kt, batch.kv, one, pool).ok());
      INFO("isa " << isa_name(kt->isa) << " row " << i);
      CHECK(std::memcmp(out.data(), all.data() + i * row, out.size() * sizeof(float)) == 0);
    }
  }
}

TEST_CASE("attention rejects bad shapes and positions without writing", "[cpu][attention]") {
  const Case c{16, 4, 2, 20, 1, 8, DType::f16};
  Setup st(c, 3);
  const SerialRunner serial;
  std::vector<float> out;
  AttentionArgs a = st.args(out);
  AttentionKv kv = st.kv;

  kv.type = DType::q8_0;
  CHECK(attention(kernels(), kv, a, serial).code() == ErrorCode::unsupported);
  kv = st.kv;
  a.n_head = 3;  // not a multiple of n_head_kv = 2
  CHECK(attention(kernels(), kv, a, serial).code() == ErrorCode::invalid_argument);
  a = st.args(out);
  kv.n_swa = 0;  // a full layer needs 20 positions, the ring holds 8
  const Status s = attention(kernels(), kv, a, serial);
  CHECK(s.code() == ErrorCode::invalid_argument);
  CHECK(s.message().find("position 19") != std::string::npos);
  kv = st.kv;
  const int32_t neg = -1;
  a.pos = &neg;
  CHECK(attention(kernels(), kv, a, serial).code() == ErrorCode::invalid_argument);
  kv.cell_bytes = 8;
  a = st.args(out);
  CHECK(attention(kernels(), kv, a, serial).code() == ErrorCode::invalid_argument);
  for (float x : out) CHECK(x == -1.0f);
}
