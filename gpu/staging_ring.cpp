#include "gpu/staging_ring.h"

#include <fmt/format.h>

#include <algorithm>

#include "gpu/vk_status.h"

namespace tandem::gpu {

Result<std::unique_ptr<StagingRing>> StagingRing::create(const Device& device, uint64_t capacity, uint32_t n_slots) {
  if (n_slots == 0 || capacity < n_slots * 256ull) {
    return make_error(ErrorCode::invalid_argument, "staging ring: {} bytes in {} slots", capacity, n_slots);
  }
  std::unique_ptr<StagingRing> r(new StagingRing(device));
  r->slot_size_ = capacity / n_slots / 256 * 256;
  TANDEM_ASSIGN_OR_RETURN(r->staging_, Buffer::create(device, r->slot_size_ * n_slots, MemoryIntent::upload_staging,
                                                      "staging ring"));
  VkCommandPoolCreateInfo pi{};
  pi.sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO;
  pi.flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT;
  pi.queueFamilyIndex = device.transfer_family();
  TANDEM_RETURN_IF_ERROR(vk_check(vkCreateCommandPool(device.handle(), &pi, nullptr, &r->pool_),
                                  "vkCreateCommandPool (staging)"));
  r->slots_.resize(n_slots);
  for (auto& s : r->slots_) {
    VkCommandBufferAllocateInfo ai{};
    ai.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO;
    ai.commandPool = r->pool_;
    ai.level = VK_COMMAND_BUFFER_LEVEL_PRIMARY;
    ai.commandBufferCount = 1;
    TANDEM_RETURN_IF_ERROR(vk_check(vkAllocateCommandBuffers(device.handle(), &ai, &s.cmd),
                                    "vkAllocateCommandBuffers (staging)"));
  }
  TANDEM_ASSIGN_OR_RETURN(r->timeline_, TimelineSemaphore::create(device));
  return r;
}

StagingRing::~StagingRing() {
  (void)wait_idle();
  if (pool_ != VK_NULL_HANDLE) vkDestroyCommandPool(device_.handle(), pool_, nullptr);
}

Status StagingRing::upload(const BufferSlice& dst, const void* src, uint64_t size) {
  if (dst.buffer == nullptr || size > dst.size || dst.offset + dst.size > dst.buffer->size()) {
    return make_error(ErrorCode::invalid_argument, "staging upload of {} bytes: destination slice out of range", size);
  }
  const auto* bytes = static_cast<const uint8_t*>(src);
  for (uint64_t done = 0; done < size;) {
    const uint64_t n = std::min(slot_size_, size - done);
    Slot& slot = slots_[next_];
    const uint64_t slot_offset = next_ * slot_size_;
    next_ = (next_ + 1) % slots_.size();
    if (slot.value != 0) TANDEM_RETURN_IF_ERROR(timeline_.wait(slot.value));  // slot free again
    TANDEM_RETURN_IF_ERROR(staging_.write(bytes + done, n, slot_offset));

    TANDEM_RETURN_IF_ERROR(vk_check(vkResetCommandBuffer(slot.cmd, 0), "vkResetCommandBuffer (staging)"));
    VkCommandBufferBeginInfo bi{};
    bi.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO;
    bi.flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT;
    TANDEM_RETURN_IF_ERROR(vk_check(vkBeginCommandBuffer(slot.cmd, &bi), "vkBeginCommandBuffer (staging)"));
    VkBufferCopy region{staging_.offset() + slot_offset, dst.buffer->offset() + dst.offset + done, n};
    vkCmdCopyBuffer(slot.cmd, staging_.handle(), dst.buffer->handle(), 1, &region);
    // Later submissions on any queue that wait on this value see the bytes.
    VkMemoryBarrier mb{};
    mb.sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER;
    mb.srcAccessMask = VK_ACCESS_TRANSFER_WRITE_BIT;
    mb.dstAccessMask = VK_ACCESS_MEMORY_READ_BIT;
    vkCmdPipelineBarrier(slot.cmd, VK_PIPELINE_STAGE_TRANSFER_BIT, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, 0, 1, &mb, 0,
                         nullptr, 0, nullptr);
    TANDEM_RETURN_IF_ERROR(vk_check(vkEndCommandBuffer(slot.cmd), "vkEndCommandBuffer (staging)"));

    const uint64_t signal = timeline_.next_value();
    const VkSemaphore sem = timeline_.handle();
    VkTimelineSemaphoreSubmitInfo ti{};
    ti.sType = VK_STRUCTURE_TYPE_TIMELINE_SEMAPHORE_SUBMIT_INFO;
    ti.signalSemaphoreValueCount = 1;
    ti.pSignalSemaphoreValues = &signal;
    VkSubmitInfo si{};
    si.sType = VK_STRUCTURE_TYPE_SUBMIT_INFO;
    si.pNext = &ti;
    si.commandBufferCount = 1;
    si.pCommandBuffers = &slot.cmd;
    si.signalSemaphoreCount = 1;
    si.pSignalSemaphores = &sem;
    TANDEM_RETURN_IF_ERROR(vk_check(vkQueueSubmit(device_.transfer_queue(), 1, &si, VK_NULL_HANDLE),
                                    fmt::format("vkQueueSubmit (staging copy of {} bytes into '{}')", n,
                                                dst.buffer->name())));
    slot.value = signal;
    done += n;
  }
  return Status::success();
}

Status StagingRing::wait_idle() {
  if (timeline_.handle() == VK_NULL_HANDLE || timeline_.last_value() == 0) return Status::success();
  return timeline_.wait(timeline_.last_value());
}

}  // namespace tandem::gpu
