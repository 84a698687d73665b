// make_weight_buffer: puts read-only weight bytes (typically a tensor inside a memory-mapped
// GGUF file) where the GPU can read them, the cheapest way the device allows:
//   imported      unified device with host import (Device::host_import): the host pages
//                 themselves become the buffer, zero copy; `data` must stay mapped.
//   host_visible  unified device otherwise: one device_weights allocation, memcpy'd once.
//   staged        discrete (or forced discrete, TANDEM_VK_FORCE_DISCRETE=1): device-local
//                 allocation filled through `staging` (which must then be non-null); the copy
//                 is complete after staging->wait_idle() or a submission waiting on
//                 staging->last_value().
// Errors: as Buffer::create / Buffer::import_host; invalid_argument when staging is needed but
// null. A failed import falls back to host_visible (logged at debug level).
#pragma once

#include <string_view>

#include "core/status.h"
#include "gpu/buffer.h"
#include "gpu/staging_ring.h"

namespace tandem::gpu {

enum class WeightPlacement { imported, host_visible, staged };
const char* weight_placement_name(WeightPlacement p);

struct WeightBuffer {
  Buffer buffer;
  WeightPlacement placement = WeightPlacement::host_visible;
};

Result<WeightBuffer> make_weight_buffer(const Device& device, StagingRing* staging, const void* data, uint64_t size,
                                        std::string_view name = {});

}  // namespace tandem::gpu
