#include "gpu/ops/mul_mat.h"

#include <fmt/format.h>

#include <bit>

#include "gpu/ops/op_common.h"

namespace tandem::gpu::ops {
namespace {

struct Params {
  uint32_t K, M, N, w_offset, w_row_stride, x_offset, x_row_stride, d_offset, d_row_stride;
};

}  // namespace

Status mul_mat(CommandRecorder& rec, DType wtype, const BufferSlice& weights, int64_t K, int64_t M,
               const BufferSlice& src, int64_t N, const BufferSlice& dst, const MulMatOptions& options) {
  constexpr const char* op = "mul_mat";
  if (wtype != DType::f32 && wtype != DType::f16 && wtype != DType::q8_0 && wtype != DType::q4_0) {
    return make_error(ErrorCode::unsupported, "{}: weights of dtype {} are not supported on the GPU", op,
                      dtype_name(wtype));
  }
  if (K <= 0 || M <= 0 || N <= 0 || K % dtype_block_size(wtype) != 0) {
    return make_error(ErrorCode::invalid_argument, "{}: K={} M={} N={} invalid for {}", op, K, M, N, dtype_name(wtype));
  }
  const uint32_t bm = options.tile_m, bn = options.tile_n, bk = options.tile_k;
  const auto& caps = rec.device().caps();
  if (bm == 0 || bn == 0 || bk == 0 || !std::has_single_bit(bm * bn) || bm * bn > caps.max_compute_workgroup_invocations ||
      (bm + bn) * (bk + 1) * 4 > caps.max_compute_shared_memory) {
    return make_error(ErrorCode::invalid_argument, "{}: tile {}x{}x{} does not fit the device", op, bm, bn, bk);
  }
  const uint64_t row_size = dtype_row_size(wtype, K);
  const uint64_t stride = options.row_stride ? options.row_stride : row_size;
  if (stride < row_size || stride % 2 != 0) {
    return make_error(ErrorCode::invalid_argument, "{}: row stride {} for rows of {} bytes", op, stride, row_size);
  }
  const uint64_t w_bytes = stride * static_cast<uint64_t>(M - 1) + row_size;
  TANDEM_RETURN_IF_ERROR(check_u32(w_bytes, op, "weight bytes"));
  TANDEM_RETURN_IF_ERROR(check_u32(static_cast<uint64_t>(K) * N, op, "src elements"));
  TANDEM_RETURN_IF_ERROR(check_u32(static_cast<uint64_t>(M) * N, op, "dst elements"));
  TANDEM_ASSIGN_OR_RETURN(uint32_t w_shift, raw_operand(rec, weights, w_bytes, op, "weights"));
  if ((wtype == DType::f32 && w_shift % 4 != 0) || w_shift % 2 != 0) {
    return make_error(ErrorCode::invalid_argument, "{}: weights misaligned (shift {})", op, w_shift);
  }
  TANDEM_ASSIGN_OR_RETURN(uint32_t x_off, f32_operand(rec, src, static_cast<uint64_t>(K * N), op, "src"));
  TANDEM_ASSIGN_OR_RETURN(uint32_t d_off, f32_operand(rec, dst, static_cast<uint64_t>(M * N), op, "dst"));
  TANDEM_ASSIGN_OR_RETURN(const Pipeline* p, rec.pipelines().get({fmt::format("mul_mat_{}_f32", dtype_name(wtype)), 3,
                                                                  sizeof(Params), {bm, bn, bk}}));
  const Params pc{static_cast<uint32_t>(K), static_cast<uint32_t>(M), static_cast<uint32_t>(N), w_shift,
                  static_cast<uint32_t>(stride), x_off, static_cast<uint32_t>(K), d_off, static_cast<uint32_t>(M)};
  const std::array<uint32_t, 3> groups = {static_cast<uint32_t>((M + bm - 1) / bm),
                                          static_cast<uint32_t>((N + bn - 1) / bn), 1};
  const BufferUse uses[] = {{weights, Access::read}, {src, Access::read}, {dst, Access::write}};
  return rec.dispatch(*p, uses, push_bytes(pc), groups);
}

}  // namespace tandem::gpu::ops
