#include "gpu/command_recorder.h"

#include <fmt/format.h>

#include "gpu/vk_status.h"

namespace tandem::gpu {
namespace {

constexpr uint32_t k_sets_per_pool = 256;
constexpr uint32_t k_max_queries = 128;

}  // namespace

Result<std::unique_ptr<CommandRecorder>> CommandRecorder::create(const Device& device, PipelineCache& pipelines) {
  std::unique_ptr<CommandRecorder> r(new CommandRecorder(device, pipelines));
  const VkDevice dev = device.handle();
  VkCommandPoolCreateInfo pi{};
  pi.sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO;
  pi.flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT;
  pi.queueFamilyIndex = device.compute_family();
  TANDEM_RETURN_IF_ERROR(vk_check(vkCreateCommandPool(dev, &pi, nullptr, &r->pool_), "vkCreateCommandPool"));
  VkCommandBufferAllocateInfo ai{};
  ai.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO;
  ai.commandPool = r->pool_;
  ai.level = VK_COMMAND_BUFFER_LEVEL_PRIMARY;
  ai.commandBufferCount = 1;
  TANDEM_RETURN_IF_ERROR(vk_check(vkAllocateCommandBuffers(dev, &ai, &r->cmd_), "vkAllocateCommandBuffers"));
  if (device.caps().timestamps) {
    VkQueryPoolCreateInfo qi{};
    qi.sType = VK_STRUCTURE_TYPE_QUERY_POOL_CREATE_INFO;
    qi.queryType = VK_QUERY_TYPE_TIMESTAMP;
    qi.queryCount = k_max_queries;
    TANDEM_RETURN_IF_ERROR(vk_check(vkCreateQueryPool(dev, &qi, nullptr, &r->queries_), "vkCreateQueryPool"));
  }
  TANDEM_ASSIGN_OR_RETURN(r->timeline_, TimelineSemaphore::create(device));
  return r;
}

CommandRecorder::~CommandRecorder() {
  const VkDevice dev = device_.handle();
  if (submitted_ != 0) (void)timeline_.wait(submitted_);
  for (auto p : descriptor_pools_) vkDestroyDescriptorPool(dev, p, nullptr);
  if (queries_ != VK_NULL_HANDLE) vkDestroyQueryPool(dev, queries_, nullptr);
  if (pool_ != VK_NULL_HANDLE) vkDestroyCommandPool(dev, pool_, nullptr);
}

Status CommandRecorder::begin() {
  reusable_ = false;
  return begin_with(VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT);
}

Status CommandRecorder::begin_reusable() {
  reusable_ = true;
  return begin_with(0);
}

Status CommandRecorder::begin_with(VkCommandBufferUsageFlags flags) {
  if (recording_) return make_error(ErrorCode::internal, "CommandRecorder::begin while recording");
  replayable_ = false;
  TANDEM_RETURN_IF_ERROR(wait());
  const VkDevice dev = device_.handle();
  for (auto p : descriptor_pools_) {
    TANDEM_RETURN_IF_ERROR(vk_check(vkResetDescriptorPool(dev, p, 0), "vkResetDescriptorPool"));
  }
  pool_in_use_ = 0;
  TANDEM_RETURN_IF_ERROR(vk_check(vkResetCommandBuffer(cmd_, 0), "vkResetCommandBuffer"));
  VkCommandBufferBeginInfo bi{};
  bi.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO;
  bi.flags = flags;
  TANDEM_RETURN_IF_ERROR(vk_check(vkBeginCommandBuffer(cmd_, &bi), "vkBeginCommandBuffer"));
  if (queries_ != VK_NULL_HANDLE) vkCmdResetQueryPool(cmd_, queries_, 0, k_max_queries);
  query_labels_.clear();
  last_use_.clear();
  dispatches_ = 0;
  barriers_ = 0;
  recording_ = true;
  return Status::success();
}

Result<BoundSlice> CommandRecorder::bind(const BufferSlice& slice) const {
  if (slice.buffer == nullptr || slice.buffer->handle() == VK_NULL_HANDLE) {
    return make_error(ErrorCode::invalid_argument, "binding an empty buffer");
  }
  const Buffer& b = *slice.buffer;
  if (slice.offset > b.size() || slice.size > b.size() - slice.offset) {
    return make_error(ErrorCode::invalid_argument, "buffer '{}': slice [{}, +{}) exceeds its {} bytes", b.name(),
                      slice.offset, slice.size, b.size());
  }
  const uint64_t align = std::max<uint64_t>(device_.caps().min_storage_buffer_offset_alignment, 4);
  const uint64_t start = b.offset() + slice.offset;
  const uint64_t aligned = start / align * align;
  // Shaders read 32-bit words: cover the last partial word, which the buffer's padding holds.
  const uint64_t end = std::min<uint64_t>(b.vk_size(), (start + slice.size + 3) / 4 * 4);
  BoundSlice out;
  out.info.buffer = b.handle();
  out.info.offset = aligned;
  out.info.range = std::max<uint64_t>(end - aligned, 4);
  out.shift = static_cast<uint32_t>(start - aligned);
  if (out.info.range > device_.caps().max_storage_buffer_range) {
    return make_error(ErrorCode::invalid_argument, "buffer '{}': binding of {} bytes exceeds maxStorageBufferRange {}",
                      b.name(), out.info.range, device_.caps().max_storage_buffer_range);
  }
  return out;
}

void CommandRecorder::barrier_for(VkBuffer buffer, bool write, VkPipelineStageFlags stage, VkAccessFlags access) {
  auto& last = last_use_[buffer];
  if (last.stage != 0 && (last.written || write)) {
    VkBufferMemoryBarrier b{};
    b.sType = VK_STRUCTURE_TYPE_BUFFER_MEMORY_BARRIER;
    b.srcAccessMask = last.written ? last.access : 0;  // write-after-read needs ordering only
    b.dstAccessMask = access;
    b.srcQueueFamilyIndex = VK_QUEUE_FAMILY_IGNORED;
    b.dstQueueFamilyIndex = VK_QUEUE_FAMILY_IGNORED;
    b.buffer = buffer;
    b.offset = 0;
    b.size = VK_WHOLE_SIZE;
    vkCmdPipelineBarrier(cmd_, last.stage, stage, 0, 0, nullptr, 1, &b, 0, nullptr);
    ++barriers_;
    last = LastUse{};
  }
  last.stage |= stage;
  last.access |= access;
  last.written |= write;
}

Result<VkDescriptorSet> CommandRecorder::allocate_set(VkDescriptorSetLayout layout) {
  const VkDevice dev = device_.handle();
  while (true) {
    if (pool_in_use_ == descriptor_pools_.size()) {
      VkDescriptorPoolSize size{VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, k_sets_per_pool * 8};
      VkDescriptorPoolCreateInfo pi{};
      pi.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO;
      pi.maxSets = k_sets_per_pool;
      pi.poolSizeCount = 1;
      pi.pPoolSizes = &size;
      VkDescriptorPool pool = VK_NULL_HANDLE;
      TANDEM_RETURN_IF_ERROR(vk_check(vkCreateDescriptorPool(dev, &pi, nullptr, &pool), "vkCreateDescriptorPool"));
      descriptor_pools_.push_back(pool);
    }
    VkDescriptorSetAllocateInfo ai{};
    ai.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO;
    ai.descriptorPool = descriptor_pools_[pool_in_use_];
    ai.descriptorSetCount = 1;
    ai.pSetLayouts = &layout;
    VkDescriptorSet set = VK_NULL_HANDLE;
    const VkResult r = vkAllocateDescriptorSets(dev, &ai, &set);
    if (r == VK_SUCCESS) return set;
    if (r != VK_ERROR_OUT_OF_POOL_MEMORY && r != VK_ERROR_FRAGMENTED_POOL) {
      return vk_check(r, "vkAllocateDescriptorSets");
    }
    ++pool_in_use_;  // this pool is full: move on to the next (or a new) one
  }
}

Status CommandRecorder::dispatch(const Pipeline& pipeline, std::span<const BufferUse> uses,
                                 std::span<const std::byte> push, std::array<uint32_t, 3> groups) {
  if (!recording_) return make_error(ErrorCode::internal, "dispatch '{}' outside begin/submit", pipeline.desc().variant);
  if (uses.size() != pipeline.desc().n_bindings || push.size() != pipeline.desc().push_constant_size) {
    return make_error(ErrorCode::internal, "dispatch '{}': {} buffers / {} push bytes, pipeline wants {} / {}",
                      pipeline.desc().variant, uses.size(), push.size(), pipeline.desc().n_bindings,
                      pipeline.desc().push_constant_size);
  }
  const auto& lim = device_.caps().max_compute_workgroup_count;
  for (int i = 0; i < 3; ++i) {
    if (groups[i] == 0) return Status::success();  // nothing to do
    if (groups[i] > lim[i]) {
      return make_error(ErrorCode::invalid_argument, "dispatch '{}': {} workgroups in dim {} exceed the limit {}",
                        pipeline.desc().variant, groups[i], i, lim[i]);
    }
  }
  TANDEM_ASSIGN_OR_RETURN(VkDescriptorSet set, allocate_set(pipeline.set_layout()));
  std::vector<VkDescriptorBufferInfo> infos(uses.size());
  std::vector<VkWriteDescriptorSet> writes(uses.size());
  for (size_t i = 0; i < uses.size(); ++i) {
    TANDEM_ASSIGN_OR_RETURN(BoundSlice bs, bind(uses[i].slice));
    infos[i] = bs.info;
    writes[i].sType = VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET;
    writes[i].dstSet = set;
    writes[i].dstBinding = static_cast<uint32_t>(i);
    writes[i].descriptorCount = 1;
    writes[i].descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER;
    writes[i].pBufferInfo = &infos[i];
  }
  vkUpdateDescriptorSets(device_.handle(), static_cast<uint32_t>(writes.size()), writes.data(), 0, nullptr);
  for (const auto& u : uses) {
    const bool w = u.access != Access::read;
    VkAccessFlags a = 0;
    if (u.access != Access::write) a |= VK_ACCESS_SHADER_READ_BIT;
    if (w) a |= VK_ACCESS_SHADER_WRITE_BIT;
    barrier_for(u.slice.buffer->handle(), w, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, a);
  }
  vkCmdBindPipeline(cmd_, VK_PIPELINE_BIND_POINT_COMPUTE, pipeline.handle());
  vkCmdBindDescriptorSets(cmd_, VK_PIPELINE_BIND_POINT_COMPUTE, pipeline.layout(), 0, 1, &set, 0, nullptr);
  if (!push.empty()) {
    vkCmdPushConstants(cmd_, pipeline.layout(), VK_SHADER_STAGE_COMPUTE_BIT, 0, static_cast<uint32_t>(push.size()),
                       push.data());
  }
  vkCmdDispatch(cmd_, groups[0], groups[1], groups[2]);
  ++dispatches_;
  return Status::success();
}

Status CommandRecorder::copy(const BufferSlice& src, const BufferSlice& dst) {
  if (!recording_) return make_error(ErrorCode::internal, "copy outside begin/submit");
  if (src.size != dst.size || src.buffer == nullptr || dst.buffer == nullptr ||
      src.offset + src.size > src.buffer->size() || dst.offset + dst.size > dst.buffer->size()) {
    return make_error(ErrorCode::invalid_argument, "copy of {} bytes into {} bytes: slices out of range", src.size,
                      dst.size);
  }
  if (src.size == 0) return Status::success();
  barrier_for(src.buffer->handle(), false, VK_PIPELINE_STAGE_TRANSFER_BIT, VK_ACCESS_TRANSFER_READ_BIT);
  barrier_for(dst.buffer->handle(), true, VK_PIPELINE_STAGE_TRANSFER_BIT, VK_ACCESS_TRANSFER_WRITE_BIT);
  VkBufferCopy region{src.buffer->offset() + src.offset, dst.buffer->offset() + dst.offset, src.size};
  vkCmdCopyBuffer(cmd_, src.buffer->handle(), dst.buffer->handle(), 1, &region);
  return Status::success();
}

void CommandRecorder::timestamp(std::string label) {
  if (!recording_ || queries_ == VK_NULL_HANDLE || query_labels_.size() >= k_max_queries) return;
  vkCmdWriteTimestamp(cmd_, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, queries_, static_cast<uint32_t>(query_labels_.size()));
  query_labels_.push_back(std::move(label));
}

Result<uint64_t> CommandRecorder::submit(std::span<const TimelineWait> waits) {
  if (!recording_) return make_error(ErrorCode::internal, "submit without begin");
  recording_ = false;
  // Make every device write visible to the host before the timeline value signals.
  VkMemoryBarrier mb{};
  mb.sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER;
  mb.srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT;
  mb.dstAccessMask = VK_ACCESS_HOST_READ_BIT;
  vkCmdPipelineBarrier(cmd_, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT,
                       VK_PIPELINE_STAGE_HOST_BIT, 0, 1, &mb, 0, nullptr, 0, nullptr);
  TANDEM_RETURN_IF_ERROR(vk_check(vkEndCommandBuffer(cmd_), "vkEndCommandBuffer"));
  TANDEM_ASSIGN_OR_RETURN(uint64_t signal, queue_submit(waits));
  replayable_ = reusable_;
  return signal;
}

Result<uint64_t> CommandRecorder::resubmit(std::span<const TimelineWait> waits) {
  if (recording_ || !replayable_) {
    return make_error(ErrorCode::internal, "CommandRecorder::resubmit without a finished reusable recording");
  }
  // A command buffer without SIMULTANEOUS_USE must not be pending when submitted again.
  TANDEM_RETURN_IF_ERROR(wait());
  return queue_submit(waits);
}

Status CommandRecorder::resubmit_and_wait(std::span<const TimelineWait> waits) {
  TANDEM_ASSIGN_OR_RETURN(uint64_t v, resubmit(waits));
  (void)v;
  return wait();
}

Result<uint64_t> CommandRecorder::queue_submit(std::span<const TimelineWait> waits) {
  std::vector<VkSemaphore> wait_sems;
  std::vector<uint64_t> wait_values;
  std::vector<VkPipelineStageFlags> wait_stages;
  for (const auto& w : waits) {
    if (w.semaphore == nullptr) continue;
    wait_sems.push_back(w.semaphore->handle());
    wait_values.push_back(w.value);
    wait_stages.push_back(VK_PIPELINE_STAGE_ALL_COMMANDS_BIT);
  }
  const uint64_t signal = timeline_.next_value();
  const VkSemaphore signal_sem = timeline_.handle();
  VkTimelineSemaphoreSubmitInfo ti{};
  ti.sType = VK_STRUCTURE_TYPE_TIMELINE_SEMAPHORE_SUBMIT_INFO;
  ti.waitSemaphoreValueCount = static_cast<uint32_t>(wait_values.size());
  ti.pWaitSemaphoreValues = wait_values.data();
  ti.signalSemaphoreValueCount = 1;
  ti.pSignalSemaphoreValues = &signal;
  VkSubmitInfo si{};
  si.sType = VK_STRUCTURE_TYPE_SUBMIT_INFO;
  si.pNext = &ti;
  si.waitSemaphoreCount = static_cast<uint32_t>(wait_sems.size());
  si.pWaitSemaphores = wait_sems.data();
  si.pWaitDstStageMask = wait_stages.data();
  si.commandBufferCount = 1;
  si.pCommandBuffers = &cmd_;
  si.signalSemaphoreCount = 1;
  si.pSignalSemaphores = &signal_sem;
  TANDEM_RETURN_IF_ERROR(vk_check(vkQueueSubmit(device_.compute_queue(), 1, &si, VK_NULL_HANDLE), "vkQueueSubmit"));
  submitted_ = signal;
  return signal;
}

Status CommandRecorder::wait() {
  if (submitted_ == 0) return Status::success();
  return timeline_.wait(submitted_);
}

Status CommandRecorder::submit_and_wait(std::span<const TimelineWait> waits) {
  TANDEM_ASSIGN_OR_RETURN(uint64_t v, submit(waits));
  (void)v;
  return wait();
}

Result<std::vector<TimestampResult>> CommandRecorder::timestamps() {
  std::vector<TimestampResult> out;
  if (queries_ == VK_NULL_HANDLE || query_labels_.empty()) return out;
  TANDEM_RETURN_IF_ERROR(wait());
  std::vector<uint64_t> ticks(query_labels_.size());
  TANDEM_RETURN_IF_ERROR(vk_check(vkGetQueryPoolResults(device_.handle(), queries_, 0,
                                                        static_cast<uint32_t>(ticks.size()), ticks.size() * 8,
                                                        ticks.data(), 8, VK_QUERY_RESULT_64_BIT | VK_QUERY_RESULT_WAIT_BIT),
                                  "vkGetQueryPoolResults"));
  const double ns_per_tick = device_.caps().timestamp_period_ns;
  for (size_t i = 0; i < ticks.size(); ++i) {
    out.push_back({query_labels_[i], static_cast<double>(ticks[i] - ticks[0]) * ns_per_tick * 1e-6});
  }
  return out;
}

std::array<uint32_t, 3> CommandRecorder::grid_1d(uint64_t n) const {
  const uint64_t max_x = device_.caps().max_compute_workgroup_count[0];
  if (n <= max_x) return {static_cast<uint32_t>(n), 1, 1};
  // x * y >= n; the shader skips the overhang (linear id >= n).
  const uint64_t y = (n + max_x - 1) / max_x;
  const uint64_t x = (n + y - 1) / y;
  return {static_cast<uint32_t>(x), static_cast<uint32_t>(y), 1};
}

}  // namespace tandem::gpu
