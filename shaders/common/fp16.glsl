// f32 -> f16 bits rounded to nearest even, bit-exact with core/fp16.h fp32_to_fp16 and ggml's
// GGML_FP32_TO_FP16 (F16C VCVTPS2PH imm 0): packHalf2x16 leaves the rounding mode to the
// implementation, a KV cache must not depend on the driver. Overflow -> inf, NaN stays NaN.
uint f16_bits_rne(float f) {
  const uint x = floatBitsToUint(f);
  const uint sign = (x >> 16) & 0x8000u;
  const uint ax = x & 0x7fffffffu;
  if (ax > 0x7f800000u) return sign | 0x7e00u | ((ax >> 13) & 0x3ffu);
  if (ax >= 0x477ff000u) return sign | 0x7c00u;  // rounds to >= 65520
  if (ax < 0x38800000u) {                        // subnormal or zero in f16
    if (ax < 0x33000000u) return sign;           // below 2^-25
    const uint e = ax >> 23;
    const uint mant = (ax & 0x7fffffu) | 0x800000u;
    const uint shift = 126u - e;                 // 14..24
    const uint half_ulp = 1u << (shift - 1u);
    uint r = mant >> shift;
    const uint rem = mant & ((1u << shift) - 1u);
    if (rem > half_ulp || (rem == half_ulp && (r & 1u) != 0u)) r += 1u;
    return sign | r;
  }
  uint h = (ax >> 13) - (112u << 10);            // rebias 127 -> 15; a mantissa carry bumps the exponent
  const uint rem = ax & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u) != 0u)) h += 1u;
  return sign | h;
}
