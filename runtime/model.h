// Model: a SmallThinker GGUF opened for inference — the mapping, the hyperparameters as
// Tandem understands them (ModelShape) and views of every tensor (ModelWeights).
//
// load() checks: general.architecture == "smallthinker" (else unsupported, naming it);
// required keys present with the right types (spec §3.2); derived values consistent
// (n_head % n_head_kv == 0; key_length present where n_embd/n_head is not whole; expert
// counts > 0 and n_expert_used <= n_expert); every tensor of spec §3.3 present with the exact
// shape (the name and expected vs found shape in the error); ffn_down_exps standard or
// transposed (when n_ff_exp == n_embd the two coincide and upstream's standard reading
// wins). A missing `expert_gating_func` selects sigmoid (the HF default) and is logged
// as a warning on stderr.
#pragma once

#include <filesystem>
#include <string>

#include "core/model_shape.h"
#include "core/model_weights.h"
#include "core/status.h"
#include "runtime/gguf_file.h"

namespace tandem {

// Reads and validates the hyperparameters only (no tensor checks).
Result<ModelShape> read_model_shape(const GgufFile& file);

class Model {
 public:
  // load: FileLoad::mmap (default) or FileLoad::read (--no-mmap; runtime/mapped_file.h).
  static Result<Model> load(const std::filesystem::path& path, FileLoad load = FileLoad::mmap);
  static Result<Model> from_file(GgufFile file);  // takes ownership

  const GgufFile& file() const { return file_; }
  const ModelShape& shape() const { return shape_; }
  const ModelWeights& weights() const { return weights_; }
  const std::string& name() const { return name_; }  // general.name or the file stem

  // Content hash naming this model in profiles and plans: hex of a 64-bit hash over the
  // metadata and tensor-info section plus a sample of tensor data (cheap, stable).
  const std::string& content_hash() const { return content_hash_; }

 private:
  Model(GgufFile file) : file_(std::move(file)) {}
  GgufFile file_;
  ModelShape shape_;
  ModelWeights weights_;
  std::string name_;
  std::string content_hash_;
};

}  // namespace tandem
