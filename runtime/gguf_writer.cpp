// GGUF writer. Byte layout as ggml/src/gguf.cpp's gguf_write_out: header, kvs, tensor infos,
// padding to the alignment, then each tensor's data followed by padding (after the last one
// too). Output goes through a large buffer to `<path>.tmp` and is renamed into place only when
// complete, so a crash or error never leaves a plausible-looking partial model behind.
#include "runtime/gguf_writer.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <unordered_set>
#include <utility>

namespace tandem {

namespace {

constexpr size_t k_buffer_size = 8u << 20;
constexpr size_t k_max_name = 64;  // GGML_MAX_NAME, NUL included

enum class State { metadata, data, finished, failed };

// Checks that `value` holds the alternative its type tags promise (a mismatch would write a
// file whose declared types lie).
bool value_consistent(const GgufValue& v) {
  bool ok = false;
  auto check = [&](auto tag) {
    using T = typename decltype(tag)::type;
    if (v.type == GgufType::array) {
      ok = v.array_type == gguf_type_of<T>() && std::holds_alternative<std::vector<T>>(v.value);
    } else {
      ok = v.type == gguf_type_of<T>() && std::holds_alternative<T>(v.value);
    }
  };
  const GgufType t = v.type == GgufType::array ? v.array_type : v.type;
  switch (t) {
    case GgufType::uint8:
      check(std::type_identity<uint8_t>{});
      break;
    case GgufType::int8:
      check(std::type_identity<int8_t>{});
      break;
    case GgufType::uint16:
      check(std::type_identity<uint16_t>{});
      break;
    case GgufType::int16:
      check(std::type_identity<int16_t>{});
      break;
    case GgufType::uint32:
      check(std::type_identity<uint32_t>{});
      break;
    case GgufType::int32:
      check(std::type_identity<int32_t>{});
      break;
    case GgufType::float32:
      check(std::type_identity<float>{});
      break;
    case GgufType::boolean:
      check(std::type_identity<bool>{});
      break;
    case GgufType::string:
      check(std::type_identity<std::string>{});
      break;
    case GgufType::uint64:
      check(std::type_identity<uint64_t>{});
      break;
    case GgufType::int64:
      check(std::type_identity<int64_t>{});
      break;
    case GgufType::float64:
      check(std::type_identity<double>{});
      break;
    case GgufType::array:
      break;  // nested arrays
  }
  return ok;
}

}  // namespace

struct GgufWriter::Impl {
  std::filesystem::path path;
  std::filesystem::path tmp_path;
  int fd = -1;
  uint32_t alignment = 32;
  State state = State::metadata;
  std::vector<GgufKv> kvs;
  std::unordered_set<std::string> keys;
  std::vector<GgufTensorInfo> tensors;
  std::unordered_set<std::string> tensor_names;
  uint64_t next_offset = 0;  // data offset of the next tensor added
  size_t next_tensor = 0;    // index of the next tensor whose data is due
  std::vector<uint8_t> buf;
  uint64_t written = 0;

  ~Impl() {
    if (fd >= 0) ::close(fd);
    if (state != State::finished && !tmp_path.empty()) {
      std::error_code ec;
      std::filesystem::remove(tmp_path, ec);
    }
  }

  Status fail(Status s) {
    state = State::failed;
    return s;
  }

  Status flush() {
    size_t done = 0;
    while (done < buf.size()) {
      const ssize_t n = ::write(fd, buf.data() + done, buf.size() - done);
      if (n < 0) {
        if (errno == EINTR) continue;
        return fail(make_error(ErrorCode::io_error, "{}: write failed after {} bytes: {}",
                               tmp_path.string(), written - (buf.size() - done),
                               std::strerror(errno)));
      }
      done += static_cast<size_t>(n);
    }
    buf.clear();
    return {};
  }

  Status put(const void* p, size_t n) {
    const auto* b = static_cast<const uint8_t*>(p);
    while (n > 0) {
      const size_t take = std::min(n, k_buffer_size - buf.size());
      buf.insert(buf.end(), b, b + take);
      written += take;
      b += take;
      n -= take;
      if (buf.size() == k_buffer_size) TANDEM_RETURN_IF_ERROR(flush());
    }
    return {};
  }
  template <class T>
  Status put_pod(const T& v) {
    return put(&v, sizeof(T));
  }
  Status put_string(const std::string& s) {
    TANDEM_RETURN_IF_ERROR(put_pod(static_cast<uint64_t>(s.size())));
    return put(s.data(), s.size());
  }
  Status pad() {
    static const uint8_t zeros[256] = {};
    uint64_t n = gguf_align_up(written, alignment) - written;
    while (n > 0) {
      const size_t take = std::min<uint64_t>(n, sizeof(zeros));
      TANDEM_RETURN_IF_ERROR(put(zeros, take));
      n -= take;
    }
    return {};
  }

  Status put_value(const GgufValue& v) {
    Status st;
    std::visit(
        [&](const auto& x) {
          using X = std::decay_t<decltype(x)>;
          if constexpr (std::is_same_v<X, std::string>) {
            st = put_string(x);
          } else if constexpr (std::is_same_v<X, bool>) {
            st = put_pod(static_cast<uint8_t>(x ? 1 : 0));
          } else if constexpr (std::is_arithmetic_v<X>) {
            st = put_pod(x);
          } else {  // a vector
            using E = typename X::value_type;
            st = put_pod(static_cast<uint32_t>(gguf_type_of<E>()));
            if (st.ok()) st = put_pod(static_cast<uint64_t>(x.size()));
            if constexpr (std::is_same_v<E, std::string>) {
              for (const auto& s : x) {
                if (st.ok()) st = put_string(s);
              }
            } else if constexpr (std::is_same_v<E, bool>) {
              for (bool b : x) {
                if (st.ok()) st = put_pod(static_cast<uint8_t>(b ? 1 : 0));
              }
            } else {
              if (st.ok()) st = put(x.data(), x.size() * sizeof(E));
            }
          }
        },
        v.value);
    return st;
  }

  Status check_state(State want, std::string_view op) const {
    if (state == want) return {};
    if (state == State::failed) {
      return make_error(ErrorCode::io_error, "{}: {} after an earlier write error", path.string(),
                        op);
    }
    return make_error(ErrorCode::invalid_argument, "{}: {} is not allowed {}", path.string(), op,
                      state == State::metadata ? "before begin_data()"
                      : state == State::data   ? "after begin_data()"
                                               : "after finish()");
  }

  Status end_tensor() {
    TANDEM_RETURN_IF_ERROR(pad());
    ++next_tensor;
    return {};
  }
};

GgufWriter::GgufWriter(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
GgufWriter::GgufWriter(GgufWriter&&) noexcept = default;
GgufWriter& GgufWriter::operator=(GgufWriter&&) noexcept = default;
GgufWriter::~GgufWriter() = default;

Result<GgufWriter> GgufWriter::create(const std::filesystem::path& path, uint32_t alignment) {
  if (alignment == 0 || (alignment & (alignment - 1)) != 0) {
    return make_error(ErrorCode::invalid_argument, "{}: alignment {} is not a power of two",
                      path.string(), alignment);
  }
  auto impl = std::make_unique<Impl>();
  impl->path = path;
  impl->alignment = alignment;
  impl->tmp_path = path;
  impl->tmp_path += ".tmp";
  impl->fd = ::open(impl->tmp_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (impl->fd < 0) {
    const int err = errno;
    impl->tmp_path.clear();  // nothing of ours to remove
    return make_error(ErrorCode::io_error, "{}: cannot create: {}", (path.string() + ".tmp"),
                      std::strerror(err));
  }
  impl->buf.reserve(k_buffer_size);
  // gguf.cpp only honours a non-default alignment through this key; 32 is left implicit.
  if (alignment != 32) {
    impl->kvs.push_back(GgufKv{"general.alignment", gguf_scalar(alignment), 0});
    impl->keys.insert("general.alignment");
  }
  return GgufWriter(std::move(impl));
}

Status GgufWriter::set(const std::string& key, GgufValue value) {
  TANDEM_RETURN_IF_ERROR(impl_->check_state(State::metadata, fmt::format("set('{}')", key)));
  if (key.empty())
    return make_error(ErrorCode::invalid_argument, "{}: empty metadata key", impl_->path.string());
  if (key == "general.alignment") {
    return make_error(
        ErrorCode::invalid_argument,
        "{}: general.alignment is written by the writer itself (pass the alignment to create())",
        impl_->path.string());
  }
  if (impl_->keys.count(key) != 0) {
    return make_error(ErrorCode::invalid_argument, "{}: duplicate key '{}'", impl_->path.string(),
                      key);
  }
  if (!value_consistent(value)) {
    return make_error(
        ErrorCode::invalid_argument,
        "{}: key '{}': value does not hold what its type {} / element type {} says (or is a nested "
        "array)",
        impl_->path.string(), key, gguf_type_name(value.type), gguf_type_name(value.array_type));
  }
  impl_->keys.insert(key);
  impl_->kvs.push_back(GgufKv{key, std::move(value), 0});
  return {};
}

Status GgufWriter::set_u32(const std::string& key, uint32_t v) {
  return set(key, gguf_scalar(v));
}
Status GgufWriter::set_i32(const std::string& key, int32_t v) {
  return set(key, gguf_scalar(v));
}
Status GgufWriter::set_f32(const std::string& key, float v) {
  return set(key, gguf_scalar(v));
}
Status GgufWriter::set_bool(const std::string& key, bool v) {
  return set(key, gguf_scalar(v));
}
Status GgufWriter::set_string(const std::string& key, std::string v) {
  return set(key, gguf_scalar(std::move(v)));
}
Status GgufWriter::set_string_array(const std::string& key, std::vector<std::string> v) {
  return set(key, gguf_array(std::move(v)));
}
Status GgufWriter::set_i32_array(const std::string& key, std::vector<int32_t> v) {
  return set(key, gguf_array(std::move(v)));
}
Status GgufWriter::set_f32_array(const std::string& key, std::vector<float> v) {
  return set(key, gguf_array(std::move(v)));
}

Status GgufWriter::add_tensor(const std::string& name, DType dtype, std::array<int64_t, 4> ne,
                              uint32_t n_dims) {
  TANDEM_RETURN_IF_ERROR(
      impl_->check_state(State::metadata, fmt::format("add_tensor('{}')", name)));
  const std::string& file = impl_->path.string();
  if (name.empty() || name.size() >= k_max_name) {
    return make_error(ErrorCode::invalid_argument, "{}: tensor name '{}' must be 1..{} bytes", file,
                      name, k_max_name - 1);
  }
  if (impl_->tensor_names.count(name) != 0) {
    return make_error(ErrorCode::invalid_argument, "{}: duplicate tensor name '{}'", file, name);
  }
  if (n_dims == 0 || n_dims > 4) {
    return make_error(ErrorCode::invalid_argument, "{}: tensor '{}': n_dims {} (must be 1..4)",
                      file, name, n_dims);
  }
  const DTypeTraits* traits = dtype_traits(static_cast<uint32_t>(dtype));
  if (traits == nullptr) {
    return make_error(ErrorCode::invalid_argument, "{}: tensor '{}': unsupported dtype id {}", file,
                      name, static_cast<uint32_t>(dtype));
  }
  int64_t nelements = 1;
  for (uint32_t i = 0; i < 4; ++i) {
    if (i >= n_dims && ne[i] != 1) {
      return make_error(ErrorCode::invalid_argument,
                        "{}: tensor '{}': ne[{}] = {} beyond n_dims {} must be 1", file, name, i,
                        ne[i], n_dims);
    }
    if (ne[i] <= 0 || __builtin_mul_overflow(nelements, ne[i], &nelements)) {
      return make_error(ErrorCode::invalid_argument,
                        "{}: tensor '{}': ne[{}] = {} is not positive or overflows", file, name, i,
                        ne[i]);
    }
  }
  if (ne[0] % traits->block_size != 0) {
    return make_error(ErrorCode::invalid_argument,
                      "{}: tensor '{}': ne0 = {} is not a multiple of the {} block size {}", file,
                      name, ne[0], traits->name, traits->block_size);
  }
  GgufTensorInfo t;
  t.name = name;
  t.dtype = dtype;
  t.n_dims = n_dims;
  t.ne = ne;
  const uint64_t row = static_cast<uint64_t>(ne[0] / traits->block_size) * traits->type_size;
  uint64_t end = 0;
  if (__builtin_mul_overflow(row, static_cast<uint64_t>(nelements / ne[0]), &t.nbytes) ||
      __builtin_add_overflow(impl_->next_offset, t.nbytes, &end) || end > (uint64_t{1} << 62)) {
    return make_error(ErrorCode::invalid_argument, "{}: tensor '{}': byte size overflows", file,
                      name);
  }
  t.offset = impl_->next_offset;
  impl_->next_offset = gguf_align_up(end, impl_->alignment);
  impl_->tensor_names.insert(name);
  impl_->tensors.push_back(std::move(t));
  return {};
}

Status GgufWriter::begin_data() {
  Impl& w = *impl_;
  TANDEM_RETURN_IF_ERROR(w.check_state(State::metadata, "begin_data()"));
  w.state = State::data;
  const uint32_t version = 3;
  TANDEM_RETURN_IF_ERROR(w.put("GGUF", 4));
  TANDEM_RETURN_IF_ERROR(w.put_pod(version));
  TANDEM_RETURN_IF_ERROR(w.put_pod(static_cast<uint64_t>(w.tensors.size())));
  TANDEM_RETURN_IF_ERROR(w.put_pod(static_cast<uint64_t>(w.kvs.size())));
  for (const auto& kv : w.kvs) {
    TANDEM_RETURN_IF_ERROR(w.put_string(kv.key));
    TANDEM_RETURN_IF_ERROR(w.put_pod(static_cast<uint32_t>(kv.value.type)));
    TANDEM_RETURN_IF_ERROR(w.put_value(kv.value));
  }
  for (const auto& t : w.tensors) {
    TANDEM_RETURN_IF_ERROR(w.put_string(t.name));
    TANDEM_RETURN_IF_ERROR(w.put_pod(t.n_dims));
    for (uint32_t i = 0; i < t.n_dims; ++i) TANDEM_RETURN_IF_ERROR(w.put_pod(t.ne[i]));
    TANDEM_RETURN_IF_ERROR(w.put_pod(static_cast<uint32_t>(t.dtype)));
    TANDEM_RETURN_IF_ERROR(w.put_pod(t.offset));
  }
  return w.pad();
}

Status GgufWriter::write_tensor_data(std::span<const uint8_t> bytes) {
  Impl& w = *impl_;
  TANDEM_RETURN_IF_ERROR(w.check_state(State::data, "write_tensor_data()"));
  if (w.next_tensor >= w.tensors.size()) {
    return make_error(ErrorCode::invalid_argument,
                      "{}: write_tensor_data(): all {} tensors are already written",
                      w.path.string(), w.tensors.size());
  }
  const GgufTensorInfo& t = w.tensors[w.next_tensor];
  if (bytes.size() != t.nbytes) {
    return make_error(ErrorCode::invalid_argument, "{}: tensor '{}' needs {} bytes of data, got {}",
                      w.path.string(), t.name, t.nbytes, bytes.size());
  }
  TANDEM_RETURN_IF_ERROR(w.put(bytes.data(), bytes.size()));
  return w.end_tensor();
}

Status GgufWriter::write_tensor_data_chunked(
    const std::function<Status(std::vector<uint8_t>& chunk)>& next_chunk) {
  Impl& w = *impl_;
  TANDEM_RETURN_IF_ERROR(w.check_state(State::data, "write_tensor_data_chunked()"));
  if (w.next_tensor >= w.tensors.size()) {
    return make_error(ErrorCode::invalid_argument,
                      "{}: write_tensor_data_chunked(): all {} tensors are already written",
                      w.path.string(), w.tensors.size());
  }
  const GgufTensorInfo& t = w.tensors[w.next_tensor];
  uint64_t done = 0;
  std::vector<uint8_t> chunk;
  while (done < t.nbytes) {
    chunk.clear();
    // A half-written tensor cannot be resumed: the writer is unusable after a producer error.
    Status produced = next_chunk(chunk);
    if (!produced.ok())
      return w.fail(produced.with_context(fmt::format("producing data of tensor '{}'", t.name)));
    if (chunk.empty() || chunk.size() > t.nbytes - done) {
      return w.fail(make_error(
          ErrorCode::invalid_argument,
          "{}: tensor '{}': a chunk of {} bytes after {} of {} bytes (chunks must be non-empty "
          "and add up to exactly the tensor's size)",
          w.path.string(), t.name, chunk.size(), done, t.nbytes));
    }
    TANDEM_RETURN_IF_ERROR(w.put(chunk.data(), chunk.size()));
    done += chunk.size();
  }
  return w.end_tensor();
}

Status GgufWriter::finish() {
  Impl& w = *impl_;
  TANDEM_RETURN_IF_ERROR(w.check_state(State::data, "finish()"));
  if (w.next_tensor != w.tensors.size()) {
    return make_error(ErrorCode::invalid_argument,
                      "{}: finish(): only {} of {} tensors have data (next: '{}')", w.path.string(),
                      w.next_tensor, w.tensors.size(), w.tensors[w.next_tensor].name);
  }
  TANDEM_RETURN_IF_ERROR(w.flush());
  if (::fsync(w.fd) != 0) {
    return w.fail(make_error(ErrorCode::io_error, "{}: fsync failed: {}", w.tmp_path.string(),
                             std::strerror(errno)));
  }
  const int rc = ::close(w.fd);
  w.fd = -1;
  if (rc != 0) {
    return w.fail(make_error(ErrorCode::io_error, "{}: close failed: {}", w.tmp_path.string(),
                             std::strerror(errno)));
  }
  std::error_code ec;
  std::filesystem::rename(w.tmp_path, w.path, ec);
  if (ec) {
    return w.fail(make_error(ErrorCode::io_error, "{}: cannot rename {} into place: {}",
                             w.path.string(), w.tmp_path.string(), ec.message()));
  }
  w.state = State::finished;
  return {};
}

uint64_t GgufWriter::bytes_written() const {
  return impl_->written;
}

}  // namespace tandem
