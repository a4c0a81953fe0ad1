"""HIL on the emulated boards: link speed, cycles per MAC per op type (linear fits), determinism.

    python3 benchmarks/hil_timing.py [--boards mps2-an386 mps2-an500] [--no-write]

Prints a Markdown section and writes it into BENCHMARKS.md between <!-- hil --> markers (created or
replaced), under the heading "## HIL".
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import re
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lightning_mcuprune.hil import EmulatedBoard, LayerSpec  # noqa: E402

FAMILIES = {
    "conv2d": (lambda n: LayerSpec("conv2d", (16, 16, 8), out_channels=n, kernel=3, padding=1), "16x16x8 -> n, 3x3"),
    "depthwise_conv2d": (lambda n: LayerSpec("depthwise_conv2d", (16, 16, n), kernel=3, padding=1), "16x16xn, 3x3"),
    "pointwise_conv2d": (lambda n: LayerSpec("pointwise_conv2d", (16, 16, 16), out_channels=n), "16x16x16 -> n"),
    "dense": (lambda n: LayerSpec("dense", (1, 1, 256), out_channels=n), "256 -> n"),
    "max_pool": (lambda n: LayerSpec("max_pool", (16, 16, n), kernel=2, stride=2), "16x16xn, 2x2/2"),
    "avg_pool": (lambda n: LayerSpec("avg_pool", (16, 16, n), kernel=3, padding=1), "16x16xn, 3x3/1"),
    "global_avg_pool": (lambda n: LayerSpec("global_avg_pool", (16, 16, n)), "16x16xn"),
    "add": (lambda n: LayerSpec("add", (16, 16, n)), "16x16xn"),
}
SIZES = [2, 4, 8, 12, 16, 24, 32, 48, 64]


def fit(x, y):
    x, y = np.asarray(x, float), np.asarray(y, float)
    a, b = np.polyfit(x, y, 1)
    res = y - (a * x + b)
    return a, b, 1 - (res @ res) / ((y - y.mean()) @ (y - y.mean()))


def link_speed(board) -> dict:
    t = time.perf_counter()
    for _ in range(50):
        board.hello()
    rtt = (time.perf_counter() - t) / 50
    data = os.urandom(16 * 1024)
    t = time.perf_counter()
    board.write(0, 0, data)
    up = len(data) / (time.perf_counter() - t)
    t = time.perf_counter()
    back = board.read(0, 0, len(data))
    down = len(data) / (time.perf_counter() - t)
    assert back == data
    return {"rtt_ms": rtt * 1e3, "up_kBps": up / 1e3, "down_kBps": down / 1e3}


def measure(name: str) -> tuple[dict, list]:
    rows = []
    with EmulatedBoard(name) as board:
        link = link_speed(board)
        for op, (make, family) in FAMILIES.items():
            macs, cycles, repeat_ok = [], [], True
            for n in SIZES:
                spec = make(n)
                c = board.run_layer(spec, repeats=2, seed=n)
                repeat_ok &= board.last_run.min == board.last_run.max
                again = board.run_layer(spec, repeats=1, seed=n)
                repeat_ok &= again == c
                macs.append(spec.macs)
                cycles.append(c)
            a, b, r2 = fit(macs, cycles)
            rows.append((op, family, len(SIZES), a, b, r2, repeat_ok, max(cycles)))
        link["instr_per_cycle"] = board.emulator.cycles_to_instructions(1.0)
    return link, rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--boards", nargs="+", default=["mps2-an386", "mps2-an500"])
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    lines = ["<!-- hil -->", "## HIL", "",
             "`benchmarks/hil_timing.py`: the HIL firmware on QEMU (`-icount shift=5`: cycles are SysTick ticks of the",
             "virtual 25 MHz clock, instruction-count based). Per op type a shape family (one dimension n grows over",
             f"{SIZES}); a linear fit of cycles against MACs; every layer run twice (and 2 repeats): identical cycles?", ""]
    for name in args.boards:
        t0 = time.perf_counter()
        link, rows = measure(name)
        lines += [f"### {name}", "",
                  f"Link over the QEMU pty: HELLO round trip {link['rtt_ms']:.2f} ms, upload {link['up_kBps']:.1f} kB/s, "
                  f"read-back {link['down_kBps']:.1f} kB/s; 1 cycle = {link['instr_per_cycle']:.2f} instructions.", "",
                  "| op | family | points | cycles/MAC | intercept (cycles) | R² | deterministic | max cycles |",
                  "|---|---|---|---|---|---|---|---|"]
        for op, fam, n, a, b, r2, det, mx in rows:
            lines.append(f"| {op} | {fam} | {n} | {a:.2f} | {b:.0f} | {r2:.5f} | {'yes' if det else 'NO'} | {mx} |")
        lines += ["", f"_{time.perf_counter() - t0:.0f} s for this board._", ""]
    lines += [f"_Measured {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC on {platform.machine()}, "
              f"Python {platform.python_version()}, {os.cpu_count()} cores (shared)._", "<!-- /hil -->"]
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_write:
        path = Path(__file__).resolve().parents[1] / "BENCHMARKS.md"
        old = path.read_text() if path.exists() else "# Benchmarks\n\n"
        if "<!-- hil -->" in old:
            new = re.sub(r"<!-- hil -->.*?<!-- /hil -->\n?", lambda m: text, old, flags=re.S)
        else:
            new = old.rstrip("\n") + "\n\n" + text
        path.write_text(new)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
