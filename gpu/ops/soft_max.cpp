#include "gpu/ops/soft_max.h"

#include "gpu/ops/op_common.h"

namespace tandem::gpu::ops {
namespace {

struct Params {
  uint32_t ncols, nrows;
  float scale;
  uint32_t has_mask, mask_nrows, x_offset, m_offset, d_offset;
};

}  // namespace

Status soft_max(CommandRecorder& rec, const BufferSlice& x, int64_t ncols, int64_t nrows, float scale,
                const std::optional<SoftMaxMask>& mask, const BufferSlice& dst) {
  constexpr const char* op = "soft_max";
  if (ncols <= 0 || nrows <= 0 || (mask && mask->nrows <= 0)) {
    return make_error(ErrorCode::invalid_argument, "{}: shape [{}, {}]", op, ncols, nrows);
  }
  const uint64_t n = static_cast<uint64_t>(ncols) * nrows;
  TANDEM_RETURN_IF_ERROR(check_u32(n, op, "elements"));
  TANDEM_ASSIGN_OR_RETURN(uint32_t x_off, f32_operand(rec, x, n, op, "x"));
  TANDEM_ASSIGN_OR_RETURN(uint32_t d_off, f32_operand(rec, dst, n, op, "dst"));
  uint32_t m_off = 0;
  if (mask) {
    TANDEM_ASSIGN_OR_RETURN(m_off, f32_operand(rec, mask->mask, static_cast<uint64_t>(ncols) * mask->nrows, op, "mask"));
  }
  TANDEM_ASSIGN_OR_RETURN(const Pipeline* p, rec.pipelines().get({"soft_max_f32", 3, sizeof(Params), {128}}));
  const Params pc{static_cast<uint32_t>(ncols), static_cast<uint32_t>(nrows), scale, mask ? 1u : 0u,
                  mask ? static_cast<uint32_t>(mask->nrows) : 1u, x_off, m_off, d_off};
  const BufferUse uses[] = {{x, Access::read}, {mask ? mask->mask : x, Access::read}, {dst, Access::read_write}};
  return rec.dispatch(*p, uses, push_bytes(pc), rec.grid_1d(static_cast<uint64_t>(nrows)));
}

}  // namespace tandem::gpu::ops
