"""Tracing and analyze time against network depth (issue 13 item 11: it grew quadratically).

A chain of L conv-BN-ReLU layers (4 channels, 8x8 input) then a Linear; per depth, the median of 3 runs of
`trace_graph` and of `analyze` (which traces again and builds the resource model and the report).
Run: python benchmarks/trace_depth.py
"""
from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_section  # noqa: E402

from lightning_mcuprune import analyze  # noqa: E402
from lightning_mcuprune.graph import trace_graph  # noqa: E402

DEPTHS = (500, 1000, 2000)


def chain(layers: int) -> nn.Module:
    mods = [nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU()]
    for _ in range(layers - 1):
        mods += [nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU()]
    return nn.Sequential(*mods, nn.Flatten(), nn.Linear(4 * 8 * 8, 10)).eval()


def timed(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    torch.set_num_threads(1)
    x = torch.zeros(1, 1, 8, 8)
    rows = []
    for depth in DEPTHS:
        model = chain(depth)
        ops = len(trace_graph(model, x).ops)
        t_trace = timed(lambda: trace_graph(model, x))
        t_analyze = timed(lambda: analyze(model, x))
        rows.append((depth, ops, t_trace, t_analyze))
        print(f"{depth} layers ({ops} ops): trace {t_trace:.2f} s, analyze {t_analyze:.2f} s", flush=True)
    lines = "\n".join(f"| {d} | {o} | {tt:.2f} s | {ta:.2f} s | {tt / d * 1e3:.2f} ms |" for d, o, tt, ta in rows)
    body = f"""## Tracing and analyze against depth (issue 13)

`benchmarks/trace_depth.py`: a chain of conv-BN-ReLU layers (4 channels, 8x8 input) and a Linear; median of 3 runs,
1 torch thread. `analyze` traces again, then builds the resource model and the per-layer report. Shapes are
propagated on meta tensors (no float forwards), so the time per layer should stay flat as depth grows.

| conv layers | ops | trace_graph | analyze | trace per layer |
|---|---|---|---|---|
{lines}
"""
    print(body)
    write_section("trace-depth", body)


if __name__ == "__main__":
    main()
