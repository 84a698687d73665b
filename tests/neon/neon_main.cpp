// Dependency-free test runner for aarch64 under qemu: the NEON kernel table against the
// scalar one (cpu/kernel_table_check.h, the same checks the Catch2 suite runs on x86), and
// the sparse/dense expert FFN on the NEON table. Exit code 0 only when everything passes.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "cpu/cpu_features.h"
#include "cpu/expert_ffn.h"
#include "cpu/kernel_table.h"
#include "cpu/kernel_table_check.h"

using namespace tandem;
using namespace tandem::cpu;

namespace {

int g_failures = 0;

void expect(bool ok, const char* what) {
  std::printf("%s %s\n", ok ? "PASS" : "FAIL", what);
  if (!ok) ++g_failures;
}

double nmse(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    num += (static_cast<double>(a[i]) - b[i]) * (static_cast<double>(a[i]) - b[i]);
    den += static_cast<double>(b[i]) * b[i];
  }
  return den > 0 ? num / den : num;
}

// Random q4_0 expert (mixed per-token activity) through the FFN on one table.
std::vector<float> run_ffn(const KernelTable& kt, DownLayout layout, FfnMode mode, int64_t n_tok, int64_t* n_active) {
  const int64_t d = 160, f = 224;
  check::Rng rng(42);
  const size_t gr = dtype_row_size(DType::q4_0, d);
  std::vector<uint8_t> gate(gr * f), up(gr * f), down(gr * f);
  for (int64_t j = 0; j < f; ++j) {
    check::fill_row(DType::q4_0, d, gate.data() + j * gr, rng);
    check::fill_row(DType::q4_0, d, up.data() + j * gr, rng);
  }
  const int64_t dn0 = layout == DownLayout::transposed ? d : f, dn1 = layout == DownLayout::transposed ? f : d;
  const size_t dr = dtype_row_size(DType::q4_0, dn0);
  down.resize(dr * dn1);
  for (int64_t r = 0; r < dn1; ++r) check::fill_row(DType::q4_0, dn0, down.data() + r * dr, rng);
  ExpertFfnWeights w;
  w.gate = TensorView::contiguous(gate.data(), DType::q4_0, {d, f, 1, 1}, "gate");
  w.up = TensorView::contiguous(up.data(), DType::q4_0, {d, f, 1, 1}, "up");
  w.down = TensorView::contiguous(down.data(), DType::q4_0, {dn0, dn1, 1, 1}, "down");
  w.down_layout = layout;
  std::vector<float> x(static_cast<size_t>(n_tok * d)), rw(static_cast<size_t>(n_tok)), acc(x.size(), 0.25f);
  for (auto& v : x) v = rng.uniform(-1.0f, 1.0f);
  for (auto& v : rw) v = rng.uniform(0.1f, 0.9f);
  ExpertFfnWorkspace ws;
  ExpertFfnStats st;
  const Status s = expert_ffn(kt, w, mode, ExpertFfnBatch{x.data(), d, n_tok, rw.data(), acc.data(), d}, ws,
                              SerialRunner(), &st);
  if (!s.ok()) {
    std::printf("expert_ffn: %s\n", s.message().c_str());
    ++g_failures;
  }
  if (n_active) *n_active = st.n_active;
  return acc;
}

}  // namespace

int main() {
  const CpuFeatures& f = cpu_features();
  std::printf("cpu: %s; features: %s; best isa: %s\n", cpu_model_name().c_str(), f.summary().c_str(),
              std::string(isa_name(best_isa())).c_str());
  expect(f.supports(Isa::neon), "host (qemu) reports asimd + asimddp + fphp");
  if (const char* cap = std::getenv("TANDEM_MAX_ISA")) {
    expect(std::string(isa_name(kernels().isa)) == cap, "TANDEM_MAX_ISA caps kernels()");
  } else {
    expect(kernels().isa == Isa::neon, "kernels() is the neon table");
  }
  const KernelTable* scalar = kernels_for(Isa::scalar);
  const KernelTable* neon = kernels_for(Isa::neon);
  if (!neon || !scalar) {
    std::printf("FAIL no neon table\n");
    return 1;
  }
  const check::Report rep = check::check_table(*neon, *scalar, 7);
  for (const auto& s : rep.failures) std::printf("  %s\n", s.c_str());
  std::printf("kernel checks: %lld\n", static_cast<long long>(rep.checks));
  expect(rep.failures.empty() && rep.checks > 10000, "neon kernel table matches scalar");

  for (DownLayout layout : {DownLayout::standard, DownLayout::transposed}) {
    for (int64_t n_tok : {1, 5}) {
      int64_t n_active = 0;
      const auto sparse = run_ffn(*neon, layout, FfnMode::sparse, n_tok, &n_active);
      const auto dense = run_ffn(*neon, layout, FfnMode::dense, n_tok, nullptr);
      const auto ref = run_ffn(*scalar, layout, FfnMode::dense, n_tok, nullptr);
      std::printf("ffn layout=%s n_tok=%lld active=%lld/224 nmse=%.3g\n",
                  layout == DownLayout::transposed ? "transposed" : "standard", static_cast<long long>(n_tok),
                  static_cast<long long>(n_active), nmse(dense, ref));
      expect(sparse == dense, "sparse expert FFN == dense (neon)");
      expect(nmse(dense, ref) < 1e-6, "neon expert FFN ~ scalar expert FFN");
      expect(n_active > 0 && n_active < 224, "mixed activity");
    }
  }
  std::printf("%s: %d failure(s)\n", g_failures ? "FAILED" : "OK", g_failures);
  return g_failures ? 1 : 0;
}
