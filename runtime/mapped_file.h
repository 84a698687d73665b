// MappedFile: a whole file mapped read-only into memory (POSIX mmap, MAP_PRIVATE, PROT_READ,
// MADV_RANDOM since weights are read by expert, not sequentially). No copy is made; the bytes
// stay valid until the object is destroyed (moving it keeps them valid). An empty file maps to
// an empty span. Errors: not_found (no such file), io_error (open/stat/mmap failed), each
// naming the path and the OS reason.
#pragma once

#include <cstdint>
#include <filesystem>
#include <span>

#include "core/status.h"

namespace tandem {

class MappedFile {
 public:
  static Result<MappedFile> open(const std::filesystem::path& path);

  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile();

  std::span<const uint8_t> bytes() const { return {data_, size_}; }
  uint64_t size() const { return size_; }

 private:
  MappedFile(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  void reset();
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace tandem
