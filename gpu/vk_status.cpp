#include "gpu/vk_status.h"

namespace tandem::gpu {

std::string vk_result_name(VkResult r) {
  switch (r) {
#define TANDEM_VK_CASE(x) \
  case x: return #x;
    TANDEM_VK_CASE(VK_SUCCESS)
    TANDEM_VK_CASE(VK_NOT_READY)
    TANDEM_VK_CASE(VK_TIMEOUT)
    TANDEM_VK_CASE(VK_INCOMPLETE)
    TANDEM_VK_CASE(VK_ERROR_OUT_OF_HOST_MEMORY)
    TANDEM_VK_CASE(VK_ERROR_OUT_OF_DEVICE_MEMORY)
    TANDEM_VK_CASE(VK_ERROR_INITIALIZATION_FAILED)
    TANDEM_VK_CASE(VK_ERROR_DEVICE_LOST)
    TANDEM_VK_CASE(VK_ERROR_MEMORY_MAP_FAILED)
    TANDEM_VK_CASE(VK_ERROR_LAYER_NOT_PRESENT)
    TANDEM_VK_CASE(VK_ERROR_EXTENSION_NOT_PRESENT)
    TANDEM_VK_CASE(VK_ERROR_FEATURE_NOT_PRESENT)
    TANDEM_VK_CASE(VK_ERROR_INCOMPATIBLE_DRIVER)
    TANDEM_VK_CASE(VK_ERROR_TOO_MANY_OBJECTS)
    TANDEM_VK_CASE(VK_ERROR_FORMAT_NOT_SUPPORTED)
    TANDEM_VK_CASE(VK_ERROR_FRAGMENTED_POOL)
    TANDEM_VK_CASE(VK_ERROR_UNKNOWN)
    TANDEM_VK_CASE(VK_ERROR_OUT_OF_POOL_MEMORY)
    TANDEM_VK_CASE(VK_ERROR_INVALID_EXTERNAL_HANDLE)
    TANDEM_VK_CASE(VK_ERROR_FRAGMENTATION)
    TANDEM_VK_CASE(VK_ERROR_INVALID_OPAQUE_CAPTURE_ADDRESS)
#undef TANDEM_VK_CASE
    default: break;
  }
  return "VkResult(" + std::to_string(static_cast<int>(r)) + ")";
}

Status vk_check(VkResult r, std::string_view what) {
  if (r == VK_SUCCESS) return Status::success();
  const bool oom = r == VK_ERROR_OUT_OF_HOST_MEMORY || r == VK_ERROR_OUT_OF_DEVICE_MEMORY;
  return make_error(oom ? ErrorCode::out_of_memory : ErrorCode::device_error, "{}: {}", what,
                    vk_result_name(r));
}

}  // namespace tandem::gpu
