// TimelineSemaphore (Vulkan 1.2 core): every queue submission signals the next value; the host
// and other submissions wait on values (IREE's model). Values only grow.
// Errors: wait timeout or device loss -> device_error naming the value.
#pragma once

#include <vulkan/vulkan.h>

#include <cstdint>

#include "core/status.h"
#include "gpu/device.h"

namespace tandem::gpu {

class TimelineSemaphore {
 public:
  static Result<TimelineSemaphore> create(const Device& device, uint64_t initial = 0);
  TimelineSemaphore() = default;
  TimelineSemaphore(TimelineSemaphore&& o) noexcept { *this = std::move(o); }
  TimelineSemaphore& operator=(TimelineSemaphore&& o) noexcept;
  TimelineSemaphore(const TimelineSemaphore&) = delete;
  TimelineSemaphore& operator=(const TimelineSemaphore&) = delete;
  ~TimelineSemaphore();

  VkSemaphore handle() const { return sem_; }
  // The value the next submission should signal (advances the internal counter).
  uint64_t next_value() { return ++last_; }
  // The last value handed out by next_value(): waiting on it waits for all prior work.
  uint64_t last_value() const { return last_; }
  // The value the device has reached.
  Result<uint64_t> current() const;
  // Blocks until the semaphore reaches `value` (timeout in nanoseconds).
  Status wait(uint64_t value, uint64_t timeout_ns = 60'000'000'000ull) const;

 private:
  VkDevice device_ = VK_NULL_HANDLE;
  VkSemaphore sem_ = VK_NULL_HANDLE;
  uint64_t last_ = 0;
};

// A dependency of a submission: wait until `semaphore` reaches `value`.
struct TimelineWait {
  const TimelineSemaphore* semaphore = nullptr;
  uint64_t value = 0;
};

}  // namespace tandem::gpu
