"""int32 accumulator fuzz on the emulated boards, longer than the test (tests/hil/test_hil_overflow.py): random
layers at the int8/int32 extremes; each must be refused by the host and the firmware alike, or run bit-exact
against the host's int64 reference.

    python3 benchmarks/hil_overflow_fuzz.py [--layers 1000] [--boards mps2-an386 mps2-an500] [--no-write]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "tests" / "hil"), str(ROOT / "benchmarks")]
from test_hil_overflow import OPS, fuzz_one  # noqa: E402

from lightning_mcuprune.hil import EmulatedBoard  # noqa: E402


def run(board_name: str, n: int) -> str:
    rng = np.random.default_rng(7)
    counts = {"refused": 0, "exact": 0}
    failures = 0
    t = time.monotonic()
    with EmulatedBoard(board_name) as board:
        for i in range(n):
            try:
                counts[fuzz_one(board, rng, OPS[i % len(OPS)], seed=i)] += 1
            except AssertionError as e:
                failures += 1
                print(f"{board_name} layer {i}: {e}")
    dt = time.monotonic() - t
    return (f"| {board_name} | {n} | {counts['refused']} | {counts['exact']} | {failures} | {dt:.0f} s |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=1000)
    ap.add_argument("--boards", nargs="+", default=["mps2-an386", "mps2-an500"])
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    rows = [run(b, args.layers) for b in args.boards]
    body = "\n".join([
        "## int32 accumulator fuzz (HIL)", "",
        "`python3 benchmarks/hil_overflow_fuzz.py`: random layers (conv2d, depthwise, pointwise, dense, global and "
        "windowed average pool, add) with inputs and weights at the int8 extremes, zero points at their ends, one "
        "channel's bias within a few units of the int32 limit (inputs and weights aligned with it in half the "
        "layers), large multipliers and shifts. Each layer must be refused by the host (LayerSpec.check_accumulator) "
        "and by the firmware (BoardError), or run bit-exact against the host's int64 reference.", "",
        "| board | layers | refused (host and firmware) | bit-exact | wrong or one-sided | wall time |",
        "|---|---|---|---|---|---|", *rows])
    print(body)
    if not args.no_write:
        from _common import write_section
        write_section("overflow", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
