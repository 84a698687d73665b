// Device choice from a GpuOptions::device string, as a pure function of the devices' caps so
// it can be tested with made-up machines.
#pragma once

#include <optional>
#include <span>
#include <string_view>

#include "core/status.h"
#include "gpu/device_caps.h"

namespace tandem::gpu {

// Index into `devices` of the device to use, or nullopt for "run on the CPU only".
//   "auto" (or ""): the first discrete device with the most device-local memory, else the
//                   first integrated one, else nullopt. Software devices are never chosen.
//   "none":         nullopt.
//   "cpu":          the first software device (lavapipe, SwiftShader); not_found if none.
//   "<N>":          devices[N]; not_found if out of range.
// Anything else: invalid_argument naming the string.
Result<std::optional<size_t>> select_device(std::span<const DeviceCaps> devices, std::string_view choice);

}  // namespace tandem::gpu
