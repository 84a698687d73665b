#include "gpu/device_select.h"

#include <charconv>

namespace tandem::gpu {

Result<std::optional<size_t>> select_device(std::span<const DeviceCaps> devices, std::string_view choice) {
  using Choice = std::optional<size_t>;
  if (choice.empty() || choice == "auto") {
    Choice best;
    for (size_t i = 0; i < devices.size(); ++i) {
      if (devices[i].type != DeviceType::discrete) continue;
      if (!best || devices[i].device_local_bytes() > devices[*best].device_local_bytes()) best = i;
    }
    if (best) return best;
    for (size_t i = 0; i < devices.size(); ++i) {
      if (devices[i].type == DeviceType::integrated) return Choice(i);
    }
    return Choice();
  }
  if (choice == "none") return Choice();
  if (choice == "cpu") {
    for (size_t i = 0; i < devices.size(); ++i) {
      if (devices[i].is_software()) return Choice(i);
    }
    return make_error(ErrorCode::not_found, "--device cpu: no software Vulkan device among {} device(s)",
                      devices.size());
  }
  size_t n = 0;
  const auto [end, ec] = std::from_chars(choice.data(), choice.data() + choice.size(), n);
  if (ec != std::errc() || end != choice.data() + choice.size()) {
    return make_error(ErrorCode::invalid_argument,
                      "--device '{}': expected auto, none, cpu or a device index", choice);
  }
  if (n >= devices.size()) {
    return make_error(ErrorCode::not_found, "--device {}: only {} Vulkan device(s)", n, devices.size());
  }
  return Choice(n);
}

}  // namespace tandem::gpu
