#!/bin/sh
# Regenerate the built-in profiles of the emulated boards (mps2-an386, mps2-an500) by calibrating them under
# QEMU; measurements and plots go to benchmarks/results/calibration/, figures to BENCHMARKS.md.
set -e
cd "$(dirname "$0")/.."
exec python3 benchmarks/calibration_speed.py "$@"
