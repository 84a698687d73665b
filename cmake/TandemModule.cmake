# tandem_module(<target> DIR <folder> ALIAS <include-prefix>
#               [DEPS <public deps...>] [PRIVATE_DEPS <deps...>] [EXCLUDE_DIRS <subfolders...>])
#
# One static library per folder from every *.cpp below it (globbed, so adding a file needs
# no CMake edit), minus *_test.cpp, which become <target>_tests (Catch2 v2) registered with
# ctest. The folder is published to dependants only as build/include/<target>/<ALIAS>/,
# a symlink: a folder that does not link <target> cannot include its headers.
#
# ISA-specific sources get their own flags by name: *_avx2.cpp, *_avx512.cpp (x86-64 only),
# and everything under arm/ (aarch64 only). Files under x86/ build only on x86-64.
#
# Test tags with a ctest entry of their own (skipped, never passed, without the resource):
#   [gpu]  needs a Vulkan device     -> <target>_gpu,  TANDEM_TEST_REQUIRES=vulkan
#   [data] needs ../shared/data      -> <target>_data, TANDEM_TEST_REQUIRES=data
#   [cgroup] needs a cgroup v2 memory controller and systemd scopes (hidden tests, [.][cgroup])
#                                    -> <target>_cgroup, TANDEM_TEST_REQUIRES=cgroup
set(TANDEM_TEST_SKIP_CODE 77)

function(tandem_module target)
  cmake_parse_arguments(M "" "DIR;ALIAS" "DEPS;PRIVATE_DEPS;EXCLUDE_DIRS" ${ARGN})
  set(dir "${PROJECT_SOURCE_DIR}/${M_DIR}")
  file(GLOB_RECURSE all_cpp CONFIGURE_DEPENDS "${dir}/*.cpp")
  set(srcs "")
  set(tests "")
  foreach(f IN LISTS all_cpp)
    file(RELATIVE_PATH rel "${dir}" "${f}")
    set(skip FALSE)
    foreach(ex IN LISTS M_EXCLUDE_DIRS)
      if(rel MATCHES "^${ex}/")
        set(skip TRUE)
      endif()
    endforeach()
    if(rel MATCHES "(^|/)x86/" AND NOT CMAKE_SYSTEM_PROCESSOR MATCHES "x86_64|AMD64")
      set(skip TRUE)
    endif()
    if(rel MATCHES "(^|/)arm/" AND NOT CMAKE_SYSTEM_PROCESSOR MATCHES "aarch64|arm64")
      set(skip TRUE)
    endif()
    if(rel MATCHES "(^|/)fuzz/")
      set(skip TRUE)
    endif()
    if(skip)
      continue()
    endif()
    if(rel MATCHES "_test\\.cpp$")
      list(APPEND tests "${f}")
    else()
      list(APPEND srcs "${f}")
    endif()
  endforeach()

  set(incroot "${PROJECT_BINARY_DIR}/include/${target}")
  file(MAKE_DIRECTORY "${incroot}")
  if(NOT EXISTS "${incroot}/${M_ALIAS}")
    file(CREATE_LINK "${dir}" "${incroot}/${M_ALIAS}" SYMBOLIC)
  endif()

  if(srcs)
    add_library(${target} STATIC ${srcs})
    target_include_directories(${target} PUBLIC "${incroot}")
    target_link_libraries(${target} PUBLIC ${M_DEPS} PRIVATE tandem_warnings ${M_PRIVATE_DEPS})
    set_target_properties(${target} PROPERTIES POSITION_INDEPENDENT_CODE ON)
    tandem_isa_flags(${srcs})
  else()
    add_library(${target} INTERFACE)
    target_include_directories(${target} INTERFACE "${incroot}")
    target_link_libraries(${target} INTERFACE ${M_DEPS})
  endif()

  if(TANDEM_BUILD_TESTS AND tests)
    add_executable(${target}_tests ${tests})
    target_link_libraries(${target}_tests PRIVATE ${target} ${M_PRIVATE_DEPS} tandem_test_support tandem_warnings)
    set_target_properties(${target}_tests PROPERTIES TANDEM_TEST_TARGET ON)  # cmake/TandemWarnings.cmake
    tandem_isa_flags(${tests})
    tandem_register_tests(${target}_tests ${target} ${tests})
  endif()
endfunction()

function(tandem_isa_flags)
  if(NOT CMAKE_SYSTEM_PROCESSOR MATCHES "x86_64|AMD64|aarch64|arm64")
    return()
  endif()
  foreach(f IN LISTS ARGN)
    if(f MATCHES "_avx2(_test)?\\.cpp$")
      set_source_files_properties("${f}" PROPERTIES COMPILE_OPTIONS "-mavx2;-mfma;-mf16c")
    elseif(f MATCHES "_avx512(_test)?\\.cpp$")
      set_source_files_properties("${f}" PROPERTIES COMPILE_OPTIONS
        "-mavx512f;-mavx512bw;-mavx512dq;-mavx512vl;-mavx512vnni;-mavx512vbmi;-mavx2;-mfma;-mf16c")
    elseif(f MATCHES "/arm/" AND CMAKE_SYSTEM_PROCESSOR MATCHES "aarch64|arm64")
      set_source_files_properties("${f}" PROPERTIES COMPILE_OPTIONS "-march=armv8.2-a+dotprod+fp16")
    endif()
  endforeach()
endfunction()

# tandem_register_tests(<exe> <name> <sources...>): one ctest entry for the tests that need
# nothing, plus one per resource tag that appears in the sources.
function(tandem_register_tests exe name)
  set(has_gpu FALSE)
  set(has_data FALSE)
  set(has_cgroup FALSE)
  foreach(f IN LISTS ARGN)
    file(READ "${f}" body)
    if(body MATCHES "\\[gpu\\]")
      set(has_gpu TRUE)
    endif()
    if(body MATCHES "\\[data\\]")
      set(has_data TRUE)
    endif()
    if(body MATCHES "\\[cgroup\\]")
      set(has_cgroup TRUE)
    endif()
  endforeach()
  set(env "TANDEM_SHARED_DATA=${TANDEM_SHARED_DATA}")
  # ~[.]: a spec made only of exclusions would otherwise select hidden tests too (Catch2 v2).
  add_test(NAME ${name} COMMAND ${exe} "~[gpu]~[data]~[.]")
  set_tests_properties(${name} PROPERTIES ENVIRONMENT "${env}" LABELS "unit")
  if(has_gpu)
    add_test(NAME ${name}_gpu COMMAND ${exe} "[gpu]")
    set_tests_properties(${name}_gpu PROPERTIES
      ENVIRONMENT "${env};TANDEM_TEST_REQUIRES=vulkan;VK_INSTANCE_LAYERS=VK_LAYER_KHRONOS_validation"
      SKIP_RETURN_CODE ${TANDEM_TEST_SKIP_CODE} LABELS "gpu" RUN_SERIAL TRUE)
  endif()
  if(has_data)
    add_test(NAME ${name}_data COMMAND ${exe} "[data]~[gpu]")
    set_tests_properties(${name}_data PROPERTIES
      ENVIRONMENT "${env};TANDEM_TEST_REQUIRES=data"
      SKIP_RETURN_CODE ${TANDEM_TEST_SKIP_CODE} LABELS "data")
  endif()
  if(has_cgroup)
    add_test(NAME ${name}_cgroup COMMAND ${exe} "[cgroup]")
    set_tests_properties(${name}_cgroup PROPERTIES
      ENVIRONMENT "${env};TANDEM_TEST_REQUIRES=cgroup"
      SKIP_RETURN_CODE ${TANDEM_TEST_SKIP_CODE} LABELS "cgroup" RUN_SERIAL TRUE)
  endif()
endfunction()
