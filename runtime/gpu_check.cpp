#include "runtime/gpu_check.h"

#include <cmath>
#include <cstring>

#include "core/fp16.h"
#include "core/log.h"
#include "gpu/buffer.h"
#include "gpu/command_recorder.h"

namespace tandem {

double gpu_check_tolerance(const GpuStepInfo& step) {
  switch (step.wtype) {
    case DType::q8_0:
    case DType::q4_0:
      return 1e-3;
    default:
      break;
  }
  // Every other step is f32 math on both sides in a different order. f16 K/V are rounded by
  // both sides from (nearly) the same values: a rounding flip moves one element by 1 ulp of
  // f16, ~1e-7 relative in NMSE terms.
  if (step.op.rfind("set_rows", 0) == 0 || step.op == "flash_attn") return 1e-6;
  return 1e-9;
}

GpuChecker::GpuChecker(const gpu::Device& device, gpu::CommandRecorder& rec)
    : device_(device), rec_(rec) {}
GpuChecker::~GpuChecker() = default;

Result<GpuChecker::Bytes> GpuChecker::download(const gpu::BufferSlice& slice) {
  Bytes out(slice.size);
  if (slice.size == 0) return out;
  if (!readback_ || readback_->size() < slice.size) {
    TANDEM_ASSIGN_OR_RETURN(
        gpu::Buffer b,
        gpu::Buffer::create(device_, slice.size, gpu::MemoryIntent::readback, "check readback"));
    readback_ = std::make_unique<gpu::Buffer>(std::move(b));
  }
  TANDEM_RETURN_IF_ERROR(rec_.begin());
  TANDEM_RETURN_IF_ERROR(rec_.copy(slice, readback_->slice(0, slice.size)));
  TANDEM_RETURN_IF_ERROR(rec_.submit_and_wait());
  TANDEM_RETURN_IF_ERROR(readback_->read(out.data(), slice.size));
  return out;
}

Status GpuChecker::upload(const gpu::BufferSlice& slice, std::span<const uint8_t> bytes) {
  if (bytes.size() != slice.size) {
    return make_error(ErrorCode::internal, "check upload of {} bytes into {} bytes", bytes.size(),
                      slice.size);
  }
  if (bytes.empty()) return Status::success();
  if (!upload_ || upload_->size() < bytes.size()) {
    TANDEM_ASSIGN_OR_RETURN(
        gpu::Buffer b, gpu::Buffer::create(device_, bytes.size(), gpu::MemoryIntent::upload_staging,
                                           "check upload"));
    upload_ = std::make_unique<gpu::Buffer>(std::move(b));
  }
  TANDEM_RETURN_IF_ERROR(upload_->write(bytes.data(), bytes.size()));
  TANDEM_RETURN_IF_ERROR(rec_.begin());
  TANDEM_RETURN_IF_ERROR(rec_.copy(upload_->slice(0, bytes.size()), slice));
  return rec_.submit_and_wait();
}

Status GpuChecker::perturb(const gpu::BufferSlice& slice) {
  TANDEM_ASSIGN_OR_RETURN(Bytes b, download(slice));
  // Every step's first output is f32 except set_rows into an f16 cache; perturbing the raw
  // 32-bit words as floats still changes every value either way.
  for (size_t i = 0; i + 4 <= b.size(); i += 4) {
    float v;
    std::memcpy(&v, b.data() + i, 4);
    v = v * 1.5f + 1.0f;
    std::memcpy(b.data() + i, &v, 4);
  }
  return upload(slice, b);
}

Status GpuChecker::step(const GpuStepInfo& info, std::span<const gpu::BufferSlice> inputs,
                        std::span<const gpu::BufferSlice> outputs, const Record& record,
                        const Verify& verify) {
  std::vector<Bytes> in;
  if (verify) {
    for (const auto& s : inputs) {
      TANDEM_ASSIGN_OR_RETURN(Bytes b, download(s));
      in.push_back(std::move(b));
    }
  }
  TANDEM_RETURN_IF_ERROR(rec_.begin());
  TANDEM_RETURN_IF_ERROR(record(rec_));
  TANDEM_RETURN_IF_ERROR(rec_.submit_and_wait());
  if (!fault_.op.empty() && fault_.op == info.op &&
      (fault_.layer < 0 || fault_.layer == info.layer) && !outputs.empty()) {
    TANDEM_RETURN_IF_ERROR(perturb(outputs[0]));
  }
  if (!verify) return Status::success();
  std::vector<Bytes> out;
  for (const auto& s : outputs) {
    TANDEM_ASSIGN_OR_RETURN(Bytes b, download(s));
    out.push_back(std::move(b));
  }
  TANDEM_ASSIGN_OR_RETURN(double nmse, verify(in, out));
  const double tol = gpu_check_tolerance(info);
  ++checked_;
  log_debug("check: {} layer {} ({}): NMSE {:.3e} (tolerance {:.0e})", info.op, info.layer,
            dtype_name(info.wtype), nmse, tol);
  if (!(nmse <= tol)) {
    return make_error(
        ErrorCode::internal,
        "shadow check: {}{} diverges from the CPU reference: NMSE {:.3e} > {:.0e}", info.op,
        info.layer >= 0 ? fmt::format(" on layer {}", info.layer) : std::string(), nmse, tol);
  }
  return Status::success();
}

std::vector<float> check_f32(std::span<const uint8_t> bytes) {
  std::vector<float> v(bytes.size() / 4);
  if (!v.empty()) std::memcpy(v.data(), bytes.data(), v.size() * 4);
  return v;
}

std::vector<int32_t> check_i32(std::span<const uint8_t> bytes) {
  std::vector<int32_t> v(bytes.size() / 4);
  if (!v.empty()) std::memcpy(v.data(), bytes.data(), v.size() * 4);
  return v;
}

std::vector<float> check_values(std::span<const uint8_t> bytes, DType type) {
  if (type != DType::f16) return check_f32(bytes);
  std::vector<float> v(bytes.size() / 2);
  for (size_t i = 0; i < v.size(); ++i) {
    uint16_t h;
    std::memcpy(&h, bytes.data() + 2 * i, 2);
    v[i] = fp16_to_fp32(h);
  }
  return v;
}

double check_nmse(std::span<const float> actual, std::span<const float> expected) {
  if (actual.size() != expected.size()) return INFINITY;
  double num = 0, den = 0;
  for (size_t i = 0; i < actual.size(); ++i) {
    const double d = static_cast<double>(actual[i]) - expected[i];
    num += d * d;
    den += static_cast<double>(expected[i]) * expected[i];
  }
  if (std::isnan(num)) return NAN;
  return den == 0 ? (num == 0 ? 0 : INFINITY) : num / den;
}

}  // namespace tandem
