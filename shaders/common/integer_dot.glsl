// Packed 4 x int8 dot products (SPV_KHR_integer_dot_product, GL_EXT_integer_dot_product):
//   dot_packed4x8(a, b)          = sum_i int8(a >> 8i) * int8(b >> 8i)
//   dot_packed4x8_acc(a, b, acc) = acc + dot_packed4x8(a, b), saturating
// Where the GLSL compiler knows GL_EXT_integer_dot_product (INTDOT_NATIVE, probed by CMake)
// its built-ins are used; older glslang (Debian 12 ships 12.0) lacks the extension, so the same
// SPIR-V instructions (OpSDotKHR 4450, OpSDotAccSatKHR 4453; capabilities DotProductKHR 6019,
// DotProductInput4x8BitPackedKHR 6018; PackedVectorFormat4x8Bit = 0) are emitted through
// GL_EXT_spirv_intrinsics. Either way the device needs VK_KHR_shader_integer_dot_product with
// shaderIntegerDotProduct enabled (DeviceCaps::integer_dot_product).
#if defined(INTDOT_NATIVE)
#extension GL_EXT_integer_dot_product : require
int dot_packed4x8(int a, int b) { return dotPacked4x8EXT(a, b); }
int dot_packed4x8_acc(int a, int b, int acc) { return dotPacked4x8AccSatEXT(a, b, acc); }
#else
#extension GL_EXT_spirv_intrinsics : require
spirv_instruction(extensions = ["SPV_KHR_integer_dot_product"], capabilities = [6019, 6018], id = 4450)
int spv_sdot_packed(int a, int b, spirv_literal int packed_format);
spirv_instruction(extensions = ["SPV_KHR_integer_dot_product"], capabilities = [6019, 6018], id = 4453)
int spv_sdot_acc_sat_packed(int a, int b, int acc, spirv_literal int packed_format);
int dot_packed4x8(int a, int b) { return spv_sdot_packed(a, b, 0); }
int dot_packed4x8_acc(int a, int b, int acc) { return spv_sdot_acc_sat_packed(a, b, acc, 0); }
#endif
