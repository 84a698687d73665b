// Helpers shared by every test binary: resource probes (a test binary registers how to find
// a Vulkan device; the main skips with exit code 77 when a required one is missing), error
// metrics, temp folders, and the shared third-party data folder.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <span>
#include <string>

namespace test {

// Registers a probe for resource `name` ("vulkan"). The probe returns an empty string when
// the resource is usable, else why not. Call from a static initializer in a test file.
bool register_probe(const std::string& name, std::function<std::string()> probe);

// The third-party data folder (../shared/data) when it exists, else nullopt.
std::optional<std::filesystem::path> shared_data_dir();

// Normalised mean squared error sum((a-b)^2) / sum(b^2), as llama.cpp's test-backend-ops.
double nmse(std::span<const float> actual, std::span<const float> expected);
double max_abs_diff(std::span<const float> a, std::span<const float> b);

// A fresh, empty folder under the system temp dir, removed when the object dies.
class TempDir {
 public:
  explicit TempDir(const std::string& tag = "tandem-test");
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

}  // namespace test
