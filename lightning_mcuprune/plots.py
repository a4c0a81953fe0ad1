"""PNG plots of a pruning run: keep proportions, resources against budgets, memory profile before/after."""
from __future__ import annotations

from typing import TYPE_CHECKING

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from lightning_mcuprune.io import save_figure  # noqa: E402
from lightning_mcuprune.pruning.budgets import format_value  # noqa: E402

if TYPE_CHECKING:
    from lightning_mcuprune.analysis import Report

_UNITS = {"sram": ("KiB", 1024), "flash": ("KiB", 1024), "latency_ms": ("ms", 1), "macs": ("M MACs", 1e6)}


def plot_history(history: "list[dict]", budgets: dict, directory: "str | Path") -> dict:
    """pi per group over training, and each resource against its target and budget."""
    directory = Path(directory)
    out = {}
    pis = [c for c in history.columns if c.startswith("pi/")]
    fig, ax = plt.subplots(figsize=(7, 4))
    for c in pis:
        ax.plot(history["step"], history[c], label=c[3:])
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("keep proportion π")
    ax.set_ylim(0, 1.05)
    ax.set_title("Keep proportion per channel group")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    out["pi"] = save_figure(fig, directory / "pi.png")
    budgets = {k: v for k, v in budgets.items() if k in history.columns}  # a resume may have added a budget
    fig, axes = plt.subplots(1, max(1, len(budgets)), figsize=(4.2 * max(1, len(budgets)), 3.6), squeeze=False)
    for ax, k in zip(axes[0], budgets):
        unit, div = _UNITS[k]
        ax.plot(history["step"], history[k] / div, label="network (integer masks)")
        ax.plot(history["step"], history[f"{k}_target"] / div, ls="--", label="target")
        ax.axhline(budgets[k] / div, color="k", lw=1, label=f"budget {format_value(k, budgets[k])}")
        ax.set_title(k)
        ax.set_xlabel("optimiser step")
        ax.set_ylabel(unit)
        ax.legend(fontsize=7)
    fig.tight_layout()
    out["resources"] = save_figure(fig, directory / "resources.png")
    return out


def plot_memory_before_after(dense: "Report", pruned: "Report", path: "str | Path", budget: float | None = None) -> Path:
    """Working set per op in execution order, dense and pruned, the peaks, the SRAM budget and the board's SRAM marked."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4), sharey=True)
    for ax, rep, title in ((axes[0], dense, "dense"), (axes[1], pruned, "pruned")):
        df = rep.layers
        colors = ["tab:red" if n == rep.bottleneck else "tab:blue" for n in df["name"]]
        ax.bar(range(len(df)), df["working_set_bytes"] / 1024, color=colors)
        ax.axhline(rep.board.sram_available / 1024, color="k", ls="--", lw=1, label="board SRAM free")
        if budget is not None:
            ax.axhline(budget / 1024, color="tab:green", lw=1.5, label=f"SRAM budget {budget / 1024:.1f} KiB")
        ax.set_xticks(range(len(df)))
        ax.set_xticklabels(df["name"], rotation=90, fontsize=6)
        ax.set_title(f"{title}: peak {rep.peak_sram_bytes / 1024:.1f} KiB at {rep.bottleneck}")
        ax.set_ylabel("working set (KiB, int8)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path)
