// q8_1 activation blocks as the GPU's integer-dot mat-vecs read them (ggml's block_q8_1 idea,
// ggml-vulkan's MMVQ path): 32 activations per block, 10 32-bit words, 4-byte aligned so that
// the int8 values load as packed int8x4 words.
//   word 0      f32 d   = fp16(amax / 127): ggml's quantize_row_q8_0 scale, rounded to f16
//                         exactly as the CPU stores it in block_q8_0
//   word 1      f32 s   = d * sum(qs): lets q4_0 fold its -8 offset into one multiply
//   words 2..9  int8 qs[32], little-endian, qs[j] = roundf(x[j] * (1 / (amax / 127)))
// so the quantized values equal the CPU's q8_0 activations (cpu/quants.cpp).
const uint Q8_1_WORDS = 10u;
