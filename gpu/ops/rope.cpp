#include "gpu/ops/rope.h"

#include <cmath>

#include "gpu/ops/op_common.h"

namespace tandem::gpu::ops {
namespace {

struct Params {
  uint32_t ne0, ne1, ne2, n_rot;
  float theta_scale;
  uint32_t x_offset, d_offset;
};
constexpr uint32_t k_wg = 64;

}  // namespace

Status rope_neox(CommandRecorder& rec, const BufferSlice& x, const BufferSlice& pos, int64_t ne0, int64_t ne1,
                 int64_t ne2, int64_t n_rot, float freq_base, const BufferSlice& dst) {
  constexpr const char* op = "rope_neox";
  if (ne0 <= 0 || ne1 <= 0 || ne2 <= 0 || ne0 % 2 != 0 || n_rot <= 0 || n_rot % 2 != 0 || n_rot > ne0 ||
      !(freq_base > 0)) {
    return make_error(ErrorCode::invalid_argument, "{}: ne=[{}, {}, {}] n_rot={} freq_base={}", op, ne0, ne1, ne2,
                      n_rot, freq_base);
  }
  const auto& lim = rec.device().caps().max_compute_workgroup_count;
  if (static_cast<uint64_t>(ne1) > lim[1] || static_cast<uint64_t>(ne2) > lim[2]) {
    return make_error(ErrorCode::invalid_argument, "{}: {} heads x {} tokens exceed the dispatch limits", op, ne1, ne2);
  }
  const uint64_t n = static_cast<uint64_t>(ne0) * ne1 * ne2;
  TANDEM_RETURN_IF_ERROR(check_u32(n, op, "elements"));
  TANDEM_ASSIGN_OR_RETURN(uint32_t x_off, f32_operand(rec, x, n, op, "x"));
  TANDEM_ASSIGN_OR_RETURN(uint32_t d_off, f32_operand(rec, dst, n, op, "dst"));
  TANDEM_ASSIGN_OR_RETURN(uint32_t p_shift, raw_operand(rec, pos, static_cast<uint64_t>(ne2) * 4, op, "pos"));
  if (p_shift != 0) return make_error(ErrorCode::invalid_argument, "{}: pos must start at a bindable offset", op);
  TANDEM_ASSIGN_OR_RETURN(const Pipeline* p, rec.pipelines().get({"rope_neox_f32", 3, sizeof(Params), {k_wg}}));
  const Params pc{static_cast<uint32_t>(ne0), static_cast<uint32_t>(ne1), static_cast<uint32_t>(ne2),
                  static_cast<uint32_t>(n_rot),
                  static_cast<float>(std::pow(static_cast<double>(freq_base), -2.0 / static_cast<double>(n_rot))),
                  x_off, d_off};
  const BufferUse uses[] = {{x, Access::read}, {pos, Access::read}, {dst, Access::write}};
  const uint32_t gx = static_cast<uint32_t>((ne0 / 2 + k_wg - 1) / k_wg);
  return rec.dispatch(*p, uses, push_bytes(pc), {gx, static_cast<uint32_t>(ne1), static_cast<uint32_t>(ne2)});
}

}  // namespace tandem::gpu::ops
