#!/usr/bin/env bash
# The README's command 2 (and CI's .ci/run): install what is missing, build everything with
# warnings as errors, run the whole suite through ctest, then again with
# AddressSanitizer + UndefinedBehaviorSanitizer, then the NEON kernels under qemu-aarch64.
# Exits non-zero when any test fails.
set -uo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)
status=0
export TANDEM_SHARED_DATA="${TANDEM_SHARED_DATA:-$(cd .. && pwd)/shared/data}"

tools/install-deps.sh --test || exit 1

run_suite() {  # name, build dir, cmake args...
  local name=$1 dir=$2
  shift 2
  echo "=== $name: configure + build ($dir)"
  cmake -S . -B "$dir" -G Ninja -DTANDEM_WERROR=ON -DTANDEM_SHARED_DATA="$TANDEM_SHARED_DATA" "$@" >/dev/null || return 1
  cmake --build "$dir" -j "$jobs" || return 1
  echo "=== $name: ctest"
  (cd "$dir" && ctest --output-on-failure -j "$jobs" --timeout 900)
}

run_suite "release" build -DCMAKE_BUILD_TYPE=Release || status=1

export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:strict_string_checks=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
if [[ -f tests/support/lsan.supp ]]; then export LSAN_OPTIONS="suppressions=$PWD/tests/support/lsan.supp"; fi
run_suite "asan+ubsan" build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DTANDEM_SANITIZE=address,undefined -DTANDEM_BUILD_BENCH=OFF || status=1

if [[ -x tests/neon/run.sh ]]; then
  echo "=== neon (qemu-aarch64)"
  tests/neon/run.sh || status=1
fi

if ((status == 0)); then echo "tandem: all suites passed"; else echo "tandem: FAILURES (see above)"; fi
exit $status
