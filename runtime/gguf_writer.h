// GgufWriter: streams a GGUF v3 file tensor by tensor (a 12 GB model never sits in memory).
//
// Usage: add every metadata key and every tensor *info* (name, dtype, ne) first, then
// begin_data() writes header + metadata + tensor infos (offsets computed from the infos,
// contiguous, each padded to `general.alignment`, default 32), then write_tensor_data() is
// called once per tensor in the order added (or with a callback), then finish().
// Files written this way load in llama.cpp unchanged: same key types, alignment, ordered
// contiguous offsets, `general.alignment` written only when it is not 32.
// All failures (I/O, order violations, size mismatches) come back as Status.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/status.h"
#include "runtime/gguf_file.h"

namespace tandem {

class GgufWriter {
 public:
  static Result<GgufWriter> create(const std::filesystem::path& path, uint32_t alignment = 32);
  GgufWriter(GgufWriter&&) noexcept;
  GgufWriter& operator=(GgufWriter&&) noexcept;
  ~GgufWriter();  // an unfinished file is removed

  // Metadata (before begin_data). Duplicate keys -> invalid_argument.
  Status set(const std::string& key, GgufValue value);
  Status set_u32(const std::string& key, uint32_t v);
  Status set_i32(const std::string& key, int32_t v);
  Status set_f32(const std::string& key, float v);
  Status set_bool(const std::string& key, bool v);
  Status set_string(const std::string& key, std::string v);
  Status set_string_array(const std::string& key, std::vector<std::string> v);
  Status set_i32_array(const std::string& key, std::vector<int32_t> v);
  Status set_f32_array(const std::string& key, std::vector<float> v);

  // Tensor infos (before begin_data); ne in ggml order, ne0 % block_size == 0.
  Status add_tensor(const std::string& name, DType dtype, std::array<int64_t, 4> ne, uint32_t n_dims);

  Status begin_data();
  // Data for the next tensor in order; bytes.size() must equal its nbytes.
  Status write_tensor_data(std::span<const uint8_t> bytes);
  // Data for the next tensor produced in pieces: `fill(chunk)` is called repeatedly to append
  // bytes until nbytes are written (lets a maker generate one expert at a time).
  Status write_tensor_data_chunked(const std::function<Status(std::vector<uint8_t>& chunk)>& next_chunk);
  Status finish();  // checks every tensor was written, flushes, fsyncs, renames into place

  uint64_t bytes_written() const;

 private:
  struct Impl;
  explicit GgufWriter(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace tandem
