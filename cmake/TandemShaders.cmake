# Build-time SPIR-V: GLSL compute shaders compiled with glslc (glslangValidator as fallback),
# one SPIR-V module per variant (a source file plus -D defines), embedded into a C++ source as
# uint32_t arrays and looked up by variant name (shaders/spirv.h). The tandem binary carries
# no GLSL compiler.
#
#   tandem_shader_probe(<out-var> <extension>)   configure-time: can the compiler build a
#                                                 compute shader that requires <extension>?
#   tandem_shader_variant(<name> <source> [DEFINES ...])   adds one variant to the build
#   tandem_shader_library(<target>)              the STATIC library embedding every variant

set(TANDEM_SHADER_TARGET_ENV "vulkan1.2")
set(TANDEM_SHADER_EMBED_SCRIPT "${PROJECT_SOURCE_DIR}/shaders/embed_spirv.cmake")

# Command line that compiles <src> to <out> with depfile <dep> and the given defines.
function(_tandem_shader_command out_var src out dep defines)
  set(defs "")
  foreach(d IN LISTS defines)
    list(APPEND defs "-D${d}")
  endforeach()
  if(TANDEM_GLSLC)
    set(${out_var} "${TANDEM_GLSLC}" -fshader-stage=compute --target-env=${TANDEM_SHADER_TARGET_ENV}
        -Werror -O ${defs} -MD -MF "${dep}" -o "${out}" "${src}" PARENT_SCOPE)
  else()
    set(${out_var} "${TANDEM_GLSLANG}" -V -S comp --target-env ${TANDEM_SHADER_TARGET_ENV}
        ${defs} --depfile "${dep}" -o "${out}" "${src}" PARENT_SCOPE)
  endif()
endfunction()

function(tandem_shader_probe out_var extension)
  if(DEFINED CACHE{${out_var}})
    return()
  endif()
  set(dir "${CMAKE_BINARY_DIR}/shader_probes")
  file(MAKE_DIRECTORY "${dir}")
  string(MAKE_C_IDENTIFIER "${extension}" id)
  set(src "${dir}/${id}.comp")
  file(WRITE "${src}" "#version 450\n#extension ${extension} : require\nlayout(local_size_x = 1) in;\nvoid main() {}\n")
  _tandem_shader_command(cmd "${src}" "${dir}/${id}.spv" "${dir}/${id}.d" "")
  execute_process(COMMAND ${cmd} RESULT_VARIABLE rc OUTPUT_QUIET ERROR_QUIET)
  if(rc EQUAL 0)
    set(ok ON)
  else()
    set(ok OFF)
  endif()
  message(STATUS "Shader compiler supports ${extension}: ${ok}")
  set(${out_var} ${ok} CACHE BOOL "GLSL compiler supports ${extension}" FORCE)
endfunction()

set_property(GLOBAL PROPERTY TANDEM_SHADER_NAMES "")
set_property(GLOBAL PROPERTY TANDEM_SHADER_SPVS "")

function(tandem_shader_variant name source)
  cmake_parse_arguments(V "" "" "DEFINES" ${ARGN})
  set(src "${CMAKE_CURRENT_SOURCE_DIR}/${source}")
  set(dir "${CMAKE_CURRENT_BINARY_DIR}/spv")
  set(out "${dir}/${name}.spv")
  set(dep "${dir}/${name}.spv.d")
  _tandem_shader_command(cmd "${src}" "${out}" "${dep}" "${V_DEFINES}")
  add_custom_command(
    OUTPUT "${out}"
    COMMAND "${CMAKE_COMMAND}" -E make_directory "${dir}"
    COMMAND ${cmd}
    DEPENDS "${src}"
    DEPFILE "${dep}"
    COMMENT "GLSL ${name} (${source} ${V_DEFINES})"
    VERBATIM)
  set_property(GLOBAL APPEND PROPERTY TANDEM_SHADER_NAMES "${name}")
  set_property(GLOBAL APPEND PROPERTY TANDEM_SHADER_SPVS "${out}")
endfunction()

function(tandem_shader_library target)
  get_property(names GLOBAL PROPERTY TANDEM_SHADER_NAMES)
  get_property(spvs GLOBAL PROPERTY TANDEM_SHADER_SPVS)
  set(gen "${CMAKE_CURRENT_BINARY_DIR}/spirv_data.cpp")
  list(LENGTH names n_variants)
  string(REPLACE ";" "|" names_arg "${names}")
  string(REPLACE ";" "|" spvs_arg "${spvs}")
  add_custom_command(
    OUTPUT "${gen}"
    COMMAND "${CMAKE_COMMAND}" "-DNAMES=${names_arg}" "-DSPVS=${spvs_arg}" "-DOUT=${gen}"
            -P "${TANDEM_SHADER_EMBED_SCRIPT}"
    DEPENDS ${spvs} "${TANDEM_SHADER_EMBED_SCRIPT}"
    COMMENT "Embedding ${n_variants} SPIR-V variants"
    VERBATIM)
  add_library(${target} STATIC "${CMAKE_CURRENT_SOURCE_DIR}/spirv.cpp" "${gen}")
  set(incroot "${PROJECT_BINARY_DIR}/include/${target}")
  file(MAKE_DIRECTORY "${incroot}")
  if(NOT EXISTS "${incroot}/shaders")
    file(CREATE_LINK "${CMAKE_CURRENT_SOURCE_DIR}" "${incroot}/shaders" SYMBOLIC)
  endif()
  target_include_directories(${target} PUBLIC "${incroot}")
  target_link_libraries(${target} PRIVATE tandem_warnings)
  set_target_properties(${target} PROPERTIES POSITION_INDEPENDENT_CODE ON)
endfunction()
