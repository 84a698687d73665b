// DType: the tensor element types Tandem reads and computes with, numbered exactly as
// ggml's `enum ggml_type` (ggml/include/ggml.h) so GGUF tensor-info ids map 1:1.
//
// Block layout (spec §3.6): a row of `ne0` elements is `ne0 / block_size` blocks of
// `type_size` bytes. `ne0` must be a multiple of block_size.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace tandem {

enum class DType : uint32_t {
  f32 = 0,
  f16 = 1,
  q4_0 = 2,
  q8_0 = 8,
  q4_K = 12,
  q6_K = 14,
  bf16 = 30,
};

struct DTypeTraits {
  DType dtype;
  std::string_view name;  // ggml's type name: "f32", "q4_0", "q4_K", ...
  int64_t block_size;     // elements per block
  size_t type_size;       // bytes per block
  bool is_quantized;
};

// Traits of a supported dtype; nullptr for a ggml id Tandem does not support.
const DTypeTraits* dtype_traits(uint32_t ggml_type);
const DTypeTraits& dtype_traits(DType dtype);

// ggml's name for any ggml type id, supported or not ("q5_1", "iq2_xs"); "unknown" if none.
std::string_view ggml_type_name(uint32_t ggml_type);

inline std::string_view dtype_name(DType d) { return dtype_traits(d).name; }
inline int64_t dtype_block_size(DType d) { return dtype_traits(d).block_size; }
inline size_t dtype_type_size(DType d) { return dtype_traits(d).type_size; }

// Parses a name as written on the command line ("q4_0", "Q4_0", "f16", "q4_k").
std::optional<DType> dtype_from_name(std::string_view name);

// Bytes of one row of `ne0` elements. Precondition: ne0 % block_size == 0.
inline size_t dtype_row_size(DType d, int64_t ne0) {
  const auto& t = dtype_traits(d);
  return static_cast<size_t>(ne0 / t.block_size) * t.type_size;
}

// GGUF `general.file_type` (llama.cpp's LlamaFileType) for a model stored mostly in `d`.
uint32_t llama_file_type(DType d);

}  // namespace tandem
