#!/usr/bin/env bash
# Installs the Debian packages tutti needs, only those missing. Sourced by
# scripts/run and scripts/test; safe to run on its own.
set -euo pipefail

TUTTI_DEBIAN_PACKAGES=(
  g++ cmake ninja-build pkg-config
  libgtest-dev libgmock-dev libbenchmark-dev
  libfmt-dev libdlpack-dev libcli11-dev nlohmann-json3-dev
  libgloo-dev
  libopenmpi-dev openmpi-bin
  iproute2
)

tutti_install_deps() {
  local missing=()
  for pkg in "${TUTTI_DEBIAN_PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
      missing+=("$pkg")
    fi
  done
  if [ ${#missing[@]} -eq 0 ]; then
    return 0
  fi
  echo "tutti: installing missing packages: ${missing[*]}"
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${missing[@]}"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  tutti_install_deps
fi
