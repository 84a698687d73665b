// Helpers shared by the ops: argument checks that turn into invalid_argument Status values
// naming the op and operand, and push-constant packing. Internal to gpu/ops.
#pragma once

#include <cstddef>
#include <span>

#include "core/status.h"
#include "gpu/command_recorder.h"

namespace tandem::gpu::ops {

// Checks that `slice` holds at least `n` f32 values and starts on a 4-byte boundary after
// descriptor alignment; returns the element offset the shader must add.
Result<uint32_t> f32_operand(const CommandRecorder& rec, const BufferSlice& slice, uint64_t n, const char* op,
                             const char* operand);

// Checks that `slice` holds at least `bytes` bytes; returns the byte shift (CommandRecorder::bind).
Result<uint32_t> raw_operand(const CommandRecorder& rec, const BufferSlice& slice, uint64_t bytes, const char* op,
                             const char* operand);

// Shapes are pushed as uint32: larger ones are rejected.
Status check_u32(uint64_t v, const char* op, const char* what);

template <class T>
std::span<const std::byte> push_bytes(const T& pc) {
  static_assert(sizeof(T) % 4 == 0);
  return std::as_bytes(std::span<const T>(&pc, 1));
}

}  // namespace tandem::gpu::ops
