// GgufFile: opening files, type-strict getters, key-or-array, tensor views, version 2.
#include <catch2/catch.hpp>

#include <algorithm>
#include <fstream>

#include "runtime/gguf_file.h"
#include "runtime/gguf_writer.h"
#include "runtime/model_maker.h"
#include "support/test_support.h"

using namespace tandem;
using Catch::Matchers::Contains;

namespace {

std::vector<uint8_t> read_all(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

std::filesystem::path write_sample(const test::TempDir& dir) {
  const auto path = dir / "sample.gguf";
  auto w = GgufWriter::create(path);
  REQUIRE(w.ok());
  REQUIRE(w->set_string("general.architecture", "test").ok());
  REQUIRE(w->set_u32("x.u32", 12).ok());
  REQUIRE(w->set_i32("x.i32", -5).ok());
  REQUIRE(w->set_f32("x.f32", 0.5f).ok());
  REQUIRE(w->set_bool("x.bool", true).ok());
  REQUIRE(w->set("x.u64", gguf_scalar(uint64_t{1} << 40)).ok());
  REQUIRE(w->set_string_array("x.strs", {"a", "bc"}).ok());
  REQUIRE(w->set_i32_array("x.i32s", {1, 2, 3}).ok());
  REQUIRE(w->set_f32_array("x.f32s", {1.5f}).ok());
  REQUIRE(w->set("x.u32s", gguf_array(std::vector<uint32_t>{4, 5, 6})).ok());
  REQUIRE(w->set_i32_array("x.neg", {1, -1, 1}).ok());
  REQUIRE(w->add_tensor("w", DType::f32, {3, 2, 1, 1}, 2).ok());
  REQUIRE(w->begin_data().ok());
  std::vector<float> vals = {1, 2, 3, 4, 5, 6};
  REQUIRE(w->write_tensor_data({reinterpret_cast<const uint8_t*>(vals.data()), 24}).ok());
  REQUIRE(w->finish().ok());
  return path;
}

}  // namespace

TEST_CASE("GgufFile getters are type-strict", "[gguf]") {
  test::TempDir dir("tandem-gguf-file");
  auto f = GgufFile::open(write_sample(dir));
  REQUIRE(f.ok());
  CHECK(f->get_u32("x.u32").value() == 12);
  CHECK(f->get_i32("x.i32").value() == -5);
  CHECK(f->get_f32("x.f32").value() == 0.5f);
  CHECK(f->get_bool("x.bool").value());
  CHECK(f->get_u64("x.u64").value() == (uint64_t{1} << 40));
  CHECK(f->get_string("general.architecture").value() == "test");
  CHECK(f->get_string_array("x.strs").value() == std::vector<std::string>{"a", "bc"});
  CHECK(f->get_i32_array("x.i32s").value() == std::vector<int32_t>{1, 2, 3});
  CHECK(f->get_f32_array("x.f32s").value() == std::vector<float>{1.5f});

  auto wrong = f->get_u32("x.i32");
  REQUIRE_FALSE(wrong.ok());
  CHECK(wrong.status().code() == ErrorCode::invalid_file);
  CHECK_THAT(wrong.status().message(), Contains("key 'x.i32'") &&
                                           Contains("has type int32, expected uint32") &&
                                           Contains("sample.gguf"));
  CHECK_THAT(f->get_i32_array("x.u32s").status().message(),
             Contains("array of uint32, expected array of int32"));
  CHECK_THAT(f->get_string("x.strs").status().message(), Contains("expected string"));
  auto missing = f->get_f32("nope");
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.status().code() == ErrorCode::not_found);
  CHECK_THAT(missing.status().message(), Contains("key 'nope' not found"));
  CHECK(f->find_kv("nope") == nullptr);
  CHECK(f->has_key("x.u32"));
}

TEST_CASE("GgufFile key-or-array follows llama.cpp", "[gguf]") {
  test::TempDir dir("tandem-gguf-file");
  auto f = GgufFile::open(write_sample(dir));
  REQUIRE(f.ok());
  CHECK(f->get_u32_or_array("x.u32", 4).value() == std::vector<uint32_t>(4, 12));
  CHECK(f->get_u32_or_array("x.u32s", 3).value() == std::vector<uint32_t>{4, 5, 6});
  CHECK(f->get_u32_or_array("x.i32s", 3).value() == std::vector<uint32_t>{1, 2, 3});
  CHECK_THAT(f->get_u32_or_array("x.u32s", 4).status().message(),
             Contains("array of 3 values, expected 4"));
  CHECK_THAT(f->get_u32_or_array("x.neg", 3).status().message(), Contains("negative value -1"));
  CHECK_THAT(f->get_u32_or_array("x.f32", 3).status().message(), Contains("has type float32"));
  CHECK(f->get_u32_or_array("nope", 3).status().code() == ErrorCode::not_found);
}

TEST_CASE("GgufFile tensor views point into the mapping", "[gguf]") {
  test::TempDir dir("tandem-gguf-file");
  auto f = GgufFile::open(write_sample(dir));
  REQUIRE(f.ok());
  const GgufTensorInfo* t = f->find_tensor("w");
  REQUIRE(t != nullptr);
  CHECK(f->find_tensor("x") == nullptr);
  const TensorView v = f->tensor_view(*t);
  CHECK(v.ne == std::array<int64_t, 4>{3, 2, 1, 1});
  CHECK(v.nb[1] == 12);
  const auto* row1 = reinterpret_cast<const float*>(v.row(1));
  CHECK(row1[0] == 4.0f);
  CHECK(row1[2] == 6.0f);
  CHECK(static_cast<const uint8_t*>(v.data) >= f->mapping().data());
  CHECK(t->file_offset + t->nbytes <= f->file_size());
  // Moving the file keeps views valid (the mapping is owned by the heap state).
  GgufFile moved = std::move(f).value();
  CHECK(moved.tensor_view(*moved.find_tensor("w")).data == v.data);
}

TEST_CASE("GgufFile accepts version 2 and in-memory images", "[gguf]") {
  test::TempDir dir("tandem-gguf-file");
  auto bytes = read_all(write_sample(dir));
  auto v3 = GgufFile::parse(bytes, "mem.gguf");
  REQUIRE(v3.ok());
  CHECK(v3->version() == 3);
  CHECK(v3->path() == "mem.gguf");
  bytes[4] = 2;  // v2 has the same layout (64-bit counts)
  auto v2 = GgufFile::parse(bytes, "mem.gguf");
  REQUIRE(v2.ok());
  CHECK(v2->version() == 2);
  CHECK(v2->kvs().size() == v3->kvs().size());
}

TEST_CASE("GgufFile::open reports missing, empty and non-GGUF files", "[gguf]") {
  test::TempDir dir("tandem-gguf-file");
  auto missing = GgufFile::open(dir / "absent.gguf");
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.status().code() == ErrorCode::not_found);
  CHECK_THAT(missing.status().message(), Contains("absent.gguf"));

  { std::ofstream(dir / "empty.gguf"); }
  auto empty = GgufFile::open(dir / "empty.gguf");
  REQUIRE_FALSE(empty.ok());
  CHECK_THAT(empty.status().message(), Contains("empty.gguf") && Contains("truncated"));

  { std::ofstream(dir / "text.gguf") << "hello, this is not a model"; }
  auto text = GgufFile::open(dir / "text.gguf");
  REQUIRE_FALSE(text.ok());
  CHECK_THAT(text.status().message(), Contains("bad magic 'hell'"));

  auto folder = GgufFile::open(dir.path());
  REQUIRE_FALSE(folder.ok());
}

TEST_CASE("GgufFile::open with FileLoad::read holds the same bytes as the mapping, as a copy", "[gguf]") {
  test::TempDir dir("tandem-gguf-read");
  MakeModelOptions o;
  o.preset = "tiny";
  o.dtype = DType::q4_0;
  REQUIRE(make_model(o, dir / "m.gguf").ok());
  auto mapped = GgufFile::open(dir / "m.gguf");
  auto read = GgufFile::open(dir / "m.gguf", FileLoad::read);
  REQUIRE(mapped.ok());
  REQUIRE(read.ok());
  CHECK(mapped->file_backed());
  CHECK_FALSE(read->file_backed());
  REQUIRE(read->mapping().size() == mapped->mapping().size());
  CHECK(read->mapping().data() != mapped->mapping().data());
  CHECK(std::equal(read->mapping().begin(), read->mapping().end(), mapped->mapping().begin()));
  REQUIRE(read->tensors().size() == mapped->tensors().size());
  const GgufTensorInfo& t = read->tensors().back();
  CHECK(read->tensor_view(t).data != mapped->tensor_view(mapped->tensors().back()).data);
  // A parsed image is not file-backed either.
  auto parsed = GgufFile::parse(mapped->mapping(), "image");
  REQUIRE(parsed.ok());
  CHECK_FALSE(parsed->file_backed());

  auto missing = GgufFile::open(dir / "absent.gguf", FileLoad::read);
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.status().code() == ErrorCode::not_found);
  { std::ofstream(dir / "text.gguf") << "hello, this is not a model"; }
  auto text = GgufFile::open(dir / "text.gguf", FileLoad::read);
  REQUIRE_FALSE(text.ok());
  CHECK_THAT(text.status().message(), Contains("bad magic 'hell'"));
}

// tests/fuzz/corpus is written by tests/fuzz/make_corpus.py, a GGUF writer independent of ours:
// its valid_* files must parse and its invalid_* files must not.
TEST_CASE("GgufFile agrees with an independent writer on the fuzz seed corpus", "[gguf]") {
  const auto corpus =
      std::filesystem::path(__FILE__).parent_path().parent_path() / "tests" / "fuzz" / "corpus";
  REQUIRE(std::filesystem::is_directory(corpus));
  int valid = 0;
  int invalid = 0;
  for (const auto& e : std::filesystem::directory_iterator(corpus)) {
    const std::string name = e.path().filename().string();
    INFO(name);
    auto f = GgufFile::open(e.path());
    if (name.rfind("valid_", 0) == 0) {
      CHECK(f.ok());
      if (!f.ok()) UNSCOPED_INFO(f.status().message());
      ++valid;
    } else if (name.rfind("invalid_", 0) == 0) {
      CHECK_FALSE(f.ok());
      ++invalid;
    }
  }
  CHECK(valid >= 5);
  CHECK(invalid >= 6);
  auto all = GgufFile::open(corpus / "valid_all_types.gguf");
  REQUIRE(all.ok());
  CHECK(all->get_u64("u64").value() == (uint64_t{1} << 63));
  CHECK(all->get_string_array("arr.str").value() == std::vector<std::string>{"x", ""});
  CHECK(all->find_tensor("q6_k")->n_dims == 4);
  auto v2 = GgufFile::open(corpus / "valid_v2.gguf");
  REQUIRE(v2.ok());
  CHECK(v2->version() == 2);
  auto a64 = GgufFile::open(corpus / "valid_align64.gguf");
  REQUIRE(a64.ok());
  CHECK(a64->find_tensor("b")->file_offset % 64 == 0);
}
