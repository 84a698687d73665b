# Every dependency comes from a Debian 12 package (tools/install-deps.sh installs them).
find_package(Threads REQUIRED)
find_package(Vulkan REQUIRED)                 # libvulkan-dev
find_package(Eigen3 3.3 REQUIRED NO_MODULE)   # libeigen3-dev
find_package(TBB REQUIRED)                    # libtbb-dev (oneTBB 2021)
find_package(fmt REQUIRED)                    # libfmt-dev
find_package(nlohmann_json 3.10 REQUIRED)     # nlohmann-json3-dev
find_package(CLI11 REQUIRED)                  # libcli11-dev
find_package(PkgConfig REQUIRED)
pkg_check_modules(PCRE2 REQUIRED IMPORTED_TARGET libpcre2-8)  # libpcre2-dev
pkg_check_modules(URING REQUIRED IMPORTED_TARGET liburing)    # liburing-dev
if(TANDEM_BUILD_TESTS)
  find_package(Catch2 2.13 REQUIRED)          # catch2 (Debian ships v2)
endif()
find_program(TANDEM_GLSLC glslc)
find_program(TANDEM_GLSLANG glslangValidator)
if(NOT TANDEM_GLSLC AND NOT TANDEM_GLSLANG)
  message(FATAL_ERROR "Neither glslc (package glslc) nor glslangValidator (package glslang-tools) was found")
endif()
