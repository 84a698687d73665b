#include "gpu/ops/mul_mat_vec_id.h"

#include <fmt/format.h>

#include "gpu/ops/mul_mat_vec_variant.h"
#include "gpu/ops/op_common.h"
#include "gpu/ops/quantize_q8_1.h"
#include "shaders/spirv.h"

namespace tandem::gpu::ops {
namespace {

struct Params {
  uint32_t ncols, nrows, w_offset, w_row_stride, x_offset, d_offset;
  uint32_t expert_stride, x_slot_stride, ids_offset, n_expert;
};
// The _sparse variants' push constants end with the gate's element offset.
struct SparseParams {
  Params base;
  uint32_t gate_offset;
};

bool overlaps(const BufferSlice& a, const BufferSlice& b) {
  return a.buffer == b.buffer && a.offset < b.offset + b.size && b.offset < a.offset + a.size;
}
constexpr uint32_t k_wg = 64;

}  // namespace

Status mul_mat_vec_id(CommandRecorder& rec, DType wtype, const BufferSlice& weights, int64_t ncols, int64_t nrows,
                      int64_t n_expert, const BufferSlice& ids, int64_t n_slots, const BufferSlice& x,
                      bool broadcast_x, const BufferSlice& dst, const MulMatVecIdOptions& options) {
  constexpr const char* op = "mul_mat_vec_id";
  // Same dtype/variant rules as mul_mat_vec; only the name differs.
  TANDEM_ASSIGN_OR_RETURN(std::string plain, mul_mat_vec_variant(rec.device(), wtype, options.variant,
                                                                  options.q8_1.buffer != nullptr));
  const bool intdot = plain.ends_with(shader_variant_suffix(ShaderVariant::intdot));
  const bool sparse = options.skip_if_gate_le_zero.buffer != nullptr;
  const std::string variant =
      "mul_mat_vec_id" + plain.substr(std::string_view("mul_mat_vec").size()) + (sparse ? "_sparse" : "");
  if (shaders::find_spirv(variant).empty()) {
    return make_error(ErrorCode::not_found, "{}: shader variant '{}' is not in this build", op, variant);
  }
  if (ncols <= 0 || nrows <= 0 || n_expert <= 0 || n_slots <= 0 || ncols % dtype_block_size(wtype) != 0) {
    return make_error(ErrorCode::invalid_argument, "{}: shape [{}, {}, {}] with {} slots invalid for {}", op, ncols,
                      nrows, n_expert, n_slots, dtype_name(wtype));
  }
  const uint64_t row_size = dtype_row_size(wtype, ncols);
  const uint64_t stride = options.row_stride ? options.row_stride : row_size;
  const uint64_t matrix = stride * static_cast<uint64_t>(nrows - 1) + row_size;
  const uint64_t estride = options.expert_stride ? options.expert_stride : stride * static_cast<uint64_t>(nrows);
  if (stride < row_size || stride % 2 != 0 || estride < matrix || estride % 2 != 0) {
    return make_error(ErrorCode::invalid_argument, "{}: strides {} / {} for rows of {} bytes", op, stride, estride,
                      row_size);
  }
  const uint64_t w_bytes = estride * static_cast<uint64_t>(n_expert - 1) + matrix;
  TANDEM_RETURN_IF_ERROR(check_u32(w_bytes, op, "weight bytes"));
  const auto& lim = rec.device().caps().max_compute_workgroup_count;
  if (static_cast<uint64_t>(n_slots) > lim[2]) {
    return make_error(ErrorCode::invalid_argument, "{}: {} slots exceed the dispatch limit {}", op, n_slots, lim[2]);
  }
  TANDEM_ASSIGN_OR_RETURN(uint32_t w_shift, raw_operand(rec, weights, w_bytes, op, "weights"));
  if ((wtype == DType::f32 && w_shift % 4 != 0) || w_shift % 2 != 0) {
    return make_error(ErrorCode::invalid_argument, "{}: weights misaligned (shift {})", op, w_shift);
  }
  const uint64_t nx = static_cast<uint64_t>(ncols) * (broadcast_x ? 1 : n_slots);
  TANDEM_ASSIGN_OR_RETURN(uint32_t x_off, f32_operand(rec, x, nx, op, "x"));
  TANDEM_ASSIGN_OR_RETURN(uint32_t d_off, f32_operand(rec, dst, static_cast<uint64_t>(nrows) * n_slots, op, "dst"));
  TANDEM_ASSIGN_OR_RETURN(uint32_t i_off, f32_operand(rec, ids, static_cast<uint64_t>(n_slots), op, "ids"));
  uint32_t gate_off = 0;
  if (sparse) {
    const BufferSlice& gate = options.skip_if_gate_le_zero;
    TANDEM_ASSIGN_OR_RETURN(gate_off, f32_operand(rec, gate, static_cast<uint64_t>(nrows) * n_slots, op, "gate"));
    // The shader reads the gate of a row while another invocation may already write its dst.
    if (overlaps(gate, dst)) {
      return make_error(ErrorCode::invalid_argument, "{}: the gate slice overlaps dst (bytes {}+{} and {}+{})", op,
                        gate.offset, gate.size, dst.offset, dst.size);
    }
  }
  uint32_t x_slot_stride = broadcast_x ? 0u : static_cast<uint32_t>(ncols);
  if (intdot) {
    // The shader reads q8_1 blocks in place of x; offsets and strides count their words.
    TANDEM_ASSIGN_OR_RETURN(x_off, detail::prepare_q8_1(rec, op, x, ncols, broadcast_x ? 1 : n_slots, options.q8_1,
                                                        options.q8_1_ready));
    x_slot_stride = broadcast_x ? 0u : static_cast<uint32_t>(q8_1_bytes(ncols, 1) / 4);
  }
  const SparseParams pc{{static_cast<uint32_t>(ncols), static_cast<uint32_t>(nrows), w_shift,
                         static_cast<uint32_t>(stride), x_off, d_off, static_cast<uint32_t>(estride), x_slot_stride,
                         i_off, static_cast<uint32_t>(n_expert)},
                        gate_off};
  const auto push = sparse ? push_bytes(pc) : push_bytes(pc.base);
  const uint32_t n_bindings = sparse ? 5 : 4;
  TANDEM_ASSIGN_OR_RETURN(const Pipeline* p,
                          rec.pipelines().get({variant, n_bindings, static_cast<uint32_t>(push.size()), {k_wg}}));
  auto groups = rec.grid_1d(static_cast<uint64_t>(nrows));
  groups[2] = static_cast<uint32_t>(n_slots);
  const BufferUse uses[] = {{weights, Access::read},
                            {intdot ? options.q8_1 : x, Access::read},
                            {dst, Access::write},
                            {ids, Access::read},
                            {options.skip_if_gate_le_zero, Access::read}};
  return rec.dispatch(*p, std::span(uses, n_bindings), push, groups);
}

}  // namespace tandem::gpu::ops
