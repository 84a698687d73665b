#!/usr/bin/env bash
# The README's command 1: install what is missing, build in Release, make the built-in default
# model if it is not there yet, and run the main job on it.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)

tools/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DTANDEM_BUILD_TESTS=OFF -DTANDEM_BUILD_BENCH=OFF >/dev/null
cmake --build build -j "$jobs" --target tandem

model=models/default.gguf
if [[ ! -f "$model" ]]; then
  mkdir -p models
  build/tools/tandem make-model --preset default --dtype q4_0 -o "$model"
fi
build/tools/tandem inspect --no-tensors "$model"
echo
build/tools/tandem run -m "$model" -p "The little robot walked into the kitchen and" -n 48 -t "$jobs" --temp 0
