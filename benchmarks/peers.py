"""Issue 8: MCUPruneCallback beside its peers, same data, epochs, optimiser and seeds, on two tasks.

Board mps2-an386. `--task fashion-mnist`: the reference CNN (`zoo.reference_cnn()`), budgets 1/4 of the
dense network's peak SRAM and 1/4 of its latency. `--task kws`: keyword spotting (`zoo.ds_cnn`, 10 words
synthesised with espeak-ng, `lightning_mcuprune.data.kws`), budgets 1/2 of dense peak SRAM and 1/3 of its
latency. Latencies come from the board profile (its `latency_source` says estimate or calibrated).

  dense          the unpruned reference CNN
  ours-sram      MCUPruneCallback(board, {"sram": B_sram})
  ours-latency   MCUPruneCallback(board, {"latency_ms": B_lat})
  uniform        the network at width w, the largest w whose peak SRAM <= B_sram, trained plainly
  uniform-latency, uniform-flash   the same, w the largest within the latency / the flash budget
  ours-*+retrain the same pruning run, then its architecture with fresh weights (`reinitialized`) trained
                 plainly for the same epochs (search, then retrain); fit time is the sum
  tp-magnitude   Torch-Pruning MagnitudePruner + MagnitudeImportance(p=2), iterative (5 steps over the same
                 pruning phase as ours: 10%..60% of the run), the smallest uniform per-layer ratio whose final
                 MACs are <= ours-sram's; fine-tuned for the rest of the run
  tp-taylor      the same with TaylorImportance() (gradients of the current batch)
  lightning-l1   Lightning's ModelPruning(l1_unstructured, global), zeroing weights so the non-zero parameter
                 count equals ours-sram's; pruned at the end of epoch 0, fine-tuned, made permanent
  lightning-ln   ModelPruning(ln_structured, L2, pruning_dim=0): whole filters zeroed, same count
Every method's final network is measured with our `analyze` (int8 peak SRAM, flash, MACs, latency) on the
board: zeroed weights stay in Lightning's dense tensors, so their SRAM, MACs and latency do not fall.

Each finished run is appended to benchmarks/results/peers.csv (peers_kws.csv) as it finishes (re-running
skips runs already there with the same settings); then peers.png (peers_kws.png) and the `peers`
(`peers-kws`) section of BENCHMARKS.md are written. `--rerun-before "YYYY-MM-DD HH:MM"` runs the --only methods
again where their rows finished before that time (e.g. ours with the library's current defaults); the CSV keeps
both and the tables use the latest row per (method, seed).
Run: python benchmarks/peers.py [--task fashion-mnist|kws] [--seeds 0 1 2] [--epochs N]
"""
from __future__ import annotations

import argparse
import csv
import statistics
import sys
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import append_csv_row, plain_trainer, write_section  # noqa: E402

import lightning.pytorch as pl  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from lightning_mcuprune import analyze, load_board  # noqa: E402
from lightning_mcuprune.examples import zoo  # noqa: E402
from lightning_mcuprune.callback import MCUPruneCallback  # noqa: E402
from lightning_mcuprune.examples.classifier import ImageClassifier  # noqa: E402
from lightning_mcuprune.data.datasets import FashionMNISTDataModule  # noqa: E402
from lightning_mcuprune.io import save_figure  # noqa: E402
from lightning_mcuprune.retrain import reinitialized  # noqa: E402

BOARD = "mps2-an386"
RESULTS = Path(__file__).resolve().parent / "results"


def _kws_data(args, seed):
    from lightning_mcuprune.data.kws import KWSDataModule
    return KWSDataModule(batch_size=args.batch_size, seed=seed)


def _fmnist_data(args, seed):
    return FashionMNISTDataModule(batch_size=args.batch_size, train_subset=args.train_subset, val_size=args.val_size,
                                  seed=seed)


TASKS = {
    "fashion-mnist": dict(title="Fashion-MNIST reference CNN", input=(1, 1, 28, 28), net=zoo.reference_cnn,
                          data=_fmnist_data, csv="peers.csv", png="peers.png", section="peers", epochs=3, lr=2e-3,
                          batch_size=128, sram_div=4, latency_div=4, flash_div=4,
                          data_text="{train_subset} training images of Fashion-MNIST; test accuracy on the full 10k test set"),
    "kws": dict(title="keyword spotting DS-CNN", input=(1, 1, 49, 10), net=lambda width=1.0: zoo.ds_cnn(10, width=width),
                data=_kws_data, csv="peers_kws.csv", png="peers_kws.png", section="peers-kws", epochs=12, lr=3e-3,
                batch_size=64, sram_div=2, latency_div=3, flash_div=2,
                data_text="10 espeak-ng words (`KWSConfig()` defaults); test accuracy on the clips of 7 voices never heard "
                          "in training"),
}
TASK = TASKS["fashion-mnist"]
INPUT = TASK["input"]
CSV = RESULTS / TASK["csv"]
PNG = RESULTS / TASK["png"]
METHODS = ["dense", "ours-sram", "ours-latency", "ours-flash", "ours-sram+retrain", "ours-latency+retrain",
           "ours-flash+retrain", "uniform", "uniform-latency", "uniform-flash", "tp-magnitude", "tp-taylor", "lightning-l1", "lightning-ln"]
FIELDS = ["method", "seed", "train_subset", "epochs", "batch_size", "lr", "test_acc", "peak_sram_bytes", "latency_ms",
          "latency_source", "macs", "params", "nonzero_params", "flash_bytes", "sram_budget_bytes", "latency_budget_ms",
          "meets_sram", "meets_latency", "fit_s", "channels", "note", "finished_utc"]
console = Console(width=170)


def measure(net: nn.Module):
    """`analyze` of `net` (eval mode) at batch 1 on BOARD: bytes, MACs, ms."""
    was = net.training
    net.eval()
    rep = analyze(net, torch.zeros(*INPUT), board=BOARD)
    net.train(was)
    return rep


def channels(net) -> str:
    return "-".join(str(m.out_channels) for m in net.modules() if isinstance(m, nn.Conv2d))


def uniform_width(budget: float, attr: str = "peak_sram_bytes", iters: int = 30) -> float:
    """Largest width w in (0, 1] whose network's `attr` (peak_sram_bytes, latency_ms, flash_bytes) <= budget (bisection)."""
    lo, hi = 1e-3, 1.0
    for _ in range(iters):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if getattr(measure(TASK["net"](width=mid)), attr) <= budget else (lo, mid)
    return lo


# ---- Torch-Pruning ---------------------------------------------------------------------------------
def _tp_pruner(net: nn.Module, kind: str, ratio: float, steps: int):
    import torch_pruning as tp
    imp = tp.importance.MagnitudeImportance(p=2) if kind == "magnitude" else tp.importance.TaylorImportance()
    last = [m for m in net.modules() if isinstance(m, nn.Linear)][-1]
    return tp.pruner.MagnitudePruner(net, torch.zeros(*INPUT), importance=imp, pruning_ratio=ratio,
                                     iterative_steps=steps, ignored_layers=[last])


def tp_ratio_for_macs(target_macs: int, iters: int = 20) -> float:
    """Per-layer channel pruning ratio (Torch-Pruning, local, uniform over layers) whose final MACs <= target."""
    def macs(r):
        net = TASK["net"]()
        p = _tp_pruner(net, "magnitude", r, 1)
        p.step()
        return measure(net).macs
    lo, hi = 0.0, 0.99
    for _ in range(iters):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if macs(mid) <= target_macs else (mid, hi)
    return hi


class TorchPruningCallback(pl.Callback):
    """Iterative Torch-Pruning during training: `steps` pruner steps evenly spread over [start, end] of the
    run's optimiser steps. After each step the optimiser is re-pointed at the new parameters (its state is
    reset: Torch-Pruning replaces the parameter objects); the LR schedule continues."""

    def __init__(self, kind: str, ratio: float, steps: int = 5, start: float = 0.1, end: float = 0.6):
        self.kind, self.ratio, self.steps, self.start, self.end = kind, ratio, steps, start, end
        self.pruner = None

    def on_train_start(self, trainer, pl_module):
        total = int(trainer.estimated_stepping_batches)
        a, b = int(self.start * total), int(self.end * total)
        self.at = {a + round((b - a) * j / max(1, self.steps - 1)) for j in range(self.steps)}
        net = pl_module.net
        was = net.training
        self.pruner = _tp_pruner(net, self.kind, self.ratio, self.steps)
        net.train(was)  # Torch-Pruning's DependencyGraph leaves the model in eval mode: BN would train on running stats
        self.done = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step not in self.at or self.done >= self.steps:
            return
        net = pl_module.net
        if self.kind == "taylor":  # Taylor importance needs gradients of the loss
            net.zero_grad()
            x, y = batch
            F.cross_entropy(net(x), y).backward()
        was = net.training
        self.pruner.step()
        net.train(was)
        net.zero_grad()
        self.done += 1
        for opt in trainer.optimizers:
            opt.state.clear()
            opt.param_groups[0]["params"] = [p for p in pl_module.parameters() if p.requires_grad]

    def on_train_end(self, trainer, pl_module):
        while self.done < self.steps:  # a short run must still reach the final ratio
            self.pruner.step()
            self.done += 1


# ---- Lightning ModelPruning ------------------------------------------------------------------------
def lightning_pruning(net: nn.Module, kind: str, target_nonzero: int):
    """ModelPruning over every conv weight, zeroing enough weights that the non-zero parameter count
    equals `target_nonzero`; one shot at the end of epoch 0, then fine-tuned, made permanent at the end."""
    from lightning.pytorch.callbacks import ModelPruning
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    total = sum(p.numel() for p in net.parameters())
    w = sum(m.weight.numel() for m in convs)
    amount = min(0.99, max(0.0, (total - target_nonzero) / w))
    kw = dict(parameters_to_prune=[(m, "weight") for m in convs], amount=lambda e: amount if e == 0 else 0.0,
              use_lottery_ticket_hypothesis=False, make_pruning_permanent=True, verbose=0)
    if kind == "l1":
        return ModelPruning("l1_unstructured", use_global_unstructured=True, **kw), amount
    return ModelPruning("ln_structured", use_global_unstructured=False, pruning_norm=2, pruning_dim=0, **kw), amount


# ---- one run -----------------------------------------------------------------------------------------
def run_one(method: str, seed: int, ctx: dict, args) -> dict:
    pl.seed_everything(seed, workers=True, verbose=False)
    name, method = method, method.removesuffix("+retrain")
    widths = {"uniform": ctx["uniform_width"], "uniform-latency": ctx["uniform_width_latency"],
              "uniform-flash": ctx["uniform_width_flash"]}
    net = TASK["net"](width=widths.get(method, 1.0))
    model = ImageClassifier(net, lr=args.lr, input_shape=INPUT)
    dm = TASK["data"](args, seed)
    cbs, note = [], ""
    if method == "ours-sram":
        cbs.append(MCUPruneCallback(BOARD, {"sram": ctx["sram_budget"]}, module="net", verbose=False, export=False))
    elif method == "ours-flash":
        cbs.append(MCUPruneCallback(BOARD, {"flash": ctx["flash_budget"]}, module="net", verbose=False, export=False))
    elif method == "ours-latency":
        cbs.append(MCUPruneCallback(BOARD, {"latency_ms": ctx["latency_budget"]}, module="net", verbose=False, export=False))
    elif method.startswith("tp-"):
        cbs.append(TorchPruningCallback(method[3:], ctx["tp_ratio"]))
        note = f"ratio {ctx['tp_ratio']:.3f}/layer, 5 steps"
    elif method.startswith("lightning-"):
        cb, amount = lightning_pruning(net, method.split("-")[1], ctx["ours_params"])
        cbs.append(cb)
        note = f"amount {amount:.3f} of conv weights"
    trainer = plain_trainer(args.epochs, cbs)
    t = time.perf_counter()
    trainer.fit(model, datamodule=dm)
    if name.endswith("+retrain"):  # search, then retrain: the found architecture from fresh weights
        pl.seed_everything(seed, workers=True, verbose=False)
        model = ImageClassifier(reinitialized(model.net, seed=seed), lr=args.lr, input_shape=INPUT)
        trainer = plain_trainer(args.epochs)
        trainer.fit(model, datamodule=dm)
        method = name
    fit_s = time.perf_counter() - t
    acc = trainer.test(model, datamodule=dm, verbose=False)[0]["test_acc"]
    rep = measure(model.net)
    nonzero = int(sum((p != 0).sum().item() for p in model.net.parameters()))
    return {"method": method, "seed": seed, "train_subset": args.train_subset, "epochs": args.epochs,
            "batch_size": args.batch_size, "lr": args.lr, "test_acc": float(acc), "peak_sram_bytes": int(rep.peak_sram_bytes),
            "latency_ms": round(float(rep.latency_ms), 4), "latency_source": rep.latency_source, "macs": int(rep.macs),
            "params": int(rep.params), "nonzero_params": nonzero, "flash_bytes": int(rep.flash_bytes),
            "sram_budget_bytes": int(ctx["sram_budget"]), "latency_budget_ms": round(ctx["latency_budget"], 4),
            "meets_sram": rep.peak_sram_bytes <= ctx["sram_budget"], "meets_latency": rep.latency_ms <= ctx["latency_budget"],
            "fit_s": round(fit_s, 1), "channels": channels(model.net), "note": note,
            "finished_utc": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")}


def load_rows(args, latency_source: str) -> list[dict]:
    """Finished runs with the same settings and the same kind of latency model (estimate/calibrated)."""
    if not CSV.exists():
        return []
    rows = {}
    with CSV.open() as f:
        for r in csv.DictReader(f):
            if (int(r["train_subset"]), int(r["epochs"]), int(r["batch_size"]), float(r["lr"])) != \
                    (args.train_subset, args.epochs, args.batch_size, args.lr):
                continue
            if args.rerun_before and r["method"] in args.only and r["finished_utc"] < args.rerun_before:
                continue  # to be run again (--rerun-before)
            if r["latency_source"] != latency_source:  # the board profile changed since: run again
                continue
            for k in ("test_acc", "latency_ms", "latency_budget_ms", "fit_s", "lr"):
                r[k] = float(r[k])
            for k in ("seed", "peak_sram_bytes", "macs", "params", "nonzero_params", "flash_bytes", "sram_budget_bytes",
                      "train_subset", "epochs", "batch_size"):
                r[k] = int(r[k])
            for k in ("meets_sram", "meets_latency"):
                r[k] = r[k] == "True"
            rows[(r["method"], r["seed"])] = r  # the latest row of a (method, seed) wins
    return list(rows.values())


def mean(rows, key, scale=1.0):
    return statistics.mean(r[key] * scale for r in rows)


def plot(rows, ctx) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    markers = dict(zip(METHODS, "*oDh123s<>v^XP"))
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    src = rows[0]["latency_source"] if rows else "estimate"
    for ax, key, scale, label, budget in ((axes[0], "peak_sram_bytes", 1 / 1024, "peak SRAM (KiB, int8)", ctx["sram_budget"] / 1024),
                                          (axes[1], "latency_ms", 1.0, f"latency (ms, {src})", ctx["latency_budget"])):
        for m in METHODS:
            rs = [r for r in rows if r["method"] == m]
            if rs:
                ax.plot(mean(rs, key, scale), mean(rs, "test_acc", 100), markers[m], markersize=10 if m == "dense" else 8,
                        label=m, alpha=0.85)
        ax.axvline(budget, color="grey", ls=":", lw=1)
        ax.text(budget, ax.get_ylim()[0], " budget", color="grey", fontsize=8, va="bottom")
        ax.set_xlabel(f"{label} on {BOARD}")
        ax.set_ylabel("test accuracy (%)")
        ax.grid(alpha=0.3)
    axes[0].set_title("accuracy vs peak SRAM")
    axes[1].set_title("accuracy vs latency")
    axes[1].legend(loc="lower right", fontsize=8)
    fig.suptitle(f"{TASK['title']}: MCUPruneCallback vs peers (same data, epochs, seeds; mean over seeds)")
    fig.tight_layout()
    save_figure(fig, PNG)


def ours_when(rows) -> str:
    """Which defaults the rows of ours ran with, by when they finished."""
    ours = [r for r in rows if r["method"].startswith("ours-")]
    if ours and min(r["finished_utc"] for r in ours) >= "2026-11-26 19:13":
        return ("re-run 2026-11-26 with the defaults after issue 15: under the latency budget warm-up 0.02 and hardening "
                "at 0.15 of the run, under SRAM or flash alone 0.1 and 0.6; the optimiser's state cleared at hardening "
                "(`reset_optimizer=True`)")
    if ours and max(r["finished_utc"] for r in ours) < "2026-11-26 12:00":
        return "the defaults before issue 15: warm-up 0.1, hardening at 0.6"
    return "rows from before and after issue 15's defaults: see `finished_utc` in the CSV"


def markdown(rows, ctx, args) -> str:
    src = ctx["latency_source"]
    seeds = sorted({r["seed"] for r in rows})
    lines = [f"## MCUPruneCallback vs its peers: {TASK['title']} (issue 8)", "",
             f"`benchmarks/peers.py --task {args.task}` on board `{BOARD}`. Dense: peak SRAM {ctx['dense_sram']} B, "
             f"latency {ctx['dense_latency']:.1f} ms ({src}), {ctx['dense_macs']:,} MACs. Budgets: **SRAM {ctx['sram_budget']} B** "
             f"(1/{TASK['sram_div']} of dense peak) and **latency {ctx['latency_budget']:.1f} ms** (1/{TASK['latency_div']} of "
             f"dense, {src}); **flash {ctx['flash_budget']} B** (the board profile's runtime estimate plus 1/{TASK['flash_div']} "
             f"of the dense model's own flash, {ctx['dense_flash']} B in all). Same data, Adam (lr {args.lr}, cosine over the run) and seeds for all: "
             f"{TASK['data_text'].format(train_subset=args.train_subset)}; **{args.epochs} epochs**, batch {args.batch_size}, "
             f"**seeds {', '.join(map(str, seeds))}** (figures are means over the seeds; ± is the standard deviation). "
             "Short runs sized for a 2-core CPU: absolute accuracies are below full training. "
             "Every final network measured with our `analyze` (int8). Fit times are wall-clock with two runs sharing the "
             "machine: compare them loosely.", "",
             "Methods: **ours-sram / ours-latency / ours-flash**: `MCUPruneCallback` with the one budget, library defaults at "
             f"the time of the run ({ours_when(rows)}). **uniform**: the same network at width w, the largest w within the SRAM budget "
             f"(w={ctx['uniform_width']:.4f}); **uniform-latency / uniform-flash**: the same within the latency / flash budget "
             f"(w={ctx['uniform_width_latency']:.4f} / {ctx['uniform_width_flash']:.4f}). **tp-magnitude / tp-taylor**: Torch-Pruning `MagnitudePruner` with "
             "`MagnitudeImportance(p=2)` / `TaylorImportance()`, 5 iterative steps over the same 10–60 % of the run, "
             f"per-layer ratio {ctx['tp_ratio']:.3f}, the smallest whose final MACs are <= ours-sram's "
             f"({ctx['ours_macs']:,}), then fine-tuned (Adam's state is reset at each step: Torch-Pruning replaces the parameters). **lightning-l1 / "
             "lightning-ln**: Lightning's `ModelPruning` (`l1_unstructured` global; `ln_structured`, L2, `pruning_dim=0`) "
             f"over the conv weights, to the same non-zero parameter count as ours-sram ({ctx['ours_params']:,}), at the end of "
             "epoch 0, then fine-tuned and made permanent.", "",
             f"| method | test acc (%) | peak SRAM (B) | latency (ms, {src}) | MACs | params | non-zero params | "
             "channels (convs) | SRAM budget | latency budget | flash budget | fit (s) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    yes = lambda b: "met" if b else "**exceeded**"  # noqa: E731
    for m in METHODS:
        rs = [r for r in rows if r["method"] == m]
        if not rs:
            lines.append(f"| {m} | not run | | | | | | | | | | |")
            continue
        sd = statistics.stdev(r["test_acc"] * 100 for r in rs) if len(rs) > 1 else 0.0
        lines.append(f"| {m} | {mean(rs, 'test_acc', 100):.2f} ± {sd:.2f} | {mean(rs, 'peak_sram_bytes'):.0f} | {mean(rs, 'latency_ms'):.1f} | "
                     f"{mean(rs, 'macs'):,.0f} | {mean(rs, 'params'):,.0f} | {mean(rs, 'nonzero_params'):,.0f} | "
                     f"{', '.join(sorted({r['channels'] for r in rs}))} | {yes(all(r['meets_sram'] for r in rs))} | "
                     f"{yes(all(r['meets_latency'] for r in rs))} | {yes(all(r['meets_flash'] for r in rs))} | "
                     f"{mean(rs, 'fit_s'):.0f} |")
    lines += ["", f"Per-run figures: `benchmarks/results/{CSV.name}`; plot (accuracy vs peak SRAM and vs latency): "
              f"`benchmarks/results/{PNG.name}`.", "", f"![accuracy vs resources](benchmarks/results/{PNG.name})", "", "Reading:"]
    by = {m: [r for r in rows if r["method"] == m] for m in METHODS}
    if by["lightning-l1"] and by["dense"]:
        lines.append(f"- Lightning's `ModelPruning` zeroes weights inside dense tensors: its peak SRAM "
                     f"({mean(by['lightning-l1'], 'peak_sram_bytes'):.0f} B) and latency "
                     f"({mean(by['lightning-l1'], 'latency_ms'):.1f} ms) are the dense network's "
                     f"({mean(by['dense'], 'peak_sram_bytes'):.0f} B, {mean(by['dense'], 'latency_ms'):.1f} ms), "
                     "though its non-zero parameters fall to ours' count: sparsity buys an int8 MCU runtime nothing.")
    for a, b in (("ours-sram", "uniform"), ("ours-sram", "tp-magnitude"), ("ours-sram", "tp-taylor")):
        if by[a] and by[b]:
            lines.append(f"- {a} vs {b}: {mean(by[a], 'test_acc', 100) - mean(by[b], 'test_acc', 100):+.2f} pp test accuracy; "
                         f"peak SRAM {mean(by[a], 'peak_sram_bytes'):.0f} vs {mean(by[b], 'peak_sram_bytes'):.0f} B "
                         f"(budget {ctx['sram_budget']} B).")
    if by["ours-latency"]:
        r = by["ours-latency"]
        lines.append(f"- ours-latency lands at {mean(r, 'latency_ms'):.1f} ms (budget {ctx['latency_budget']:.1f} ms) with "
                     f"{mean(r, 'test_acc', 100):.2f} % and peak SRAM {mean(r, 'peak_sram_bytes'):.0f} B: a latency budget "
                     "alone does not bound SRAM; give both budgets when both matter.")
    if by["lightning-ln"]:
        lines.append("- `ln_structured` zeroes whole conv filters, but the BatchNorm after each keeps adding its bias, so "
                     "even those channels are not zero at run time, and nothing is removed from the tensors.")
    tp_ = by["tp-magnitude"] + by["tp-taylor"]
    if tp_:
        if all(r["meets_sram"] for r in tp_):
            lines.append(f"- Torch-Pruning at ours' MACs meets the SRAM budget here "
                         f"({mean(tp_, 'peak_sram_bytes'):.0f} B of {ctx['sram_budget']} B) only because every layer of this "
                         "network costs alike, so a uniform per-layer ratio also shrinks the activation peak; it is not told "
                         "the budget, and leaves part of it unused.")
        else:
            lines.append(f"- Torch-Pruning at ours' MACs misses the SRAM budget ({mean(tp_, 'peak_sram_bytes'):.0f} B vs "
                         f"{ctx['sram_budget']} B): a MACs or parameter target does not say where the activation peak is; "
                         "ours is told the SRAM budget.")
        lines.append("- Caveat for Torch-Pruning: our harness resets Adam's state at each of its 5 steps (it replaces the "
                     "parameter tensors), which may understate its accuracy in so short a run.")
    for key, budget in (("meets_sram", "SRAM"), ("meets_latency", "latency"), ("meets_flash", "flash")):
        fits = sorted((m for m in METHODS if by[m] and all(r[key] for r in by[m])),
                      key=lambda m: -mean(by[m], "test_acc"))
        if not fits:
            continue
        best = fits[0]
        lines.append(f"- **Verdict, {budget} budget**: methods that meet it in every seed, most accurate first: "
                     + ", ".join(f"{m} {mean(by[m], 'test_acc', 100):.2f} %" for m in fits)
                     + (f". Most accurate: **{best}**" + ("" if best.startswith("ours") else " (a peer)"))
                     + ".")
    both = [m for m in METHODS if by[m] and all(r["meets_sram"] and r["meets_latency"] for r in by[m])]
    lines.append(f"- Meet both the SRAM and the latency budget: {', '.join(both) if both else 'none'}.")
    return "\n".join(lines)


def table(rows) -> Table:
    t = Table(title="peers: finished runs")
    for c in ("method", "seed", "test acc %", "peak SRAM B", "latency ms", "MACs", "params", "non-zero", "SRAM", "lat", "fit s"):
        t.add_column(c, justify="left" if c == "method" else "right")
    for r in rows:
        t.add_row(r["method"], str(r["seed"]), f"{100 * r['test_acc']:.2f}", str(r["peak_sram_bytes"]), f"{r['latency_ms']:.1f}",
                  f"{r['macs']:,}", f"{r['params']:,}", f"{r['nonzero_params']:,}", "ok" if r["meets_sram"] else "over",
                  "ok" if r["meets_latency"] else "over", f"{r['fit_s']:.0f}")
    return t


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--task", choices=sorted(TASKS), default="fashion-mnist")
    p.add_argument("--train-subset", type=int, default=6000, help="Fashion-MNIST training images (seeded subset of the 60k)")
    p.add_argument("--epochs", type=int, default=None, help="default: 3 (fashion-mnist), 12 (kws)")
    p.add_argument("--batch-size", type=int, default=None, help="default: 128 (fashion-mnist), 64 (kws)")
    p.add_argument("--lr", type=float, default=None, help="default: 2e-3 (fashion-mnist), 3e-3 (kws)")
    p.add_argument("--val-size", type=int, default=5000, help="held out of the 60k (not used for training)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--only", choices=METHODS, nargs="+", default=METHODS)
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 on a shared machine)")
    p.add_argument("--results", type=Path, default=RESULTS, help="folder of peers.csv and peers.png")
    p.add_argument("--no-write", action="store_true", help="do not write BENCHMARKS.md / the PNG")
    p.add_argument("--rerun-before", default="", metavar="'YYYY-MM-DD HH:MM'",
                   help="run the --only methods again where their rows finished before this UTC time")
    args = p.parse_args()
    global CSV, PNG, TASK, INPUT
    TASK = TASKS[args.task]
    INPUT = TASK["input"]
    for k in ("epochs", "batch_size", "lr"):
        if getattr(args, k) is None:
            setattr(args, k, TASK[k])
    if args.task == "kws":
        args.train_subset = 0  # the whole generated training split
    CSV, PNG = args.results / TASK["csv"], args.results / TASK["png"]
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*LightningModule.*has parameters that were not used.*")

    board = load_board(BOARD)
    dense = measure(TASK["net"]())
    ctx = {"dense_sram": dense.peak_sram_bytes, "dense_latency": dense.latency_ms, "dense_macs": dense.macs,
           "sram_budget": dense.peak_sram_bytes // TASK["sram_div"], "latency_budget": dense.latency_ms / TASK["latency_div"],
           "latency_source": board.latency_source, "dense_flash": dense.flash_bytes,
           "flash_budget": int(board.runtime_flash_bytes + (dense.flash_bytes - board.runtime_flash_bytes) / TASK["flash_div"])}
    ctx["uniform_width"] = uniform_width(ctx["sram_budget"])
    ctx["uniform_width_latency"] = uniform_width(ctx["latency_budget"], "latency_ms")
    ctx["uniform_width_flash"] = uniform_width(ctx["flash_budget"], "flash_bytes")
    console.print(f"dense on {BOARD}: peak SRAM {dense.peak_sram_bytes} B, latency {dense.latency_ms:.1f} ms "
                  f"({board.latency_source}), {dense.macs:,} MACs; budgets SRAM {ctx['sram_budget']} B, latency "
                  f"{ctx['latency_budget']:.1f} ms; uniform width {ctx['uniform_width']:.4f}")
    rows = load_rows(args, board.latency_source)
    plan = [(m, s) for s in args.seeds for m in METHODS if m in args.only]
    done = {(r["method"], r["seed"]) for r in rows}
    todo = [k for k in plan if k not in done]
    console.print(f"{len(plan) - len(todo)} of {len(plan)} runs already in {CSV.name}; {len(todo)} to run")
    t0 = time.perf_counter()
    for i, (m, seed) in enumerate(todo):
        ours = [r for r in rows if r["method"] == "ours-sram" and r["seed"] == seed]
        if (m.startswith("tp-") or m.startswith("lightning-")):
            if not ours:
                console.print(f"[yellow]skip {m} seed {seed}: needs ours-sram of that seed first (its MACs/params)[/]")
                continue
            ctx["ours_macs"], ctx["ours_params"] = ours[0]["macs"], ours[0]["params"]
            if m.startswith("tp-") and ctx.get("tp_target") != ctx["ours_macs"]:
                ctx["tp_ratio"], ctx["tp_target"] = tp_ratio_for_macs(ctx["ours_macs"]), ctx["ours_macs"]
        console.print(f"[bold]run {i + 1}/{len(todo)}[/]: {m} seed {seed} (elapsed {time.perf_counter() - t0:.0f} s)")
        row = run_one(m, seed, ctx, args)
        append_csv_row(CSV, FIELDS, row)
        rows.append(row)
        console.print(table(rows))
    rows = [r for r in rows if (r["method"], r["seed"]) in set(plan)]
    for r in rows:  # the flash budget is derived, not stored: older CSVs have no column for it
        r["meets_flash"] = int(r["flash_bytes"]) <= ctx["flash_budget"]
    ours = [r for r in rows if r["method"] == "ours-sram"]
    if ours:
        ctx["ours_macs"], ctx["ours_params"] = ours[0]["macs"], ours[0]["params"]
        if "tp_ratio" not in ctx:
            ctx["tp_ratio"] = tp_ratio_for_macs(ctx["ours_macs"])
    else:
        ctx.update(ours_macs=0, ours_params=0, tp_ratio=float("nan"))
    if not args.no_write and rows:
        plot(rows, ctx)
        md = markdown(rows, ctx, args)
        write_section(TASK["section"], md)
        console.print(md)


if __name__ == "__main__":
    main()
