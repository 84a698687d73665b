#!/usr/bin/env bash
# Cross-builds tests/neon for aarch64 and runs it under qemu-aarch64: the NEON kernel table
# against the scalar reference, and the expert FFN on it. Exits non-zero on any failure.
# Usage: tests/neon/run.sh [build-dir]   (default: build-neon next to the source tree)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
build="${1:-$root/build-neon}"
for tool in aarch64-linux-gnu-g++ qemu-aarch64 cmake; do
  command -v "$tool" >/dev/null || { echo "run.sh: $tool not found" >&2; exit 2; }
done
cmake -S "$here" -B "$build" -DCMAKE_TOOLCHAIN_FILE="$root/cmake/aarch64-linux-gnu.cmake" \
  -DCMAKE_BUILD_TYPE=Release ${TANDEM_NEON_GENERATOR:+-G "$TANDEM_NEON_GENERATOR"} >/dev/null
cmake --build "$build" -j "$(nproc)"
export QEMU_LD_PREFIX=/usr/aarch64-linux-gnu
qemu-aarch64 "$build/tandem_neon_tests"
# Again with the table capped to scalar: TANDEM_MAX_ISA must select it.
TANDEM_MAX_ISA=scalar qemu-aarch64 "$build/tandem_neon_tests" | tail -1
