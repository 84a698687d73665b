// Buffer: one VkBuffer bound to its own VkDeviceMemory, usable as a storage buffer and as a
// transfer source/destination. BufferSlice: a byte range of one.
//
// Two ways to get one:
//   Buffer::create(device, size, intent)   allocation by MemoryIntent (gpu/memory.h); host-
//                                          visible kinds stay mapped for the buffer's life.
//   Buffer::import_host(device, ptr, size) zero copy (VK_EXT_external_memory_host): wraps the
//       host pages under [ptr, ptr+size), e.g. a memory-mapped GGUF tensor. The imported range
//       is [ptr, ptr+size) widened to minImportedHostPointerAlignment on both sides, so the
//       caller's bytes start at offset() inside the VkBuffer; the pages must stay mapped while
//       the buffer lives and, when mapped read-only, must only be read by shaders.
// Sizes are bytes. Errors: allocation failure -> out_of_memory naming the size, intent and
// heap; import unsupported -> unsupported; Vulkan failures -> device_error.
// Lifetime: the Device outlives its buffers. Move-only.
#pragma once

#include <vulkan/vulkan.h>

#include <string>
#include <string_view>

#include "core/status.h"
#include "gpu/device.h"
#include "gpu/memory.h"

namespace tandem::gpu {

class Buffer;

struct BufferSlice {
  const Buffer* buffer = nullptr;
  uint64_t offset = 0;  // bytes from the start of the buffer's data (Buffer::offset())
  uint64_t size = 0;    // bytes
};

class Buffer {
 public:
  static Result<Buffer> create(const Device& device, uint64_t size, MemoryIntent intent, std::string_view name = {});
  static Result<Buffer> import_host(const Device& device, const void* ptr, uint64_t size, std::string_view name = {});

  Buffer() = default;
  Buffer(Buffer&& o) noexcept { *this = std::move(o); }
  Buffer& operator=(Buffer&& o) noexcept;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  ~Buffer();

  VkBuffer handle() const { return buffer_; }
  uint64_t size() const { return size_; }              // the caller's bytes
  uint64_t offset() const { return offset_; }          // where they start in the VkBuffer
  uint64_t vk_size() const { return vk_size_; }        // the whole VkBuffer
  const std::string& name() const { return name_; }
  uint32_t memory_type() const { return memory_type_; }
  MemoryIntent intent() const { return intent_; }
  bool imported() const { return imported_; }
  // Host address of byte 0 of the caller's data; nullptr when not host-visible.
  void* host_data() const { return host_; }

  BufferSlice slice() const { return {this, 0, size_}; }
  BufferSlice slice(uint64_t offset, uint64_t size) const { return {this, offset, size}; }

  // memcpy to / from a host-visible buffer (coherent memory: no flush needed).
  // invalid_argument when out of range or the buffer is not host-visible.
  Status write(const void* src, uint64_t size, uint64_t offset = 0);
  Status read(void* dst, uint64_t size, uint64_t offset = 0) const;

 private:
  void release();
  VkDevice device_ = VK_NULL_HANDLE;
  VkBuffer buffer_ = VK_NULL_HANDLE;
  VkDeviceMemory memory_ = VK_NULL_HANDLE;
  uint64_t size_ = 0;
  uint64_t offset_ = 0;
  uint64_t vk_size_ = 0;
  uint32_t memory_type_ = 0;
  MemoryIntent intent_ = MemoryIntent::shared;
  bool imported_ = false;
  void* host_ = nullptr;
  std::string name_;
};

}  // namespace tandem::gpu
