#include "gpu/ops/mul_mat_id.h"

#include <fmt/format.h>

#include "gpu/ops/op_common.h"

namespace tandem::gpu::ops {
namespace {

struct Params {
  uint32_t ncols, nrows, n_expert, n_used, n_b1, w_offset, row_bytes, expert_bytes, b_offset,
      i_offset, d_offset;
};
constexpr uint32_t k_wg = 64;

constexpr ShaderVariant k_offered[] = {ShaderVariant::subgroup};

}  // namespace

std::vector<ShaderVariant> mul_mat_id_variants(const Device& device, DType wtype) {
  return runnable_variants(device.caps(), fmt::format("mul_mat_id_{}_f32", dtype_name(wtype)), k_offered);
}

Status mul_mat_id(CommandRecorder& rec, DType wtype, const BufferSlice& weights, int64_t ncols,
                  int64_t nrows, int64_t n_expert, const BufferSlice& ids, int64_t n_used,
                  int64_t m, const BufferSlice& b, int64_t n_b1, const BufferSlice& dst,
                  ShaderVariant shader_variant) {
  constexpr const char* op = "mul_mat_id";
  if (wtype != DType::f32 && wtype != DType::f16 && wtype != DType::q8_0 && wtype != DType::q4_0) {
    return make_error(ErrorCode::unsupported, "{}: weight type {} (f32, f16, q8_0, q4_0 only)", op,
                      dtype_name(wtype));
  }
  if (ncols <= 0 || nrows <= 0 || n_expert <= 0 || n_used <= 0 || m <= 0 ||
      ncols % dtype_block_size(wtype) != 0 || (n_b1 != 1 && n_b1 != n_used)) {
    return make_error(ErrorCode::invalid_argument,
                      "{}: weights [{}, {}, {}] {}, ids [{}, {}], b [{}, {}, {}]", op, ncols, nrows,
                      n_expert, dtype_name(wtype), n_used, m, ncols, n_b1, m);
  }
  const uint64_t pairs = static_cast<uint64_t>(n_used) * static_cast<uint64_t>(m);
  const auto& lim = rec.device().caps().max_compute_workgroup_count;
  if (pairs > lim[2]) {
    return make_error(ErrorCode::invalid_argument,
                      "{}: {} x {} token slots exceed the dispatch limit {}", op, n_used, m,
                      lim[2]);
  }
  const uint64_t row_bytes = dtype_row_size(wtype, ncols);
  const uint64_t expert_bytes = row_bytes * static_cast<uint64_t>(nrows);
  const uint64_t w_bytes = expert_bytes * static_cast<uint64_t>(n_expert);
  const uint64_t n_b =
      static_cast<uint64_t>(ncols) * static_cast<uint64_t>(n_b1) * static_cast<uint64_t>(m);
  const uint64_t n_dst = static_cast<uint64_t>(nrows) * pairs;
  TANDEM_RETURN_IF_ERROR(check_u32(w_bytes, op, "weight bytes"));
  TANDEM_RETURN_IF_ERROR(check_u32(n_b, op, "b elements"));
  TANDEM_RETURN_IF_ERROR(check_u32(n_dst, op, "dst elements"));
  TANDEM_ASSIGN_OR_RETURN(uint32_t w_shift, raw_operand(rec, weights, w_bytes, op, "weights"));
  if (w_shift % (wtype == DType::f32 ? 4 : 2) != 0) {
    return make_error(ErrorCode::invalid_argument,
                      "{}: weights ('{}') at byte offset {} are misaligned for {}", op,
                      weights.buffer->name(), weights.offset, dtype_name(wtype));
  }
  TANDEM_ASSIGN_OR_RETURN(uint32_t b_off, f32_operand(rec, b, n_b, op, "b"));
  TANDEM_ASSIGN_OR_RETURN(uint32_t i_off, f32_operand(rec, ids, pairs, op, "ids"));
  TANDEM_ASSIGN_OR_RETURN(uint32_t d_off, f32_operand(rec, dst, n_dst, op, "dst"));
  TANDEM_ASSIGN_OR_RETURN(std::string variant,
                          pick_shader_variant(rec.device().caps(), op, fmt::format("mul_mat_id_{}_f32", dtype_name(wtype)),
                                              k_offered, shader_variant));
  TANDEM_ASSIGN_OR_RETURN(const Pipeline* p,
                          rec.pipelines().get({variant, 4, sizeof(Params), {k_wg}}));
  const Params pc{static_cast<uint32_t>(ncols),
                  static_cast<uint32_t>(nrows),
                  static_cast<uint32_t>(n_expert),
                  static_cast<uint32_t>(n_used),
                  static_cast<uint32_t>(n_b1),
                  w_shift,
                  static_cast<uint32_t>(row_bytes),
                  static_cast<uint32_t>(expert_bytes),
                  b_off,
                  i_off,
                  d_off};
  auto groups = rec.grid_1d(static_cast<uint64_t>(nrows));
  groups[2] = static_cast<uint32_t>(pairs);
  const BufferUse uses[] = {
      {weights, Access::read}, {b, Access::read}, {ids, Access::read}, {dst, Access::write}};
  return rec.dispatch(*p, uses, push_bytes(pc), groups);
}

}  // namespace tandem::gpu::ops
