// libFuzzer target: GgufFile::parse on arbitrary bytes, then (when it parses) every tensor's
// bytes, the SmallThinker hyperparameters and the full Model checks + content hash. Any crash,
// leak, out-of-bounds read or UB report is a bug: bad input must only ever yield a Status.
//
// Build and run (clang only; see tests/fuzz/CMakeLists.txt):
//   CC=clang CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DTANDEM_FUZZ=ON
//   -DTANDEM_BUILD_BENCH=OFF ninja -C build-fuzz gguf_reader_fuzz
//   ./build-fuzz/tests/fuzz/gguf_reader_fuzz -max_total_time=60 -rss_limit_mb=2048 \
//       build-fuzz/fuzz-corpus tests/fuzz/corpus
#include <cstddef>
#include <cstdint>

#include "core/log.h"
#include "runtime/gguf_file.h"
#include "runtime/model.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  tandem::set_log_level(tandem::LogLevel::error);  // "gating missing" warnings would flood the log
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto file = tandem::GgufFile::parse({data, size}, "fuzz.gguf");
  if (!file.ok()) return 0;
  // Touch the first and last byte of every tensor: the reader promised they are in bounds.
  volatile uint8_t sink = 0;
  for (const auto& t : file->tensors()) {
    const auto bytes = file->tensor_bytes(t);
    if (!bytes.empty()) sink = static_cast<uint8_t>(sink ^ bytes.front() ^ bytes.back());
    (void)file->tensor_view(t).nbytes();
  }
  for (const auto& kv : file->kvs()) (void)kv.value.array_size();
  (void)file->get_u32_or_array("smallthinker.attention.head_count", 4);
  if (!tandem::read_model_shape(*file).ok()) return 0;
  auto model = tandem::Model::from_file(std::move(file).value());
  if (model.ok()) sink = static_cast<uint8_t>(sink ^ model->content_hash().size());
  return 0;
}
