#!/usr/bin/env bash
# One-time, idempotent setup for a fresh Debian 12 machine with Rust installed:
#   1. system packages, only those missing (a C/C++ toolchain, cmake ≥ 3.24 and BLAS/LAPACK for
#      the FAISS sources `abis-ann` builds (Debian 12: cmake 3.25, OpenBLAS),
#      Python's venv module for the reference tools, nats-server for the cluster and its tests,
#      OpenJPEG's opj_compress for the JPEG 2000 chip portraits of the ICAO tests, activemq (and
#      libxstream-java, for its statistics plugin's answers) for the MOSIP adapter's tests,
#      chromium and chromium-driver for the examiner page's browser test);
#   2. ONNX Runtime's shared library and the models, pinned and sha256-verified (models/setup.py).
# A second run finds everything in place and does nothing.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

packages=(build-essential cmake pkg-config libopenblas-dev liblapack-dev python3 python3-venv ca-certificates nats-server libopenjp2-tools activemq libxstream-java chromium chromium-driver)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# python3/python3-venv may be satisfied by a non-Debian CPython (pyenv): accept a working one.
if python3 -c 'import venv, ensurepip, tomllib' 2>/dev/null; then
  keep=()
  for p in "${missing[@]}"; do [[ $p == python3 || $p == python3-venv ]] || keep+=("$p"); done
  missing=("${keep[@]+"${keep[@]}"}")
fi
# A nats-server installed another way (a release binary on PATH) serves as well.
if command -v nats-server >/dev/null 2>&1 || [[ -x /usr/sbin/nats-server ]]; then
  keep=()
  for p in "${missing[@]}"; do [[ $p == nats-server ]] || keep+=("$p"); done
  missing=("${keep[@]+"${keep[@]}"}")
fi
if ((${#missing[@]})); then
  echo "setup: installing system packages: ${missing[*]}" >&2
  sudo=""
  if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || { echo "setup: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
    sudo="sudo"
  fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

python3 "$root/models/setup.py" "$@"
