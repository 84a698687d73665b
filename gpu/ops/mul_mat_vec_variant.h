// Variant choice and q8_1 preparation shared by mul_mat_vec and mul_mat_vec_id. Internal to
// gpu/ops.
#pragma once

#include <span>
#include <string>

#include "core/dtype.h"
#include "gpu/command_recorder.h"
#include "gpu/ops/shader_variant.h"

namespace tandem::gpu::ops::detail {

// Feature variants mul_mat_vec offers for `wtype`, in automatic preference order; intdot only
// when `with_intdot`.
std::span<const ShaderVariant> mul_mat_vec_offered(DType wtype, bool with_intdot);

// For an _intdot variant: checks `q8_1` holds the blocks of `nrows` rows of `ncols` values and,
// unless `ready`, records quantize_q8_1 of x into it. Returns the q8_1 word offset.
Result<uint32_t> prepare_q8_1(CommandRecorder& rec, const char* op, const BufferSlice& x, int64_t ncols,
                              int64_t nrows, const BufferSlice& q8_1, bool ready);

}  // namespace tandem::gpu::ops::detail
