#include <catch2/catch.hpp>

#include <set>
#include <string>

#include "shaders/spirv.h"

namespace tandem::shaders {
namespace {

TEST_CASE("every embedded variant is SPIR-V and can be found by name", "[shaders]") {
  REQUIRE_FALSE(all_spirv().empty());
  std::set<std::string_view> names;
  for (const auto& m : all_spirv()) {
    INFO(m.name);
    REQUIRE(m.words.size() > 5);
    CHECK(m.words[0] == 0x07230203u);  // SPIR-V magic
    CHECK(find_spirv(m.name).data() == m.words.data());
    CHECK(names.insert(m.name).second);  // unique names
  }
  CHECK(find_spirv("no_such_variant").empty());
}

TEST_CASE("the portable variant of every op is always built", "[shaders]") {
  for (const char* name : {"mul_mat_vec_f32_f32", "mul_mat_vec_f16_f32", "mul_mat_vec_q8_0_f32",
                           "mul_mat_vec_q4_0_f32", "mul_mat_f32_f32", "mul_mat_f16_f32", "mul_mat_q8_0_f32",
                           "mul_mat_q4_0_f32", "rms_norm_f32", "rms_norm_mul_f32", "rope_neox_f32", "soft_max_f32",
                           "add_f32", "reglu_f32", "mul_mat_vec_id_q4_0_f32", "mul_mat_vec_t_id_q4_0_f32"}) {
    INFO(name);
    CHECK_FALSE(find_spirv(name).empty());
  }
#if TANDEM_SHADERS_SUBGROUP
  CHECK_FALSE(find_spirv("mul_mat_vec_q4_0_f32_subgroup").empty());
#else
  CHECK(find_spirv("mul_mat_vec_q4_0_f32_subgroup").empty());
#endif
}

}  // namespace
}  // namespace tandem::shaders
