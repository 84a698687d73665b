#include "core/dtype.h"

#include <array>
#include <cctype>
#include <string>

namespace tandem {
namespace {

constexpr std::array<DTypeTraits, 7> k_traits = {{
    {DType::f32, "f32", 1, 4, false},
    {DType::f16, "f16", 1, 2, false},
    {DType::q4_0, "q4_0", 32, 18, true},
    {DType::q8_0, "q8_0", 32, 34, true},
    {DType::q4_K, "q4_K", 256, 144, true},
    {DType::q6_K, "q6_K", 256, 210, true},
    {DType::bf16, "bf16", 1, 2, false},
}};

// ggml/include/ggml.h `enum ggml_type`, ids 0..39 (gaps are removed types).
constexpr std::array<std::string_view, 40> k_ggml_names = {
    "f32",     "f16",     "q4_0",    "q4_1",   "q4_2 (removed)", "q4_3 (removed)", "q5_0",
    "q5_1",    "q8_0",    "q8_1",    "q2_K",   "q3_K",           "q4_K",           "q5_K",
    "q6_K",    "q8_K",    "iq2_xxs", "iq2_xs", "iq3_xxs",        "iq1_s",          "iq4_nl",
    "iq3_s",   "iq2_s",   "iq4_xs",  "i8",     "i16",            "i32",            "i64",
    "f64",     "iq1_m",   "bf16",    "q4_0_4_4 (removed)", "q4_0_4_8 (removed)",
    "q4_0_8_8 (removed)", "tq1_0", "tq2_0", "iq4_nl_4_4 (removed)", "iq4_nl_4_8 (removed)",
    "iq4_nl_8_8 (removed)", "mxfp4",
};

}  // namespace

const DTypeTraits* dtype_traits(uint32_t ggml_type) {
  for (const auto& t : k_traits) {
    if (static_cast<uint32_t>(t.dtype) == ggml_type) return &t;
  }
  return nullptr;
}

const DTypeTraits& dtype_traits(DType dtype) {
  const DTypeTraits* t = dtype_traits(static_cast<uint32_t>(dtype));
  if (t == nullptr) return k_traits[0];  // unreachable for valid enum values
  return *t;
}

std::string_view ggml_type_name(uint32_t ggml_type) {
  if (ggml_type < k_ggml_names.size()) return k_ggml_names[ggml_type];
  return "unknown";
}

std::optional<DType> dtype_from_name(std::string_view name) {
  std::string lower(name);
  for (auto& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (const auto& t : k_traits) {
    std::string tn(t.name);
    for (auto& c : tn) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (tn == lower) return t.dtype;
  }
  return std::nullopt;
}

uint32_t llama_file_type(DType d) {
  switch (d) {
    case DType::f32: return 0;
    case DType::f16: return 1;
    case DType::q4_0: return 2;
    case DType::q8_0: return 7;
    case DType::q4_K: return 15;  // LLAMA_FTYPE_MOSTLY_Q4_K_M
    case DType::q6_K: return 18;
    case DType::bf16: return 32;
  }
  return 0;
}

}  // namespace tandem
