#include "gpu/ops/reglu.h"

#include "gpu/ops/op_common.h"

namespace tandem::gpu::ops {
namespace {

struct Params {
  uint32_t n, g_offset, u_offset, d_offset;
};
constexpr uint32_t k_wg = 256;

}  // namespace

Status reglu(CommandRecorder& rec, const BufferSlice& gate, const BufferSlice& up, int64_t n, const BufferSlice& dst) {
  constexpr const char* op = "reglu";
  if (n <= 0) return make_error(ErrorCode::invalid_argument, "{}: {} elements", op, n);
  TANDEM_RETURN_IF_ERROR(check_u32(static_cast<uint64_t>(n), op, "elements"));
  const auto un = static_cast<uint64_t>(n);
  TANDEM_ASSIGN_OR_RETURN(uint32_t g_off, f32_operand(rec, gate, un, op, "gate"));
  TANDEM_ASSIGN_OR_RETURN(uint32_t u_off, f32_operand(rec, up, un, op, "up"));
  TANDEM_ASSIGN_OR_RETURN(uint32_t d_off, f32_operand(rec, dst, un, op, "dst"));
  TANDEM_ASSIGN_OR_RETURN(const Pipeline* p, rec.pipelines().get({"reglu_f32", 3, sizeof(Params), {k_wg}}));
  const Params pc{static_cast<uint32_t>(n), g_off, u_off, d_off};
  const BufferUse uses[] = {{gate, Access::read}, {up, Access::read}, {dst, Access::write}};
  return rec.dispatch(*p, uses, push_bytes(pc), rec.grid_1d((un + k_wg - 1) / k_wg));
}

}  // namespace tandem::gpu::ops
