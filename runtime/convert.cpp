#include "runtime/convert.h"

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <new>
#include <string>
#include <system_error>
#include <unordered_map>

#include <sys/mman.h>
#include <unistd.h>

#include "cpu/quants.h"
#include "runtime/gguf_writer.h"

namespace tandem {
namespace {

bool writable_dtype(DType d) {
  return d == DType::f32 || d == DType::f16 || d == DType::bf16 || d == DType::q8_0 || d == DType::q4_0;
}

// Why a model cannot be converted, or ok.
Status check_convertible(const Model& model) {
  const ModelShape& s = model.shape();
  const std::string file = model.file().path().string();
  if (s.down_layout == DownLayout::transposed) {
    return make_error(ErrorCode::invalid_argument, "{}: ffn_down_exps is already transposed ([n_embd, n_ff_exp, n_expert])",
                      file);
  }
  if (s.n_ff_exp == s.n_embd) {
    return make_error(ErrorCode::invalid_argument,
                      "{}: n_ff_exp == n_embd ({}): the transposed ffn_down_exps would have the standard shape and "
                      "loaders would read it as standard",
                      file, s.n_embd);
  }
  for (const LayerWeights& l : model.weights().layers) {
    const TensorView& d = l.ffn_down_exps;
    if (!writable_dtype(d.dtype)) {
      return make_error(ErrorCode::unsupported, "{}: tensor '{}' is {}; the converter writes f32, f16, bf16, q8_0, q4_0",
                        file, d.name, dtype_name(d.dtype));
    }
    if (s.n_embd % dtype_block_size(d.dtype) != 0) {
      return make_error(ErrorCode::unsupported, "{}: tensor '{}': n_embd {} is not a multiple of the {} block size {}",
                        file, d.name, s.n_embd, dtype_name(d.dtype), dtype_block_size(d.dtype));
    }
  }
  return {};
}

struct ErrorSums {
  double num = 0.0, den = 0.0;
};

// One expert: `src` holds n_embd rows of n_ff (standard); `dst` receives n_ff rows of n_embd.
// Rows are independent, so they are done in parallel; the error sums are reduced in row order
// so that the reported figure does not depend on the thread count.
ErrorSums transpose_expert(const uint8_t* src, DType dtype, int64_t n_embd, int64_t n_ff, uint8_t* dst) {
  std::vector<float> a(static_cast<size_t>(n_embd * n_ff));  // (n_embd, n_ff) row-major
  const size_t src_row = dtype_row_size(dtype, n_ff);
  const size_t dst_row = dtype_row_size(dtype, n_embd);
  tbb::parallel_for(tbb::blocked_range<int64_t>(0, n_embd, 16), [&](const tbb::blocked_range<int64_t>& r) {
    for (int64_t i = r.begin(); i < r.end(); ++i) {
      cpu::dequantize_row(dtype, src + static_cast<size_t>(i) * src_row, a.data() + i * n_ff, n_ff);
    }
  });
  std::vector<double> num(static_cast<size_t>(n_ff)), den(static_cast<size_t>(n_ff));
  tbb::parallel_for(tbb::blocked_range<int64_t>(0, n_ff, 8), [&](const tbb::blocked_range<int64_t>& r) {
    std::vector<float> row(static_cast<size_t>(n_embd)), back(static_cast<size_t>(n_embd));
    for (int64_t j = r.begin(); j < r.end(); ++j) {
      for (int64_t i = 0; i < n_embd; ++i) row[static_cast<size_t>(i)] = a[static_cast<size_t>(i * n_ff + j)];
      uint8_t* out = dst + static_cast<size_t>(j) * dst_row;
      // Checked by check_convertible: the dtype is writable and n_embd whole blocks.
      (void)cpu::quantize_row(dtype, row.data(), out, n_embd);
      cpu::dequantize_row(dtype, out, back.data(), n_embd);
      double nu = 0.0, de = 0.0;
      for (int64_t i = 0; i < n_embd; ++i) {
        const double w = row[static_cast<size_t>(i)];
        const double e = back[static_cast<size_t>(i)] - w;
        nu += e * e;
        de += w * w;
      }
      num[static_cast<size_t>(j)] = nu;
      den[static_cast<size_t>(j)] = de;
    }
  });
  ErrorSums s;
  for (int64_t j = 0; j < n_ff; ++j) {
    s.num += num[static_cast<size_t>(j)];
    s.den += den[static_cast<size_t>(j)];
  }
  return s;
}

bool same_file(const std::filesystem::path& a, const std::filesystem::path& b) {
  std::error_code ec;
  if (std::filesystem::equivalent(a, b, ec)) return true;
  return std::filesystem::weakly_canonical(a, ec) == std::filesystem::weakly_canonical(b, ec) && !ec;
}

}  // namespace

TransposedDown::~TransposedDown() {
  for (Buffer& b : buffers) ::operator delete[](b.data, std::align_val_t{64});
}

Result<ConvertStats> convert_transpose_down(const std::filesystem::path& in, const std::filesystem::path& out,
                                            const ConvertProgress& progress) {
  if (same_file(in, out)) {
    return make_error(ErrorCode::invalid_argument, "convert: the output {} is the input file", out.string());
  }
  TANDEM_ASSIGN_OR_RETURN(Model model, Model::load(in));
  TANDEM_RETURN_IF_ERROR(check_convertible(model));
  const GgufFile& f = model.file();
  const ModelShape& s = model.shape();

  std::unordered_map<std::string, uint32_t> down_layer;  // tensor name -> layer
  for (uint32_t il = 0; il < s.n_layer; ++il) down_layer[std::string(model.weights().layers[il].ffn_down_exps.name)] = il;

  TANDEM_ASSIGN_OR_RETURN(GgufWriter w, GgufWriter::create(out, f.alignment()));
  for (const GgufKv& kv : f.kvs()) {
    if (kv.key == "general.alignment") continue;  // the writer writes it from create()
    TANDEM_RETURN_IF_ERROR(w.set(kv.key, kv.value));
  }
  uint64_t total = 0;
  for (const GgufTensorInfo& t : f.tensors()) {
    std::array<int64_t, 4> ne = t.ne;
    if (down_layer.count(t.name) != 0) ne = {s.n_embd, s.n_ff_exp, s.n_expert, 1};
    TANDEM_RETURN_IF_ERROR(w.add_tensor(t.name, t.dtype, ne, t.n_dims));
    total += t.nbytes;  // the transposed tensor has the same size: same element count and block
  }
  TANDEM_RETURN_IF_ERROR(w.begin_data());

  ConvertStats stats;
  ErrorSums err;
  uint64_t done = 0;
  for (const GgufTensorInfo& t : f.tensors()) {
    auto it = down_layer.find(t.name);
    if (it == down_layer.end()) {
      TANDEM_RETURN_IF_ERROR(w.write_tensor_data(f.tensor_bytes(t)));
      ++stats.n_tensors_copied;
    } else {
      const TensorView& src = model.weights().layers[it->second].ffn_down_exps;
      uint32_t e = 0;
      TANDEM_RETURN_IF_ERROR(w.write_tensor_data_chunked([&](std::vector<uint8_t>& chunk) -> Status {
        chunk.resize(src.nb[2]);
        const ErrorSums es = transpose_expert(src.row(0, e), src.dtype, s.n_embd, s.n_ff_exp, chunk.data());
        err.num += es.num;
        err.den += es.den;
        ++e;
        if (progress) progress(done + static_cast<uint64_t>(e) * src.nb[2], total);
        return {};
      }));
      ++stats.n_tensors_converted;
    }
    done += t.nbytes;
    if (progress) progress(done, total);
  }
  TANDEM_RETURN_IF_ERROR(w.finish());
  stats.bytes_written = w.bytes_written();
  stats.down_weight_nmse = err.den > 0 ? err.num / err.den : 0.0;
  return stats;
}

Result<std::unique_ptr<TransposedDown>> transpose_down_in_memory(const Model& model) {
  TANDEM_RETURN_IF_ERROR(check_convertible(model));
  auto t = std::make_unique<TransposedDown>();
  t->shape = model.shape();
  t->shape.down_layout = DownLayout::transposed;
  t->weights = model.weights();
  const ModelShape& s = model.shape();
  ErrorSums err;
  for (LayerWeights& l : t->weights.layers) {
    const TensorView src = l.ffn_down_exps;
    const size_t bytes = src.nbytes();
    auto* data = static_cast<uint8_t*>(::operator new[](bytes, std::align_val_t{64}, std::nothrow));
    if (data == nullptr) {
      return make_error(ErrorCode::out_of_memory, "transpose-down: cannot allocate {} bytes for '{}'", bytes, src.name);
    }
    t->buffers.push_back({data, bytes});
    for (int64_t e = 0; e < s.n_expert; ++e) {
      const ErrorSums es = transpose_expert(src.row(0, e), src.dtype, s.n_embd, s.n_ff_exp, data + static_cast<size_t>(e) * src.nb[2]);
      err.num += es.num;
      err.den += es.den;
    }
    l.ffn_down_exps = TensorView::contiguous(data, src.dtype, {s.n_embd, s.n_ff_exp, s.n_expert, 1}, src.name);
  }
  t->down_weight_nmse = err.den > 0 ? err.num / err.den : 0.0;
  return t;
}

CpuRepack::~CpuRepack() {
  for (const Buffer& b : buffers) ::munmap(b.map, b.map_bytes);
}

namespace {

bool contiguous(const TensorView& t) {
  return t.nb[1] == t.row_size() && t.nb[2] == t.nb[1] * static_cast<size_t>(t.ne[1]) &&
         t.nb[3] == t.nb[2] * static_cast<size_t>(t.ne[2]);
}

// MADV_DONTNEED on the whole pages inside [p, p + n) (advice only: a failure changes nothing).
void drop_pages(const void* p, size_t n) {
  const auto page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const auto a = reinterpret_cast<uintptr_t>(p);
  const uintptr_t lo = (a + page - 1) / page * page, hi = (a + n) / page * page;
  if (hi > lo) ::madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_DONTNEED);
}

}  // namespace

namespace {

bool x16_ok(const TensorView& t) {
  return t.data != nullptr && t.dtype == DType::q4_0 && t.layout == RowLayout::ggml &&
         t.ne[0] % cpu::k_q4_0x16_elems == 0 && contiguous(t);
}

// bytes in a new anonymous mapping, 2 MiB aligned and advised for transparent huge pages
// before the first touch (so the kernel can back it with them).
Result<uint8_t*> alloc_repack(CpuRepack& r, size_t bytes, const TensorView& t) {
  constexpr size_t huge = size_t{2} << 20;
  const size_t len = (bytes + huge - 1) / huge * huge;
  void* map = ::mmap(nullptr, len + huge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (map == MAP_FAILED) {
    return make_error(ErrorCode::out_of_memory, "repack: cannot map {} bytes for '{}': {}", len + huge, t.name,
                      std::strerror(errno));
  }
  r.buffers.push_back({map, len + huge});
  const auto a = reinterpret_cast<uintptr_t>(map);
  auto* dst = reinterpret_cast<uint8_t*>((a + huge - 1) / huge * huge);
  (void)::madvise(dst, len, MADV_HUGEPAGE);  // best effort: THP may be "never"
  r.bytes += bytes;
  return dst;
}

// t's rows rewritten as q4_0x16 into a new buffer (x16_ok(t)).
Status repack_x16(CpuRepack& r, TensorView& t, bool drop_source) {
  TANDEM_ASSIGN_OR_RETURN(uint8_t* dst, alloc_repack(r, t.nbytes(), t));
  const size_t rb = t.row_size();
  const auto* src = static_cast<const uint8_t*>(t.data);
  // In slices of about 16 MiB, each slice's source dropped once it is copied: a large tensor
  // (a tied token_embd, 131 MB at the 4b shapes) then never has both copies resident.
  const int64_t n = t.nrows(), slice = std::max<int64_t>(1024, static_cast<int64_t>((size_t{16} << 20) / rb));
  for (int64_t s0 = 0; s0 < n; s0 += slice) {
    const int64_t s1 = std::min(n, s0 + slice);
    tbb::parallel_for(tbb::blocked_range<int64_t>(s0, s1, 1024), [&](const tbb::blocked_range<int64_t>& range) {
      for (int64_t i = range.begin(); i < range.end(); ++i)
        cpu::repack_row_q4_0x16(src + static_cast<size_t>(i) * rb, dst + static_cast<size_t>(i) * rb, t.ne[0]);
    });
    if (drop_source) drop_pages(src + static_cast<size_t>(s0) * rb, static_cast<size_t>(s1 - s0) * rb);
  }
  if (drop_source) drop_pages(t.data, t.nbytes());  // the pages the slices' edges shared
  t.data = dst;
  t.layout = RowLayout::q4_0x16;
  ++r.n_q4_0x16;
  return Status::success();
}

}  // namespace

Result<std::unique_ptr<CpuRepack>> repack_for_cpu(const ModelShape& shape, const ModelWeights& weights,
                                                  const CpuRepackOptions& options) {
  auto r = std::make_unique<CpuRepack>();
  r->weights = weights;
  const bool drop = options.drop_source;
  for (LayerWeights& l : r->weights.layers) {
    TensorView& up = l.ffn_up_exps;
    TensorView& down = l.ffn_down_exps;
    if (options.q4_0x16) {
      for (TensorView* t : {&l.attn_q, &l.attn_k, &l.attn_v, &l.attn_output, &l.ffn_gate_exps}) {
        if (x16_ok(*t)) TANDEM_RETURN_IF_ERROR(repack_x16(*r, *t, drop));
      }
    }
    if (shape.down_layout != DownLayout::transposed || up.data == nullptr || down.data == nullptr ||
        up.dtype != down.dtype || up.ne != down.ne || !contiguous(up) || !contiguous(down) ||
        up.layout != RowLayout::ggml || down.layout != RowLayout::ggml) {
      if (options.q4_0x16 && x16_ok(up)) TANDEM_RETURN_IF_ERROR(repack_x16(*r, up, drop));
      continue;
    }
    const size_t rb = up.row_size();
    const int64_t rows = up.nrows();
    const bool up_x16 = options.q4_0x16 && x16_ok(up);
    const bool down_split = options.q4_0x16 && down.dtype == DType::q4_0;
    TANDEM_ASSIGN_OR_RETURN(uint8_t* dst, alloc_repack(*r, 2 * rb * static_cast<size_t>(rows), up));
    const auto* u = static_cast<const uint8_t*>(up.data);
    const auto* d = static_cast<const uint8_t*>(down.data);
    tbb::parallel_for(tbb::blocked_range<int64_t>(0, rows, 4096), [&](const tbb::blocked_range<int64_t>& range) {
      for (int64_t i = range.begin(); i < range.end(); ++i) {
        uint8_t* o = dst + 2 * static_cast<size_t>(i) * rb;
        if (up_x16) {
          cpu::repack_row_q4_0x16(u + static_cast<size_t>(i) * rb, o, up.ne[0]);
        } else {
          std::memcpy(o, u + static_cast<size_t>(i) * rb, rb);
        }
        if (down_split) {
          cpu::repack_row_q4_0_split(d + static_cast<size_t>(i) * rb, o + rb, down.ne[0]);
        } else {
          std::memcpy(o + rb, d + static_cast<size_t>(i) * rb, rb);
        }
      }
    });
    if (drop) {
      drop_pages(up.data, up.nbytes());
      drop_pages(down.data, down.nbytes());
    }
    for (TensorView* t : {&up, &down}) {
      t->data = t == &up ? dst : dst + rb;
      t->nb[1] = 2 * rb;
      t->nb[2] = t->nb[1] * static_cast<size_t>(t->ne[1]);
      t->nb[3] = t->nb[2] * static_cast<size_t>(t->ne[2]);
    }
    if (up_x16) {
      up.layout = RowLayout::q4_0x16;
      ++r->n_q4_0x16;
    }
    if (down_split) {
      down.layout = RowLayout::q4_0_split;
      ++r->n_q4_0_split;
    }
    ++r->n_layers;
  }
  TensorView& out = r->weights.output;
  TensorView& embd = r->weights.token_embd;
  if (options.q4_0x16 && out.data == embd.data) {
    // Tied: one copy serves both, the head's GEMV and get_rows (which unpacks each row).
    if (x16_ok(embd)) {
      TANDEM_RETURN_IF_ERROR(repack_x16(*r, embd, drop));
      out = embd;
    }
  } else if (options.q4_0x16 && x16_ok(out)) {
    TANDEM_RETURN_IF_ERROR(repack_x16(*r, out, drop));
  }
  return r;
}

namespace {

std::vector<float> dequantize_matrix(const TensorView& w, int64_t expert) {
  const TensorView m = w.slice2(expert);
  std::vector<float> out(static_cast<size_t>(m.ne[0] * m.ne[1]));
  for (int64_t r = 0; r < m.ne[1]; ++r) cpu::dequantize_row(m.dtype, m.row(r), out.data() + r * m.ne[0], m.ne[0]);
  return out;
}

// splitmix64 -> unit-variance uniform, so inputs are reproducible from the seed.
float unit_uniform(uint64_t seed, uint64_t i) {
  uint64_t x = seed * 0x9e3779b97f4a7c15ull + i + 1;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  x ^= x >> 31;
  const float u = (static_cast<float>(x >> 40) + 0.5f) * (1.0f / 16777216.0f);
  return (2.0f * u - 1.0f) * 1.7320508f;
}

}  // namespace

Result<double> expert_output_nmse(const ModelShape& ss, const ModelWeights& sw, const ModelShape& ts,
                                  const ModelWeights& tw, uint32_t n_tokens, uint64_t seed) {
  if (ss.down_layout != DownLayout::standard || ts.down_layout != DownLayout::transposed) {
    return make_error(ErrorCode::invalid_argument, "expert_output_nmse: expected a standard and a transposed model");
  }
  if (ss.n_layer != ts.n_layer || ss.n_embd != ts.n_embd || ss.n_ff_exp != ts.n_ff_exp || ss.n_expert != ts.n_expert ||
      sw.layers.size() != ss.n_layer || tw.layers.size() != ts.n_layer) {
    return make_error(ErrorCode::invalid_argument, "expert_output_nmse: the two models have different shapes");
  }
  const int64_t d = ss.n_embd, ff = ss.n_ff_exp;
  std::vector<float> x(static_cast<size_t>(n_tokens) * static_cast<size_t>(d));
  for (size_t i = 0; i < x.size(); ++i) x[i] = unit_uniform(seed, i);
  const size_t n_items = static_cast<size_t>(ss.n_layer) * ss.n_expert;
  std::vector<double> num(n_items), den(n_items);
  tbb::parallel_for(size_t{0}, n_items, [&](size_t item) {
    const auto il = static_cast<uint32_t>(item / ss.n_expert);
    const auto e = static_cast<int64_t>(item % ss.n_expert);
    const LayerWeights& L = sw.layers[il];
    const std::vector<float> gate = dequantize_matrix(L.ffn_gate_exps, e);   // (ff, d)
    const std::vector<float> up = dequantize_matrix(L.ffn_up_exps, e);       // (ff, d)
    const std::vector<float> ds = dequantize_matrix(L.ffn_down_exps, e);     // (d, ff)
    const std::vector<float> dt = dequantize_matrix(tw.layers[il].ffn_down_exps, e);  // (ff, d)
    std::vector<double> h(static_cast<size_t>(ff)), y_t(static_cast<size_t>(d));
    double nu = 0.0, de = 0.0;
    for (uint32_t t = 0; t < n_tokens; ++t) {
      const float* xt = x.data() + static_cast<size_t>(t) * static_cast<size_t>(d);
      for (int64_t j = 0; j < ff; ++j) {
        double g = 0.0, u = 0.0;
        for (int64_t i = 0; i < d; ++i) {
          g += static_cast<double>(gate[static_cast<size_t>(j * d + i)]) * xt[i];
          u += static_cast<double>(up[static_cast<size_t>(j * d + i)]) * xt[i];
        }
        h[static_cast<size_t>(j)] = g > 0.0 ? g * u : 0.0;
      }
      std::fill(y_t.begin(), y_t.end(), 0.0);
      for (int64_t j = 0; j < ff; ++j) {
        const double hj = h[static_cast<size_t>(j)];
        if (hj == 0.0) continue;
        for (int64_t i = 0; i < d; ++i) y_t[static_cast<size_t>(i)] += dt[static_cast<size_t>(j * d + i)] * hj;
      }
      for (int64_t i = 0; i < d; ++i) {
        double y_s = 0.0;
        for (int64_t j = 0; j < ff; ++j) y_s += ds[static_cast<size_t>(i * ff + j)] * h[static_cast<size_t>(j)];
        const double diff = y_t[static_cast<size_t>(i)] - y_s;
        nu += diff * diff;
        de += y_s * y_s;
      }
    }
    num[item] = nu;
    den[item] = de;
  });
  double nu = 0.0, de = 0.0;
  for (size_t i = 0; i < n_items; ++i) {
    nu += num[i];
    de += den[i];
  }
  return de > 0.0 ? nu / de : 0.0;
}

}  // namespace tandem
