#include "gpu/sync.h"

#include <fmt/format.h>

#include <utility>

#include "gpu/vk_status.h"

namespace tandem::gpu {

Result<TimelineSemaphore> TimelineSemaphore::create(const Device& device, uint64_t initial) {
  TimelineSemaphore s;
  s.device_ = device.handle();
  s.last_ = initial;
  VkSemaphoreTypeCreateInfo type{};
  type.sType = VK_STRUCTURE_TYPE_SEMAPHORE_TYPE_CREATE_INFO;
  type.semaphoreType = VK_SEMAPHORE_TYPE_TIMELINE;
  type.initialValue = initial;
  VkSemaphoreCreateInfo ci{};
  ci.sType = VK_STRUCTURE_TYPE_SEMAPHORE_CREATE_INFO;
  ci.pNext = &type;
  TANDEM_RETURN_IF_ERROR(vk_check(vkCreateSemaphore(s.device_, &ci, nullptr, &s.sem_), "vkCreateSemaphore (timeline)"));
  return s;
}

TimelineSemaphore& TimelineSemaphore::operator=(TimelineSemaphore&& o) noexcept {
  if (this == &o) return *this;
  if (sem_ != VK_NULL_HANDLE) vkDestroySemaphore(device_, sem_, nullptr);
  device_ = std::exchange(o.device_, VK_NULL_HANDLE);
  sem_ = std::exchange(o.sem_, VK_NULL_HANDLE);
  last_ = o.last_;
  return *this;
}

TimelineSemaphore::~TimelineSemaphore() {
  if (sem_ != VK_NULL_HANDLE) vkDestroySemaphore(device_, sem_, nullptr);
}

Result<uint64_t> TimelineSemaphore::current() const {
  uint64_t v = 0;
  TANDEM_RETURN_IF_ERROR(vk_check(vkGetSemaphoreCounterValue(device_, sem_, &v), "vkGetSemaphoreCounterValue"));
  return v;
}

Status TimelineSemaphore::wait(uint64_t value, uint64_t timeout_ns) const {
  VkSemaphoreWaitInfo wi{};
  wi.sType = VK_STRUCTURE_TYPE_SEMAPHORE_WAIT_INFO;
  wi.semaphoreCount = 1;
  wi.pSemaphores = &sem_;
  wi.pValues = &value;
  const VkResult r = vkWaitSemaphores(device_, &wi, timeout_ns);
  if (r == VK_TIMEOUT) {
    return make_error(ErrorCode::device_error, "timeline semaphore did not reach {} within {} ms", value,
                      timeout_ns / 1'000'000);
  }
  return vk_check(r, fmt::format("vkWaitSemaphores (value {})", value));
}

}  // namespace tandem::gpu
