#include "support/test_support.h"

#include <cmath>
#include <cstdlib>
#include <map>
#include <mutex>
#include <random>

namespace test {

std::map<std::string, std::function<std::string()>>& probes() {
  static std::map<std::string, std::function<std::string()>> m;
  return m;
}

bool register_probe(const std::string& name, std::function<std::string()> probe) {
  probes()[name] = std::move(probe);
  return true;
}

std::optional<std::filesystem::path> shared_data_dir() {
  const char* env = std::getenv("TANDEM_SHARED_DATA");
  std::filesystem::path p = env ? env : "../shared/data";
  std::error_code ec;
  if (std::filesystem::is_directory(p, ec)) return p;
  return std::nullopt;
}

double nmse(std::span<const float> a, std::span<const float> b) {
  double num = 0, den = 0;
  const size_t n = std::min(a.size(), b.size());
  for (size_t i = 0; i < n; ++i) {
    const double d = static_cast<double>(a[i]) - b[i];
    num += d * d;
    den += static_cast<double>(b[i]) * b[i];
  }
  if (a.size() != b.size()) return INFINITY;
  return den == 0 ? (num == 0 ? 0 : INFINITY) : num / den;
}

double max_abs_diff(std::span<const float> a, std::span<const float> b) {
  if (a.size() != b.size()) return INFINITY;
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::fabs(static_cast<double>(a[i]) - b[i]));
  return m;
}

TempDir::TempDir(const std::string& tag) {
  std::random_device rd;
  for (int attempt = 0; attempt < 100; ++attempt) {
    auto p = std::filesystem::temp_directory_path() / (tag + "-" + std::to_string(rd()));
    if (std::filesystem::create_directory(p)) {
      path_ = p;
      return;
    }
  }
  throw std::runtime_error("cannot create a temp dir");
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

}  // namespace test
