// StagingRing: uploads host bytes into device buffers through a fixed host-visible staging
// buffer split into `n_slots` slots, on the transfer-only queue where the device has one
// (else the compute queue). Each slot's copy is one submission signalling the ring's timeline
// semaphore; a slot is refilled only after the value of its previous copy is reached, so the
// host fills slot k+1 while the GPU copies slot k.
// Consumers of uploaded data either call wait_idle() or make their submission wait on
// TimelineWait{&semaphore(), last_value()} (CommandRecorder::submit).
// Errors: out-of-range destination -> invalid_argument; Vulkan failures -> device_error.
// Threading: one thread. Lifetime: the Device outlives the ring; destination buffers must live
// until the copies completed (wait_idle).
#pragma once

#include <vulkan/vulkan.h>

#include <memory>
#include <vector>

#include "core/status.h"
#include "gpu/buffer.h"
#include "gpu/sync.h"

namespace tandem::gpu {

class StagingRing {
 public:
  static Result<std::unique_ptr<StagingRing>> create(const Device& device, uint64_t capacity = 16ull << 20,
                                                     uint32_t n_slots = 4);
  ~StagingRing();
  StagingRing(const StagingRing&) = delete;
  StagingRing& operator=(const StagingRing&) = delete;

  // Queues a copy of `size` bytes from `src` into `dst` (a slice of at least `size` bytes).
  Status upload(const BufferSlice& dst, const void* src, uint64_t size);
  // Blocks until every queued copy has completed.
  Status wait_idle();
  const TimelineSemaphore& semaphore() const { return timeline_; }
  uint64_t last_value() const { return timeline_.last_value(); }
  uint64_t slot_size() const { return slot_size_; }
  bool on_transfer_queue() const { return device_.has_transfer_queue(); }

 private:
  explicit StagingRing(const Device& device) : device_(device) {}
  struct Slot {
    VkCommandBuffer cmd = VK_NULL_HANDLE;
    uint64_t value = 0;  // timeline value of its last copy
  };
  const Device& device_;
  Buffer staging_;
  uint64_t slot_size_ = 0;
  VkCommandPool pool_ = VK_NULL_HANDLE;
  std::vector<Slot> slots_;
  size_t next_ = 0;
  TimelineSemaphore timeline_;
};

}  // namespace tandem::gpu
