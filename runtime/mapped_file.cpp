#include "runtime/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <algorithm>
#include <cstring>
#include <utility>

namespace tandem {

namespace {

// The whole file into an anonymous mapping advised for transparent huge pages (FileLoad::read).
Result<std::pair<const uint8_t*, size_t>> read_whole(const std::filesystem::path& path, int fd, size_t size) {
  void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    return make_error(ErrorCode::io_error, "{}: cannot allocate {} bytes to read the model into (--no-mmap): {}",
                      path.string(), size, std::strerror(errno));
  }
  (void)::madvise(p, size, MADV_HUGEPAGE);  // best effort: THP may be off ("never")
  auto* dst = static_cast<uint8_t*>(p);
  size_t done = 0;
  while (done < size) {
    const size_t want = std::min<size_t>(size - done, size_t{64} << 20);
    const ssize_t n = ::pread(fd, dst + done, want, static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int err = errno;
      ::munmap(p, size);
      return make_error(ErrorCode::io_error, "{}: read failed at byte {} of {}: {}", path.string(), done, size,
                        n == 0 ? "unexpected end of file" : std::strerror(err));
    }
    done += static_cast<size_t>(n);
  }
  (void)::mprotect(p, size, PROT_READ);
  (void)::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);  // the copy is what we keep
  return std::pair<const uint8_t*, size_t>{dst, size};
}

}  // namespace

Result<MappedFile> MappedFile::open(const std::filesystem::path& path, FileLoad load) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    return make_error(err == ENOENT ? ErrorCode::not_found : ErrorCode::io_error,
                      "{}: cannot open: {}", path.string(), std::strerror(err));
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    return make_error(ErrorCode::io_error, "{}: cannot stat: {}", path.string(),
                      std::strerror(err));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return make_error(ErrorCode::io_error, "{}: not a regular file", path.string());
  }
  const auto size = static_cast<size_t>(st.st_size);
  if (size == 0) {
    ::close(fd);
    return MappedFile(nullptr, 0, load == FileLoad::mmap);  // mmap rejects length 0: an empty span
  }
  if (load == FileLoad::read) {
    auto r = read_whole(path, fd, size);
    ::close(fd);
    if (!r.ok()) return r.status();
    return MappedFile(r->first, r->second, false);
  }
  void* p = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  const int err = errno;
  ::close(fd);  // the mapping keeps its own reference to the file
  if (p == MAP_FAILED) {
    return make_error(ErrorCode::io_error, "{}: cannot mmap {} bytes: {}", path.string(), size,
                      std::strerror(err));
  }
  // Expert weights are touched in router order, not file order: read-ahead would waste I/O.
  (void)::madvise(p, size, MADV_RANDOM);
  return MappedFile(static_cast<const uint8_t*>(p), size, true);
}

MappedFile::MappedFile(MappedFile&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)),
      file_backed_(other.file_backed_) {}

MappedFile& MappedFile::operator=(MappedFile&& other) noexcept {
  if (this != &other) {
    reset();
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
    file_backed_ = other.file_backed_;
  }
  return *this;
}

MappedFile::~MappedFile() {
  reset();
}

void MappedFile::reset() {
  if (data_ != nullptr) ::munmap(const_cast<uint8_t*>(data_), size_);
  data_ = nullptr;
  size_ = 0;
}

}  // namespace tandem
