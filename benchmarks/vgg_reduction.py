"""Issue 8: the seed paper's headline claims on our own runs, with an oversized VGG-style network.

Liberis & Lane report that their method "improves key resource usage of models up to 80x" with little
accuracy loss, and that pruning while training costs "little to no overhead or even improved training
time". This script checks both on Fashion-MNIST with `zoo.vgg_style()` (64-64-128-128-256-256 convs and a
256-unit FC head: 1.7 M parameters, 117 M MACs, far more than the task needs) on board mps2-an386:

  dense        vgg_style() trained plainly
  macs xF      MCUPruneCallback(budgets={"macs": dense MACs / F})
  flash xF     MCUPruneCallback(budgets={"flash": runtime + dense model flash / F}): the factor applies to the
               model's own flash (int8 weights, int32 biases and requantisation, per-op tables), not to the
               board profile's fixed runtime estimate, which no pruning can shrink
  macs+retrain xF, flash+retrain xF
               search, then retrain: the same pruning run, then its architecture with fresh weights
               (`lightning_mcuprune.reinitialized`) trained plainly for the same epochs; fit time is the sum
  uniform xF   vgg_style(width=w), the largest w (bisection) whose MACs are <= dense MACs / F, trained plainly:
               what the same factor costs without pruning (baseline)
for F in --factors (default 20, 40, 80), same data, epochs, optimiser (Adam, cosine LR) and seed.
Reported: test accuracy (full 10k test set) and its loss against dense, the reduction factor reached on
the budgeted resource and on the others, and fit wall time against dense (training-time claim).
Each finished run is appended to benchmarks/results/vgg_reduction.csv (re-running skips runs already there
with the same settings); then vgg_reduction.png and the `vgg-reduction` section of BENCHMARKS.md are written.

Run: python benchmarks/vgg_reduction.py [--train-subset 6000 --epochs 4 --factors 20 40 80 --seeds 0 1]
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import plain_trainer, write_section  # noqa: E402

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
INPUT = (1, 1, 28, 28)
RESULTS = Path(__file__).resolve().parent / "results"
CSV = RESULTS / "vgg_reduction.csv"
PNG = RESULTS / "vgg_reduction.png"
SETTINGS = ("train_subset", "epochs", "batch_size", "lr")
console = Console(width=160)


def measure(net: torch.nn.Module) -> dict:
    """int8 resources of `net` on BOARD (eval mode, batch 1): bytes, MACs, ms."""
    was = net.training
    net.eval()
    rep = analyze(net, torch.zeros(*INPUT), board=BOARD)
    net.train(was)
    runtime = rep.board.runtime_flash_bytes
    return {"macs": int(rep.macs), "params": int(rep.params), "flash_bytes": int(rep.flash_bytes),
            "model_flash_bytes": int(rep.flash_bytes - runtime), "peak_sram_bytes": int(rep.peak_sram_bytes),
            "latency_ms": round(float(rep.latency_ms), 3), "latency_source": rep.latency_source}


def channels(net) -> str:
    return "-".join(str(m.out_channels) for m in net.modules() if isinstance(m, torch.nn.Conv2d))


def budget_for(resource: str, factor: float, dense: dict, runtime_flash: int) -> dict:
    if resource == "macs":
        return {"macs": int(dense["macs"] / factor)}
    return {"flash": int(runtime_flash + dense["model_flash_bytes"] / factor)}


def uniform_width(max_macs: float, iters: int = 30) -> float:
    """Largest width w in (0, 1] with MACs of zoo.vgg_style(width=w) <= max_macs (bisection)."""
    lo, hi = 1e-3, 1.0
    for _ in range(iters):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if measure(zoo.vgg_style(width=mid))["macs"] <= max_macs else (lo, mid)
    return lo


def run_one(resource: str, factor: float, seed: int, dense: dict, runtime_flash: int, args) -> dict:
    pl.seed_everything(seed, workers=True, verbose=False)
    retrain = resource.endswith("+retrain")
    resource = resource.removesuffix("+retrain")
    width = uniform_width(dense["macs"] / factor) if resource == "uniform" else 1.0
    model = ImageClassifier(zoo.vgg_style(width=width), lr=args.lr, input_shape=INPUT)
    dm = FashionMNISTDataModule(batch_size=args.batch_size, train_subset=args.train_subset, seed=seed)
    cbs, budgets = [], {}
    if resource in ("macs", "flash"):
        budgets = budget_for(resource, factor, dense, runtime_flash)
        cbs.append(MCUPruneCallback(BOARD, budgets, module="net", verbose=False, export=False))
    trainer = plain_trainer(args.epochs, cbs)
    t = time.perf_counter()
    trainer.fit(model, datamodule=dm)
    if retrain:  # the architecture the pruning found, trained again from fresh weights
        pl.seed_everything(seed, workers=True, verbose=False)
        model = ImageClassifier(reinitialized(model.net, seed=seed), lr=args.lr, input_shape=INPUT)
        trainer = plain_trainer(args.epochs)
        trainer.fit(model, datamodule=dm)
        resource += "+retrain"
    fit_s = time.perf_counter() - t
    acc = float(trainer.test(model, datamodule=dm, verbose=False)[0]["test_acc"])
    m = measure(model.net)
    return {"resource": resource, "factor": factor, "seed": seed, **{k: getattr(args, k) for k in SETTINGS},
            "test_acc": acc, **m, "budget": next(iter(budgets.values()), 0),
            "meets_budget": all(m["macs" if k == "macs" else "flash_bytes"] <= v for k, v in budgets.items()),
            "fit_s": round(fit_s, 1), "channels": channels(model.net),
            "finished_utc": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")}


def load(args) -> pd.DataFrame:
    if not CSV.exists():
        return pd.DataFrame()
    df = pd.read_csv(CSV)
    same = pd.Series(True, index=df.index)
    for k in SETTINGS:
        same &= df[k] == getattr(args, k)
    return df[same].reset_index(drop=True)


def append(row: dict) -> None:
    CSV.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame([row]).to_csv(CSV, mode="a", header=not CSV.exists(), index=False)


def summarise(df: pd.DataFrame) -> pd.DataFrame:
    """Per (resource, factor): mean accuracy, accuracy loss vs dense (pp), reached reduction factors, fit-time ratio."""
    dense = df[df.resource == "dense"].set_index("seed")
    out = []
    for (res, f), g in df[df.resource != "dense"].groupby(["resource", "factor"]):
        d = dense.loc[g.seed]
        out.append({"resource": res, "target factor": f, "seeds": len(g), "test acc %": 100 * g.test_acc.mean(),
                    "loss vs dense (pp)": 100 * (d.test_acc.values - g.test_acc.values).mean(),
                    "MACs reduction": (d.macs.values / g.macs.values).mean(),
                    "model flash reduction": (d.model_flash_bytes.values / g.model_flash_bytes.values).mean(),
                    "peak SRAM reduction": (d.peak_sram_bytes.values / g.peak_sram_bytes.values).mean(),
                    "latency reduction": (d.latency_ms.values / g.latency_ms.values).mean(),
                    "budget met": bool(g.meets_budget.all()), "fit time vs dense": (g.fit_s.values / d.fit_s.values).mean(),
                    "channels": ", ".join(sorted(set(g.channels)))})
    return pd.DataFrame(out)


def method_name(res: str) -> str:
    if res == "uniform":
        return "uniform width"
    base = res.removesuffix("+retrain")
    return f"ours, budget on {base}" + (", then retrained" if res.endswith("+retrain") else "")


def plot(summary: pd.DataFrame, dense_acc: float) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for res, g in summary.groupby("resource"):
        col = "model flash reduction" if res.startswith("flash") else "MACs reduction"
        ax.plot(g[col], g["test acc %"], "s--" if res == "uniform" else ("^-." if "retrain" in res else "o-"),
                label=f"{method_name(res)} (x = {'model flash' if res.startswith('flash') else 'MACs'} reduction)")
    ax.axhline(dense_acc, color="black", lw=1, label=f"dense {dense_acc:.2f} %")
    ax.axhline(dense_acc - 1, color="grey", ls=":", lw=1, label="dense - 1 pp")
    ax.set_xscale("log")
    ax.set_xlabel("reduction factor of the budgeted resource (dense / pruned)")
    ax.set_ylabel("test accuracy (%), 10k test images")
    ax.set_title("Oversized VGG-style net on Fashion-MNIST, pruned while training")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, PNG)


def markdown(df: pd.DataFrame, summary: pd.DataFrame, args) -> str:
    dense = df[df.resource == "dense"]
    d = dense.iloc[0]
    ok = summary[(summary["loss vs dense (pp)"] <= 1.0) & summary["budget met"] & (summary.resource != "uniform")]
    best = {res: g for res, g in ok.groupby("resource")}
    lines = ["## Headline claims on an oversized VGG-style network (issue 8)", "",
             f"`benchmarks/vgg_reduction.py`: `zoo.vgg_style()` on Fashion-MNIST, board `{BOARD}`. Dense: "
             f"{d.params:,} parameters, {d.macs:,} MACs, model flash {d.model_flash_bytes:,} B (int8, plus the profile's "
             f"runtime estimate), peak SRAM {d.peak_sram_bytes:,} B, latency {d.latency_ms:.0f} ms ({d.latency_source}). "
             f"Same data for all: {args.train_subset} training images, {args.epochs} epochs, batch {args.batch_size}, Adam "
             f"lr {args.lr} (cosine), seeds {', '.join(map(str, sorted(df.seed.unique())))}; test accuracy on the full 10k "
             f"test set. Dense test accuracy {100 * dense.test_acc.mean():.2f} %, fit {dense.fit_s.mean():.0f} s.", "",
             "| method | target factor | test acc (%) | loss vs dense (pp) | MACs ÷ | model flash ÷ | peak SRAM ÷ | "
             "latency ÷ | budget | fit time vs dense | conv channels |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for _, r in summary.iterrows():
        name = method_name(r["resource"])
        budget = "n/a" if r["resource"] == "uniform" else ("met" if r["budget met"] else "**exceeded**")
        lines.append(f"| {name} | {r['target factor']:g}x | {r['test acc %']:.2f} | {r['loss vs dense (pp)']:+.2f} | "
                     f"{r['MACs reduction']:.1f}x | {r['model flash reduction']:.1f}x | {r['peak SRAM reduction']:.1f}x | "
                     f"{r['latency reduction']:.1f}x | {budget} | "
                     f"{r['fit time vs dense']:.2f}x | {r['channels']} |")
    lines += ["", f"![accuracy vs reduction factor](benchmarks/results/{PNG.name})", "", "Reading:"]
    def acc(res, f):
        g = summary[(summary.resource == res) & (summary["target factor"] == f)]
        return float(g["test acc %"].iloc[0]) if len(g) else None
    for f in sorted(summary[summary.resource == "macs"]["target factor"]):
        parts = [f"{method_name(r)} {acc(r, f):.2f} %" for r in ("macs", "macs+retrain", "uniform") if acc(r, f) is not None]
        lines.append(f"- At {f:g}x fewer MACs: " + ", ".join(parts) + ".")
    for res in ("macs", "flash", "macs+retrain", "flash+retrain"):
        if res in best:
            top = best[res].sort_values("target factor").iloc[-1]
            lines.append(f"- {method_name(res)}: the largest factor tried with at most 1 pp accuracy loss is "
                         f"**{top['target factor']:g}x** ({top['test acc %']:.2f} %, {top['loss vs dense (pp)']:+.2f} pp).")
        elif (summary.resource == res).any():
            lines.append(f"- {method_name(res)}: no factor tried stayed within 1 pp of dense.")
    claim = ok[ok["target factor"] >= 80]
    lines.append("- **Claim: >= 80x on the budgeted resource with <= 1 pp accuracy loss: "
                 + (f"met by {', '.join(method_name(r) for r in sorted(set(claim.resource)))}" if len(claim) else "not met")
                 + f"** ({args.train_subset} images x {args.epochs} epochs, {df.seed.nunique()} seed(s); seeds differ by up to "
                 "~1 pp at a factor).")
    pruned = summary[summary.resource.isin(["macs", "flash"])]["fit time vs dense"]
    both = summary[summary.resource.str.endswith("+retrain")]["fit time vs dense"]
    if len(pruned):
        lines.append(f"- Training time: pruning while training took {pruned.min():.2f}x to {pruned.max():.2f}x the dense run's "
                     "fit time (the network shrinks while it trains)" +
                     (f"; pruning and then retraining the small network {both.min():.2f}x to {both.max():.2f}x" if len(both) else "") +
                     " (wall-clock on a shared 2-core machine).")
    if len(both):
        lines.append("- Why retraining helps here: the pruned architectures, trained from fresh weights for the whole run, "
                     "come within about 1 pp of uniform width scaling, so most of the gap is not the allocation; what loses is a network pruned from the dense "
                     "one with only the last 40 % of a short run (at a low learning rate) to recover (Liu et al., \"Rethinking "
                     "the Value of Network Pruning\", ICLR 2019, report the same). With long training the paper's "
                     "prune-while-training suffices; with a short one, search then retrain (`lightning_mcuprune.reinitialized`).")
    lines.append("- Factors are measured on the final network with `analyze`; latency is the board profile's "
                 f"{d.latency_source} model, not a measurement.")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--train-subset", type=int, default=6000, help="training images (seeded subset of the 60k)")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--factors", type=float, nargs="+", default=[20, 40, 80])
    kinds = ["macs", "flash", "macs+retrain", "flash+retrain", "uniform"]
    p.add_argument("--resources", choices=kinds, nargs="+", default=kinds)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 on a shared machine)")
    p.add_argument("--results", type=Path, default=RESULTS, help="folder of vgg_reduction.csv and .png")
    p.add_argument("--no-write", action="store_true", help="do not write BENCHMARKS.md / the PNG")
    args = p.parse_args()
    global CSV, PNG
    CSV, PNG = args.results / CSV.name, args.results / PNG.name
    if any(f <= 1 for f in args.factors):
        p.error(f"--factors must be > 1 (a reduction factor: dense / pruned), got {args.factors}")
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")

    runtime_flash = load_board(BOARD).runtime_flash_bytes
    dense = measure(zoo.vgg_style())
    console.print(f"dense vgg_style on {BOARD}: {dense['params']:,} params, {dense['macs']:,} MACs, model flash "
                  f"{dense['model_flash_bytes']:,} B, peak SRAM {dense['peak_sram_bytes']:,} B")
    df = load(args)
    plan = [("dense", 1.0, s) for s in args.seeds] + [(r, float(f), s) for s in args.seeds for r in args.resources
                                                       for f in args.factors]
    done = set(zip(df.resource, df.factor.astype(float), df.seed)) if len(df) else set()
    todo = [k for k in plan if k not in done]
    console.print(f"{len(plan) - len(todo)} of {len(plan)} runs already in {CSV.name}; {len(todo)} to run")
    t0 = time.perf_counter()
    for i, (res, f, seed) in enumerate(todo):
        console.print(f"[bold]run {i + 1}/{len(todo)}[/]: {res} {f:g}x seed {seed} (elapsed {time.perf_counter() - t0:.0f} s)")
        row = run_one(res, f, seed, dense, runtime_flash, args)
        append(row)
        console.print(f"  test acc {100 * row['test_acc']:.2f} %, MACs {row['macs']:,}, model flash {row['model_flash_bytes']:,} B, "
                      f"fit {row['fit_s']:.0f} s, channels {row['channels']}")
    df = load(args)
    df = df[[(r, float(f), s) in set(plan) for r, f, s in zip(df.resource, df.factor, df.seed)]]
    if not (df.resource == "dense").any():
        console.print("[red]no dense run: nothing to compare against[/]")
        return
    summary = summarise(df)
    t = Table(title="VGG-style on Fashion-MNIST: reduction vs accuracy")
    for c in ("resource", "target factor", "test acc %", "loss vs dense (pp)", "MACs reduction", "model flash reduction",
              "fit time vs dense"):
        t.add_column(c, justify="right")
    for _, r in summary.iterrows():
        t.add_row(r["resource"], f"{r['target factor']:g}x", f"{r['test acc %']:.2f}", f"{r['loss vs dense (pp)']:+.2f}",
                  f"{r['MACs reduction']:.1f}x", f"{r['model flash reduction']:.1f}x", f"{r['fit time vs dense']:.2f}x")
    console.print(t)
    if not args.no_write and len(summary):
        plot(summary, 100 * df[df.resource == "dense"].test_acc.mean())
        md = markdown(df, summary, args)
        write_section("vgg-reduction", md)
        console.print(md)


if __name__ == "__main__":
    main()
