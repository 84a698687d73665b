// GgufWriter: round trips through GgufFile (every dtype, every metadata type, arrays, a
// non-default alignment), chunked tensor data, and misuse errors.
#include <catch2/catch.hpp>

#include <fstream>
#include <random>

#include "runtime/gguf_file.h"
#include "runtime/gguf_writer.h"
#include "support/test_support.h"

using namespace tandem;
using Catch::Matchers::Contains;

namespace {

struct TensorSpec {
  std::string name;
  DType dtype;
  std::array<int64_t, 4> ne;
  uint32_t n_dims;
};

// Every supported dtype, 1..4 dims, odd row counts.
std::vector<TensorSpec> all_dtype_tensors() {
  return {
      {"t.f32", DType::f32, {7, 1, 1, 1}, 1},     {"t.f16", DType::f16, {5, 3, 1, 1}, 2},
      {"t.bf16", DType::bf16, {3, 1, 2, 1}, 3},   {"t.q8_0", DType::q8_0, {64, 3, 1, 1}, 2},
      {"t.q4_0", DType::q4_0, {32, 5, 2, 1}, 3},  {"t.q4_K", DType::q4_K, {256, 3, 1, 1}, 2},
      {"t.q6_K", DType::q6_K, {512, 1, 1, 2}, 4}, {"t.f32.last", DType::f32, {1, 1, 1, 1}, 1},
  };
}

std::vector<uint8_t> random_bytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> v(n);
  for (auto& b : v) b = static_cast<uint8_t>(rng());
  return v;
}

size_t nbytes_of(const TensorSpec& t) {
  return dtype_row_size(t.dtype, t.ne[0]) * static_cast<size_t>(t.ne[1] * t.ne[2] * t.ne[3]);
}

// One value of every scalar type, an array of every scalar type, string arrays (with an
// empty string) and an empty array.
std::vector<std::pair<std::string, GgufValue>> all_metadata() {
  return {
      {"general.architecture", gguf_scalar(std::string("test"))},
      {"s.u8", gguf_scalar(uint8_t{200})},
      {"s.i8", gguf_scalar(int8_t{-100})},
      {"s.u16", gguf_scalar(uint16_t{60000})},
      {"s.i16", gguf_scalar(int16_t{-30000})},
      {"s.u32", gguf_scalar(uint32_t{4000000000u})},
      {"s.i32", gguf_scalar(int32_t{-2000000000})},
      {"s.f32", gguf_scalar(1.5e-6f)},
      {"s.bool", gguf_scalar(true)},
      {"s.bool_false", gguf_scalar(false)},
      {"s.string", gguf_scalar(std::string("h\xc3\xa9llo, \"world\"\n"))},
      {"s.empty_string", gguf_scalar(std::string())},
      {"s.u64", gguf_scalar(uint64_t{1} << 60)},
      {"s.i64", gguf_scalar(-(int64_t{1} << 60))},
      {"s.f64", gguf_scalar(3.141592653589793)},
      {"a.u8", gguf_array(std::vector<uint8_t>{0, 1, 255})},
      {"a.i8", gguf_array(std::vector<int8_t>{-128, 0, 127})},
      {"a.u16", gguf_array(std::vector<uint16_t>{1, 65535})},
      {"a.i16", gguf_array(std::vector<int16_t>{-32768, 32767})},
      {"a.u32", gguf_array(std::vector<uint32_t>{1, 2, 3, 4})},
      {"a.i32", gguf_array(std::vector<int32_t>{-1, 0, 1})},
      {"a.f32", gguf_array(std::vector<float>{0.25f, -1e30f, 7.0f})},
      {"a.bool", gguf_array(std::vector<bool>{true, false, true})},
      {"a.string",
       gguf_array(std::vector<std::string>{"a", "", "merges x y", std::string(300, 'z')})},
      {"a.u64", gguf_array(std::vector<uint64_t>{~uint64_t{0}, 0})},
      {"a.i64", gguf_array(std::vector<int64_t>{INT64_MIN, INT64_MAX})},
      {"a.f64", gguf_array(std::vector<double>{1e300, -0.5})},
      {"a.empty", gguf_array(std::vector<uint32_t>{})},
  };
}

void write_file(const std::filesystem::path& path, uint32_t alignment,
                const std::vector<std::pair<std::string, GgufValue>>& meta,
                const std::vector<TensorSpec>& tensors,
                const std::vector<std::vector<uint8_t>>& data) {
  auto w = GgufWriter::create(path, alignment);
  REQUIRE(w.ok());
  for (const auto& [k, v] : meta) REQUIRE(w->set(k, v).ok());
  for (const auto& t : tensors) REQUIRE(w->add_tensor(t.name, t.dtype, t.ne, t.n_dims).ok());
  REQUIRE(w->begin_data().ok());
  for (const auto& d : data) REQUIRE(w->write_tensor_data(d).ok());
  REQUIRE(w->finish().ok());
  CHECK(std::filesystem::file_size(path) == w->bytes_written());
}

}  // namespace

TEST_CASE("GgufWriter round trips every dtype and metadata type", "[gguf]") {
  test::TempDir dir("tandem-gguf-writer");
  const auto meta = all_metadata();
  const auto tensors = all_dtype_tensors();
  std::vector<std::vector<uint8_t>> data;
  for (size_t i = 0; i < tensors.size(); ++i)
    data.push_back(random_bytes(nbytes_of(tensors[i]), 1000 + uint32_t(i)));

  for (uint32_t alignment : {32u, 1u, 64u, 4096u}) {
    SECTION("alignment " + std::to_string(alignment)) {
      const auto path = dir / "rt.gguf";
      write_file(path, alignment, meta, tensors, data);
      auto f = GgufFile::open(path);
      REQUIRE(f.ok());
      CHECK(f->version() == 3);
      CHECK(f->alignment() == alignment);
      CHECK(f->data_offset() % alignment == 0);
      // general.alignment is written (as uint32, first) only when it is not the default.
      const size_t extra = alignment == 32 ? 0 : 1;
      REQUIRE(f->kvs().size() == meta.size() + extra);
      if (extra) {
        CHECK(f->kvs()[0].key == "general.alignment");
        CHECK(f->get_u32("general.alignment").value() == alignment);
      } else {
        CHECK_FALSE(f->has_key("general.alignment"));
      }
      for (size_t i = 0; i < meta.size(); ++i) {
        const GgufKv& kv = f->kvs()[i + extra];
        INFO(meta[i].first);
        CHECK(kv.key == meta[i].first);
        CHECK(kv.value.type == meta[i].second.type);
        if (kv.value.type == GgufType::array)
          CHECK(kv.value.array_type == meta[i].second.array_type);
        CHECK(kv.value.value == meta[i].second.value);
        CHECK(kv.value.array_size() == meta[i].second.array_size());
      }
      REQUIRE(f->tensors().size() == tensors.size());
      for (size_t i = 0; i < tensors.size(); ++i) {
        const GgufTensorInfo& t = f->tensors()[i];
        INFO(t.name);
        CHECK(t.name == tensors[i].name);
        CHECK(t.dtype == tensors[i].dtype);
        CHECK(t.n_dims == tensors[i].n_dims);
        CHECK(t.ne == tensors[i].ne);
        CHECK(t.nbytes == data[i].size());
        CHECK(t.file_offset % alignment == 0);
        auto bytes = f->tensor_bytes(t);
        REQUIRE(bytes.size() == data[i].size());
        CHECK(std::equal(bytes.begin(), bytes.end(), data[i].begin()));
        const TensorView v = f->tensor_view(t);
        CHECK(v.data == bytes.data());
        CHECK(v.nbytes() == data[i].size());
        CHECK(v.name == tensors[i].name);
      }
      CHECK_FALSE(std::filesystem::exists(dir / "rt.gguf.tmp"));
    }
  }
}

TEST_CASE("GgufWriter chunked data equals one-shot data", "[gguf]") {
  test::TempDir dir("tandem-gguf-writer");
  const std::vector<TensorSpec> tensors = {{"exps", DType::q4_0, {64, 3, 5, 1}, 3},
                                           {"tail", DType::f16, {3, 1, 1, 1}, 1}};
  std::vector<std::vector<uint8_t>> data = {random_bytes(nbytes_of(tensors[0]), 7),
                                            random_bytes(6, 8)};
  write_file(dir / "one.gguf", 32, {}, tensors, data);

  auto w = GgufWriter::create(dir / "chunked.gguf");
  REQUIRE(w.ok());
  for (const auto& t : tensors) REQUIRE(w->add_tensor(t.name, t.dtype, t.ne, t.n_dims).ok());
  REQUIRE(w->begin_data().ok());
  // One expert (3 rows of 36 bytes) per chunk, as the model maker produces them.
  size_t pos = 0;
  const size_t per_expert = 3 * 36;
  REQUIRE(w->write_tensor_data_chunked([&](std::vector<uint8_t>& chunk) {
             chunk.assign(data[0].begin() + static_cast<std::ptrdiff_t>(pos),
                          data[0].begin() + static_cast<std::ptrdiff_t>(pos + per_expert));
             pos += per_expert;
             return Status{};
           }).ok());
  CHECK(pos == data[0].size());
  REQUIRE(w->write_tensor_data(data[1]).ok());
  REQUIRE(w->finish().ok());

  auto read_all = [](const std::filesystem::path& p) {
    std::ifstream in(p, std::ios::binary);
    return std::vector<char>(std::istreambuf_iterator<char>(in), {});
  };
  CHECK(read_all(dir / "one.gguf") == read_all(dir / "chunked.gguf"));
}

TEST_CASE("GgufWriter rejects misuse with clear errors", "[gguf]") {
  test::TempDir dir("tandem-gguf-writer");
  const auto path = dir / "bad.gguf";

  SECTION("bad alignment") {
    auto w = GgufWriter::create(path, 48);
    REQUIRE_FALSE(w.ok());
    CHECK_THAT(w.status().message(), Contains("alignment 48 is not a power of two"));
  }
  SECTION("unwritable path") {
    auto w = GgufWriter::create(dir / "no" / "such" / "dir.gguf");
    REQUIRE_FALSE(w.ok());
    CHECK(w.status().code() == ErrorCode::io_error);
  }
  SECTION("metadata and tensor info errors") {
    auto w = GgufWriter::create(path);
    REQUIRE(w.ok());
    REQUIRE(w->set_u32("k", 1).ok());
    CHECK_THAT(w->set_u32("k", 2).message(), Contains("duplicate key 'k'"));
    CHECK_THAT(w->set_u32("general.alignment", 64).message(), Contains("general.alignment"));
    GgufValue lie;
    lie.type = GgufType::uint32;
    lie.value = std::string("not a u32");
    CHECK_THAT(w->set("lie", lie).message(), Contains("does not hold"));
    GgufValue nested;
    nested.type = GgufType::array;
    nested.array_type = GgufType::array;
    nested.value = std::vector<uint32_t>{};
    CHECK_FALSE(w->set("nested", nested).ok());
    CHECK_THAT(w->add_tensor("q", DType::q4_0, {48, 1, 1, 1}, 2).message(),
               Contains("block size 32"));
    CHECK_THAT(w->add_tensor("z", DType::f32, {0, 1, 1, 1}, 1).message(), Contains("not positive"));
    CHECK_THAT(w->add_tensor("d", DType::f32, {4, 2, 1, 1}, 1).message(),
               Contains("beyond n_dims"));
    CHECK_THAT(w->add_tensor(std::string(64, 'n'), DType::f32, {4, 1, 1, 1}, 1).message(),
               Contains("1..63 bytes"));
    REQUIRE(w->add_tensor("t", DType::f32, {4, 1, 1, 1}, 1).ok());
    CHECK_THAT(w->add_tensor("t", DType::f32, {4, 1, 1, 1}, 1).message(),
               Contains("duplicate tensor name 't'"));
    CHECK_THAT(w->write_tensor_data(std::vector<uint8_t>(16)).message(),
               Contains("before begin_data()"));
    REQUIRE(w->begin_data().ok());
    CHECK_THAT(w->set_u32("late", 1).message(), Contains("after begin_data()"));
    CHECK_THAT(w->write_tensor_data(std::vector<uint8_t>(15)).message(),
               Contains("needs 16 bytes of data, got 15"));
    CHECK_THAT(w->finish().message(), Contains("only 0 of 1 tensors"));
  }
  SECTION("chunk overrun and producer errors") {
    auto w = GgufWriter::create(path);
    REQUIRE(w.ok());
    REQUIRE(w->add_tensor("t", DType::f32, {4, 1, 1, 1}, 1).ok());
    REQUIRE(w->begin_data().ok());
    auto st = w->write_tensor_data_chunked([](std::vector<uint8_t>& c) {
      c.assign(20, 0);
      return Status{};
    });
    CHECK_THAT(st.message(), Contains("a chunk of 20 bytes after 0 of 16 bytes"));
    CHECK_THAT(w->finish().message(), Contains("earlier write error"));
  }
  SECTION("producer error is passed on") {
    auto w = GgufWriter::create(path);
    REQUIRE(w.ok());
    REQUIRE(w->add_tensor("t", DType::f32, {4, 1, 1, 1}, 1).ok());
    REQUIRE(w->begin_data().ok());
    auto st = w->write_tensor_data_chunked(
        [](std::vector<uint8_t>&) { return Status(ErrorCode::internal, "boom"); });
    CHECK_THAT(st.message(), Contains("producing data of tensor 't': boom"));
  }
  SECTION("an unfinished file is removed") {
    {
      auto w = GgufWriter::create(path);
      REQUIRE(w.ok());
      REQUIRE(w->add_tensor("t", DType::f32, {4, 1, 1, 1}, 1).ok());
      REQUIRE(w->begin_data().ok());
      CHECK(std::filesystem::exists(dir / "bad.gguf.tmp"));
    }
    CHECK_FALSE(std::filesystem::exists(dir / "bad.gguf.tmp"));
    CHECK_FALSE(std::filesystem::exists(path));
  }
  SECTION("nothing after finish") {
    auto w = GgufWriter::create(path);
    REQUIRE(w.ok());
    REQUIRE(w->begin_data().ok());
    REQUIRE(w->finish().ok());
    CHECK_THAT(w->finish().message(), Contains("after finish()"));
    CHECK(GgufFile::open(path).ok());  // a file with no tensors is valid
  }
}

namespace {

// The data tests/fuzz/make_corpus.py gives tensor i: byte j = (i*37 + j*11) & 0xff.
std::vector<uint8_t> corpus_pattern(size_t i, size_t n) {
  std::vector<uint8_t> v(n);
  for (size_t j = 0; j < n; ++j) v[j] = static_cast<uint8_t>((i * 37 + j * 11) & 0xff);
  return v;
}

std::vector<uint8_t> file_bytes(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

}  // namespace

// tests/fuzz/make_corpus.py is an independent writer following ggml's gguf.cpp layout: the same
// content written by GgufWriter must come out byte for byte the same.
TEST_CASE("GgufWriter output is byte-identical to an independent writer", "[gguf]") {
  const auto corpus =
      std::filesystem::path(__FILE__).parent_path().parent_path() / "tests" / "fuzz" / "corpus";
  test::TempDir dir("tandem-gguf-writer");

  SECTION("valid_align64.gguf") {
    const std::vector<TensorSpec> ts = {{"a", DType::f32, {3, 1, 1, 1}, 1},
                                        {"b", DType::q8_0, {32, 1, 1, 1}, 1}};
    write_file(dir / "a64.gguf", 64, {}, ts, {corpus_pattern(0, 12), corpus_pattern(1, 34)});
    CHECK(file_bytes(dir / "a64.gguf") == file_bytes(corpus / "valid_align64.gguf"));
  }
  SECTION("valid_all_types.gguf") {
    const std::vector<std::pair<std::string, GgufValue>> meta = {
        {"u8", gguf_scalar(uint8_t{255})},
        {"i8", gguf_scalar(int8_t{-128})},
        {"u16", gguf_scalar(uint16_t{65535})},
        {"i16", gguf_scalar(int16_t{-32768})},
        {"u32", gguf_scalar(uint32_t{7})},
        {"i32", gguf_scalar(int32_t{-7})},
        {"f32", gguf_scalar(0.5f)},
        {"bool", gguf_scalar(true)},
        {"str", gguf_scalar(std::string("hello"))},
        {"u64", gguf_scalar(uint64_t{1} << 63)},
        {"i64", gguf_scalar(-(int64_t{1} << 62))},
        {"f64", gguf_scalar(-2.5)},
        {"arr.u8", gguf_array(std::vector<uint8_t>{1, 2})},
        {"arr.i32", gguf_array(std::vector<int32_t>{-1, 1})},
        {"arr.f32", gguf_array(std::vector<float>{1.0f})},
        {"arr.bool", gguf_array(std::vector<bool>{true, false})},
        {"arr.str", gguf_array(std::vector<std::string>{"x", ""})},
        {"arr.f64", gguf_array(std::vector<double>{})},
    };
    const std::vector<TensorSpec> ts = {{"f16", DType::f16, {3, 2, 1, 1}, 2},
                                        {"bf16", DType::bf16, {5, 1, 1, 1}, 1},
                                        {"q4_k", DType::q4_K, {256, 1, 1, 1}, 1},
                                        {"q6_k", DType::q6_K, {256, 1, 1, 1}, 4}};
    std::vector<std::vector<uint8_t>> data;
    for (size_t i = 0; i < ts.size(); ++i) data.push_back(corpus_pattern(i, nbytes_of(ts[i])));
    write_file(dir / "all.gguf", 32, meta, ts, data);
    CHECK(file_bytes(dir / "all.gguf") == file_bytes(corpus / "valid_all_types.gguf"));
  }
}
