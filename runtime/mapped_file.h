// MappedFile: a whole file's bytes in memory, read-only, valid until the object is destroyed
// (moving it keeps them valid). An empty file gives an empty span.
//   FileLoad::mmap (default): mapped (POSIX mmap, MAP_PRIVATE, PROT_READ, MADV_RANDOM since
//     weights are read by expert, not sequentially). No copy; pages fault in from the page
//     cache on first use and stay evictable.
//   FileLoad::read: read whole (pread, 64 MiB at a time) into an anonymous mapping advised
//     MADV_HUGEPAGE, then made read-only, and the file's page cache dropped (POSIX_FADV_DONTNEED)
//     so the bytes are not held twice. llama.cpp's --no-mmap, plus transparent huge pages: with
//     2 MiB pages one TLB entry covers a whole 4b expert matrix, where 4 KiB file pages need
//     hundreds (4b q4_0 generation +10-25% on this project's CI machine, bench/RESULTS.md). All
//     of it is resident (RSS = file size) and cannot be dropped page by page (no streaming).
// Errors: not_found (no such file), io_error (open/stat/mmap/read failed, the file ended
// early, or no memory for the copy); each names the path and the OS reason.
#pragma once

#include <cstdint>
#include <filesystem>
#include <span>

#include "core/status.h"

namespace tandem {

enum class FileLoad { mmap, read };

class MappedFile {
 public:
  static Result<MappedFile> open(const std::filesystem::path& path, FileLoad load = FileLoad::mmap);

  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile();

  std::span<const uint8_t> bytes() const { return {data_, size_}; }
  uint64_t size() const { return size_; }
  // True when the bytes are the file's pages (FileLoad::mmap), false when they are a copy.
  bool file_backed() const { return file_backed_; }

 private:
  MappedFile(const uint8_t* data, size_t size, bool file_backed)
      : data_(data), size_(size), file_backed_(file_backed) {}
  void reset();
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  bool file_backed_ = true;
};

}  // namespace tandem
