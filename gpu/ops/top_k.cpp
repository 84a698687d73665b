#include "gpu/ops/top_k.h"

#include "gpu/ops/op_common.h"

namespace tandem::gpu::ops {
namespace {

struct Params {
  uint32_t n_expert, m, k, gating, l_offset, i_offset, w_offset;
};
// One workgroup per row; 64 invocations scan up to 16 experts each at the 1024 limit.
constexpr uint32_t k_wg = 64;
constexpr ShaderVariant k_offered[] = {ShaderVariant::subgroup};

}  // namespace

std::vector<ShaderVariant> top_k_variants(const Device& device) {
  return runnable_variants(device.caps(), "top_k_f32", k_offered);
}

Status top_k(CommandRecorder& rec, ExpertGating gating, const BufferSlice& logits, int64_t n_expert,
             int64_t m, int64_t k, const BufferSlice& ids, const BufferSlice& weights,
             ShaderVariant shader_variant) {
  constexpr const char* op = "top_k";
  if (gating != ExpertGating::softmax && gating != ExpertGating::sigmoid) {
    return make_error(ErrorCode::invalid_argument, "{}: gating must be softmax or sigmoid (got {})",
                      op, static_cast<uint32_t>(gating));
  }
  if (n_expert <= 0 || n_expert > k_top_k_max_expert || m <= 0 || k <= 0 || k > n_expert) {
    return make_error(ErrorCode::invalid_argument, "{}: n_expert = {} (1..{}), m = {}, k = {}", op,
                      n_expert, k_top_k_max_expert, m, k);
  }
  const uint64_t n_logits = static_cast<uint64_t>(n_expert) * static_cast<uint64_t>(m);
  const uint64_t n_out = static_cast<uint64_t>(k) * static_cast<uint64_t>(m);
  TANDEM_RETURN_IF_ERROR(check_u32(n_logits, op, "logits elements"));
  TANDEM_ASSIGN_OR_RETURN(uint32_t l_off, f32_operand(rec, logits, n_logits, op, "logits"));
  TANDEM_ASSIGN_OR_RETURN(uint32_t i_off, f32_operand(rec, ids, n_out, op, "ids"));
  TANDEM_ASSIGN_OR_RETURN(uint32_t w_off, f32_operand(rec, weights, n_out, op, "weights"));
  TANDEM_ASSIGN_OR_RETURN(std::string variant,
                          pick_shader_variant(rec.device().caps(), op, "top_k_f32", k_offered, shader_variant));
  TANDEM_ASSIGN_OR_RETURN(const Pipeline* p, rec.pipelines().get({variant, 3, sizeof(Params), {k_wg}}));
  const Params pc{static_cast<uint32_t>(n_expert),
                  static_cast<uint32_t>(m),
                  static_cast<uint32_t>(k),
                  static_cast<uint32_t>(gating),
                  l_off,
                  i_off,
                  w_off};
  const BufferUse uses[] = {{logits, Access::read}, {ids, Access::write}, {weights, Access::write}};
  return rec.dispatch(*p, uses, push_bytes(pc), rec.grid_1d(static_cast<uint64_t>(m)));
}

}  // namespace tandem::gpu::ops
