#include "gpu/ops/set_rows.h"

#include "gpu/ops/op_common.h"

namespace tandem::gpu::ops {
namespace {

struct Params {
  uint32_t ncols, m, nrows, s_offset, r_offset, d_offset;
};
constexpr uint32_t k_wg = 256;

}  // namespace

Status set_rows(CommandRecorder& rec, const BufferSlice& src, int64_t ncols, int64_t m,
                const BufferSlice& rows, DType dst_type, const BufferSlice& dst, int64_t nrows) {
  constexpr const char* op = "set_rows";
  if (dst_type != DType::f32 && dst_type != DType::f16) {
    return make_error(ErrorCode::unsupported, "{}: dst type {} (f32 or f16 only)", op,
                      dtype_name(dst_type));
  }
  const bool f16 = dst_type == DType::f16;
  if (ncols <= 0 || m <= 0 || nrows <= 0 || (f16 && ncols % 2 != 0)) {
    return make_error(ErrorCode::invalid_argument, "{}: src [{}, {}] into [{}, {}] {}", op, ncols,
                      m, ncols, nrows, dtype_name(dst_type));
  }
  const auto n_src = static_cast<uint64_t>(ncols) * static_cast<uint64_t>(m);
  const auto n_dst = static_cast<uint64_t>(ncols) * static_cast<uint64_t>(nrows);
  TANDEM_RETURN_IF_ERROR(check_u32(n_src, op, "src elements"));
  TANDEM_RETURN_IF_ERROR(check_u32(n_dst, op, "dst elements"));
  TANDEM_ASSIGN_OR_RETURN(uint32_t s_off, f32_operand(rec, src, n_src, op, "src"));
  TANDEM_ASSIGN_OR_RETURN(uint32_t r_off,
                          f32_operand(rec, rows, static_cast<uint64_t>(m), op, "rows"));
  // f16 rows are written as whole 32-bit words (two halves), so dst must be word-aligned too.
  TANDEM_ASSIGN_OR_RETURN(uint32_t d_off,
                          f32_operand(rec, dst, f16 ? n_dst / 2 : n_dst, op, "dst"));
  TANDEM_ASSIGN_OR_RETURN(
      const Pipeline* p,
      rec.pipelines().get({f16 ? "set_rows_f16" : "set_rows_f32", 3, sizeof(Params), {k_wg}}));
  const Params pc{static_cast<uint32_t>(ncols),
                  static_cast<uint32_t>(m),
                  static_cast<uint32_t>(nrows),
                  s_off,
                  r_off,
                  d_off};
  const uint64_t invocations = f16 ? n_src / 2 : n_src;
  // read_write: rows the indices do not name keep their contents.
  const BufferUse uses[] = {{src, Access::read}, {rows, Access::read}, {dst, Access::read_write}};
  return rec.dispatch(*p, uses, push_bytes(pc), rec.grid_1d((invocations + k_wg - 1) / k_wg));
}

}  // namespace tandem::gpu::ops
