#!/usr/bin/env bash
# Install everything the test suite needs (Debian packages as root, Python packages with pip), then run it.
set -euo pipefail
cd "$(dirname "$0")/.."
DEB_PKGS="make gcc-arm-none-eabi qemu-system-arm dataset-fashion-mnist espeak-ng"
missing=""
for p in $DEB_PKGS; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $missing
  else
    echo "missing Debian packages:$missing (run as root, or: sudo apt-get install -y$missing)" >&2; exit 1
  fi
fi
python3 -m pip install -q -c constraints.txt -e ".[test]"
python3 -m pytest -q "$@"
