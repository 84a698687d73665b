// CommandRecorder: records compute dispatches and copies into one command buffer, inserting
// a buffer memory barrier before each use of a buffer whose last access in this recording
// conflicts with it (read-after-write, write-after-write, write-after-read), the way ncnn's
// VkCompute tracks per-buffer access. Submits on the compute queue signalling its timeline
// semaphore; optional timestamp queries.
//
// Usage:  rec.begin(); ops::...(rec, ...); rec.submit_and_wait(); read the readback buffers.
// Descriptor sets come from pools the recorder owns, reset at the next begin().
// Binding offsets: a storage-buffer descriptor offset must be a multiple of
// minStorageBufferOffsetAlignment, so bind() rounds the slice's start down to it and returns
// the remaining byte shift, which the op passes to its shader as a push constant.
// Errors: Vulkan failures -> device_error; a slice out of its buffer or larger than
// maxStorageBufferRange -> invalid_argument naming the buffer.
// Threading: one thread. Lifetime: the Device and PipelineCache outlive it; buffers used in a
// recording must live until its submission completed.
#pragma once

#include <vulkan/vulkan.h>

#include <array>
#include <cstddef>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/status.h"
#include "gpu/buffer.h"
#include "gpu/pipeline.h"
#include "gpu/sync.h"

namespace tandem::gpu {

enum class Access { read, write, read_write };

struct BufferUse {
  BufferSlice slice;
  Access access = Access::read;
};

// Where a bound slice's bytes start relative to its descriptor's (aligned) offset.
struct BoundSlice {
  VkDescriptorBufferInfo info{};
  uint32_t shift = 0;  // bytes
};

struct TimestampResult {
  std::string label;
  double ms = 0;  // since the first timestamp of the recording
};

class CommandRecorder {
 public:
  static Result<std::unique_ptr<CommandRecorder>> create(const Device& device, PipelineCache& pipelines);
  ~CommandRecorder();
  CommandRecorder(const CommandRecorder&) = delete;
  CommandRecorder& operator=(const CommandRecorder&) = delete;

  const Device& device() const { return device_; }
  PipelineCache& pipelines() { return pipelines_; }

  // Waits for the previous submission, then starts a new recording.
  Status begin();
  // As begin(), but the recording may be submitted again with resubmit() (record once,
  // replay: a decode step whose dispatches read their per-token values, such as the token id
  // and position, from buffers the host rewrites between submissions). The descriptor sets
  // and the command buffer stay valid until the next begin*().
  Status begin_reusable();
  // Submits the last recording (made with begin_reusable() and submitted once) again, after
  // waiting for its previous submission; returns the timeline value it signals.
  // Errors: internal when there is no such recording (or one is in progress).
  Result<uint64_t> resubmit(std::span<const TimelineWait> waits = {});
  Status resubmit_and_wait(std::span<const TimelineWait> waits = {});
  // True while a finished reusable recording can be resubmitted.
  bool replayable() const { return replayable_; }
  // The descriptor info and byte shift a slice gets (see the header comment).
  Result<BoundSlice> bind(const BufferSlice& slice) const;
  // Records one dispatch. `uses` are the pipeline's bindings in order; `push` its push
  // constants; `groups` the workgroup counts (each within maxComputeWorkGroupCount).
  Status dispatch(const Pipeline& pipeline, std::span<const BufferUse> uses, std::span<const std::byte> push,
                  std::array<uint32_t, 3> groups);
  // Records a copy of src.size bytes (sizes equal).
  Status copy(const BufferSlice& src, const BufferSlice& dst);
  // Records a timestamp after all prior work (no-op where the device has no timestamps).
  void timestamp(std::string label);
  // Ends the recording and submits it after `waits`; returns the timeline value it signals.
  Result<uint64_t> submit(std::span<const TimelineWait> waits = {});
  Status wait();  // for the last submission
  Status submit_and_wait(std::span<const TimelineWait> waits = {});
  // Timestamps of the last completed submission.
  Result<std::vector<TimestampResult>> timestamps();
  const TimelineSemaphore& semaphore() const { return timeline_; }
  uint32_t dispatch_count() const { return dispatches_; }
  uint32_t barrier_count() const { return barriers_; }

  // Splits `n` workgroups into an (x, y) grid within the device limits; shaders recover the
  // linear id as gl_WorkGroupID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x.
  std::array<uint32_t, 3> grid_1d(uint64_t n) const;

 private:
  CommandRecorder(const Device& device, PipelineCache& pipelines) : device_(device), pipelines_(pipelines) {}
  Result<VkDescriptorSet> allocate_set(VkDescriptorSetLayout layout);
  void barrier_for(VkBuffer buffer, bool write, VkPipelineStageFlags stage, VkAccessFlags access);
  Status begin_with(VkCommandBufferUsageFlags flags);
  Result<uint64_t> queue_submit(std::span<const TimelineWait> waits);

  struct LastUse {
    VkPipelineStageFlags stage = 0;
    VkAccessFlags access = 0;
    bool written = false;
  };

  const Device& device_;
  PipelineCache& pipelines_;
  VkCommandPool pool_ = VK_NULL_HANDLE;
  VkCommandBuffer cmd_ = VK_NULL_HANDLE;
  std::vector<VkDescriptorPool> descriptor_pools_;
  size_t pool_in_use_ = 0;
  VkQueryPool queries_ = VK_NULL_HANDLE;
  std::vector<std::string> query_labels_;
  TimelineSemaphore timeline_;
  uint64_t submitted_ = 0;
  bool recording_ = false;
  bool reusable_ = false;    // the current / last recording was begun with begin_reusable()
  bool replayable_ = false;  // ... and has been ended and submitted
  std::map<VkBuffer, LastUse> last_use_;
  uint32_t dispatches_ = 0;
  uint32_t barriers_ = 0;
};

}  // namespace tandem::gpu
