// GgufFile: a read-only, memory-mapped GGUF v3 file (spec §3.1; ggml/src/gguf.cpp).
//
// open() maps the whole file (no copy of tensor data) and validates everything before
// returning: every length, count, offset and size against the file size and for overflow;
// n_dims <= 4; ne products; ne0 a multiple of the dtype's block size; known dtypes only
// (F32 F16 BF16 Q8_0 Q4_0 Q4_K Q6_K; others -> "unsupported dtype <ggml name>" naming the
// tensor); no nested arrays; no duplicate keys or tensor names; `general.alignment` a
// power of two (default 32); tensor data inside the file, aligned, contiguous in file order
// (offset_i == sum_{j<i} align_up(nbytes_j, alignment), as llama.cpp requires).
// Every error names the file, what is wrong, where (key or tensor name) and the byte offset.
//
// Metadata getters are type-strict like llama.cpp's loader: get_u32("x") fails with a clear
// error when "x" is stored as, say, INT32. Thread-safe for concurrent reads after open().
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <variant>
#include <vector>

#include "core/dtype.h"
#include "core/status.h"
#include "core/tensor_view.h"
#include "runtime/mapped_file.h"

namespace tandem {

// GGUF metadata value types (gguf_type), on-disk ids.
enum class GgufType : uint32_t {
  uint8 = 0, int8 = 1, uint16 = 2, int16 = 3, uint32 = 4, int32 = 5, float32 = 6,
  boolean = 7, string = 8, array = 9, uint64 = 10, int64 = 11, float64 = 12,
};
std::string_view gguf_type_name(GgufType t);

// One metadata value. Arrays hold elements of one non-array type.
struct GgufValue {
  GgufType type = GgufType::uint32;
  GgufType array_type = GgufType::uint8;  // element type when type == array
  // Scalars: the alternative matching `type` (bool for boolean). Arrays: a vector of it.
  std::variant<uint8_t, int8_t, uint16_t, int16_t, uint32_t, int32_t, float, bool, std::string,
               uint64_t, int64_t, double,
               std::vector<uint8_t>, std::vector<int8_t>, std::vector<uint16_t>,
               std::vector<int16_t>, std::vector<uint32_t>, std::vector<int32_t>,
               std::vector<float>, std::vector<bool>, std::vector<std::string>,
               std::vector<uint64_t>, std::vector<int64_t>, std::vector<double>>
      value;
  size_t array_size() const;  // 0 for scalars
};

// The GgufType that stores C++ scalar type T in a GgufValue (bool -> boolean, std::string ->
// string, float -> float32, ...).
template <class T>
constexpr GgufType gguf_type_of() {
  if constexpr (std::is_same_v<T, uint8_t>) return GgufType::uint8;
  else if constexpr (std::is_same_v<T, int8_t>) return GgufType::int8;
  else if constexpr (std::is_same_v<T, uint16_t>) return GgufType::uint16;
  else if constexpr (std::is_same_v<T, int16_t>) return GgufType::int16;
  else if constexpr (std::is_same_v<T, uint32_t>) return GgufType::uint32;
  else if constexpr (std::is_same_v<T, int32_t>) return GgufType::int32;
  else if constexpr (std::is_same_v<T, float>) return GgufType::float32;
  else if constexpr (std::is_same_v<T, bool>) return GgufType::boolean;
  else if constexpr (std::is_same_v<T, std::string>) return GgufType::string;
  else if constexpr (std::is_same_v<T, uint64_t>) return GgufType::uint64;
  else if constexpr (std::is_same_v<T, int64_t>) return GgufType::int64;
  else {
    static_assert(std::is_same_v<T, double>, "not a GGUF scalar type");
    return GgufType::float64;
  }
}

// A scalar value of the matching type: gguf_scalar(uint32_t{7}), gguf_scalar(std::string("x")).
template <class T>
GgufValue gguf_scalar(T v) {
  GgufValue g;
  g.type = gguf_type_of<T>();
  g.value = std::move(v);
  return g;
}

// An array value of the matching element type.
template <class T>
GgufValue gguf_array(std::vector<T> v) {
  GgufValue g;
  g.type = GgufType::array;
  g.array_type = gguf_type_of<T>();
  g.value = std::move(v);
  return g;
}

struct GgufKv {
  std::string key;
  GgufValue value;
  uint64_t offset = 0;  // byte offset of the key in the file (for error messages)
};

struct GgufTensorInfo {
  std::string name;
  DType dtype = DType::f32;
  uint32_t n_dims = 0;
  std::array<int64_t, 4> ne = {1, 1, 1, 1};  // ggml order, unused dims = 1
  uint64_t offset = 0;       // relative to the data section
  uint64_t nbytes = 0;
  uint64_t file_offset = 0;  // absolute byte offset of the data in the file
  uint64_t info_offset = 0;  // absolute byte offset of this tensor info (for error messages)
};

class GgufFile {
 public:
  // load: mapped (default) or read into anonymous huge-page memory (runtime/mapped_file.h).
  static Result<GgufFile> open(const std::filesystem::path& path, FileLoad load = FileLoad::mmap);
  // Parses an in-memory image (fuzzing, tests); `data` must outlive the object.
  static Result<GgufFile> parse(std::span<const uint8_t> data, std::string display_name);

  GgufFile(GgufFile&&) noexcept;
  GgufFile& operator=(GgufFile&&) noexcept;
  ~GgufFile();

  const std::filesystem::path& path() const;
  uint32_t version() const;
  uint32_t alignment() const;
  uint64_t data_offset() const;  // absolute offset of the data section
  uint64_t file_size() const;

  const std::vector<GgufKv>& kvs() const;
  const GgufKv* find_kv(std::string_view key) const;
  bool has_key(std::string_view key) const { return find_kv(key) != nullptr; }

  // Type-strict getters: not_found when absent, invalid_file when the stored type differs.
  Result<uint32_t> get_u32(std::string_view key) const;
  Result<int32_t> get_i32(std::string_view key) const;
  Result<uint64_t> get_u64(std::string_view key) const;
  Result<float> get_f32(std::string_view key) const;
  Result<bool> get_bool(std::string_view key) const;
  Result<std::string> get_string(std::string_view key) const;
  Result<std::vector<std::string>> get_string_array(std::string_view key) const;
  Result<std::vector<int32_t>> get_i32_array(std::string_view key) const;
  Result<std::vector<float>> get_f32_array(std::string_view key) const;
  // llama.cpp "key or array": a UINT32 scalar, or an array of n UINT32/INT32 values.
  Result<std::vector<uint32_t>> get_u32_or_array(std::string_view key, size_t n) const;

  const std::vector<GgufTensorInfo>& tensors() const;
  const GgufTensorInfo* find_tensor(std::string_view name) const;
  // View of a tensor's bytes inside the mapping (valid while this object lives).
  TensorView tensor_view(const GgufTensorInfo& info) const;
  std::span<const uint8_t> tensor_bytes(const GgufTensorInfo& info) const;

  // The whole mapping (for zero-copy import into a GPU and for content hashing).
  std::span<const uint8_t> mapping() const;
  // True when mapping() is the file's own pages (open() with FileLoad::mmap): what streaming
  // experts needs, since it drops them and reads the file again. False for a copy or parse().
  bool file_backed() const;

 private:
  struct Impl;
  explicit GgufFile(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Round up to a power-of-two alignment.
inline uint64_t gguf_align_up(uint64_t x, uint64_t alignment) {
  return (x + alignment - 1) & ~(alignment - 1);
}

}  // namespace tandem
