#!/usr/bin/env bash
# Installs the Debian packages strata builds against, skipping those already installed.
# Idempotent; uses sudo when not run as root. Usage: scripts/install-deps.sh
set -euo pipefail

packages=(
  build-essential cmake pkg-config git
  libdnnl-dev liburing-dev libhwloc-dev libzstd-dev libcli11-dev nlohmann-json3-dev
  coinor-libclp-dev libpcre2-dev libicu-dev libgtest-dev libbenchmark-dev libxxhash-dev zstd
  # libdnnl-dev's CMake config looks for OpenCL (its GPU runtime); Debian only recommends it.
  ocl-icd-opencl-dev
  # Tests only: the independent validator of structured output (tests/text/structured_check.py).
  python3-jsonschema
  # Tests only: a real single-node Slurm for the scale-out test (tests/tools/slurm_test.sh).
  slurm-wlm munge
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages are installed"
  exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "install-deps: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  sudo="sudo"
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
