#include "gpu/instance.h"

#include <cstring>
#include <string>

#include "core/log.h"
#include "gpu/vk_status.h"

namespace tandem::gpu {
namespace {

constexpr const char* k_validation_layer = "VK_LAYER_KHRONOS_validation";

// Counts what the validation layer reports (validation / performance types) and errors of
// any type. General-type warnings come from the loader itself, e.g. "env var
// VK_INSTANCE_LAYERS defined and adding layers": logged at debug level, not counted.
VKAPI_ATTR VkBool32 VKAPI_CALL on_debug_message(VkDebugUtilsMessageSeverityFlagBitsEXT severity,
                                                VkDebugUtilsMessageTypeFlagsEXT types,
                                                const VkDebugUtilsMessengerCallbackDataEXT* data,
                                                void* user) {
  auto* count = static_cast<std::atomic<uint64_t>*>(user);
  const char* msg = data != nullptr && data->pMessage != nullptr ? data->pMessage : "(no message)";
  const bool from_layer =
      (types & (VK_DEBUG_UTILS_MESSAGE_TYPE_VALIDATION_BIT_EXT | VK_DEBUG_UTILS_MESSAGE_TYPE_PERFORMANCE_BIT_EXT)) != 0;
  if (severity & VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT) {
    count->fetch_add(1);
    log_error("vulkan validation: {}", msg);
  } else if ((severity & VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT) && from_layer) {
    count->fetch_add(1);
    log_warn("vulkan validation: {}", msg);
  } else {
    log_debug("vulkan: {}", msg);
  }
  return VK_FALSE;  // never abort the call
}

bool has_layer(const char* name) {
  uint32_t n = 0;
  if (vkEnumerateInstanceLayerProperties(&n, nullptr) != VK_SUCCESS) return false;
  std::vector<VkLayerProperties> layers(n);
  if (vkEnumerateInstanceLayerProperties(&n, layers.data()) != VK_SUCCESS) return false;
  for (const auto& l : layers) {
    if (std::strcmp(l.layerName, name) == 0) return true;
  }
  return false;
}

bool has_instance_extension(const char* name) {
  uint32_t n = 0;
  if (vkEnumerateInstanceExtensionProperties(nullptr, &n, nullptr) != VK_SUCCESS) return false;
  std::vector<VkExtensionProperties> exts(n);
  if (vkEnumerateInstanceExtensionProperties(nullptr, &n, exts.data()) != VK_SUCCESS) return false;
  for (const auto& e : exts) {
    if (std::strcmp(e.extensionName, name) == 0) return true;
  }
  // The validation layer provides debug_utils itself when the loader does not list it.
  if (has_layer(k_validation_layer)) {
    n = 0;
    if (vkEnumerateInstanceExtensionProperties(k_validation_layer, &n, nullptr) != VK_SUCCESS) return false;
    exts.resize(n);
    if (vkEnumerateInstanceExtensionProperties(k_validation_layer, &n, exts.data()) != VK_SUCCESS) return false;
    for (const auto& e : exts) {
      if (std::strcmp(e.extensionName, name) == 0) return true;
    }
  }
  return false;
}

}  // namespace

Result<std::unique_ptr<Instance>> Instance::create(const GpuOptions& options) {
  std::unique_ptr<Instance> inst(new Instance());
  inst->options_ = options;

  uint32_t loader_version = 0;
  if (vkEnumerateInstanceVersion(&loader_version) != VK_SUCCESS || loader_version < VK_API_VERSION_1_2) {
    return make_error(ErrorCode::unsupported, "Vulkan loader {}.{} is older than the required 1.2",
                      VK_API_VERSION_MAJOR(loader_version), VK_API_VERSION_MINOR(loader_version));
  }

  std::vector<const char*> layers;
  std::vector<const char*> extensions;
  const bool debug_utils = options.validation && has_instance_extension(VK_EXT_DEBUG_UTILS_EXTENSION_NAME);
  if (options.validation) {
    if (!has_layer(k_validation_layer)) {
      return make_error(ErrorCode::not_found,
                        "Vulkan validation requested but {} is not installed (package vulkan-validationlayers)",
                        k_validation_layer);
    }
    // With VK_INSTANCE_LAYERS set the loader enables it already; naming it twice is harmless.
    layers.push_back(k_validation_layer);
    if (debug_utils) extensions.push_back(VK_EXT_DEBUG_UTILS_EXTENSION_NAME);
  }

  VkApplicationInfo app{};
  app.sType = VK_STRUCTURE_TYPE_APPLICATION_INFO;
  app.pApplicationName = "tandem";
  app.pEngineName = "tandem";
  app.apiVersion = VK_API_VERSION_1_2;

  VkDebugUtilsMessengerCreateInfoEXT dbg{};
  dbg.sType = VK_STRUCTURE_TYPE_DEBUG_UTILS_MESSENGER_CREATE_INFO_EXT;
  dbg.messageSeverity = VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT | VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT;
  dbg.messageType = VK_DEBUG_UTILS_MESSAGE_TYPE_GENERAL_BIT_EXT | VK_DEBUG_UTILS_MESSAGE_TYPE_VALIDATION_BIT_EXT |
                    VK_DEBUG_UTILS_MESSAGE_TYPE_PERFORMANCE_BIT_EXT;
  dbg.pfnUserCallback = on_debug_message;
  dbg.pUserData = inst->messages_.get();

  VkInstanceCreateInfo ci{};
  ci.sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO;
  ci.pApplicationInfo = &app;
  ci.enabledLayerCount = static_cast<uint32_t>(layers.size());
  ci.ppEnabledLayerNames = layers.data();
  ci.enabledExtensionCount = static_cast<uint32_t>(extensions.size());
  ci.ppEnabledExtensionNames = extensions.data();
  if (debug_utils) ci.pNext = &dbg;  // also reports on vkCreateInstance / vkDestroyInstance
  TANDEM_RETURN_IF_ERROR(vk_check(vkCreateInstance(&ci, nullptr, &inst->instance_),
                                  "vkCreateInstance (is a Vulkan driver installed?)"));

  if (debug_utils) {
    auto create_messenger = reinterpret_cast<PFN_vkCreateDebugUtilsMessengerEXT>(
        vkGetInstanceProcAddr(inst->instance_, "vkCreateDebugUtilsMessengerEXT"));
    if (create_messenger == nullptr) {
      return make_error(ErrorCode::device_error, "vkCreateDebugUtilsMessengerEXT is missing");
    }
    TANDEM_RETURN_IF_ERROR(vk_check(create_messenger(inst->instance_, &dbg, nullptr, &inst->messenger_),
                                    "vkCreateDebugUtilsMessengerEXT"));
  } else if (options.validation) {
    log_warn("vulkan: validation layer on but {} is unavailable: messages are not counted",
             VK_EXT_DEBUG_UTILS_EXTENSION_NAME);
  }

  uint32_t n = 0;
  TANDEM_RETURN_IF_ERROR(vk_check(vkEnumeratePhysicalDevices(inst->instance_, &n, nullptr),
                                  "vkEnumeratePhysicalDevices"));
  inst->physical_.resize(n);
  TANDEM_RETURN_IF_ERROR(vk_check(vkEnumeratePhysicalDevices(inst->instance_, &n, inst->physical_.data()),
                                  "vkEnumeratePhysicalDevices"));
  inst->physical_.resize(n);
  for (uint32_t i = 0; i < n; ++i) inst->caps_.push_back(query_device_caps(inst->physical_[i], i));
  return inst;
}

Instance::~Instance() {
  if (messenger_ != VK_NULL_HANDLE) {
    auto destroy = reinterpret_cast<PFN_vkDestroyDebugUtilsMessengerEXT>(
        vkGetInstanceProcAddr(instance_, "vkDestroyDebugUtilsMessengerEXT"));
    if (destroy != nullptr) destroy(instance_, messenger_, nullptr);
  }
  if (instance_ != VK_NULL_HANDLE) vkDestroyInstance(instance_, nullptr);
}

}  // namespace tandem::gpu
