#include "gpu/ops/mul_mat_vec_variant.h"

#include "gpu/ops/op_common.h"
#include "gpu/ops/quantize_q8_1.h"

namespace tandem::gpu::ops::detail {

std::span<const ShaderVariant> mul_mat_vec_offered(DType wtype, bool with_intdot) {
  static constexpr ShaderVariant quant[] = {ShaderVariant::intdot, ShaderVariant::subgroup};
  static constexpr ShaderVariant f16[] = {ShaderVariant::fp16, ShaderVariant::subgroup};
  static constexpr ShaderVariant f32[] = {ShaderVariant::subgroup};
  switch (wtype) {
    case DType::q4_0:
    case DType::q8_0: return with_intdot ? std::span<const ShaderVariant>(quant) : std::span(quant).subspan(1);
    case DType::f16: return f16;
    default: return f32;
  }
}

Result<uint32_t> prepare_q8_1(CommandRecorder& rec, const char* op, const BufferSlice& x, int64_t ncols,
                              int64_t nrows, const BufferSlice& q8_1, bool ready) {
  const uint64_t bytes = q8_1_bytes(ncols, nrows);
  if (q8_1.buffer == nullptr) {
    return make_error(ErrorCode::invalid_argument, "{}: the intdot variant needs a q8_1 slice of {} bytes", op, bytes);
  }
  TANDEM_ASSIGN_OR_RETURN(uint32_t q_off, f32_operand(rec, q8_1, bytes / 4, op, "q8_1"));
  if (!ready) TANDEM_RETURN_IF_ERROR(quantize_q8_1(rec, x, ncols, nrows, q8_1));
  return q_off;
}

}  // namespace tandem::gpu::ops::detail
