#include "gpu/ops/mul_mat_vec.h"

#include <fmt/format.h>

#include <bit>

#include "gpu/ops/mul_mat_vec_variant.h"
#include "gpu/ops/op_common.h"
#include "shaders/spirv.h"

namespace tandem::gpu::ops {
namespace {

struct Params {
  uint32_t ncols, nrows, w_offset, w_row_stride, x_offset, d_offset;
};

bool supported(DType t) { return t == DType::f32 || t == DType::f16 || t == DType::q8_0 || t == DType::q4_0; }

}  // namespace

Result<std::string> mul_mat_vec_variant(const Device& device, DType wtype, ReductionVariant variant,
                                        bool has_q8_1) {
  if (!supported(wtype)) {
    return make_error(ErrorCode::unsupported, "mul_mat_vec: weights of dtype {} are not supported on the GPU",
                      dtype_name(wtype));
  }
  const std::string base = fmt::format("mul_mat_vec_{}_f32", dtype_name(wtype));
  // An explicit intdot request is judged by the build and device; the missing slice is the op's
  // argument error.
  const bool with_intdot = has_q8_1 || variant == ShaderVariant::intdot;
  return pick_shader_variant(device.caps(), "mul_mat_vec", base, detail::mul_mat_vec_offered(wtype, with_intdot),
                             variant);
}

std::vector<ShaderVariant> mul_mat_vec_variants(const Device& device, DType wtype) {
  if (!supported(wtype)) return {};
  return runnable_variants(device.caps(), fmt::format("mul_mat_vec_{}_f32", dtype_name(wtype)),
                           detail::mul_mat_vec_offered(wtype, true));
}

Status mul_mat_vec(CommandRecorder& rec, DType wtype, const BufferSlice& weights, int64_t ncols, int64_t nrows,
                   const BufferSlice& x, const BufferSlice& dst, const MulMatVecOptions& options) {
  constexpr const char* op = "mul_mat_vec";
  TANDEM_ASSIGN_OR_RETURN(std::string variant, mul_mat_vec_variant(rec.device(), wtype, options.variant,
                                                                    options.q8_1.buffer != nullptr));
  const bool intdot = variant.ends_with(shader_variant_suffix(ShaderVariant::intdot));
  if (ncols <= 0 || nrows <= 0 || ncols % dtype_block_size(wtype) != 0) {
    return make_error(ErrorCode::invalid_argument, "{}: shape [{}, {}] invalid for {} (block size {})", op, ncols,
                      nrows, dtype_name(wtype), dtype_block_size(wtype));
  }
  const uint64_t row_size = dtype_row_size(wtype, ncols);
  const uint64_t stride = options.row_stride ? options.row_stride : row_size;
  if (stride < row_size || stride % 2 != 0) {
    return make_error(ErrorCode::invalid_argument, "{}: row stride {} for rows of {} bytes", op, stride, row_size);
  }
  const uint64_t w_bytes = stride * static_cast<uint64_t>(nrows - 1) + row_size;
  TANDEM_RETURN_IF_ERROR(check_u32(w_bytes, op, "weight bytes"));
  TANDEM_ASSIGN_OR_RETURN(uint32_t w_shift, raw_operand(rec, weights, w_bytes, op, "weights"));
  if (wtype == DType::f32 && w_shift % 4 != 0) {
    return make_error(ErrorCode::invalid_argument, "{}: f32 weights are not 4-byte aligned", op);
  }
  if (w_shift % 2 != 0) return make_error(ErrorCode::invalid_argument, "{}: weights are not 2-byte aligned", op);
  TANDEM_ASSIGN_OR_RETURN(uint32_t x_off, f32_operand(rec, x, static_cast<uint64_t>(ncols), op, "x"));
  TANDEM_ASSIGN_OR_RETURN(uint32_t d_off, f32_operand(rec, dst, static_cast<uint64_t>(nrows), op, "dst"));
  if (intdot) {
    // The shader reads q8_1 blocks in place of x; x_offset counts their words.
    TANDEM_ASSIGN_OR_RETURN(x_off, detail::prepare_q8_1(rec, op, x, ncols, 1, options.q8_1, options.q8_1_ready));
  }

  uint32_t wg = options.workgroup_size ? options.workgroup_size : 64;
  wg = std::min(wg, rec.device().caps().max_compute_workgroup_invocations);
  if (!std::has_single_bit(wg)) return make_error(ErrorCode::invalid_argument, "{}: workgroup size {}", op, wg);
  TANDEM_ASSIGN_OR_RETURN(const Pipeline* p,
                          rec.pipelines().get({variant, 3, sizeof(Params), {wg}}));
  const Params pc{static_cast<uint32_t>(ncols), static_cast<uint32_t>(nrows), w_shift,
                  static_cast<uint32_t>(stride), x_off, d_off};
  const BufferUse uses[] = {{weights, Access::read}, {intdot ? options.q8_1 : x, Access::read}, {dst, Access::write}};
  return rec.dispatch(*p, uses, push_bytes(pc), rec.grid_1d(static_cast<uint64_t>(nrows)));
}

}  // namespace tandem::gpu::ops
