#!/usr/bin/env bash
# Installs what Tandem needs from Debian 12's packages, only what is missing (idempotent).
#   tools/install-deps.sh          build + run dependencies
#   tools/install-deps.sh --test   also what the test suite uses (validation layer, qemu, cross g++, clang)
set -euo pipefail

pkgs=(cmake ninja-build g++ pkg-config git
      libvulkan-dev glslc glslang-tools mesa-vulkan-drivers vulkan-tools
      libeigen3-dev libtbb-dev libfmt-dev nlohmann-json3-dev libcli11-dev libpcre2-dev liburing-dev
      catch2 libbenchmark-dev)
if [[ "${1:-}" == "--test" ]]; then
  pkgs+=(vulkan-validationlayers qemu-user g++-aarch64-linux-gnu clang)
fi

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#pkgs[@]} packages present"
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
