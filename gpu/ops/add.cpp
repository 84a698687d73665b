#include "gpu/ops/add.h"

#include "gpu/ops/op_common.h"

namespace tandem::gpu::ops {
namespace {

struct Params {
  uint32_t ncols, nrows, b_nrows, a_offset, b_offset, d_offset;
};
constexpr uint32_t k_wg = 256;

}  // namespace

Status add(CommandRecorder& rec, const BufferSlice& a, const BufferSlice& b, int64_t ncols, int64_t nrows,
           int64_t b_nrows, const BufferSlice& dst) {
  constexpr const char* op = "add";
  if (ncols <= 0 || nrows <= 0 || b_nrows <= 0) {
    return make_error(ErrorCode::invalid_argument, "{}: shape [{}, {}] + [{}, {}]", op, ncols, nrows, ncols, b_nrows);
  }
  const uint64_t n = static_cast<uint64_t>(ncols) * nrows;
  TANDEM_RETURN_IF_ERROR(check_u32(n, op, "elements"));
  TANDEM_ASSIGN_OR_RETURN(uint32_t a_off, f32_operand(rec, a, n, op, "a"));
  TANDEM_ASSIGN_OR_RETURN(uint32_t b_off, f32_operand(rec, b, static_cast<uint64_t>(ncols) * b_nrows, op, "b"));
  TANDEM_ASSIGN_OR_RETURN(uint32_t d_off, f32_operand(rec, dst, n, op, "dst"));
  TANDEM_ASSIGN_OR_RETURN(const Pipeline* p, rec.pipelines().get({"add_f32", 3, sizeof(Params), {k_wg}}));
  const Params pc{static_cast<uint32_t>(ncols), static_cast<uint32_t>(nrows), static_cast<uint32_t>(b_nrows),
                  a_off, b_off, d_off};
  const BufferUse uses[] = {{a, Access::read}, {b, Access::read}, {dst, Access::write}};
  return rec.dispatch(*p, uses, push_bytes(pc), rec.grid_1d((n + k_wg - 1) / k_wg));
}

}  // namespace tandem::gpu::ops
