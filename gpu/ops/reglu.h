// reglu, ggml_reglu_split(gate, up): dst[i] = max(gate[i], 0) * up[i] — SmallThinker's expert
// activation (spec §1.1, HF SmallThinkerExpert: up(x) * relu(gate(x))).
// Shapes: gate, up, dst [n] f32 (e.g. [n_ff_exp, n_expert_used] flattened). dst may alias an
// input. Records only.
#pragma once

#include "gpu/command_recorder.h"

namespace tandem::gpu::ops {

Status reglu(CommandRecorder& rec, const BufferSlice& gate, const BufferSlice& up, int64_t n, const BufferSlice& dst);

}  // namespace tandem::gpu::ops
