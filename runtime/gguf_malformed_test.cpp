// Table-driven malformed GGUF images: each case corrupts a small valid image built in memory
// and expects a non-ok Status naming the problem (and the file). Also runs under ASan/UBSan.
#include <catch2/catch.hpp>

#include <cstring>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "runtime/gguf_file.h"

using namespace tandem;
using Catch::Matchers::Contains;

namespace {

struct RawKv {
  std::string key;
  uint32_t type;
  std::vector<uint8_t> payload;  // the value bytes exactly as on disk
};

struct RawTensor {
  std::string name;
  uint32_t n_dims;
  std::vector<int64_t> ne;
  uint32_t type;
  uint64_t offset;
};

struct Spec {
  std::string magic = "GGUF";
  uint32_t version = 3;
  std::optional<uint64_t> n_tensors;  // override of the counts written in the header
  std::optional<uint64_t> n_kv;
  std::vector<RawKv> kvs;
  std::vector<RawTensor> tensors;
  uint64_t data_bytes = 128;  // bytes after the aligned end of the tensor infos
};

struct Bytes {
  std::vector<uint8_t> b;
  template <class T>
  void put(T v) {
    const auto* p = reinterpret_cast<const uint8_t*>(&v);
    b.insert(b.end(), p, p + sizeof(T));
  }
  void put_str(const std::string& s) {
    put(static_cast<uint64_t>(s.size()));
    b.insert(b.end(), s.begin(), s.end());
  }
};

std::vector<uint8_t> str_payload(const std::string& s) {
  Bytes x;
  x.put_str(s);
  return x.b;
}
template <class T>
std::vector<uint8_t> pod_payload(T v) {
  Bytes x;
  x.put(v);
  return x.b;
}
std::vector<uint8_t> i32_array_payload(std::vector<int32_t> v) {
  Bytes x;
  x.put(static_cast<uint32_t>(GgufType::int32));
  x.put(static_cast<uint64_t>(v.size()));
  for (auto e : v) x.put(e);
  return x.b;
}

// Where each section starts in the image Spec{} builds (for truncation cases).
struct Layout {
  std::vector<uint64_t> kv_start, kv_type, kv_value, ti_start;
  uint64_t ti_end = 0, data_start = 0, size = 0;
};

std::vector<uint8_t> build(const Spec& s, Layout* layout = nullptr) {
  Layout l;
  Bytes x;
  x.b.insert(x.b.end(), s.magic.begin(), s.magic.end());
  x.put(s.version);
  x.put(s.n_tensors.value_or(s.tensors.size()));
  x.put(s.n_kv.value_or(s.kvs.size()));
  for (const auto& kv : s.kvs) {
    l.kv_start.push_back(x.b.size());
    x.put_str(kv.key);
    l.kv_type.push_back(x.b.size());
    x.put(kv.type);
    l.kv_value.push_back(x.b.size());
    x.b.insert(x.b.end(), kv.payload.begin(), kv.payload.end());
  }
  for (const auto& t : s.tensors) {
    l.ti_start.push_back(x.b.size());
    x.put_str(t.name);
    x.put(t.n_dims);
    for (auto e : t.ne) x.put(e);
    x.put(t.type);
    x.put(t.offset);
  }
  l.ti_end = x.b.size();
  x.b.resize(gguf_align_up(x.b.size(), 32), 0);
  l.data_start = x.b.size();
  x.b.resize(x.b.size() + s.data_bytes, 0x5a);
  l.size = x.b.size();
  if (layout) *layout = l;
  return x.b;
}

// The valid base image: three kvs (string, u32, i32 array) and two tensors
// (f32 [8] = 32 bytes at 0; q8_0 [32, 2] = 68 bytes at 32), 128 data bytes.
Spec base() {
  Spec s;
  s.kvs.push_back({"general.architecture", 8, str_payload("test")});
  s.kvs.push_back({"test.count", 4, pod_payload<uint32_t>(7)});
  s.kvs.push_back({"test.list", 9, i32_array_payload({1, 2, 3})});
  s.tensors.push_back({"a", 1, {8}, 0, 0});
  s.tensors.push_back({"b", 2, {32, 2}, 8, 32});
  return s;
}

std::vector<uint8_t> truncated_at(uint64_t n) {
  auto img = build(base());
  img.resize(n);
  return img;
}

Layout base_layout() {
  Layout l;
  (void)build(base(), &l);
  return l;
}

struct Case {
  const char* name;
  std::function<std::vector<uint8_t>()> image;
  std::string expected;  // fragment of the error message
};

std::vector<Case> cases() {
  const Layout L = base_layout();
  auto with = [](std::function<void(Spec&)> edit) {
    return [edit] {
      Spec s = base();
      edit(s);
      return build(s);
    };
  };
  auto cut = [](uint64_t n) { return [n] { return truncated_at(n); }; };
  auto patched = [](uint64_t at, uint64_t v) {
    return [at, v] {
      auto img = build(base());
      std::memcpy(img.data() + at, &v, sizeof(v));
      return img;
    };
  };
  static constexpr uint64_t huge = uint64_t{1} << 40;
  return {
      {"empty file", cut(0), "need 4 bytes for the magic at byte 0"},
      {"truncated magic", cut(2), "for the magic"},
      {"bad magic", with([](Spec& s) { s.magic = "GGML"; }), "bad magic 'GGML'"},
      {"truncated version", cut(6), "for the version at byte 4"},
      {"version 0", with([](Spec& s) { s.version = 0; }), "version 0 at byte 4 is invalid"},
      {"version 1", with([](Spec& s) { s.version = 1; }),
       "version 1 at byte 4 is no longer supported"},
      {"version 4", with([](Spec& s) { s.version = 4; }), "version 4 at byte 4 is newer"},
      {"endian swapped version", with([](Spec& s) { s.version = 0x03000000; }), "endian mismatch"},
      {"truncated n_tensors", cut(12), "for n_tensors"},
      {"truncated n_kv", cut(20), "for n_kv"},
      {"n_kv far beyond the file", with([&](Spec& s) { s.n_kv = huge; }), "n_kv = 1099511627776"},
      {"n_kv 2^64-1", with([](Spec& s) { s.n_kv = ~uint64_t{0}; }), "is impossible"},
      {"n_tensors far beyond the file", with([&](Spec& s) { s.n_tensors = huge; }),
       "n_tensors = 1099511627776"},
      {"truncated key length", cut(L.kv_start[0] + 3), "the length of a metadata key"},
      {"truncated key bytes", cut(L.kv_start[0] + 10), "has length 20, beyond the"},
      {"key length 2^64-1", patched(L.kv_start[1], ~uint64_t{0}),
       "has length 18446744073709551615"},
      {"empty key with unknown type", with([](Spec& s) {
         s.kvs[1].key.clear();
         s.kvs[1].type = 0xffffffffu;
       }),
       "unknown value type 4294967295"},
      {"truncated value type", cut(L.kv_type[1] + 2), "the type of key 'test.count'"},
      {"truncated scalar value", cut(L.kv_value[1] + 1), "the value of key 'test.count'"},
      {"truncated string value", cut(L.kv_value[0] + 9), "the value of key 'general.architecture'"},
      {"string value length beyond the file",
       with([](Spec& s) { s.kvs[0].payload = pod_payload<uint64_t>(~uint64_t{0}); }),
       "has length 18446744073709551615"},
      {"unknown value type", with([](Spec& s) { s.kvs[1].type = 13; }), "unknown value type 13"},
      {"truncated array element type", cut(L.kv_value[2] + 2),
       "the element type of key 'test.list'"},
      {"truncated array length", cut(L.kv_value[2] + 8), "the array length of key 'test.list'"},
      {"truncated array elements", cut(L.kv_value[2] + 14), "array length 3 of key 'test.list'"},
      {"array count beyond the file", with([&](Spec& s) {
         Bytes x;
         x.put(static_cast<uint32_t>(GgufType::uint64));
         x.put(huge);
         s.kvs[2].payload = x.b;
       }),
       "array length 1099511627776 of key 'test.list'"},
      {"string array element beyond the file", with([](Spec& s) {
         Bytes x;
         x.put(static_cast<uint32_t>(GgufType::string));
         x.put(uint64_t{2});
         x.put_str("ok");
         x.put(uint64_t{1} << 50);
         s.kvs[2].payload = x.b;
       }),
       "has length 1125899906842624"},
      {"nested array", with([](Spec& s) {
         Bytes x;
         x.put(static_cast<uint32_t>(GgufType::array));
         x.put(uint64_t{0});
         s.kvs[2].payload = x.b;
       }),
       "nested arrays are not supported"},
      {"unknown array element type", with([](Spec& s) {
         Bytes x;
         x.put(uint32_t{42});
         x.put(uint64_t{0});
         s.kvs[2].payload = x.b;
       }),
       "unknown array element type 42"},
      {"duplicate key", with([](Spec& s) { s.kvs[2] = s.kvs[1]; }), "duplicate key 'test.count'"},
      {"alignment not a power of two", with([](Spec& s) {
         s.kvs.push_back({"general.alignment", 4, pod_payload<uint32_t>(48)});
       }),
       "general.alignment = 48"},
      {"alignment zero", with([](Spec& s) {
         s.kvs.push_back({"general.alignment", 4, pod_payload<uint32_t>(0)});
       }),
       "is not a power of two"},
      {"alignment of the wrong type", with([](Spec& s) {
         s.kvs.push_back({"general.alignment", 5, pod_payload<int32_t>(32)});
       }),
       "key 'general.alignment' at byte"},
      {"alignment as uint64", with([](Spec& s) {
         s.kvs.push_back({"general.alignment", 10, pod_payload<uint64_t>(32)});
       }),
       "has type uint64, expected uint32"},
      {"truncated tensor name", cut(L.ti_start[0] + 4), "the length of a tensor name"},
      {"truncated n_dims", cut(L.ti_start[0] + 9 + 2), "n_dims of tensor 'a'"},
      {"truncated ne", cut(L.ti_start[0] + 13 + 4), "ne[0] of tensor 'a'"},
      {"truncated tensor type", cut(L.ti_start[0] + 21 + 1), "the type of tensor 'a'"},
      {"truncated tensor offset", cut(L.ti_start[0] + 25 + 7), "the data offset of tensor 'a'"},
      {"truncated second tensor info", cut(L.ti_start[1] + 20), "of tensor 'b'"},
      {"n_dims 5", with([](Spec& s) {
         s.tensors[0] = {"a", 5, {8, 1, 1, 1, 1}, 0, 0};
       }),
       "has n_dims 5"},
      {"n_dims 0", with([](Spec& s) {
         s.tensors[0] = {"a", 0, {}, 0, 0};
       }),
       "has n_dims 0"},
      {"ne product overflows", with([](Spec& s) {
         s.tensors[0] = {"a", 3, {int64_t{1} << 32, int64_t{1} << 32, 4}, 0, 0};
       }),
       "element count overflows"},
      {"byte size overflows", with([](Spec& s) {
         s.tensors[0] = {"a", 2, {int64_t{1} << 31, int64_t{1} << 31}, 0, 0};
       }),
       "byte size overflows"},
      {"negative ne", with([](Spec& s) {
         s.tensors[1].ne = {32, -2};
       }),
       "ne[1] = -2"},
      {"zero ne", with([](Spec& s) { s.tensors[0].ne = {0}; }), "ne[0] = 0"},
      {"unsupported dtype q5_1", with([](Spec& s) { s.tensors[1].type = 7; }),
       "unsupported dtype q5_1 (ggml type 7) for tensor 'b'"},
      {"unknown dtype id", with([](Spec& s) { s.tensors[1].type = 1000; }),
       "unsupported dtype unknown"},
      {"ne0 not a multiple of the block size", with([](Spec& s) {
         s.tensors[1].ne = {48, 2};
       }),
       "ne0 = 48 is not a multiple of the q8_0 block size 32"},
      {"duplicate tensor name", with([](Spec& s) { s.tensors[1].name = s.tensors[0].name; }),
       "duplicate tensor name 'a'"},
      {"tensor name too long", with([](Spec& s) { s.tensors[1].name = std::string(64, 'x'); }),
       "is 64 bytes long"},
      {"misaligned offset", with([](Spec& s) { s.tensors[1].offset = 40; }),
       "not a multiple of the alignment 32"},
      {"overlapping offset", with([](Spec& s) { s.tensors[1].offset = 0; }),
       "has data offset 0 but 32 was expected"},
      {"gap between tensors", with([](Spec& s) { s.tensors[1].offset = 64; }),
       "has data offset 64 but 32 was expected"},
      {"tensors out of order", with([](Spec& s) {
         s.tensors[0].offset = 96;
         s.tensors[1].offset = 0;
       }),
       "tensor 'a'"},
      {"offset far beyond the file", with([](Spec& s) { s.tensors[0].offset = uint64_t{1} << 62; }),
       "was expected"},
      {"data truncated", with([](Spec& s) { s.data_bytes = 90; }),
       "lies beyond the end of the file"},
      {"no data section", with([](Spec& s) { s.data_bytes = 0; }), "data of tensor 'a'"},
      {"tensor larger than the file", with([](Spec& s) {
         s.tensors[1].ne = {32, int64_t{1} << 40};
       }),
       "lies beyond the end of the file"},
  };
}

}  // namespace

TEST_CASE("the valid base image parses", "[gguf]") {
  const auto img = build(base());
  auto f = GgufFile::parse(img, "base.gguf");
  REQUIRE(f.ok());
  CHECK(f->kvs().size() == 3);
  REQUIRE(f->tensors().size() == 2);
  CHECK(f->tensors()[1].nbytes == 68);
  CHECK(f->tensors()[1].file_offset == f->data_offset() + 32);
}

TEST_CASE("malformed GGUF images are rejected with a clear error", "[gguf]") {
  const auto all = cases();
  REQUIRE(all.size() >= 30);
  for (const auto& c : all) {
    SECTION(c.name) {
      const std::vector<uint8_t> img = c.image();
      // A heap copy of exactly the image's size, so ASan sees any read past its end.
      std::unique_ptr<uint8_t[]> exact(new uint8_t[img.size() + 1]);
      if (!img.empty()) std::memcpy(exact.get(), img.data(), img.size());
      auto f = GgufFile::parse(std::span<const uint8_t>(exact.get(), img.size()), "bad.gguf");
      REQUIRE_FALSE(f.ok());
      INFO(f.status().message());
      REQUIRE_THAT(f.status().message(), Contains(c.expected));
      REQUIRE_THAT(f.status().message(), Contains("bad.gguf"));
    }
  }
}

TEST_CASE("every strict prefix of a valid image is rejected", "[gguf]") {
  const auto img = build(base());
  Layout l;
  (void)build(base(), &l);
  // The image is valid from the end of the last tensor's data on; every shorter cut must fail.
  const uint64_t last_needed = l.data_start + 32 + 68;
  for (uint64_t n = 0; n < last_needed; ++n) {
    std::vector<uint8_t> cut(img.begin(), img.begin() + static_cast<std::ptrdiff_t>(n));
    auto f = GgufFile::parse(cut, "cut.gguf");
    INFO("cut at " << n);
    REQUIRE_FALSE(f.ok());
  }
  std::vector<uint8_t> exact(img.begin(), img.begin() + static_cast<std::ptrdiff_t>(last_needed));
  CHECK(GgufFile::parse(exact, "exact.gguf").ok());
}
