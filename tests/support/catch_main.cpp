// Catch2 v2 main. TANDEM_TEST_REQUIRES=vulkan,data names resources this run needs: when one
// is missing, print why and exit TANDEM_TEST_SKIP_CODE so ctest reports the test as skipped.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>
#include <sstream>

#include "support/test_support.h"

namespace test {
std::map<std::string, std::function<std::string()>>& probes();
}

int main(int argc, char** argv) {
  if (const char* req = std::getenv("TANDEM_TEST_REQUIRES")) {
    std::stringstream ss(req);
    std::string name;
    while (std::getline(ss, name, ',')) {
      std::string why;
      if (name == "data") {
        if (!test::shared_data_dir()) why = "third-party test data (../shared/data) is absent";
      } else {
        auto it = test::probes().find(name);
        why = it == test::probes().end() ? "no probe registered for '" + name + "'" : it->second();
      }
      if (!why.empty()) {
        std::printf("SKIPPED: needs %s: %s\n", name.c_str(), why.c_str());
        return TANDEM_TEST_SKIP_CODE;
      }
    }
  }
  return Catch::Session().run(argc, argv);
}
