#include "gpu/ops/rms_norm.h"

#include "gpu/ops/op_common.h"

namespace tandem::gpu::ops {
namespace {

struct Params {
  uint32_t ncols, nrows;
  float eps;
  uint32_t x_offset, w_offset, d_offset;
};

}  // namespace

Status rms_norm(CommandRecorder& rec, const BufferSlice& x, int64_t ncols, int64_t nrows, float eps,
                const std::optional<BufferSlice>& weight, const BufferSlice& dst) {
  constexpr const char* op = "rms_norm";
  if (ncols <= 0 || nrows <= 0) return make_error(ErrorCode::invalid_argument, "{}: shape [{}, {}]", op, ncols, nrows);
  const uint64_t n = static_cast<uint64_t>(ncols) * nrows;
  TANDEM_RETURN_IF_ERROR(check_u32(n, op, "elements"));
  TANDEM_ASSIGN_OR_RETURN(uint32_t x_off, f32_operand(rec, x, n, op, "x"));
  TANDEM_ASSIGN_OR_RETURN(uint32_t d_off, f32_operand(rec, dst, n, op, "dst"));
  uint32_t w_off = 0;
  if (weight) {
    TANDEM_ASSIGN_OR_RETURN(w_off, f32_operand(rec, *weight, static_cast<uint64_t>(ncols), op, "weight"));
  }
  TANDEM_ASSIGN_OR_RETURN(const Pipeline* p, rec.pipelines().get({weight ? "rms_norm_mul_f32" : "rms_norm_f32", 3,
                                                                  sizeof(Params), {128}}));
  const Params pc{static_cast<uint32_t>(ncols), static_cast<uint32_t>(nrows), eps, x_off, w_off, d_off};
  // Without a weight the binding is never read; x stands in for it.
  const BufferUse uses[] = {{x, Access::read}, {weight.value_or(x), Access::read}, {dst, Access::write}};
  return rec.dispatch(*p, uses, push_bytes(pc), rec.grid_1d(static_cast<uint64_t>(nrows)));
}

}  // namespace tandem::gpu::ops
