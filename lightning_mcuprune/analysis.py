"""`analyze`: what a network costs on a board (MACs, parameters, flash, peak SRAM, latency), per layer
and in total, and the `mcuprune analyze` command."""
from __future__ import annotations

from typing import TYPE_CHECKING

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from lightning_mcuprune.boards import BoardProfile, load_board
from lightning_mcuprune.graph import ResourceGraph, trace_graph
from lightning_mcuprune.resources import ResourceModel
from lightning_mcuprune.units import format_size

if TYPE_CHECKING:
    import rich.console
    import rich.table


@dataclass(repr=False)
class Report:
    """The resources of one network on one board. Bytes, cycles, ms; latency is an estimate unless the
    board profile's coefficients were calibrated (`latency_source`)."""

    board: BoardProfile
    macs: int
    params: int
    flash_bytes: int
    peak_sram_bytes: int
    latency_cycles: float
    latency_ms: float
    bottleneck: str
    layers: pd.DataFrame
    graph: ResourceGraph
    order: list
    runtime: str = "mcuprune-firmware"

    @property
    def latency_source(self) -> str:
        return self.board.latency_source

    def __repr__(self) -> str:
        est = ", estimate" if self.latency_source == "estimate" else ""
        return (f"Report(board={self.board.name!r}, ops={len(self.layers)}, macs={self.macs:,}, params={self.params:,}, "
                f"flash_bytes={self.flash_bytes:,}, peak_sram_bytes={self.peak_sram_bytes:,}, "
                f"latency_ms={self.latency_ms:.3f}{est}, bottleneck={self.bottleneck!r})")

    def fits(self) -> dict:
        """Whether peak SRAM and flash fit what the board has (SRAM after the runtime's reserve)."""
        return {"sram": self.peak_sram_bytes <= self.board.sram_available, "flash": self.flash_bytes <= self.board.flash_bytes}

    def to_dict(self) -> dict:
        return {
            "board": self.board.name, "runtime": self.runtime, "macs": self.macs, "params": self.params, "flash_bytes": self.flash_bytes,
            "peak_sram_bytes": self.peak_sram_bytes, "latency_cycles": self.latency_cycles,
            "latency_ms": self.latency_ms, "latency_source": self.latency_source, "bottleneck": self.bottleneck,
            "board_sram_available_bytes": self.board.sram_available, "board_flash_bytes": self.board.flash_bytes,
            "layers": json.loads(self.layers.to_json(orient="records")),
        }

    # The result protocol shared with hil's LabResult: to_dict / to_json, table / print, plot.
    def to_json(self, path: "str | Path") -> Path:
        """Write to_dict() as JSON, atomically; returns the path."""
        from lightning_mcuprune.io import write_json_atomic
        return write_json_atomic(Path(path), self.to_dict())

    def table(self) -> tuple:
        """The rich tables: per layer, and the totals against the board."""
        return self.rich_table(), self.totals_table()

    def print(self, console: "rich.console.Console | None" = None) -> None:
        """Print table() to `console` (default: a rich console)."""
        from lightning_mcuprune.console import console as make_console
        console = console or make_console()
        for t in self.table():
            console.print(t)

    def plot(self, path: "str | Path") -> Path:
        """The memory profile as PNG (plot_memory)."""
        return self.plot_memory(path)

    def rich_table(self) -> "rich.table.Table":
        from rich.table import Table
        est = " (estimate)" if self.latency_source == "estimate" else ""
        t = Table(title=f"{self.board.name}: per-layer resources (execution order)", show_lines=False)
        for col, just in (("op", "left"), ("type", "left"), ("output", "left"), ("MACs", "right"), ("params", "right"),
                          ("flash", "right"), ("working set", "right"), (f"latency ms{est}", "right")):
            t.add_column(col, justify=just)
        for _, r in self.layers.iterrows():
            mark = "[bold red]" if r["name"] == self.bottleneck else ""
            end = " ◀ peak[/]" if mark else ""
            t.add_row(r["name"], r["type"], "x".join(map(str, r["output_shape"])), f"{r['macs']:,}", f"{r['params']:,}",
                      format_size(r["flash_bytes"]), f"{mark}{format_size(r['working_set_bytes'])}{end}",
                      f"{r['latency_ms']:.3f}")
        return t

    def totals_table(self) -> "rich.table.Table":
        from rich.table import Table
        fits = self.fits()
        t = Table(title=f"{self.board.name} totals")
        t.add_column("resource")
        t.add_column("network", justify="right")
        t.add_column("board", justify="right")
        t.add_column("", justify="left")
        ok = lambda b: "[green]fits[/]" if b else "[red]does not fit[/]"  # noqa: E731
        t.add_row("peak SRAM (activations)", format_size(self.peak_sram_bytes),
                  f"{format_size(self.board.sram_available)} free of {format_size(self.board.sram_bytes)}", ok(fits["sram"]))
        t.add_row("flash (weights + runtime)", format_size(self.flash_bytes), format_size(self.board.flash_bytes), ok(fits["flash"]))
        t.add_row("MACs", f"{self.macs:,}", "", "")
        t.add_row("parameters", f"{self.params:,}", "", "")
        est = "estimate: uncalibrated coefficients" if self.latency_source == "estimate" else "calibrated coefficients"
        t.add_row("latency", f"{self.latency_ms:.2f} ms", f"{self.board.clock_hz / 1e6:g} MHz", est)
        t.add_row("bottleneck op (peak SRAM)", self.bottleneck, "", "")
        return t

    def plot_memory(self, path: "str | Path") -> Path:
        """PNG of the working set per op in execution order, the peak marked. Written atomically."""
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from lightning_mcuprune.io import save_figure
        df = self.layers
        fig, ax = plt.subplots(figsize=(max(6, 0.28 * len(df) + 2), 4))
        kib = df["working_set_bytes"] / 1024
        colors = ["tab:red" if n == self.bottleneck else "tab:blue" for n in df["name"]]
        ax.bar(range(len(df)), kib, color=colors)
        ax.axhline(self.board.sram_available / 1024, color="k", ls="--", lw=1, label=f"{self.board.name} SRAM free")
        ax.set_xticks(range(len(df)))
        ax.set_xticklabels(df["name"], rotation=90, fontsize=7)
        ax.set_ylabel("working set (KiB, int8)")
        ax.set_title(f"Memory profile: peak {format_size(self.peak_sram_bytes)} at {self.bottleneck}")
        ax.legend(loc="upper right", fontsize=8)
        fig.tight_layout()
        return save_figure(fig, path)


def report_from_model(rm: ResourceModel, counts: "torch.Tensor | None" = None) -> Report:
    """A Report of a ResourceModel at channel counts `counts` (default: the traced network)."""
    g = rm.graph
    n = rm.dense_counts if counts is None else torch.as_tensor(counts, dtype=torch.float64)
    with torch.no_grad():
        r = rm.evaluate(n)
        sizes = rm.buffer_bytes(n)
    bidx = {b: i for i, b in enumerate(rm.buffer_names)}
    rows = []
    for i in rm.order:
        op = g.ops[i]
        shape = tuple(g.buffers[op.output].shape[1:])
        rows.append({
            "name": op.label, "node": op.name, "type": op.type, "target": op.target, "output_shape": shape,
            "output_bytes": int(round(sizes[bidx[op.output]].item())),
            "macs": int(round(r.op_macs[i].item())), "params": int(round(r.op_params[i].item())),
            "flash_bytes": int(round(r.op_flash[i].item())), "working_set_bytes": int(round(r.working_set[i].item())),
            "latency_cycles": float(r.op_cycles[i].item()),
            "latency_ms": rm.board.cycles_to_ms(float(r.op_cycles[i].item())),
        })
    return Report(
        board=rm.board, macs=int(round(r.macs.item())), params=int(round(r.params.item())),
        flash_bytes=int(round(r.flash_bytes.item())), peak_sram_bytes=int(round(r.peak_sram_bytes.item())),
        latency_cycles=float(r.latency_cycles.item()), latency_ms=float(r.latency_ms.item()),
        bottleneck=g.ops[r.bottleneck].label, layers=pd.DataFrame(rows), graph=g, order=list(rm.order),
        runtime=rm.runtime)


def analyze(model: torch.nn.Module, example_input: "torch.Tensor | tuple", board: "str | Path | BoardProfile" = "mps2-an386",
            order: str = "traced", exclude: "tuple[str, ...] | list[str]" = (),
            runtime: str = "mcuprune-firmware") -> Report:
    """Trace `model` at `example_input` (batch first) and report its resources on `board`.

    `order`: "traced" (the order of forward()) or "optimal" (the execution order of least peak SRAM).
    `runtime`: "mcuprune-firmware" (our HIL firmware) or "tflm" (TensorFlow Lite Micro: peak SRAM is its
    whole tensor arena, flash the .tflite bytes plus TFLM's code, an estimate).
    """
    graph = trace_graph(model, example_input, exclude=exclude)
    rm = ResourceModel(graph, load_board(board), order=order, runtime=runtime)
    return report_from_model(rm)


# ---- CLI ------------------------------------------------------------------------------------


def __getattr__(name: str):
    if name in ("load_callable", "parse_shape"):   # deprecated: the CLI helpers live in lightning_mcuprune.cli_helpers
        import warnings
        warnings.warn(f"lightning_mcuprune.analysis.{name} is deprecated: use lightning_mcuprune.cli_helpers.{name}",
                      DeprecationWarning, stacklevel=2)
        from lightning_mcuprune import cli_helpers
        return getattr(cli_helpers, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
