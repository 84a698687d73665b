// Down-layout conversion (`tandem convert --transpose-down`, and the same in memory for the
// load-time option): rewrites every blk.*.ffn_down_exps from the standard layout
// ne = [n_ff_exp, n_embd, n_expert] (per expert, n_embd rows of n_ff_exp) into PowerInfer's
// transposed one ne = [n_embd, n_ff_exp, n_expert] (per expert, row j = the n_embd-vector
// neuron j adds to the output), spec §3.4 and ModelShape::down_layout.
//
// Method: per expert, the standard matrix is dequantized to f32 (cpu/quants.h, ggml's
// reference code), transposed, and each new row of n_embd elements requantized to the same
// dtype. f32, f16 and bf16 round-trip exactly, so for them the conversion is lossless and the
// result is byte-identical to a model written transposed from the same values. For q8_0 and
// q4_0 the blocks now run along n_embd instead of n_ff_exp, so every down weight is quantized
// twice (measured cost: `tandem convert --help`, bench/RESULTS.md).
//
// The file conversion streams: every other tensor is copied from the input mapping, and the
// down tensors are produced one expert at a time (memory ~ one expert in f32, a few MB even
// for 21b). Keys are copied unchanged (general.alignment through the writer's alignment).
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <vector>

#include "core/model_shape.h"
#include "core/model_weights.h"
#include "core/status.h"
#include "runtime/model.h"

namespace tandem {

struct ConvertStats {
  uint32_t n_tensors_converted = 0;  // ffn_down_exps tensors transposed
  uint32_t n_tensors_copied = 0;     // every other tensor, bytes unchanged
  uint64_t bytes_written = 0;        // size of the output file
  // Weight-space error of the requantization over every converted element:
  // sum((w_after - w_before)^2) / sum(w_before^2), w_before the dequantized input. 0 for f32/f16/bf16.
  double down_weight_nmse = 0.0;
};

// Progress: bytes of tensor data done and in total.
using ConvertProgress = std::function<void(uint64_t done, uint64_t total)>;

// Converts the SmallThinker file `in` to `out` (written to out + ".tmp", renamed at the end;
// an unfinished file is removed). Errors: Model::load's for `in` (not a GGUF, not
// SmallThinker: unsupported naming the architecture); invalid_argument when `in` is already
// transposed, when n_ff_exp == n_embd (the two layouts cannot be told apart), when `out` is
// `in`; unsupported for a down dtype other than f32/f16/bf16/q8_0/q4_0; io_error when `out`
// cannot be written.
Result<ConvertStats> convert_transpose_down(const std::filesystem::path& in, const std::filesystem::path& out,
                                            const ConvertProgress& progress = {});

// The transposed down tensors of a loaded standard-layout model, owned here, with a patched
// shape (down_layout = transposed) and a copy of the weight views in which every
// ffn_down_exps points at the new tensors and everything else still views the model's
// mapping. The Model must outlive this object. Memory: the size of the model's down tensors.
struct TransposedDown {
  ModelShape shape;
  ModelWeights weights;
  double down_weight_nmse = 0.0;  // as ConvertStats::down_weight_nmse

  TransposedDown() = default;
  TransposedDown(const TransposedDown&) = delete;
  TransposedDown& operator=(const TransposedDown&) = delete;
  ~TransposedDown();

  struct Buffer {
    uint8_t* data = nullptr;  // 64-byte aligned
    size_t size = 0;
  };
  std::vector<Buffer> buffers;  // one per layer; owned (freed by the destructor)
};

// Errors: invalid_argument when the model is already transposed or n_ff_exp == n_embd;
// unsupported for a down dtype the converter cannot write; out_of_memory.
Result<std::unique_ptr<TransposedDown>> transpose_down_in_memory(const Model& model);

// The CPU repack (CpuExecutor, on unless --no-repack; in the spirit of llama.cpp's CPU weight
// repacking). Two independent steps, each only where it applies:
// * up/down side by side (transposed-down models): each neuron's ffn_up_exps row and
//   ffn_down_exps row are placed next to each other, so an active neuron of the ReLU-sparse FFN
//   reads one contiguous run of 2 x row_size bytes instead of two scattered rows (half the DRAM
//   bursts to open and half the pages to translate). Strides change:
//     up:   data = buffer,            nb[1] = 2 * row_size, nb[2] = nb[1] * n_ff_exp
//     down: data = buffer + row_size, the same strides
//   Layers whose up and down differ in dtype or shape, or are not contiguous, are left as they
//   are (so is a standard-layout model's down: its rows are not per neuron).
// * q4_0x16 (options.q4_0x16; pass the kernel table's prefer_q4_0x16): every q4_0 matrix the
//   CPU multiplies by activations with ne0 % 512 == 0 and contiguous rows (attn_q, attn_k,
//   attn_v, attn_output, ffn_gate_exps, ffn_up_exps, and output; a tied output is token_embd,
//   which is then repacked once for both: the fast ops' get_rows unpacks its rows) gets its rows
//   rewritten as cpu/quants.h q4_0x16 (TensorView::layout), the
//   same size; the AVX2 and AVX-512 kernels then need no byte permutes. The q4_0 down rows laid side by
//   side are written as q4_0_split (quants, then scales: down_rows needs no byte permutes
//   either). Results are bit-identical (the kernels' contract, kernel_table.h).
// Repacked tensors live in owned buffers; with drop_source their source ranges are then dropped
// from the process (madvise MADV_DONTNEED, page-aligned interior: clean file pages of a mapping,
// read again from the file if anything touches them); only pass it for a file-backed mapping
// (GgufFile::file_backed), where it keeps the resident set at the model's size. Memory: the size
// of the repacked tensors (each rounded up to 2 MiB). Errors: out_of_memory.
struct CpuRepackOptions {
  bool drop_source = false;
  bool q4_0x16 = false;
};
struct CpuRepack {
  ModelWeights weights;   // views into `buffers` for the repacked tensors, the source's otherwise
  uint64_t bytes = 0;     // owned buffer bytes
  int n_layers = 0;       // layers whose up and down rows were put side by side
  int n_q4_0x16 = 0;      // tensors in the q4_0x16 layout (an up tensor laid side by side counts)
  int n_q4_0_split = 0;   // down tensors in the q4_0_split layout

  CpuRepack() = default;
  CpuRepack(const CpuRepack&) = delete;
  CpuRepack& operator=(const CpuRepack&) = delete;
  ~CpuRepack();

  // Anonymous mappings, 2 MiB aligned and advised MADV_HUGEPAGE (best effort: THP "madvise"
  // or "always"): the sparse FFN's scattered rows then miss the TLB far less than in the
  // file's 4 KiB pages.
  struct Buffer {
    void* map = nullptr;
    size_t map_bytes = 0;
  };
  std::vector<Buffer> buffers;
};
Result<std::unique_ptr<CpuRepack>> repack_for_cpu(const ModelShape& shape, const ModelWeights& weights,
                                                  const CpuRepackOptions& options);

// Precision cost of a conversion, measured on the experts' outputs: for `n_tokens`
// deterministic random inputs x (unit variance, as after ffn_norm) and every expert of every
// layer, h = relu(gate_e x) * (up_e x) (f32 from the dequantized weights of `standard`), then
//   nmse = sum over (token, expert) of |down_std h - down_tr h|^2 / sum of |down_std h|^2
// with down_std from `standard` and down_tr from `transposed` (both dequantized to f32).
// Errors: invalid_argument when the models' shapes differ or their layouts are not
// standard and transposed respectively.
Result<double> expert_output_nmse(const ModelShape& standard_shape, const ModelWeights& standard,
                                  const ModelShape& transposed_shape, const ModelWeights& transposed,
                                  uint32_t n_tokens = 8, uint64_t seed = 1);

}  // namespace tandem
