#include "gpu/ops/moe_sum.h"

#include "gpu/ops/op_common.h"

namespace tandem::gpu::ops {
namespace {

struct Params {
  uint32_t n_embd, k, m, e_offset, w_offset, d_offset;
};
constexpr uint32_t k_wg = 256;

}  // namespace

Status moe_sum(CommandRecorder& rec, const BufferSlice& expert_out, const BufferSlice& weights,
               int64_t n_embd, int64_t k, int64_t m, const BufferSlice& dst) {
  constexpr const char* op = "moe_sum";
  if (n_embd <= 0 || k <= 0 || m <= 0) {
    return make_error(ErrorCode::invalid_argument, "{}: expert_out [{}, {}, {}]", op, n_embd, k, m);
  }
  const uint64_t n_out = static_cast<uint64_t>(n_embd) * static_cast<uint64_t>(m);
  const uint64_t n_in = n_out * static_cast<uint64_t>(k);
  TANDEM_RETURN_IF_ERROR(check_u32(n_in, op, "expert_out elements"));
  TANDEM_ASSIGN_OR_RETURN(uint32_t e_off, f32_operand(rec, expert_out, n_in, op, "expert_out"));
  TANDEM_ASSIGN_OR_RETURN(uint32_t w_off,
                          f32_operand(rec, weights, static_cast<uint64_t>(k * m), op, "weights"));
  TANDEM_ASSIGN_OR_RETURN(uint32_t d_off, f32_operand(rec, dst, n_out, op, "dst"));
  if (dst.buffer == expert_out.buffer && dst.offset < expert_out.offset + n_in * 4 &&
      expert_out.offset < dst.offset + n_out * 4) {
    return make_error(ErrorCode::invalid_argument, "{}: dst overlaps expert_out in '{}'", op,
                      dst.buffer->name());
  }
  TANDEM_ASSIGN_OR_RETURN(const Pipeline* p,
                          rec.pipelines().get({"moe_sum_f32", 3, sizeof(Params), {k_wg}}));
  const Params pc{static_cast<uint32_t>(n_embd),
                  static_cast<uint32_t>(k),
                  static_cast<uint32_t>(m),
                  e_off,
                  w_off,
                  d_off};
  const BufferUse uses[] = {
      {expert_out, Access::read}, {weights, Access::read}, {dst, Access::write}};
  return rec.dispatch(*p, uses, push_bytes(pc), rec.grid_1d((n_out + k_wg - 1) / k_wg));
}

}  // namespace tandem::gpu::ops
