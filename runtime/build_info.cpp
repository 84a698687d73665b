#include "runtime/build_info.h"

// Written by runtime/build_info.cmake into the build tree (TANDEM_BUILD_* string literals).
#include "tandem_build_info.h"

namespace tandem {

const BuildInfo& build_info() {
  static const BuildInfo info = [] {
    BuildInfo b;
    b.commit = TANDEM_BUILD_COMMIT;
    b.dirty = b.commit.ends_with("-dirty");
    b.version = TANDEM_BUILD_VERSION;
    b.compiler = TANDEM_BUILD_COMPILER;
    b.build_type = TANDEM_BUILD_TYPE;
    b.flags = TANDEM_BUILD_FLAGS;
    return b;
  }();
  return info;
}

}  // namespace tandem
