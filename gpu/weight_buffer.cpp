#include "gpu/weight_buffer.h"

#include "core/log.h"

namespace tandem::gpu {

const char* weight_placement_name(WeightPlacement p) {
  switch (p) {
    case WeightPlacement::imported: return "imported";
    case WeightPlacement::host_visible: return "host_visible";
    case WeightPlacement::staged: return "staged";
  }
  return "?";
}

Result<WeightBuffer> make_weight_buffer(const Device& device, StagingRing* staging, const void* data, uint64_t size,
                                        std::string_view name) {
  if (data == nullptr || size == 0) {
    return make_error(ErrorCode::invalid_argument, "weights '{}': no data ({} bytes)", name, size);
  }
  if (device.host_import()) {
    auto imported = Buffer::import_host(device, data, size, name);
    if (imported.ok()) return WeightBuffer{std::move(imported).value(), WeightPlacement::imported};
    log_debug("vulkan: import of '{}' failed, copying instead: {}", name, imported.status().message());
  }
  TANDEM_ASSIGN_OR_RETURN(Buffer buf, Buffer::create(device, size, MemoryIntent::device_weights, name));
  if (buf.host_data() != nullptr && device.unified()) {
    TANDEM_RETURN_IF_ERROR(buf.write(data, size));
    return WeightBuffer{std::move(buf), WeightPlacement::host_visible};
  }
  if (staging == nullptr) {
    return make_error(ErrorCode::invalid_argument, "weights '{}': device-local memory needs a staging ring", name);
  }
  TANDEM_RETURN_IF_ERROR(staging->upload(buf.slice(), data, size));
  return WeightBuffer{std::move(buf), WeightPlacement::staged};
}

}  // namespace tandem::gpu
