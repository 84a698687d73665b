# Warnings on everywhere; -Werror when TANDEM_WERROR (CI).
add_library(tandem_warnings INTERFACE)
target_compile_options(tandem_warnings INTERFACE
  -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor -Wcast-align -Wunused
  -Woverloaded-virtual -Wimplicit-fallthrough -Wformat=2
  # Test executables (property TANDEM_TEST_TARGET) go without -Wnull-dereference: GCC 12 at -O3
  # reports false "potential null pointer dereference"s inside inlined libstdc++ (streambuf,
  # vector::resize) in test code; library and tool code keeps it.
  $<$<NOT:$<BOOL:$<TARGET_PROPERTY:TANDEM_TEST_TARGET>>>:-Wnull-dereference>
  $<$<CXX_COMPILER_ID:GNU>:-Wno-maybe-uninitialized>)
if(TANDEM_WERROR)
  target_compile_options(tandem_warnings INTERFACE -Werror)
endif()
if(TANDEM_NATIVE)
  add_compile_options(-march=native)
endif()
