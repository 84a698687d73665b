#include "gpu/ops/quantize_q8_1.h"

#include "gpu/ops/op_common.h"

namespace tandem::gpu::ops {
namespace {

struct Params {
  uint32_t ncols, nrows, x_offset, x_row_stride, q_offset;
};
constexpr uint32_t k_wg = 64;  // blocks per workgroup, one invocation each

}  // namespace

uint64_t q8_1_bytes(int64_t ncols, int64_t nrows) {
  if (ncols <= 0 || nrows <= 0 || ncols % 32 != 0) return 0;
  return static_cast<uint64_t>(ncols / 32) * static_cast<uint64_t>(nrows) * k_q8_1_block_bytes;
}

Status quantize_q8_1(CommandRecorder& rec, const BufferSlice& x, int64_t ncols, int64_t nrows,
                     const BufferSlice& dst) {
  constexpr const char* op = "quantize_q8_1";
  const uint64_t bytes = q8_1_bytes(ncols, nrows);
  if (bytes == 0) {
    return make_error(ErrorCode::invalid_argument, "{}: shape [{}, {}] (ncols a positive multiple of 32)", op,
                      ncols, nrows);
  }
  const uint64_t n = static_cast<uint64_t>(ncols) * static_cast<uint64_t>(nrows);
  TANDEM_RETURN_IF_ERROR(check_u32(n, op, "x elements"));
  TANDEM_RETURN_IF_ERROR(check_u32(bytes, op, "q8_1 bytes"));
  TANDEM_ASSIGN_OR_RETURN(uint32_t x_off, f32_operand(rec, x, n, op, "x"));
  TANDEM_ASSIGN_OR_RETURN(uint32_t q_off, f32_operand(rec, dst, bytes / 4, op, "dst"));
  TANDEM_ASSIGN_OR_RETURN(const Pipeline* p, rec.pipelines().get({"quantize_q8_1", 2, sizeof(Params), {k_wg}}));
  const Params pc{static_cast<uint32_t>(ncols), static_cast<uint32_t>(nrows), x_off, static_cast<uint32_t>(ncols),
                  q_off};
  const uint64_t blocks = bytes / k_q8_1_block_bytes;
  const BufferUse uses[] = {{x, Access::read}, {dst, Access::write}};
  return rec.dispatch(*p, uses, push_bytes(pc), rec.grid_1d((blocks + k_wg - 1) / k_wg));
}

}  // namespace tandem::gpu::ops
