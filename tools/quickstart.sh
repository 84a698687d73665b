#!/usr/bin/env bash
# The README's command 1: install what is missing, build in Release, make the built-in default
# model if it is not there yet, and run the main job on it: measure this machine (calibrate),
# profile the model's experts on the built-in calibration text, plan where each expert goes,
# and run the plan (hybrid when the plan uses a GPU, else the CPU), printing where each part ran.
# TANDEM_DEVICE=cpu makes lavapipe (a software Vulkan device) count as this machine's GPU; by
# default only a real GPU does.
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
device=${TANDEM_DEVICE:-auto}
echo
echo "== 1/4 calibrate: this machine's CPU, storage and GPU (--device $device)"
build/tools/tandem calibrate -m "$model" --device "$device" -t "$jobs" \
  -o models/this-machine.json
echo
echo "== 2/4 profile: expert statistics on the built-in calibration text"
build/tools/tandem profile -m "$model" -t "$jobs" -o models/default.profile.json
echo
echo "== 3/4 plan: a tier for every expert of every layer"
build/tools/tandem plan -m "$model" --profile models/default.profile.json --hardware models/this-machine.json \
  -o models/default.plan.json
echo
echo "== 4/4 run the plan"
build/tools/tandem run -m "$model" --plan models/default.plan.json ${TANDEM_DEVICE:+--device "$device"} \
  -p "The little robot walked into the kitchen and" -n 48 -t "$jobs" --temp 0
