// rope in NEOX mode (SmallThinker, spec §2.3), ggml_rope_ext with GGML_ROPE_TYPE_NEOX,
// freq_scale 1, no YaRN: for each token t, head h and i < n_rot/2, with
// theta = pos[t] * freq_base^(-2i/n_rot):
//   dst[i]          = x[i] cos(theta) - x[i + n_rot/2] sin(theta)
//   dst[i + n_rot/2] = x[i] sin(theta) + x[i + n_rot/2] cos(theta)
// and dims n_rot..ne0-1 copied.
// Shapes (ggml ne order): x, dst [ne0 = head_dim, ne1 = n_head, ne2 = n_tokens] f32
// contiguous; pos [ne2] i32. ne0, n_rot even, n_rot <= ne0. Records only.
#pragma once

#include "gpu/command_recorder.h"

namespace tandem::gpu::ops {

Status rope_neox(CommandRecorder& rec, const BufferSlice& x, const BufferSlice& pos, int64_t ne0, int64_t ne1,
                 int64_t ne2, int64_t n_rot, float freq_base, const BufferSlice& dst);

}  // namespace tandem::gpu::ops
