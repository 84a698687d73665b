// TensorView: a non-owning view of a tensor in ggml layout.
//
// Shape is in ggml `ne` order: ne[0] is the contiguous (fastest) dimension, so a weight with
// ne = [in, out] holds `out` rows of `in` elements (HF nn.Linear [out, in] row-major).
// nb[i] are strides in bytes: nb[0] = type_size, nb[1] = row_size(ne0), nb[i] = nb[i-1]*ne[i-1]
// for contiguous tensors. Unused trailing dims have ne = 1.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "core/dtype.h"

namespace tandem {

// How each row's bytes are laid out: as ggml (and the file) has them, or repacked for the CPU
// kernels by runtime/convert.h repack_for_cpu (dtype stays q4_0, row size unchanged; formats in
// cpu/quants.h): q4_0x16 (rows that are dotted with activations, ne0 % 512 == 0) and q4_0_split
// (transposed expert down rows). Only the fast CPU ops (make_fast_cpu_ops on a table with
// prefer_q4_0x16) read repacked rows; other readers reject them.
enum class RowLayout : uint8_t { ggml, q4_0x16, q4_0_split };
inline const char* row_layout_name(RowLayout l) {
  return l == RowLayout::ggml ? "ggml" : l == RowLayout::q4_0x16 ? "q4_0x16" : "q4_0_split";
}

struct TensorView {
  const void* data = nullptr;
  DType dtype = DType::f32;
  std::array<int64_t, 4> ne = {1, 1, 1, 1};
  std::array<size_t, 4> nb = {0, 0, 0, 0};
  std::string_view name;  // GGUF tensor name when the view comes from a file
  RowLayout layout = RowLayout::ggml;

  static TensorView contiguous(const void* data, DType dtype, std::array<int64_t, 4> ne,
                               std::string_view name = {}) {
    TensorView v;
    v.data = data;
    v.dtype = dtype;
    v.ne = ne;
    v.name = name;
    v.nb[0] = dtype_type_size(dtype);
    v.nb[1] = dtype_row_size(dtype, ne[0]);
    v.nb[2] = v.nb[1] * static_cast<size_t>(ne[1]);
    v.nb[3] = v.nb[2] * static_cast<size_t>(ne[2]);
    return v;
  }

  int64_t nelements() const { return ne[0] * ne[1] * ne[2] * ne[3]; }
  int64_t nrows() const { return ne[1] * ne[2] * ne[3]; }
  size_t row_size() const { return dtype_row_size(dtype, ne[0]); }
  size_t nbytes() const { return row_size() * static_cast<size_t>(nrows()); }

  // Row i1 of matrix (i2, i3).
  const uint8_t* row(int64_t i1, int64_t i2 = 0, int64_t i3 = 0) const {
    return static_cast<const uint8_t*>(data) + static_cast<size_t>(i1) * nb[1] +
           static_cast<size_t>(i2) * nb[2] + static_cast<size_t>(i3) * nb[3];
  }

  // The 2-D matrix at index i2 of a 3-D tensor (e.g. expert e of `ffn_up_exps`).
  TensorView slice2(int64_t i2) const {
    TensorView v = *this;
    v.data = row(0, i2);
    v.ne[2] = 1;
    v.ne[3] = 1;
    return v;
  }
};

// Mutable f32 matrix view used for activations: `rows` rows of `cols` floats, `stride`
// floats apart (math order X[rows, cols], i.e. ggml ne = [cols, rows]).
struct MatF32 {
  float* data = nullptr;
  int64_t rows = 0;
  int64_t cols = 0;
  int64_t stride = 0;
  float* row(int64_t r) const { return data + r * stride; }
};

}  // namespace tandem
