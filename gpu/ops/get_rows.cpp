#include "gpu/ops/get_rows.h"

#include <algorithm>

#include <fmt/format.h>

#include "gpu/ops/op_common.h"

namespace tandem::gpu::ops {
namespace {

struct Params {
  uint32_t ncols, nrows, row_lo, n_part, m, w_offset, row_bytes, i_offset, d_offset;
};
constexpr uint32_t k_wg = 64;

}  // namespace

Status get_rows(CommandRecorder& rec, DType src_type, const BufferSlice& src, int64_t ncols,
                int64_t nrows, const BufferSlice& ids, int64_t m, const BufferSlice& dst,
                uint64_t max_part_bytes) {
  constexpr const char* op = "get_rows";
  if (src_type != DType::f32 && src_type != DType::f16 && src_type != DType::q8_0 &&
      src_type != DType::q4_0) {
    return make_error(ErrorCode::unsupported, "{}: src type {} (f32, f16, q8_0, q4_0 only)", op,
                      dtype_name(src_type));
  }
  if (ncols <= 0 || nrows <= 0 || m <= 0 || ncols % dtype_block_size(src_type) != 0) {
    return make_error(ErrorCode::invalid_argument, "{}: src [{}, {}] {} with {} ids", op, ncols,
                      nrows, dtype_name(src_type), m);
  }
  const uint64_t row_bytes = dtype_row_size(src_type, ncols);
  const uint64_t src_bytes = row_bytes * static_cast<uint64_t>(nrows);
  const uint64_t n_dst = static_cast<uint64_t>(ncols) * static_cast<uint64_t>(m);
  TANDEM_RETURN_IF_ERROR(check_u32(static_cast<uint64_t>(nrows), op, "nrows"));
  TANDEM_RETURN_IF_ERROR(check_u32(n_dst, op, "dst elements"));
  if (src.buffer == nullptr || src.size < src_bytes) {
    return make_error(ErrorCode::invalid_argument, "{}: src ('{}') holds {} bytes, needs {}", op,
                      src.buffer ? src.buffer->name() : "none", src.size, src_bytes);
  }
  TANDEM_ASSIGN_OR_RETURN(uint32_t i_off,
                          f32_operand(rec, ids, static_cast<uint64_t>(m), op, "ids"));
  TANDEM_ASSIGN_OR_RETURN(uint32_t d_off, f32_operand(rec, dst, n_dst, op, "dst"));
  const std::string variant = fmt::format("get_rows_{}_f32", dtype_name(src_type));
  TANDEM_ASSIGN_OR_RETURN(const Pipeline* p,
                          rec.pipelines().get({variant, 3, sizeof(Params), {k_wg}}));

  // A part's binding starts up to one offset alignment before its first row (CommandRecorder::
  // bind rounds down), so that much of the range is reserved; the push constants are 32-bit.
  const auto& caps = rec.device().caps();
  uint64_t part_bytes = std::min<uint64_t>(caps.max_storage_buffer_range, 0xffffffffu);
  if (max_part_bytes != 0) part_bytes = std::min(part_bytes, max_part_bytes);
  const uint64_t reserve = std::max<uint64_t>(caps.min_storage_buffer_offset_alignment, 4);
  if (part_bytes < reserve + row_bytes) {
    return make_error(ErrorCode::invalid_argument,
                      "{}: a {}-byte row does not fit a {}-byte binding", op, row_bytes,
                      part_bytes);
  }
  const uint64_t rows_per_part = (part_bytes - reserve) / row_bytes;
  for (uint64_t lo = 0; lo < static_cast<uint64_t>(nrows); lo += rows_per_part) {
    const uint64_t n = std::min(rows_per_part, static_cast<uint64_t>(nrows) - lo);
    const BufferSlice part{src.buffer, src.offset + lo * row_bytes, n * row_bytes};
    TANDEM_ASSIGN_OR_RETURN(uint32_t w_shift, raw_operand(rec, part, n * row_bytes, op, "src"));
    if (w_shift % (src_type == DType::f32 ? 4 : 2) != 0) {
      return make_error(ErrorCode::invalid_argument,
                        "{}: src ('{}') at byte offset {} is misaligned for {}", op,
                        src.buffer->name(), part.offset, dtype_name(src_type));
    }
    const Params pc{static_cast<uint32_t>(ncols),
                    static_cast<uint32_t>(nrows),
                    static_cast<uint32_t>(lo),
                    static_cast<uint32_t>(n),
                    static_cast<uint32_t>(m),
                    w_shift,
                    static_cast<uint32_t>(row_bytes),
                    i_off,
                    d_off};
    const BufferUse uses[] = {{part, Access::read}, {ids, Access::read}, {dst, Access::write}};
    TANDEM_RETURN_IF_ERROR(
        rec.dispatch(*p, uses, push_bytes(pc), rec.grid_1d(static_cast<uint64_t>(m))));
  }
  return Status::success();
}

}  // namespace tandem::gpu::ops
