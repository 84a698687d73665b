#include "gpu/buffer.h"

#include <fmt/format.h>

#include <cstring>

#include "gpu/vk_status.h"

namespace tandem::gpu {
namespace {

uint64_t round_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

constexpr VkBufferUsageFlags k_usage =
    VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | VK_BUFFER_USAGE_TRANSFER_SRC_BIT | VK_BUFFER_USAGE_TRANSFER_DST_BIT;

VkBufferCreateInfo buffer_info(const Device& device, uint64_t size) {
  VkBufferCreateInfo bi{};
  bi.sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO;
  bi.size = size;
  bi.usage = k_usage;
  // With a separate transfer queue the staging ring writes buffers the compute queue reads:
  // concurrent sharing avoids queue-family ownership transfers.
  static thread_local uint32_t families[2];
  families[0] = device.compute_family();
  families[1] = device.transfer_family();
  if (device.has_transfer_queue()) {
    bi.sharingMode = VK_SHARING_MODE_CONCURRENT;
    bi.queueFamilyIndexCount = 2;
    bi.pQueueFamilyIndices = families;
  } else {
    bi.sharingMode = VK_SHARING_MODE_EXCLUSIVE;
  }
  return bi;
}

std::string heap_desc(const Device& device, uint32_t type) {
  const auto& caps = device.caps();
  if (type >= caps.memory_types.size()) return "?";
  const uint32_t heap = caps.memory_types[type].heap;
  return fmt::format("memory type {} on heap {} ({} MiB{})", type, heap,
                     heap < caps.heaps.size() ? caps.heaps[heap].size >> 20 : 0,
                     heap < caps.heaps.size() && caps.heaps[heap].device_local ? ", device-local" : "");
}

}  // namespace

Result<Buffer> Buffer::create(const Device& device, uint64_t size, MemoryIntent intent, std::string_view name) {
  if (size == 0) return make_error(ErrorCode::invalid_argument, "buffer '{}': size 0", name);
  const auto& caps = device.caps();
  if (caps.max_memory_allocation_size != 0 && size > caps.max_memory_allocation_size) {
    return make_error(ErrorCode::out_of_memory, "buffer '{}': {} bytes exceed maxMemoryAllocationSize {} on '{}'",
                      name, size, caps.max_memory_allocation_size, caps.name);
  }
  Buffer b;
  b.device_ = device.handle();
  b.size_ = size;
  b.intent_ = intent;
  b.name_ = std::string(name);
  // Shaders read weights as 32-bit words: the tail word of the last row must be in range.
  b.vk_size_ = round_up(size, 16);
  VkBufferCreateInfo bi = buffer_info(device, b.vk_size_);
  TANDEM_RETURN_IF_ERROR(vk_check(vkCreateBuffer(b.device_, &bi, nullptr, &b.buffer_),
                                  fmt::format("vkCreateBuffer '{}' ({} bytes)", name, size)));
  VkMemoryRequirements req{};
  vkGetBufferMemoryRequirements(b.device_, b.buffer_, &req);
  const auto candidates = choose_memory_types(caps.memory_types, req.memoryTypeBits, intent, device.unified());
  if (candidates.empty()) {
    return make_error(ErrorCode::unsupported, "buffer '{}': no memory type on '{}' suits intent {} (type bits {:#x})",
                      name, caps.name, memory_intent_name(intent), req.memoryTypeBits);
  }
  VkResult last = VK_ERROR_OUT_OF_DEVICE_MEMORY;
  for (uint32_t type : candidates) {
    VkMemoryAllocateInfo ai{};
    ai.sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO;
    ai.allocationSize = req.size;
    ai.memoryTypeIndex = type;
    last = vkAllocateMemory(b.device_, &ai, nullptr, &b.memory_);
    if (last == VK_SUCCESS) {
      b.memory_type_ = type;
      break;
    }
    b.memory_ = VK_NULL_HANDLE;
  }
  if (b.memory_ == VK_NULL_HANDLE) {
    const bool oom = last == VK_ERROR_OUT_OF_DEVICE_MEMORY || last == VK_ERROR_OUT_OF_HOST_MEMORY;
    return make_error(oom ? ErrorCode::out_of_memory : ErrorCode::device_error,
                      "buffer '{}': cannot allocate {} bytes for {} in {}: {}", name, req.size,
                      memory_intent_name(intent), heap_desc(device, candidates.front()), vk_result_name(last));
  }
  TANDEM_RETURN_IF_ERROR(vk_check(vkBindBufferMemory(b.device_, b.buffer_, b.memory_, 0),
                                  fmt::format("vkBindBufferMemory '{}'", name)));
  if (caps.memory_types[b.memory_type_].flags & mem_host_visible) {
    TANDEM_RETURN_IF_ERROR(vk_check(vkMapMemory(b.device_, b.memory_, 0, VK_WHOLE_SIZE, 0, &b.host_),
                                    fmt::format("vkMapMemory '{}'", name)));
  }
  return b;
}

Result<Buffer> Buffer::import_host(const Device& device, const void* ptr, uint64_t size, std::string_view name) {
  if (!device.host_import()) {
    return make_error(ErrorCode::unsupported, "buffer '{}': host memory import is off on '{}'", name,
                      device.caps().name);
  }
  if (ptr == nullptr || size == 0) return make_error(ErrorCode::invalid_argument, "buffer '{}': empty import", name);
  const uint64_t align = std::max<uint64_t>(device.caps().min_imported_host_pointer_alignment, 1);
  const auto addr = reinterpret_cast<uintptr_t>(ptr);
  const uintptr_t base = addr / align * align;
  const uint64_t span = round_up(addr + size, align) - base;

  Buffer b;
  b.device_ = device.handle();
  b.size_ = size;
  b.offset_ = addr - base;
  b.vk_size_ = span;
  b.intent_ = MemoryIntent::device_weights;
  b.imported_ = true;
  b.name_ = std::string(name);
  // The import does not change the bytes; shaders only read this buffer.
  b.host_ = const_cast<void*>(ptr);  // NOLINT(cppcoreguidelines-pro-type-const-cast)

  VkMemoryHostPointerPropertiesEXT hp{};
  hp.sType = VK_STRUCTURE_TYPE_MEMORY_HOST_POINTER_PROPERTIES_EXT;
  void* base_ptr = reinterpret_cast<void*>(base);  // NOLINT(performance-no-int-to-ptr)
  TANDEM_RETURN_IF_ERROR(vk_check(device.get_memory_host_pointer_properties()(
                                      b.device_, VK_EXTERNAL_MEMORY_HANDLE_TYPE_HOST_ALLOCATION_BIT_EXT, base_ptr, &hp),
                                  fmt::format("vkGetMemoryHostPointerPropertiesEXT '{}' at {}", name, ptr)));

  VkExternalMemoryBufferCreateInfo ext{};
  ext.sType = VK_STRUCTURE_TYPE_EXTERNAL_MEMORY_BUFFER_CREATE_INFO;
  ext.handleTypes = VK_EXTERNAL_MEMORY_HANDLE_TYPE_HOST_ALLOCATION_BIT_EXT;
  VkBufferCreateInfo bi = buffer_info(device, span);
  bi.pNext = &ext;
  TANDEM_RETURN_IF_ERROR(vk_check(vkCreateBuffer(b.device_, &bi, nullptr, &b.buffer_),
                                  fmt::format("vkCreateBuffer (import) '{}' ({} bytes)", name, span)));
  VkMemoryRequirements req{};
  vkGetBufferMemoryRequirements(b.device_, b.buffer_, &req);
  if (req.size > span) {
    return make_error(ErrorCode::unsupported, "buffer '{}': import of {} bytes needs {} bytes of backing", name,
                      span, req.size);
  }
  const auto candidates = choose_memory_types(device.caps().memory_types, req.memoryTypeBits & hp.memoryTypeBits,
                                              MemoryIntent::shared, true);
  if (candidates.empty()) {
    return make_error(ErrorCode::unsupported, "buffer '{}': no memory type can import host pointer {} (bits {:#x})",
                      name, ptr, req.memoryTypeBits & hp.memoryTypeBits);
  }
  VkImportMemoryHostPointerInfoEXT imp{};
  imp.sType = VK_STRUCTURE_TYPE_IMPORT_MEMORY_HOST_POINTER_INFO_EXT;
  imp.handleType = VK_EXTERNAL_MEMORY_HANDLE_TYPE_HOST_ALLOCATION_BIT_EXT;
  imp.pHostPointer = base_ptr;
  VkMemoryAllocateInfo ai{};
  ai.sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO;
  ai.pNext = &imp;
  ai.allocationSize = span;
  ai.memoryTypeIndex = candidates.front();
  TANDEM_RETURN_IF_ERROR(vk_check(vkAllocateMemory(b.device_, &ai, nullptr, &b.memory_),
                                  fmt::format("import '{}': {} bytes at {}", name, span, base_ptr)));
  b.memory_type_ = candidates.front();
  TANDEM_RETURN_IF_ERROR(vk_check(vkBindBufferMemory(b.device_, b.buffer_, b.memory_, 0),
                                  fmt::format("vkBindBufferMemory (import) '{}'", name)));
  return b;
}

Buffer& Buffer::operator=(Buffer&& o) noexcept {
  if (this == &o) return *this;
  release();
  device_ = std::exchange(o.device_, VK_NULL_HANDLE);
  buffer_ = std::exchange(o.buffer_, VK_NULL_HANDLE);
  memory_ = std::exchange(o.memory_, VK_NULL_HANDLE);
  size_ = std::exchange(o.size_, 0);
  offset_ = std::exchange(o.offset_, 0);
  vk_size_ = std::exchange(o.vk_size_, 0);
  memory_type_ = o.memory_type_;
  intent_ = o.intent_;
  imported_ = o.imported_;
  host_ = std::exchange(o.host_, nullptr);
  name_ = std::move(o.name_);
  return *this;
}

Buffer::~Buffer() { release(); }

void Buffer::release() {
  if (device_ == VK_NULL_HANDLE) return;
  if (buffer_ != VK_NULL_HANDLE) vkDestroyBuffer(device_, buffer_, nullptr);
  if (memory_ != VK_NULL_HANDLE) {
    if (host_ != nullptr && !imported_) vkUnmapMemory(device_, memory_);
    vkFreeMemory(device_, memory_, nullptr);
  }
  buffer_ = VK_NULL_HANDLE;
  memory_ = VK_NULL_HANDLE;
  host_ = nullptr;
  device_ = VK_NULL_HANDLE;
}

Status Buffer::write(const void* src, uint64_t size, uint64_t offset) {
  if (host_ == nullptr || imported_) {
    return make_error(ErrorCode::invalid_argument, "buffer '{}' is not host-writable", name_);
  }
  if (offset > size_ || size > size_ - offset) {
    return make_error(ErrorCode::invalid_argument, "buffer '{}': write of {} bytes at {} exceeds {} bytes", name_,
                      size, offset, size_);
  }
  std::memcpy(static_cast<uint8_t*>(host_) + offset, src, size);
  return Status::success();
}

Status Buffer::read(void* dst, uint64_t size, uint64_t offset) const {
  if (host_ == nullptr) return make_error(ErrorCode::invalid_argument, "buffer '{}' is not host-visible", name_);
  if (offset > size_ || size > size_ - offset) {
    return make_error(ErrorCode::invalid_argument, "buffer '{}': read of {} bytes at {} exceeds {} bytes", name_,
                      size, offset, size_);
  }
  std::memcpy(dst, static_cast<const uint8_t*>(host_) + offset, size);
  return Status::success();
}

}  // namespace tandem::gpu
