#include "gpu/ops/flash_attn.h"

#include "gpu/ops/op_common.h"

namespace tandem::gpu::ops {
namespace {

struct Params {
  uint32_t head_dim, n_head, n_head_kv, n_ctx, n_swa;
  float scale;
  uint32_t chunk_len, n_chunks, split;
  uint32_t q_offset, k_offset, v_offset, pos_offset, d_offset, s_offset;
};
struct CombineParams {
  uint32_t head_dim, n_head, n_chunks, s_offset, d_offset;
};
// The tile is the workgroup: one invocation per cache position of a tile, and each invocation
// owns head_dim / 64 (<= 4) output dimensions of each of the workgroup's query heads.
constexpr uint32_t k_wg = 64;
constexpr ShaderVariant k_offered_f16[] = {ShaderVariant::fp16, ShaderVariant::subgroup};
constexpr ShaderVariant k_offered_f32[] = {ShaderVariant::subgroup};

std::span<const ShaderVariant> offered(DType kv_type) {
  return kv_type == DType::f16 ? std::span<const ShaderVariant>(k_offered_f16) : k_offered_f32;
}
constexpr int64_t k_max_head_dim = 4 * k_wg;
static_assert(k_flash_attn_chunk % k_wg == 0);

// Query heads per workgroup: the largest divisor of the GQA ratio up to 8, so that every block
// lies within one kv head and K/V are read once for all of its heads.
uint32_t heads_per_workgroup(int64_t ratio) {
  for (int64_t hb = 8; hb > 1; --hb) {
    if (ratio % hb == 0) return static_cast<uint32_t>(hb);
  }
  return 1;
}

uint64_t n_chunks(int64_t n_ctx) {
  return static_cast<uint64_t>((n_ctx + k_flash_attn_chunk - 1) / k_flash_attn_chunk);
}

// Element offset of a cache operand: f16 caches are read as halves of 32-bit words, so any
// 2-byte-aligned start works.
Result<uint32_t> cache_operand(const CommandRecorder& rec, const BufferSlice& slice, DType kv_type,
                               uint64_t n, const char* operand) {
  const uint64_t es = kv_type == DType::f16 ? 2 : 4;
  TANDEM_ASSIGN_OR_RETURN(uint32_t shift, raw_operand(rec, slice, n * es, "flash_attn", operand));
  if (shift % es != 0) {
    return make_error(ErrorCode::invalid_argument,
                      "flash_attn: {} ('{}') at byte offset {} is not {}-byte aligned", operand,
                      slice.buffer->name(), slice.offset, es);
  }
  return static_cast<uint32_t>(shift / es);
}

}  // namespace

std::vector<ShaderVariant> flash_attn_variants(const Device& device, DType kv_type) {
  if (kv_type != DType::f16 && kv_type != DType::f32) return {};
  return runnable_variants(device.caps(), kv_type == DType::f16 ? "flash_attn_f16_f32" : "flash_attn_f32_f32",
                           offered(kv_type));
}

uint64_t flash_attn_scratch_bytes(int64_t head_dim, int64_t n_head, int64_t n_ctx, int64_t m) {
  if (head_dim <= 0 || n_head <= 0 || n_ctx <= 0 || m <= 0 || !flash_attn_uses_split(m)) return 0;
  return static_cast<uint64_t>(m) * static_cast<uint64_t>(n_head) * n_chunks(n_ctx) *
         static_cast<uint64_t>(head_dim + 2) * 4;
}

Status flash_attn(CommandRecorder& rec, const BufferSlice& q, const BufferSlice& k_cache,
                  const BufferSlice& v_cache, DType kv_type, const BufferSlice& pos,
                  int64_t head_dim, int64_t n_head, int64_t n_head_kv, int64_t n_ctx, int64_t m,
                  uint32_t n_swa, float scale, const BufferSlice& scratch, const BufferSlice& dst,
                  ShaderVariant shader_variant) {
  constexpr const char* op = "flash_attn";
  if (kv_type != DType::f32 && kv_type != DType::f16) {
    return make_error(ErrorCode::unsupported, "{}: kv type {} (f16 or f32 only)", op,
                      dtype_name(kv_type));
  }
  if (head_dim <= 0 || head_dim > k_max_head_dim || n_head <= 0 || n_head_kv <= 0 ||
      n_head % n_head_kv != 0 || n_ctx <= 0 || m <= 0 ||
      (kv_type == DType::f16 && head_dim % 2 != 0)) {
    return make_error(
        ErrorCode::invalid_argument,
        "{}: head_dim {} (1..{}), n_head {}, n_head_kv {}, n_ctx {}, m {} with a {} cache", op,
        head_dim, k_max_head_dim, n_head, n_head_kv, n_ctx, m, dtype_name(kv_type));
  }
  const auto& lim = rec.device().caps().max_compute_workgroup_count;
  const bool split = flash_attn_uses_split(m);
  const uint64_t chunks = split ? n_chunks(n_ctx) : 1;
  if (chunks > lim[0] || static_cast<uint64_t>(n_head) > lim[1] ||
      static_cast<uint64_t>(m) > lim[2]) {
    return make_error(ErrorCode::invalid_argument,
                      "{}: {} chunks x {} heads x {} rows exceed the dispatch limits", op, chunks,
                      n_head, m);
  }
  const uint64_t n_q =
      static_cast<uint64_t>(head_dim) * static_cast<uint64_t>(n_head) * static_cast<uint64_t>(m);
  const uint64_t n_kv = static_cast<uint64_t>(head_dim) * static_cast<uint64_t>(n_head_kv) *
                        static_cast<uint64_t>(n_ctx);
  const uint64_t scratch_bytes = flash_attn_scratch_bytes(head_dim, n_head, n_ctx, m);
  TANDEM_RETURN_IF_ERROR(check_u32(n_q, op, "q elements"));
  TANDEM_RETURN_IF_ERROR(check_u32(n_kv, op, "cache elements"));
  TANDEM_RETURN_IF_ERROR(check_u32(scratch_bytes / 4, op, "scratch elements"));
  TANDEM_ASSIGN_OR_RETURN(uint32_t q_off, f32_operand(rec, q, n_q, op, "q"));
  TANDEM_ASSIGN_OR_RETURN(uint32_t k_off, cache_operand(rec, k_cache, kv_type, n_kv, "k_cache"));
  TANDEM_ASSIGN_OR_RETURN(uint32_t v_off, cache_operand(rec, v_cache, kv_type, n_kv, "v_cache"));
  TANDEM_ASSIGN_OR_RETURN(uint32_t p_off,
                          f32_operand(rec, pos, static_cast<uint64_t>(m), op, "pos"));
  TANDEM_ASSIGN_OR_RETURN(uint32_t d_off, f32_operand(rec, dst, n_q, op, "dst"));
  uint32_t s_off = 0;
  if (split) {
    TANDEM_ASSIGN_OR_RETURN(s_off, f32_operand(rec, scratch, scratch_bytes / 4, op, "scratch"));
  }

  const bool f16 = kv_type == DType::f16;
  TANDEM_ASSIGN_OR_RETURN(std::string variant,
                          pick_shader_variant(rec.device().caps(), op, f16 ? "flash_attn_f16_f32" : "flash_attn_f32_f32",
                                              offered(kv_type), shader_variant));
  const uint32_t hb = heads_per_workgroup(n_head / n_head_kv);
  TANDEM_ASSIGN_OR_RETURN(
      const Pipeline* p,
      rec.pipelines().get(
          {variant, 6, sizeof(Params), {k_wg, hb}}));
  const Params pc{static_cast<uint32_t>(head_dim),
                  static_cast<uint32_t>(n_head),
                  static_cast<uint32_t>(n_head_kv),
                  static_cast<uint32_t>(n_ctx),
                  n_swa,
                  scale,
                  split ? static_cast<uint32_t>(k_flash_attn_chunk) : static_cast<uint32_t>(n_ctx),
                  static_cast<uint32_t>(chunks),
                  split ? 1u : 0u,
                  q_off,
                  k_off,
                  v_off,
                  p_off,
                  d_off,
                  s_off};
  // Without a split the scratch binding is never touched; dst stands in for it.
  const BufferSlice& partials = split ? scratch : dst;
  const BufferUse uses[] = {{q, Access::read},
                            {k_cache, Access::read},
                            {v_cache, Access::read},
                            {pos, Access::read},
                            {dst, split ? Access::read : Access::write},
                            {partials, Access::write}};
  const std::array<uint32_t, 3> groups{
      static_cast<uint32_t>(chunks), static_cast<uint32_t>(n_head / hb), static_cast<uint32_t>(m)};
  TANDEM_RETURN_IF_ERROR(rec.dispatch(*p, uses, push_bytes(pc), groups));
  if (!split) return Status::success();

  TANDEM_ASSIGN_OR_RETURN(
      const Pipeline* c,
      rec.pipelines().get({"flash_attn_combine_f32", 2, sizeof(CombineParams), {k_wg}}));
  const CombineParams cp{static_cast<uint32_t>(head_dim), static_cast<uint32_t>(n_head),
                         static_cast<uint32_t>(chunks), s_off, d_off};
  const BufferUse cuses[] = {{scratch, Access::read}, {dst, Access::write}};
  return rec.dispatch(*c, cuses, push_bytes(cp),
                      {static_cast<uint32_t>(n_head), static_cast<uint32_t>(m), 1});
}

}  // namespace tandem::gpu::ops
