"""Speed of tracing and of the resource models on MobileNetV2 (width 1.0, 224x224).

Targets (issue 2): forward+backward of all resource models median <= 1 ms; tracing <= 2 s.
Run: python benchmarks/resource_models.py
"""
from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_section  # noqa: E402

from lightning_mcuprune.examples import zoo  # noqa: E402
from lightning_mcuprune.graph import trace_graph  # noqa: E402
from lightning_mcuprune.resources import ResourceModel  # noqa: E402


def main(repeats: int = 300) -> None:
    torch.set_num_threads(1)
    model = zoo.mobilenet_v2().eval()
    x = torch.randn(1, 3, 224, 224)
    trace_times = []
    for _ in range(5):
        t = time.perf_counter()
        g = trace_graph(model, x)
        trace_times.append(time.perf_counter() - t)
    rm = ResourceModel(g, "mps2-an386")
    times = {torch.float32: [], torch.float64: []}
    for dtype in times:
        n0 = (rm.dense_counts * 0.8).to(dtype)
        for i in range(repeats + 20):
            n = n0.clone().requires_grad_()
            t = time.perf_counter()
            r = rm.evaluate(n)
            (r.macs + r.flash_bytes + r.peak_sram_bytes + r.latency_ms + r.params).backward()
            dt = time.perf_counter() - t
            if i >= 20:
                times[dtype].append(dt)
    med32 = statistics.median(times[torch.float32]) * 1e3
    med64 = statistics.median(times[torch.float64]) * 1e3
    tr = statistics.median(trace_times)
    body = f"""## Resource models: speed (issue 2)

`benchmarks/resource_models.py`: MobileNetV2 width 1.0 at 224x224 ({len(g.ops)} ops, {len(g.groups)} channel groups,
{len(g.buffers)} buffers). Forward + backward of all five resource models (MACs, parameters, flash, peak SRAM,
latency) through `ResourceModel.evaluate`, median of {repeats} runs, 1 torch thread.

| measure | measured | target |
|---|---|---|
| forward+backward, float32 | {med32:.3f} ms | <= 1 ms |
| forward+backward, float64 | {med64:.3f} ms | <= 1 ms |
| tracing (torch.fx + shape propagation at batch 1 and 2), median of 5 | {tr:.3f} s | <= 2 s |
"""
    print(body)
    write_section("resource-models", body)


if __name__ == "__main__":
    main()
