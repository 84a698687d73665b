// GGUF reader. Layout and checks follow ggml/src/gguf.cpp (gguf_init_from_file_impl) and
// llama.cpp's loader; every count and length read from the file is checked against the bytes
// that remain before it is used, so a hostile file can neither crash us nor make us allocate
// more than a small multiple of its own size.
#include "runtime/gguf_file.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <limits>
#include <unordered_map>
#include <utility>

#include "runtime/mapped_file.h"

namespace tandem {

static_assert(std::endian::native == std::endian::little,
              "GGUF is little-endian; big-endian hosts need byte swaps");

std::string_view gguf_type_name(GgufType t) {
  switch (t) {
    case GgufType::uint8:
      return "uint8";
    case GgufType::int8:
      return "int8";
    case GgufType::uint16:
      return "uint16";
    case GgufType::int16:
      return "int16";
    case GgufType::uint32:
      return "uint32";
    case GgufType::int32:
      return "int32";
    case GgufType::float32:
      return "float32";
    case GgufType::boolean:
      return "bool";
    case GgufType::string:
      return "string";
    case GgufType::array:
      return "array";
    case GgufType::uint64:
      return "uint64";
    case GgufType::int64:
      return "int64";
    case GgufType::float64:
      return "float64";
  }
  return "unknown";
}

size_t GgufValue::array_size() const {
  if (type != GgufType::array) return 0;
  return std::visit(
      [](const auto& v) -> size_t {
        using V = std::decay_t<decltype(v)>;
        if constexpr (requires { v.size(); } && !std::is_same_v<V, std::string>) {
          return v.size();
        } else {
          return 0;
        }
      },
      value);
}

namespace {

constexpr uint32_t k_default_alignment = 32;
constexpr uint32_t k_max_name = 64;  // GGML_MAX_NAME: names must be shorter (NUL included)

// Calls f(std::type_identity<T>{}) with the C++ type of scalar GGUF type t; false when t is
// not a scalar type (array or unknown id).
template <class F>
bool with_scalar_type(uint32_t t, F&& f) {
  switch (static_cast<GgufType>(t)) {
    case GgufType::uint8:
      f(std::type_identity<uint8_t>{});
      return true;
    case GgufType::int8:
      f(std::type_identity<int8_t>{});
      return true;
    case GgufType::uint16:
      f(std::type_identity<uint16_t>{});
      return true;
    case GgufType::int16:
      f(std::type_identity<int16_t>{});
      return true;
    case GgufType::uint32:
      f(std::type_identity<uint32_t>{});
      return true;
    case GgufType::int32:
      f(std::type_identity<int32_t>{});
      return true;
    case GgufType::float32:
      f(std::type_identity<float>{});
      return true;
    case GgufType::boolean:
      f(std::type_identity<bool>{});
      return true;
    case GgufType::string:
      f(std::type_identity<std::string>{});
      return true;
    case GgufType::uint64:
      f(std::type_identity<uint64_t>{});
      return true;
    case GgufType::int64:
      f(std::type_identity<int64_t>{});
      return true;
    case GgufType::float64:
      f(std::type_identity<double>{});
      return true;
    case GgufType::array:
      return false;
  }
  return false;
}

// Bytes one element of scalar type T occupies on disk at least (strings: their u64 length).
template <class T>
constexpr uint64_t min_disk_size() {
  if constexpr (std::is_same_v<T, std::string>)
    return 8;
  else if constexpr (std::is_same_v<T, bool>)
    return 1;
  else
    return sizeof(T);
}

std::string format_ne(const GgufTensorInfo& t) {
  std::string s = "[";
  for (uint32_t i = 0; i < t.n_dims; ++i) s += fmt::format("{}{}", i ? ", " : "", t.ne[i]);
  return s + "]";
}

// A bounds-checked cursor over the image; every failure names the file, the byte offset
// and what was being read.
class Reader {
 public:
  Reader(std::span<const uint8_t> data, const std::string& name) : data_(data), name_(name) {}

  uint64_t pos() const { return pos_; }
  uint64_t remaining() const { return data_.size() - pos_; }
  void seek(uint64_t p) { pos_ = p; }
  const uint8_t* here() const { return data_.data() + pos_; }

  Status truncated(std::string_view what, uint64_t need) const {
    return make_error(
        ErrorCode::invalid_file,
        "{}: truncated file: need {} bytes for {} at byte {}, but the file ends at byte {}", name_,
        need, what, pos_, data_.size());
  }

  template <class T>
  Status read(T& out, std::string_view what) {
    static_assert(std::is_trivially_copyable_v<T>);
    if (remaining() < sizeof(T)) return truncated(what, sizeof(T));
    std::memcpy(&out, data_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return {};
  }

  Status read(bool& out, std::string_view what) {
    uint8_t b = 0;
    TANDEM_RETURN_IF_ERROR(read(b, what));
    out = b != 0;
    return {};
  }

  Status read(std::string& out, std::string_view what) {
    const uint64_t at = pos_;
    uint64_t len = 0;
    TANDEM_RETURN_IF_ERROR(read(len, fmt::format("the length of {}", what)));
    if (len > remaining()) {
      return make_error(ErrorCode::invalid_file,
                        "{}: {} at byte {} has length {}, beyond the {} bytes left in the file",
                        name_, what, at, len, remaining());
    }
    out.assign(reinterpret_cast<const char*>(data_.data() + pos_), static_cast<size_t>(len));
    pos_ += len;
    return {};
  }

 private:
  std::span<const uint8_t> data_;
  const std::string& name_;
  uint64_t pos_ = 0;
};

}  // namespace

struct GgufFile::Impl {
  std::filesystem::path path;
  std::string name;  // for messages
  std::optional<MappedFile> mapping;
  std::span<const uint8_t> data;
  uint32_t version = 0;
  uint32_t alignment = k_default_alignment;
  uint64_t data_offset = 0;
  std::vector<GgufKv> kvs;
  std::vector<GgufTensorInfo> tensors;
  std::unordered_map<std::string, size_t> kv_index;
  std::unordered_map<std::string, size_t> tensor_index;

  Status parse();
  Status parse_header(Reader& r, uint64_t& n_tensors, uint64_t& n_kv);
  Status parse_kv(Reader& r);
  Status parse_alignment();
  Status parse_tensor_info(Reader& r);
  Status check_tensor_data();

  Status type_error(const GgufKv& kv, std::string_view expected) const {
    std::string found(gguf_type_name(kv.value.type));
    if (kv.value.type == GgufType::array)
      found = fmt::format("array of {}", gguf_type_name(kv.value.array_type));
    return make_error(ErrorCode::invalid_file, "{}: key '{}' at byte {} has type {}, expected {}",
                      name, kv.key, kv.offset, found, expected);
  }
  Result<const GgufKv*> find_typed(std::string_view key, GgufType type) const;
};

Status GgufFile::Impl::parse() {
  Reader r(data, name);
  uint64_t n_tensors = 0;
  uint64_t n_kv = 0;
  TANDEM_RETURN_IF_ERROR(parse_header(r, n_tensors, n_kv));
  // A count beyond the file's size in bytes is garbage (every entry takes several bytes):
  // say so instead of reporting the truncation it would run into. Smaller lies end in a
  // truncation error naming the entry; reserve() is bounded by what the bytes left can hold.
  if (n_kv > data.size()) {
    return make_error(ErrorCode::invalid_file,
                      "{}: n_kv = {} (at byte 16) is impossible for a file of {} bytes", name, n_kv,
                      data.size());
  }
  if (n_tensors > data.size()) {
    return make_error(ErrorCode::invalid_file,
                      "{}: n_tensors = {} (at byte 8) is impossible for a file of {} bytes", name,
                      n_tensors, data.size());
  }
  // Smallest kv: key length (8) + type (4) + a 1-byte value.
  kvs.reserve(static_cast<size_t>(std::min<uint64_t>(n_kv, r.remaining() / 13)));
  for (uint64_t i = 0; i < n_kv; ++i) TANDEM_RETURN_IF_ERROR(parse_kv(r));
  TANDEM_RETURN_IF_ERROR(parse_alignment());
  // Smallest tensor info: name length (8) + n_dims (4) + one ne (8) + type (4) + offset (8).
  tensors.reserve(static_cast<size_t>(std::min<uint64_t>(n_tensors, r.remaining() / 32)));
  for (uint64_t i = 0; i < n_tensors; ++i) TANDEM_RETURN_IF_ERROR(parse_tensor_info(r));
  // The data section starts at the next alignment boundary (gguf.cpp pads unconditionally).
  data_offset = gguf_align_up(r.pos(), alignment);
  return check_tensor_data();
}

Status GgufFile::Impl::parse_header(Reader& r, uint64_t& n_tensors, uint64_t& n_kv) {
  uint32_t magic = 0;
  TANDEM_RETURN_IF_ERROR(r.read(magic, "the magic"));
  if (std::memcmp(&magic, "GGUF", 4) != 0) {
    std::string shown;
    for (int i = 0; i < 4; ++i) {
      const auto c = static_cast<unsigned char>(reinterpret_cast<const char*>(&magic)[i]);
      shown +=
          (c >= 32 && c < 127) ? std::string(1, static_cast<char>(c)) : fmt::format("\\x{:02x}", c);
    }
    return make_error(ErrorCode::invalid_file,
                      "{}: bad magic '{}' at byte 0: not a GGUF file (expected 'GGUF')", name,
                      shown);
  }
  TANDEM_RETURN_IF_ERROR(r.read(version, "the version"));
  if (version == 0) {
    return make_error(ErrorCode::invalid_file, "{}: GGUF version 0 at byte 4 is invalid", name);
  }
  if ((version & 0xFFFFu) == 0) {
    return make_error(ErrorCode::invalid_file,
                      "{}: version {:#x} at byte 4: endian mismatch (a big-endian GGUF file?)",
                      name, version);
  }
  if (version == 1) {
    return make_error(ErrorCode::unsupported,
                      "{}: GGUF version 1 at byte 4 is no longer supported (need 2 or 3)", name);
  }
  if (version > 3) {
    return make_error(ErrorCode::unsupported,
                      "{}: GGUF version {} at byte 4 is newer than supported (3)", name, version);
  }
  // Versions 2 and 3 share the layout read below (v1 had 32-bit counts).
  TANDEM_RETURN_IF_ERROR(r.read(n_tensors, "n_tensors"));
  TANDEM_RETURN_IF_ERROR(r.read(n_kv, "n_kv"));
  return {};
}

Status GgufFile::Impl::parse_kv(Reader& r) {
  GgufKv kv;
  kv.offset = r.pos();
  TANDEM_RETURN_IF_ERROR(r.read(kv.key, "a metadata key"));
  if (kv_index.count(kv.key) != 0) {
    return make_error(ErrorCode::invalid_file, "{}: duplicate key '{}' at byte {}", name, kv.key,
                      kv.offset);
  }
  uint32_t type = 0;
  const uint64_t type_at = r.pos();
  TANDEM_RETURN_IF_ERROR(r.read(type, fmt::format("the type of key '{}'", kv.key)));
  const std::string what = fmt::format("the value of key '{}'", kv.key);
  Status st;
  if (type == static_cast<uint32_t>(GgufType::array)) {
    uint32_t elem = 0;
    const uint64_t elem_at = r.pos();
    TANDEM_RETURN_IF_ERROR(r.read(elem, fmt::format("the element type of key '{}'", kv.key)));
    if (elem == static_cast<uint32_t>(GgufType::array)) {
      return make_error(ErrorCode::invalid_file,
                        "{}: key '{}' at byte {}: nested arrays are not supported", name, kv.key,
                        elem_at);
    }
    uint64_t count = 0;
    const uint64_t count_at = r.pos();
    TANDEM_RETURN_IF_ERROR(r.read(count, fmt::format("the array length of key '{}'", kv.key)));
    kv.value.type = GgufType::array;
    const bool known = with_scalar_type(elem, [&](auto tag) {
      using T = typename decltype(tag)::type;
      kv.value.array_type = gguf_type_of<T>();
      if (count > r.remaining() / min_disk_size<T>()) {
        st = make_error(
            ErrorCode::invalid_file,
            "{}: array length {} of key '{}' at byte {} is beyond the {} bytes left in the file",
            name, count, kv.key, count_at, r.remaining());
        return;
      }
      std::vector<T> v;
      if constexpr (std::is_same_v<T, bool> || std::is_same_v<T, std::string>) {
        v.resize(static_cast<size_t>(count));
        for (uint64_t i = 0; i < count && st.ok(); ++i) {
          T e{};
          st = r.read(e, what);
          v[i] = std::move(e);
        }
      } else {
        v.resize(static_cast<size_t>(count));
        if (count > 0) std::memcpy(v.data(), r.here(), static_cast<size_t>(count) * sizeof(T));
        r.seek(r.pos() + count * sizeof(T));
      }
      kv.value.value = std::move(v);
    });
    if (!known) {
      return make_error(ErrorCode::invalid_file,
                        "{}: key '{}' at byte {}: unknown array element type {}", name, kv.key,
                        elem_at, elem);
    }
  } else {
    const bool known = with_scalar_type(type, [&](auto tag) {
      using T = typename decltype(tag)::type;
      kv.value.type = gguf_type_of<T>();
      T v{};
      st = r.read(v, what);
      kv.value.value = std::move(v);
    });
    if (!known) {
      return make_error(ErrorCode::invalid_file, "{}: key '{}' at byte {}: unknown value type {}",
                        name, kv.key, type_at, type);
    }
  }
  TANDEM_RETURN_IF_ERROR(st);
  kv_index.emplace(kv.key, kvs.size());
  kvs.push_back(std::move(kv));
  return {};
}

Status GgufFile::Impl::parse_alignment() {
  auto it = kv_index.find("general.alignment");
  if (it == kv_index.end()) return {};
  const GgufKv& kv = kvs[it->second];
  if (kv.value.type != GgufType::uint32) return type_error(kv, "uint32");
  const uint32_t a = std::get<uint32_t>(kv.value.value);
  if (a == 0 || (a & (a - 1)) != 0) {
    return make_error(ErrorCode::invalid_file,
                      "{}: general.alignment = {} (key at byte {}) is not a power of two", name, a,
                      kv.offset);
  }
  alignment = a;
  return {};
}

Status GgufFile::Impl::parse_tensor_info(Reader& r) {
  GgufTensorInfo t;
  t.info_offset = r.pos();
  TANDEM_RETURN_IF_ERROR(r.read(t.name, "a tensor name"));
  if (t.name.size() >= k_max_name) {
    return make_error(ErrorCode::invalid_file,
                      "{}: tensor name '{}' at byte {} is {} bytes long (limit {})", name, t.name,
                      t.info_offset, t.name.size(), k_max_name - 1);
  }
  if (tensor_index.count(t.name) != 0) {
    return make_error(ErrorCode::invalid_file, "{}: duplicate tensor name '{}' at byte {}", name,
                      t.name, t.info_offset);
  }
  const uint64_t dims_at = r.pos();
  TANDEM_RETURN_IF_ERROR(r.read(t.n_dims, fmt::format("n_dims of tensor '{}'", t.name)));
  if (t.n_dims == 0 || t.n_dims > 4) {
    return make_error(ErrorCode::invalid_file,
                      "{}: tensor '{}' has n_dims {} at byte {} (must be 1..4)", name, t.name,
                      t.n_dims, dims_at);
  }
  int64_t nelements = 1;
  for (uint32_t i = 0; i < t.n_dims; ++i) {
    const uint64_t at = r.pos();
    TANDEM_RETURN_IF_ERROR(r.read(t.ne[i], fmt::format("ne[{}] of tensor '{}'", i, t.name)));
    if (t.ne[i] <= 0) {
      return make_error(ErrorCode::invalid_file,
                        "{}: tensor '{}' has ne[{}] = {} at byte {} (must be positive)", name,
                        t.name, i, t.ne[i], at);
    }
    if (__builtin_mul_overflow(nelements, t.ne[i], &nelements)) {
      return make_error(
          ErrorCode::invalid_file,
          "{}: tensor '{}' at byte {}: element count overflows (ne[{}] = {} at byte {})", name,
          t.name, t.info_offset, i, t.ne[i], at);
    }
  }
  const uint64_t type_at = r.pos();
  uint32_t type = 0;
  TANDEM_RETURN_IF_ERROR(r.read(type, fmt::format("the type of tensor '{}'", t.name)));
  const DTypeTraits* traits = dtype_traits(type);
  if (traits == nullptr) {
    return make_error(ErrorCode::unsupported,
                      "{}: unsupported dtype {} (ggml type {}) for tensor '{}' at byte {}", name,
                      ggml_type_name(type), type, t.name, type_at);
  }
  t.dtype = traits->dtype;
  if (t.ne[0] % traits->block_size != 0) {
    return make_error(
        ErrorCode::invalid_file,
        "{}: tensor '{}' at byte {}: ne0 = {} is not a multiple of the {} block size {}", name,
        t.name, t.info_offset, t.ne[0], traits->name, traits->block_size);
  }
  // nbytes = row_size * nrows; both factors are < 2^63 but the product may not be.
  const uint64_t row = static_cast<uint64_t>(t.ne[0] / traits->block_size) * traits->type_size;
  const uint64_t nrows = static_cast<uint64_t>(nelements / t.ne[0]);
  if (__builtin_mul_overflow(row, nrows, &t.nbytes)) {
    return make_error(ErrorCode::invalid_file,
                      "{}: tensor '{}' at byte {}: byte size overflows ({} {})", name, t.name,
                      t.info_offset, format_ne(t), traits->name);
  }
  TANDEM_RETURN_IF_ERROR(r.read(t.offset, fmt::format("the data offset of tensor '{}'", t.name)));
  tensor_index.emplace(t.name, tensors.size());
  tensors.push_back(std::move(t));
  return {};
}

Status GgufFile::Impl::check_tensor_data() {
  // llama.cpp requires offset_i == sum_{j<i} align_up(nbytes_j): in order, contiguous, padded.
  uint64_t expected = 0;
  const uint64_t size = data.size();
  for (auto& t : tensors) {
    if (t.offset % alignment != 0) {
      return make_error(ErrorCode::invalid_file,
                        "{}: tensor '{}' (info at byte {}) has data offset {}, not a multiple of "
                        "the alignment {}",
                        name, t.name, t.info_offset, t.offset, alignment);
    }
    if (t.offset != expected) {
      return make_error(ErrorCode::invalid_file,
                        "{}: tensor '{}' (info at byte {}) has data offset {} but {} was expected: "
                        "tensor data must "
                        "be contiguous in file order, each padded to the alignment {}",
                        name, t.name, t.info_offset, t.offset, expected, alignment);
    }
    uint64_t begin = 0;
    uint64_t end = 0;
    if (__builtin_add_overflow(data_offset, t.offset, &begin) ||
        __builtin_add_overflow(begin, t.nbytes, &end) || end > size) {
      return make_error(ErrorCode::invalid_file,
                        "{}: data of tensor '{}' (offset {} + {} bytes from the data section at "
                        "byte {}) lies beyond "
                        "the end of the file ({} bytes)",
                        name, t.name, t.offset, t.nbytes, data_offset, size);
    }
    t.file_offset = begin;
    expected = gguf_align_up(t.offset + t.nbytes, alignment);  // cannot overflow: end <= size
  }
  return {};
}

Result<const GgufKv*> GgufFile::Impl::find_typed(std::string_view key, GgufType type) const {
  auto it = kv_index.find(std::string(key));
  if (it == kv_index.end())
    return make_error(ErrorCode::not_found, "{}: key '{}' not found", name, key);
  const GgufKv& kv = kvs[it->second];
  if (kv.value.type != type) return type_error(kv, gguf_type_name(type));
  return &kv;
}

GgufFile::GgufFile(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
GgufFile::GgufFile(GgufFile&&) noexcept = default;
GgufFile& GgufFile::operator=(GgufFile&&) noexcept = default;
GgufFile::~GgufFile() = default;

Result<GgufFile> GgufFile::open(const std::filesystem::path& path, FileLoad load) {
  auto mapped = MappedFile::open(path, load);
  if (!mapped.ok()) return mapped.status();
  auto impl = std::make_unique<Impl>();
  impl->path = path;
  impl->name = path.string();
  impl->mapping.emplace(std::move(mapped).value());
  impl->data = impl->mapping->bytes();
  TANDEM_RETURN_IF_ERROR(impl->parse());
  return GgufFile(std::move(impl));
}

Result<GgufFile> GgufFile::parse(std::span<const uint8_t> data, std::string display_name) {
  auto impl = std::make_unique<Impl>();
  impl->path = display_name;
  impl->name = std::move(display_name);
  impl->data = data;
  TANDEM_RETURN_IF_ERROR(impl->parse());
  return GgufFile(std::move(impl));
}

const std::filesystem::path& GgufFile::path() const {
  return impl_->path;
}
uint32_t GgufFile::version() const {
  return impl_->version;
}
uint32_t GgufFile::alignment() const {
  return impl_->alignment;
}
uint64_t GgufFile::data_offset() const {
  return impl_->data_offset;
}
uint64_t GgufFile::file_size() const {
  return impl_->data.size();
}
const std::vector<GgufKv>& GgufFile::kvs() const {
  return impl_->kvs;
}
const std::vector<GgufTensorInfo>& GgufFile::tensors() const {
  return impl_->tensors;
}
std::span<const uint8_t> GgufFile::mapping() const {
  return impl_->data;
}
bool GgufFile::file_backed() const {
  return impl_->mapping.has_value() && impl_->mapping->file_backed();
}

const GgufKv* GgufFile::find_kv(std::string_view key) const {
  auto it = impl_->kv_index.find(std::string(key));
  return it == impl_->kv_index.end() ? nullptr : &impl_->kvs[it->second];
}

const GgufTensorInfo* GgufFile::find_tensor(std::string_view name) const {
  auto it = impl_->tensor_index.find(std::string(name));
  return it == impl_->tensor_index.end() ? nullptr : &impl_->tensors[it->second];
}

TensorView GgufFile::tensor_view(const GgufTensorInfo& info) const {
  return TensorView::contiguous(impl_->data.data() + info.file_offset, info.dtype, info.ne,
                                info.name);
}

std::span<const uint8_t> GgufFile::tensor_bytes(const GgufTensorInfo& info) const {
  return impl_->data.subspan(info.file_offset, info.nbytes);
}

namespace {
template <class T, class Impl>
Result<T> get_scalar(const Impl& impl, std::string_view key) {
  auto kv = impl.find_typed(key, gguf_type_of<T>());
  if (!kv.ok()) return kv.status();
  return std::get<T>((*kv)->value.value);
}
template <class T, class Impl>
Result<std::vector<T>> get_array(const Impl& impl, std::string_view key) {
  auto kv = impl.find_typed(key, GgufType::array);
  if (!kv.ok()) return kv.status();
  if ((*kv)->value.array_type != gguf_type_of<T>()) {
    return impl.type_error(**kv, fmt::format("array of {}", gguf_type_name(gguf_type_of<T>())));
  }
  return std::get<std::vector<T>>((*kv)->value.value);
}
}  // namespace

Result<uint32_t> GgufFile::get_u32(std::string_view key) const {
  return get_scalar<uint32_t>(*impl_, key);
}
Result<int32_t> GgufFile::get_i32(std::string_view key) const {
  return get_scalar<int32_t>(*impl_, key);
}
Result<uint64_t> GgufFile::get_u64(std::string_view key) const {
  return get_scalar<uint64_t>(*impl_, key);
}
Result<float> GgufFile::get_f32(std::string_view key) const {
  return get_scalar<float>(*impl_, key);
}
Result<bool> GgufFile::get_bool(std::string_view key) const {
  return get_scalar<bool>(*impl_, key);
}
Result<std::string> GgufFile::get_string(std::string_view key) const {
  return get_scalar<std::string>(*impl_, key);
}
Result<std::vector<std::string>> GgufFile::get_string_array(std::string_view key) const {
  return get_array<std::string>(*impl_, key);
}
Result<std::vector<int32_t>> GgufFile::get_i32_array(std::string_view key) const {
  return get_array<int32_t>(*impl_, key);
}
Result<std::vector<float>> GgufFile::get_f32_array(std::string_view key) const {
  return get_array<float>(*impl_, key);
}

Result<std::vector<uint32_t>> GgufFile::get_u32_or_array(std::string_view key, size_t n) const {
  const GgufKv* kv = find_kv(key);
  if (kv == nullptr)
    return make_error(ErrorCode::not_found, "{}: key '{}' not found", impl_->name, key);
  if (kv->value.type == GgufType::uint32)
    return std::vector<uint32_t>(n, std::get<uint32_t>(kv->value.value));
  if (kv->value.type != GgufType::array ||
      (kv->value.array_type != GgufType::uint32 && kv->value.array_type != GgufType::int32)) {
    return impl_->type_error(*kv, "uint32 or an array of uint32/int32");
  }
  if (kv->value.array_size() != n) {
    return make_error(ErrorCode::invalid_file,
                      "{}: key '{}' at byte {} is an array of {} values, expected {}", impl_->name,
                      key, kv->offset, kv->value.array_size(), n);
  }
  if (kv->value.array_type == GgufType::uint32)
    return std::get<std::vector<uint32_t>>(kv->value.value);
  std::vector<uint32_t> out;
  out.reserve(n);
  for (int32_t v : std::get<std::vector<int32_t>>(kv->value.value)) {
    if (v < 0) {
      return make_error(ErrorCode::invalid_file,
                        "{}: key '{}' at byte {} holds a negative value {}", impl_->name, key,
                        kv->offset, v);
    }
    out.push_back(static_cast<uint32_t>(v));
  }
  return out;
}

}  // namespace tandem
