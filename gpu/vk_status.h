// VkResult -> Status. Every Vulkan call whose failure can reach a caller goes through
// vk_check, so the message names the call, the object and the VkResult.
#pragma once

#include <vulkan/vulkan.h>

#include <string_view>

#include "core/status.h"

namespace tandem::gpu {

// "VK_ERROR_OUT_OF_DEVICE_MEMORY", ... ; "VkResult(<n>)" for codes this file does not know.
std::string vk_result_name(VkResult r);

// ok for VK_SUCCESS; otherwise device_error (out_of_memory for the two OOM codes) with
// "<what>: <VkResult name>".
Status vk_check(VkResult r, std::string_view what);

}  // namespace tandem::gpu
