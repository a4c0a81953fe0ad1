"""Issue 3: accuracy under a peak-SRAM budget on Fashion-MNIST, MCUPruneCallback vs uniform width scaling.

The reference CNN (`zoo.reference_cnn()`) on board mps2-an386. For SRAM budgets of 1/2, 1/4, 1/8 of the
dense network's peak SRAM and seeds 0, 1, 2, with the same data, epochs, optimiser (Adam, cosine LR) and seed:
  ours     the reference CNN trained with MCUPruneCallback(board, budgets={"sram": B}) (defaults otherwise)
  uniform  zoo.reference_cnn(width=w), the largest w (bisection) whose peak SRAM is <= B, trained plainly
  dense    the unpruned reference CNN, once per seed
Test accuracy on the full 10k test set. Each finished run is appended to
benchmarks/results/fashion_mnist_sram.csv; re-running skips runs already there (same settings).

Targets: ours more accurate than uniform at every budget, >= +1 pp at 1/8, final SRAM within 2% under the budget.
Run: python benchmarks/fashion_mnist_sram.py [--train-subset 6000 --epochs 3 --batch-size 128]
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import append_csv_row, plain_trainer, write_section  # noqa: E402

import lightning.pytorch as pl  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from lightning_mcuprune import analyze  # noqa: E402
from lightning_mcuprune.examples import zoo  # noqa: E402
from lightning_mcuprune.callback import MCUPruneCallback  # noqa: E402
from lightning_mcuprune.examples.classifier import ImageClassifier  # noqa: E402
from lightning_mcuprune.data.datasets import FashionMNISTDataModule  # noqa: E402
from lightning_mcuprune.io import save_figure  # noqa: E402

BOARD = "mps2-an386"
INPUT = (1, 1, 28, 28)
RESULTS = Path(__file__).resolve().parent / "results"
CSV = RESULTS / "fashion_mnist_sram.csv"
PNG = RESULTS / "fashion_mnist_sram.png"
FIELDS = ["method", "fraction", "budget_bytes", "seed", "width", "train_subset", "epochs", "batch_size", "lr",
          "test_acc", "peak_sram_bytes", "sram_pct_of_budget", "params", "macs", "fit_s", "test_s", "channels",
          "finished_utc"]
console = Console()


def peak_sram(net: torch.nn.Module) -> int:
    was = net.training
    net.eval()
    rep = analyze(net, torch.zeros(*INPUT), board=BOARD)
    net.train(was)
    return rep


def uniform_width(budget: float, iters: int = 40) -> tuple[float, int]:
    """Largest width w in (0, 1] with peak SRAM of zoo.reference_cnn(width=w) <= budget (bisection)."""
    def fits(w):
        return peak_sram(zoo.reference_cnn(width=w)).peak_sram_bytes <= budget
    lo, hi = 1e-3, 1.0
    if fits(hi):
        return hi, peak_sram(zoo.reference_cnn(width=hi)).peak_sram_bytes
    if not fits(lo):
        raise ValueError(f"no width fits {budget} bytes")
    for _ in range(iters):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return lo, peak_sram(zoo.reference_cnn(width=lo)).peak_sram_bytes


def channels(net) -> str:
    return "-".join(str(m.out_channels) for m in net.modules() if isinstance(m, torch.nn.Conv2d))


def run_one(method: str, fraction: float, budget: float, seed: int, width: float, args) -> dict:
    pl.seed_everything(seed, workers=True, verbose=False)
    net = zoo.reference_cnn(width=width)
    model = ImageClassifier(net, lr=args.lr, weight_decay=args.weight_decay, input_shape=INPUT)
    dm = FashionMNISTDataModule(batch_size=args.batch_size, train_subset=args.train_subset, val_size=args.val_size,
                                seed=seed)
    callbacks = []
    cb = None
    if method == "ours":
        cb = MCUPruneCallback(board=BOARD, budgets={"sram": int(budget)}, module="net")
        callbacks.append(cb)
    trainer = plain_trainer(args.epochs, callbacks)
    t = time.perf_counter()
    trainer.fit(model, datamodule=dm)
    fit_s = time.perf_counter() - t
    t = time.perf_counter()
    acc = trainer.test(model, datamodule=dm, verbose=False)[0]["test_acc"]
    test_s = time.perf_counter() - t
    rep = peak_sram(model.net)
    sram = rep.peak_sram_bytes
    if cb is not None:
        if cb.report is None:
            raise RuntimeError("MCUPruneCallback.report is None after fit")
        if cb.report.peak_sram_bytes != sram:
            console.print(f"[yellow]note: callback.report.peak_sram_bytes={cb.report.peak_sram_bytes} but "
                          f"analyze(final net)={sram}[/]")
        sram = cb.report.peak_sram_bytes
    return {"method": method, "fraction": fraction, "budget_bytes": int(budget), "seed": seed, "width": round(width, 6),
            "train_subset": args.train_subset, "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
            "test_acc": float(acc), "peak_sram_bytes": int(sram), "sram_pct_of_budget": 100.0 * sram / budget,
            "params": int(rep.params), "macs": int(rep.macs), "fit_s": round(fit_s, 2), "test_s": round(test_s, 2),
            "channels": channels(model.net), "finished_utc": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")}


def load_rows(args) -> list[dict]:
    if not CSV.exists():
        return []
    rows = []
    with CSV.open() as f:
        for r in csv.DictReader(f):
            same = (int(r["train_subset"]) == args.train_subset and int(r["epochs"]) == args.epochs
                    and int(r["batch_size"]) == args.batch_size and float(r["lr"]) == args.lr)
            if same:
                for k in ("fraction", "width", "test_acc", "sram_pct_of_budget", "fit_s", "test_s", "lr"):
                    r[k] = float(r[k])
                for k in ("budget_bytes", "seed", "peak_sram_bytes", "params", "macs", "train_subset", "epochs",
                          "batch_size"):
                    r[k] = int(r[k])
                rows.append(r)
    return rows


def ms(vals, scale=1.0, fmt="{:.2f}"):
    vals = [v * scale for v in vals]
    if not vals:
        return "n/a"
    sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
    return f"{fmt.format(statistics.mean(vals))} ± {fmt.format(sd)}"


def frac_name(f: float) -> str:
    return "dense" if f == 1.0 else f"1/{round(1 / f)}"


def plot(rows, dense_peak) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.5))
    styles = {"ours": ("o-", "MCUPruneCallback (ours)"), "uniform": ("s--", "uniform width scaling"),
              "dense": ("*", "dense reference CNN")}
    for method, (st, label) in styles.items():
        xs, ys, xe, ye = [], [], [], []
        for f in sorted({r["fraction"] for r in rows if r["method"] == method}):
            rs = [r for r in rows if r["method"] == method and r["fraction"] == f]
            s = [r["peak_sram_bytes"] / 1024 for r in rs]
            a = [100 * r["test_acc"] for r in rs]
            xs.append(statistics.mean(s)); ys.append(statistics.mean(a))
            xe.append(statistics.stdev(s) if len(s) > 1 else 0); ye.append(statistics.stdev(a) if len(a) > 1 else 0)
        if xs:
            ax.errorbar(xs, ys, xerr=xe, yerr=ye, fmt=st, capsize=3, label=label, markersize=8 if method == "dense" else 5)
    for f in sorted({r["fraction"] for r in rows if r["method"] != "dense"}):
        ax.axvline(dense_peak * f / 1024, color="grey", lw=0.6, ls=":")
        ax.text(dense_peak * f / 1024, ax.get_ylim()[0], f" {frac_name(f)}", color="grey", fontsize=8, va="bottom")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("peak SRAM (KiB, int8, mps2-an386), log scale; dotted: budgets")
    ax.set_ylabel("test accuracy (%), 10k test images")
    ax.set_title("Fashion-MNIST, reference CNN: accuracy vs peak SRAM\n(mean ± std over seeds)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    save_figure(fig, PNG, dpi=120)


def markdown(rows, dense_peak, args, fractions, seeds) -> str:
    lines = ["## Fashion-MNIST under a peak-SRAM budget: ours vs uniform width scaling (issue 3)", "",
             "`benchmarks/fashion_mnist_sram.py`: the reference CNN (`zoo.reference_cnn()`, four 3x3 convs 32-64-128-128 "
             f"with BN, two max-pools, GAP, linear) on board `{BOARD}`; dense peak SRAM {dense_peak} B "
             f"({dense_peak / 1024:.1f} KiB). Budgets 1/2, 1/4, 1/8 of it. **ours**: the reference CNN trained with "
             "`MCUPruneCallback(board, budgets={\"sram\": B})` (defaults: warm-up 0.1, hardening at 0.6 of the run); "
             "**uniform**: `zoo.reference_cnn(width=w)` with the largest w (bisection) whose peak SRAM <= B, "
             "trained plainly; **dense**: the unpruned network. All with the same data, Adam "
             f"(lr {args.lr}, cosine schedule over the run), seeds {', '.join(map(str, seeds))}: "
             f"**{args.train_subset} training images** (seeded subset of the 60k), **{args.epochs} epochs**, "
             f"batch {args.batch_size}, no validation during training; test accuracy on the full 10k test set. "
             "Short runs chosen so the 21 runs fit in ~40-50 min on a 2-core CPU shared with other jobs (sum of fit + test "
             f"times of these runs: {sum(r['fit_s'] + r['test_s'] for r in rows) / 60:.0f} min): absolute accuracies "
             "are well below what full training reaches. Per-run figures: `benchmarks/results/fashion_mnist_sram.csv`; "
             "plot: `benchmarks/results/fashion_mnist_sram.png`.", ""]
    dense = [r for r in rows if r["method"] == "dense"]
    if dense:
        lines += [f"Dense reference CNN: test accuracy {ms([r['test_acc'] for r in dense], 100)} % "
                  f"(n={len(dense)}), peak SRAM {dense_peak} B, fit {ms([r['fit_s'] for r in dense], fmt='{:.0f}')} s.", ""]
    verdict = []
    sram_ok = True
    for f in fractions:
        budget = int(dense_peak * f)
        o = sorted([r for r in rows if r["method"] == "ours" and r["fraction"] == f], key=lambda r: r["seed"])
        u = sorted([r for r in rows if r["method"] == "uniform" and r["fraction"] == f], key=lambda r: r["seed"])
        lines += [f"### Budget {frac_name(f)} of dense peak: {budget} B ({budget / 1024:.2f} KiB)", "",
                  "| method | test accuracy (%) | vs uniform (pp) | final peak SRAM (B) | % of budget | channels (convs) | fit wall time (s) | n |",
                  "|---|---|---|---|---|---|---|---|"]
        diff = None
        paired = {r["seed"]: r for r in u}
        d = [100 * (r["test_acc"] - paired[r["seed"]]["test_acc"]) for r in o if r["seed"] in paired]
        if d:
            diff = statistics.mean(d)
        for name, rs in (("ours", o), ("uniform", u)):
            if not rs:
                lines.append(f"| {name} | not run | | | | | | 0 |")
                continue
            pct = [r["sram_pct_of_budget"] for r in rs]
            vs = (f"{ms(d)}" if name == "ours" and d else ("—" if name == "uniform" else "n/a"))
            label = name if name == "ours" else f"{name} (w={rs[0]['width']:.4f})"
            lines.append(f"| {label} | "
                         f"{ms([r['test_acc'] for r in rs], 100)} | {vs} | "
                         f"{ms([r['peak_sram_bytes'] for r in rs], fmt='{:.0f}')} | "
                         f"{min(pct):.2f}–{max(pct):.2f} | {', '.join(sorted({r['channels'] for r in rs}))} | "
                         f"{ms([r['fit_s'] for r in rs], fmt='{:.0f}')} | {len(rs)} |")
        lines.append("")
        if o:
            worst = max(r["sram_pct_of_budget"] for r in o)
            best = min(r["sram_pct_of_budget"] for r in o)
            ok = worst <= 100.0 and best >= 98.0
            sram_ok &= ok
        verdict.append((f, diff, len(o), len(u)))
    # verdict
    lines += ["### Verdict against the targets", ""]
    complete = all(n_o == len(seeds) and n_u == len(seeds) for _, _, n_o, n_u in verdict)
    if not complete:
        lines.append("**Incomplete**: not every (budget, seed) pair ran; figures above cover the runs that finished.")
    better = [f for f, d, _, _ in verdict if d is not None and d > 0]
    worse = [f for f, d, _, _ in verdict if d is not None and d <= 0]
    wins = {}
    for f in fractions:
        u = {r["seed"]: r["test_acc"] for r in rows if r["method"] == "uniform" and r["fraction"] == f}
        o = [(r["test_acc"], u[r["seed"]]) for r in rows if r["method"] == "ours" and r["fraction"] == f and r["seed"] in u]
        wins[f] = (sum(a > b for a, b in o), len(o))
    lines.append(f"- Ours more accurate than uniform at every budget (mean of paired differences): "
                 f"**{'met' if not worse and better else 'NOT met'}** — "
                 + "; ".join((f"{frac_name(f)}: {d:+.2f} pp" if d is not None else f"{frac_name(f)}: n/a")
                             + f" (ours better in {wins[f][0]}/{wins[f][1]} seeds)" for f, d, _, _ in verdict) + ".")
    d8 = next((d for f, d, _, _ in verdict if abs(f - 1 / 8) < 1e-9), None)
    lines.append(f"- At least +1 pp at 1/8: **{'met' if d8 is not None and d8 >= 1.0 else 'NOT met'}**"
                 f" ({'n/a' if d8 is None else f'{d8:+.2f} pp'}).")
    pcts = [r["sram_pct_of_budget"] for r in rows if r["method"] == "ours"]
    if pcts:
        lines.append(f"- Final SRAM within 2 % under the budget (98–100 % of it) in every run of ours: "
                     f"**{'met' if sram_ok else 'NOT met'}** (range {min(pcts):.2f}–{max(pcts):.2f} % of budget; "
                     f"never over: {'yes' if max(pcts) <= 100 else 'NO'}).")
    lines.append("- Caveat: 3 seeds of short runs (6k images x 3 epochs); differences smaller than the seed std "
                 "(e.g. at 1/2) are not significant. Ours' fit wall time is longer than uniform's at the same budget "
                 "because it starts from the dense network; see the pruning-overhead section for the comparison "
                 "with dense training.")
    return "\n".join(lines)


def table(rows) -> Table:
    t = Table(title="fashion-mnist-sram: finished runs")
    for c in ("method", "budget", "seed", "width", "test acc %", "peak SRAM B", "% budget", "channels", "fit s"):
        t.add_column(c, justify="left" if c in ("method", "channels") else "right")
    for r in rows:
        t.add_row(r["method"], frac_name(r["fraction"]), str(r["seed"]), f"{r['width']:.4f}", f"{100 * r['test_acc']:.2f}",
                  str(r["peak_sram_bytes"]), f"{r['sram_pct_of_budget']:.2f}", r["channels"], f"{r['fit_s']:.0f}")
    return t


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--train-subset", type=int, default=6000, help="training images (seeded subset of the 60k)")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--val-size", type=int, default=5000, help="held out of the 60k (not used for training)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--fractions", type=float, nargs="+", default=[1 / 2, 1 / 4, 1 / 8])
    p.add_argument("--only", choices=["ours", "uniform", "dense"], nargs="+", default=["dense", "ours", "uniform"])
    p.add_argument("--no-write", action="store_true", help="do not write BENCHMARKS.md / the PNG")
    args = p.parse_args()
    torch.set_num_threads(2)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*LightningModule.*has parameters that were not used.*")

    dense_peak = peak_sram(zoo.reference_cnn()).peak_sram_bytes
    widths = {f: uniform_width(dense_peak * f) for f in args.fractions}
    console.print(f"dense peak SRAM {dense_peak} B on {BOARD}; train_subset={args.train_subset}, epochs={args.epochs}, "
                  f"batch={args.batch_size}, lr={args.lr}")
    for f, (w, s) in widths.items():
        console.print(f"  budget {frac_name(f)} = {int(dense_peak * f)} B: uniform width {w:.4f} "
                      f"(channels {channels(zoo.reference_cnn(width=w))}), peak {s} B")
    rows = load_rows(args)
    done = {(r["method"], r["fraction"], r["seed"]) for r in rows}
    plan = []
    for seed in args.seeds:
        if "dense" in args.only:
            plan.append(("dense", 1.0, seed))
        for f in args.fractions:
            for m in ("ours", "uniform"):
                if m in args.only:
                    plan.append((m, f, seed))
    todo = [k for k in plan if k not in done]
    console.print(f"{len(plan) - len(todo)} of {len(plan)} runs already in {CSV.name}; {len(todo)} to run")
    t0 = time.perf_counter()
    for i, (m, f, seed) in enumerate(todo):
        budget = dense_peak * f
        width = 1.0 if m in ("dense", "ours") else widths[f][0]
        console.print(f"[bold]run {i + 1}/{len(todo)}[/]: {m} budget {frac_name(f)} seed {seed} "
                      f"(elapsed {time.perf_counter() - t0:.0f} s)")
        row = run_one(m, f, budget, seed, width, args)
        append_csv_row(CSV, FIELDS, row)
        rows.append(row)
        console.print(table(rows))
    rows = [r for r in rows if (r["method"], r["fraction"], r["seed"]) in set(plan)]
    if not args.no_write:
        plot(rows, dense_peak)
        md = markdown(rows, dense_peak, args, args.fractions, args.seeds)
        write_section("fashion-mnist-sram", md)
        console.print(md)


if __name__ == "__main__":
    main()
