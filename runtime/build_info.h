// BuildInfo: what this binary was built from and how, for benchmark records (`tandem bench`,
// STYLE.md habit 7: "each record carries commit, compiler flags, CPU/ISA, ...") and --version.
//
// The commit is `git describe --always --dirty` of the source tree, taken at BUILD time by a
// custom target that runs on every build (runtime/build_info.cmake) and rewrites the generated
// header only when the text changes, so a rebuild after an edit or a commit reports the
// new state without recompiling anything else. "unknown" when git or the .git folder is
// missing (a source tarball). Compiler, build type and flags are the configure-time values.
#pragma once

#include <string_view>

namespace tandem {

struct BuildInfo {
  std::string_view commit;      // "fd301f8" or "fd301f8-dirty"; "unknown" outside a checkout
  bool dirty = false;           // uncommitted changes to tracked files at build time
  std::string_view version;     // project version, "0.1.0"
  std::string_view compiler;    // CMAKE_CXX_COMPILER_ID and version, "GNU 12.2.0"
  std::string_view build_type;  // CMAKE_BUILD_TYPE, "Release"
  // CMAKE_CXX_FLAGS + CMAKE_CXX_FLAGS_<BUILD_TYPE>, then " -fsanitize=<list>" (TANDEM_SANITIZE)
  // and " -march=native" (TANDEM_NATIVE) where set. ISA kernels add their own -m flags.
  std::string_view flags;
};

const BuildInfo& build_info();

}  // namespace tandem
