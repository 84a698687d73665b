#include "gpu/ops/mul_mat_vec_t_id.h"

#include <fmt/format.h>

#include "gpu/ops/op_common.h"

namespace tandem::gpu::ops {
namespace {

struct Params {
  uint32_t nout, nin, w_offset, w_row_stride, expert_stride, h_offset, d_offset, ids_offset, n_expert;
};
constexpr uint32_t k_wg = 64;

}  // namespace

Status mul_mat_vec_t_id(CommandRecorder& rec, DType wtype, const BufferSlice& weights, int64_t nout, int64_t nin,
                        int64_t n_expert, const BufferSlice& ids, int64_t n_slots, const BufferSlice& h,
                        const BufferSlice& dst) {
  constexpr const char* op = "mul_mat_vec_t_id";
  if (wtype != DType::f32 && wtype != DType::f16 && wtype != DType::q8_0 && wtype != DType::q4_0) {
    return make_error(ErrorCode::unsupported, "{}: weights of dtype {} are not supported on the GPU", op,
                      dtype_name(wtype));
  }
  if (nout <= 0 || nin <= 0 || n_expert <= 0 || n_slots <= 0 || nout % dtype_block_size(wtype) != 0) {
    return make_error(ErrorCode::invalid_argument, "{}: shape [{}, {}, {}] with {} slots invalid for {}", op, nout,
                      nin, n_expert, n_slots, dtype_name(wtype));
  }
  const auto& lim = rec.device().caps().max_compute_workgroup_count;
  const uint64_t groups_x = (static_cast<uint64_t>(nout) + k_wg - 1) / k_wg;
  if (static_cast<uint64_t>(n_slots) > lim[2] || groups_x > lim[0]) {
    return make_error(ErrorCode::invalid_argument, "{}: {} outputs x {} slots exceed the dispatch limits", op, nout,
                      n_slots);
  }
  const uint64_t row = dtype_row_size(wtype, nout);
  const uint64_t expert = row * static_cast<uint64_t>(nin);
  const uint64_t w_bytes = expert * static_cast<uint64_t>(n_expert);
  TANDEM_RETURN_IF_ERROR(check_u32(w_bytes, op, "weight bytes"));
  TANDEM_ASSIGN_OR_RETURN(uint32_t w_shift, raw_operand(rec, weights, w_bytes, op, "weights"));
  if ((wtype == DType::f32 && w_shift % 4 != 0) || w_shift % 2 != 0) {
    return make_error(ErrorCode::invalid_argument, "{}: weights misaligned (shift {})", op, w_shift);
  }
  TANDEM_ASSIGN_OR_RETURN(uint32_t h_off, f32_operand(rec, h, static_cast<uint64_t>(nin) * n_slots, op, "h"));
  TANDEM_ASSIGN_OR_RETURN(uint32_t d_off, f32_operand(rec, dst, static_cast<uint64_t>(nout) * n_slots, op, "dst"));
  TANDEM_ASSIGN_OR_RETURN(uint32_t i_off, f32_operand(rec, ids, static_cast<uint64_t>(n_slots), op, "ids"));
  TANDEM_ASSIGN_OR_RETURN(const Pipeline* p, rec.pipelines().get({fmt::format("mul_mat_vec_t_id_{}_f32", dtype_name(wtype)),
                                                                  4, sizeof(Params), {k_wg}}));
  const Params pc{static_cast<uint32_t>(nout), static_cast<uint32_t>(nin), w_shift, static_cast<uint32_t>(row),
                  static_cast<uint32_t>(expert), h_off, d_off, i_off, static_cast<uint32_t>(n_expert)};
  const BufferUse uses[] = {{weights, Access::read}, {h, Access::read}, {dst, Access::write}, {ids, Access::read}};
  return rec.dispatch(*p, uses, push_bytes(pc),
                      {static_cast<uint32_t>(groups_x), 1, static_cast<uint32_t>(n_slots)});
}

}  // namespace tandem::gpu::ops
