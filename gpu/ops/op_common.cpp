#include "gpu/ops/op_common.h"

#include <limits>

namespace tandem::gpu::ops {

Result<uint32_t> raw_operand(const CommandRecorder& rec, const BufferSlice& slice, uint64_t bytes, const char* op,
                             const char* operand) {
  if (slice.buffer == nullptr) return make_error(ErrorCode::invalid_argument, "{}: {} has no buffer", op, operand);
  if (slice.size < bytes) {
    return make_error(ErrorCode::invalid_argument, "{}: {} ('{}') holds {} bytes, needs {}", op, operand,
                      slice.buffer->name(), slice.size, bytes);
  }
  TANDEM_ASSIGN_OR_RETURN(BoundSlice b, rec.bind(slice));
  return b.shift;
}

Result<uint32_t> f32_operand(const CommandRecorder& rec, const BufferSlice& slice, uint64_t n, const char* op,
                             const char* operand) {
  TANDEM_ASSIGN_OR_RETURN(uint32_t shift, raw_operand(rec, slice, n * 4, op, operand));
  if (shift % 4 != 0) {
    return make_error(ErrorCode::invalid_argument, "{}: {} ('{}') at byte offset {} is not 4-byte aligned", op,
                      operand, slice.buffer->name(), slice.offset);
  }
  return shift / 4;
}

Status check_u32(uint64_t v, const char* op, const char* what) {
  if (v > std::numeric_limits<uint32_t>::max()) {
    return make_error(ErrorCode::invalid_argument, "{}: {} = {} does not fit in 32 bits", op, what, v);
  }
  return Status::success();
}

}  // namespace tandem::gpu::ops
