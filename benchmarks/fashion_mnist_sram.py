"""Issue 3: accuracy under a peak-SRAM budget on Fashion-MNIST, MCUPruneCallback vs uniform width scaling.

The reference CNN (`zoo.reference_cnn()`) on board mps2-an386. For SRAM budgets of 1/2, 1/4, 1/8 of the
dense network's peak SRAM and seeds 0, 1, 2, with the same data, epochs, optimiser (Adam, cosine LR) and seed:
  ours     the reference CNN trained with MCUPruneCallback(board, budgets={"sram": B}) (defaults otherwise)
  uniform  zoo.reference_cnn(width=w), the largest w (bisection) whose peak SRAM is <= B, trained plainly
  dense    the unpruned reference CNN, once per seed
Test accuracy on the full 10k test set. Each finished run is appended to a CSV in benchmarks/results/;
re-running skips runs already there (same settings, same variant):
  fashion_mnist_sram.csv          dense, uniform, and ours as it was before issue 15 (the issue-3 record)
  fashion_mnist_sram_issue15.csv  ours with the library defaults of the time (variant "default")
  fashion_mnist_sram_variants.csv ours with callback options (`--variant keep`, `--option reset_optimizer=false`)
Rows of ours record the variant and the options as the callback resolved them (reset_optimizer's default changed
after issue 15: rows of the same variant name are told apart by it).

Targets: ours more accurate than uniform at every budget, >= +1 pp at 1/8, final SRAM within 2% under the budget.
Run: python benchmarks/fashion_mnist_sram.py [--train-subset 6000 --epochs 3 --batch-size 128]
     python benchmarks/fashion_mnist_sram.py --only ours --variant keep --fractions 0.25 0.125
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
CSV = RESULTS / "fashion_mnist_sram.csv"  # dense, uniform, ours before issue 15
CSV_NOW = RESULTS / "fashion_mnist_sram_issue15.csv"  # ours, the defaults of the time (variant "default")
CSV_VARIANTS = RESULTS / "fashion_mnist_sram_variants.csv"  # ours with callback options
RESET, KEEP = "reset_optimizer=True", "reset_optimizer=False"  # series of ours: the current defaults / before
PRE15 = "before-issue-15"  # the variant name of ours' rows in CSV (the defaults of that time)
VARIANTS = {"default": {}, "optreset": {"reset_optimizer": True}, "keep": {"reset_optimizer": False}}  # -> options
PNG = RESULTS / "fashion_mnist_sram.png"
FIELDS = ["method", "fraction", "budget_bytes", "seed", "width", "train_subset", "epochs", "batch_size", "lr",
          "test_acc", "peak_sram_bytes", "sram_pct_of_budget", "params", "macs", "fit_s", "test_s", "channels",
          "finished_utc"]
FIELDS_NOW = FIELDS + ["variant", "options"]
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


def parse_options(items: list[str]) -> dict:
    """["reset_optimizer=true", "prune_end=0.3"] -> {"reset_optimizer": True, "prune_end": 0.3}."""
    import ast
    out = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep:
            raise SystemExit(f"--option {item!r}: expected KEY=VALUE")
        low = text.strip().lower()
        if low in ("true", "false", "none"):
            out[key.strip()] = {"true": True, "false": False, "none": None}[low]
        else:
            try:
                out[key.strip()] = ast.literal_eval(text)
            except (ValueError, SyntaxError):
                out[key.strip()] = text
    return out


def options_text(options: dict) -> str:
    return " ".join(f"{k}={v!r}" for k, v in sorted(options.items()))


def run_one(method: str, fraction: float, budget: float, seed: int, width: float, args, options: dict | None = None,
            budgets: dict | None = None) -> dict:
    """One training run. ours: MCUPruneCallback(board, budgets or {"sram": budget}, module="net", **options)."""
    pl.seed_everything(seed, workers=True, verbose=False)
    net = zoo.reference_cnn(width=width)
    model = ImageClassifier(net, lr=args.lr, weight_decay=args.weight_decay, input_shape=INPUT)
    dm = FashionMNISTDataModule(batch_size=args.batch_size, train_subset=args.train_subset, val_size=args.val_size,
                                seed=seed)
    callbacks = []
    cb = None
    if method == "ours":
        cb = MCUPruneCallback(board=BOARD, budgets=budgets or {"sram": int(budget)}, module="net",
                              **{"export": False, **(options or {})})  # no export folders in the working directory
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
            "channels": channels(model.net), "finished_utc": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
            "latency_ms": round(float(rep.latency_ms), 3),
            # the options as the callback resolved them (a default may depend on the budgets and the library version)
            "options": options_text({**(options or {}), "reset_optimizer": cb.reset_optimizer}) if cb is not None else ""}


def load_rows(args) -> list[dict]:
    """Every finished run with the same recipe, each with a "variant": "" for dense/uniform, PRE15 for ours' rows in
    CSV, else the variant recorded in the row."""
    rows = []
    for path in (CSV, CSV_NOW, CSV_VARIANTS):
        if not path.exists():
            continue
        with path.open() as f:
            for r in csv.DictReader(f):
                same = (int(r["train_subset"]) == args.train_subset and int(r["epochs"]) == args.epochs
                        and int(r["batch_size"]) == args.batch_size and float(r["lr"]) == args.lr)
                if not same:
                    continue
                for k in ("fraction", "width", "test_acc", "sram_pct_of_budget", "fit_s", "test_s", "lr"):
                    r[k] = float(r[k])
                for k in ("budget_bytes", "seed", "peak_sram_bytes", "params", "macs", "train_subset", "epochs",
                          "batch_size"):
                    r[k] = int(r[k])
                if path == CSV:
                    r["variant"], r["options"] = (PRE15, "") if r["method"] == "ours" else ("", "")
                rows.append(r)
    return rows


def csv_for(method: str, variant: str) -> tuple[Path, list]:
    if method != "ours":
        return CSV, FIELDS
    return (CSV_NOW if variant == "default" else CSV_VARIANTS), FIELDS_NOW


def ms(vals, scale=1.0, fmt="{:.2f}"):
    vals = [v * scale for v in vals]
    if not vals:
        return "n/a"
    sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
    return f"{fmt.format(statistics.mean(vals))} ± {fmt.format(sd)}"


def frac_name(f: float) -> str:
    return "dense" if f == 1.0 else f"1/{round(1 / f)}"


SERIES = [  # (method, series, label in tables and plot, plot style)
    ("ours", RESET, "ours, current defaults (reset_optimizer=True)", "o-"),
    ("ours", KEEP, "ours, reset_optimizer=False (issue 15's defaults before)", "^-"),
    ("ours", PRE15, "ours before issue 15", "o:"),
    ("uniform", "", "uniform width scaling", "s--"),
    ("dense", "", "dense reference CNN", "*"),
]


def series(r: dict) -> str:
    """Which series a row belongs to: "" (dense, uniform), PRE15, "earlier" (the issue-15 defaults run with earlier
    code), or the options the callback ran with (RESET: the current defaults, KEEP: issue 15's defaults before)."""
    if r["method"] != "ours":
        return ""
    if r["variant"] in (PRE15, "default-earlier"):
        return "earlier" if r["variant"] == "default-earlier" else PRE15
    return r.get("options", "")


def select(rows, method, name, fraction=None) -> list[dict]:
    """Rows of one series (the latest per seed), sorted by seed."""
    by = {r["seed"]: r for r in rows if r["method"] == method and series(r) == name
          and (fraction is None or abs(r["fraction"] - fraction) < 1e-9)}
    return [by[k] for k in sorted(by)]


def plot(rows, dense_peak) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method, variant, label, st in SERIES:
        xs, ys, xe, ye = [], [], [], []
        for f in sorted({r["fraction"] for r in select(rows, method, variant)}):
            rs = select(rows, method, variant, f)
            s = [r["peak_sram_bytes"] / 1024 for r in rs]
            a = [100 * r["test_acc"] for r in rs]
            xs.append(statistics.mean(s)); ys.append(statistics.mean(a))
            xe.append(statistics.stdev(s) if len(s) > 1 else 0); ye.append(statistics.stdev(a) if len(a) > 1 else 0)
        if xs:
            ax.errorbar(xs, ys, xerr=xe, yerr=ye, fmt=st, capsize=3, label=label, markersize=8 if method == "dense" else 5,
                        alpha=0.6 if variant in (PRE15, KEEP) else 1.0)
    for f in sorted({r["fraction"] for r in rows if r["method"] != "dense"}):
        ax.axvline(dense_peak * f / 1024, color="grey", lw=0.6, ls=":")
        ax.text(dense_peak * f / 1024, ax.get_ylim()[0], f" {frac_name(f)}", color="grey", fontsize=8, va="bottom")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("peak SRAM (KiB, int8, mps2-an386), log scale; dotted: budgets")
    ax.set_ylabel("test accuracy (%), 10k test images")
    ax.set_title("Fashion-MNIST, reference CNN: accuracy vs peak SRAM\n(mean ± std over seeds)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    save_figure(fig, PNG, dpi=120)


def paired(a: list[dict], b: list[dict]) -> list[float]:
    """Per-seed differences a - b in pp, over the seeds both have."""
    bb = {r["seed"]: r["test_acc"] for r in b}
    return [100 * (r["test_acc"] - bb[r["seed"]]) for r in a if r["seed"] in bb]


def markdown(rows, dense_peak, args) -> str:
    fractions = sorted({r["fraction"] for r in rows if r["method"] != "dense"}, reverse=True)
    seeds = sorted({r["seed"] for r in rows})
    fit_min = sum(r["fit_s"] + r["test_s"] for r in rows) / 60
    lines = ["## Fashion-MNIST under a peak-SRAM budget: ours vs uniform width scaling (issue 3)", "",
             "`benchmarks/fashion_mnist_sram.py`: the reference CNN (`zoo.reference_cnn()`, four 3x3 convs 32-64-128-128 "
             f"with BN, two max-pools, GAP, linear) on board `{BOARD}`; dense peak SRAM {dense_peak} B "
             f"({dense_peak / 1024:.1f} KiB). Budgets {', '.join(frac_name(f) for f in fractions)} of it. "
             "**ours, current defaults**: the reference CNN trained with `MCUPruneCallback(board, budgets={\"sram\": B})` "
             "and the library's defaults (under an SRAM budget alone: warm-up 0.1, hardening at 0.6 of the run; "
             "`reset_optimizer=True`, the optimiser's state cleared at hardening, on by default since issue 15's follow-up); "
             "**ours, reset_optimizer=False**: the same run keeping the optimiser's state, issue 15's defaults before that "
             "(a pair differs only after hardening). Rows of ours record the options as the callback resolved them "
             "(`benchmarks/results/fashion_mnist_sram_issue15.csv`: `--variant default` when reset_optimizer was off by "
             "default; `benchmarks/results/fashion_mnist_sram_variants.csv`: `--variant optreset` and other options). "
             "**ours before issue 15**: the method and defaults as they were before issue 15 (issue 3's runs, for "
             "comparison); rows with other options are marked \"not a default\". "
             "**uniform**: `zoo.reference_cnn(width=w)` with the largest w (bisection) whose peak SRAM <= B, "
             "trained plainly; **dense**: the unpruned network (uniform, dense and ours before issue 15: "
             "`benchmarks/results/fashion_mnist_sram.csv`). All with the same data, Adam "
             f"(lr {args.lr}, cosine schedule over the run), seeds {', '.join(map(str, seeds))}: "
             f"**{args.train_subset} training images** (seeded subset of the 60k), **{args.epochs} epochs**, "
             f"batch {args.batch_size}, no validation during training; test accuracy on the full 10k test set. "
             f"Short runs for a 2-core CPU shared with other jobs (sum of fit + test times of the runs below: {fit_min:.0f} "
             "min; wall times are under that load, not clean speed figures): absolute accuracies are well below what full "
             "training reaches. Plot: `benchmarks/results/fashion_mnist_sram.png`.", ""]
    extra = sorted({series(r) for r in rows} - {s_ for _, s_, _, _ in SERIES} - {"earlier"})  # other options
    dense = select(rows, "dense", "")
    if dense:
        lines += [f"Dense reference CNN: test accuracy {ms([r['test_acc'] for r in dense], 100)} % "
                  f"(n={len(dense)}), peak SRAM {dense_peak} B, fit {ms([r['fit_s'] for r in dense], fmt='{:.0f}')} s.", ""]
    verdict = []
    for f in fractions:
        budget = int(dense_peak * f)
        u = select(rows, "uniform", "", f)
        lines += [f"### Budget {frac_name(f)} of dense peak: {budget} B ({budget / 1024:.2f} KiB)", "",
                  "| method | test accuracy (%) | vs uniform, paired (pp) | final peak SRAM (B) | % of budget | channels (convs) | fit wall time (s) | n |",
                  "|---|---|---|---|---|---|---|---|"]
        for method, variant, label, _ in SERIES[:4]:
            rs = select(rows, method, variant, f)
            if not rs:
                lines.append(f"| {label} | not run | | | | | | 0 |")
                continue
            d = paired(rs, u)
            pct = [r["sram_pct_of_budget"] for r in rs]
            vs = "—" if method == "uniform" else (ms(d) if d else "n/a")
            if method == "uniform":
                label = f"{label} (w={rs[0]['width']:.4f})"
            lines.append(f"| {label} | {ms([r['test_acc'] for r in rs], 100)} | {vs} | "
                         f"{ms([r['peak_sram_bytes'] for r in rs], fmt='{:.0f}')} | {min(pct):.2f}–{max(pct):.2f} | "
                         f"{', '.join(sorted({r['channels'] for r in rs}))} | {ms([r['fit_s'] for r in rs], fmt='{:.0f}')} | "
                         f"{len(rs)} |")
        for other in extra:
            rs = select(rows, "ours", other, f)
            if rs:
                d = paired(rs, select(rows, "ours", RESET, f))
                lines.append(f"| ours, {other} (not a default) | {ms([r['test_acc'] for r in rs], 100)} | "
                             f"{ms(paired(rs, u))} ({ms(d)} vs current defaults) | "
                             f"{ms([r['peak_sram_bytes'] for r in rs], fmt='{:.0f}')} | "
                             f"{min(r['sram_pct_of_budget'] for r in rs):.2f}–{max(r['sram_pct_of_budget'] for r in rs):.2f} | "
                             f"{', '.join(sorted({r['channels'] for r in rs}))} | {ms([r['fit_s'] for r in rs], fmt='{:.0f}')} | "
                             f"{len(rs)} |")
        lines.append("")
        verdict.append((f, select(rows, "ours", RESET, f), u))
    # reset_optimizer against the defaults, paired per seed
    lines += ["### `reset_optimizer=True` against `False`, paired (same seed, same budget, otherwise the same run)", "",
              "| budget | seed | False (%) | True (%) | True − False (pp) | uniform (%) | before issue 15 (%) | channels: False / True |",
              "|---|---|---|---|---|---|---|---|"]
    diffs = []
    for f in fractions:
        o = {r["seed"]: r for r in select(rows, "ours", KEEP, f)}
        x = {r["seed"]: r for r in select(rows, "ours", RESET, f)}
        u = {r["seed"]: r for r in select(rows, "uniform", "", f)}
        pre = {r["seed"]: r for r in select(rows, "ours", PRE15, f)}
        for seed in sorted(set(o) | set(x)):
            acc = lambda d: f"{100 * d[seed]['test_acc']:.2f}" if seed in d else "not run"  # noqa: E731
            diff = "n/a"
            if seed in o and seed in x:
                diffs.append((f, 100 * (x[seed]["test_acc"] - o[seed]["test_acc"])))
                diff = f"{diffs[-1][1]:+.2f}"
            ch = f"{o[seed]['channels'] if seed in o else '-'} / {x[seed]['channels'] if seed in x else '-'}"
            lines.append(f"| {frac_name(f)} | {seed} | {acc(o)} | {acc(x)} | {diff} | {acc(u)} | {acc(pre)} | {ch} |")
    lines.append("")
    if diffs:
        per = "; ".join(f"{frac_name(f)}: {statistics.mean([d for g, d in diffs if g == f]):+.2f} pp "
                        f"({sum(d > 0 for g, d in diffs if g == f)}/{sum(1 for g, _ in diffs if g == f)} seeds better)"
                        for f in fractions if any(g == f for g, _ in diffs))
        lines += [f"Mean paired difference True − False: {per}; over all {len(diffs)} pairs "
                  f"{statistics.mean(d for _, d in diffs):+.2f} pp, reset better in {sum(d > 0 for _, d in diffs)}.", ""]
    # verdict on the current defaults
    lines += ["### Verdict against the targets (ours with the current defaults: reset_optimizer=True)", ""]
    if any(len(o) < len(seeds) or len(u) < len(seeds) for _, o, u in verdict):
        lines.append("**Incomplete**: not every (budget, seed) pair ran with the current defaults; figures cover the "
                     "runs that finished.")
    parts, worse = [], False
    for f, o, u in verdict:
        d = paired(o, u)
        if d:
            worse |= statistics.mean(d) <= 0
            parts.append(f"{frac_name(f)}: {statistics.mean(d):+.2f} pp (ours better in {sum(x > 0 for x in d)}/{len(d)} seeds)")
        else:
            parts.append(f"{frac_name(f)}: n/a")
    lines.append(f"- Ours more accurate than uniform at every budget (mean of paired differences): "
                 f"**{'met' if not worse and parts else 'NOT met'}** — " + "; ".join(parts) + ".")
    d8 = next((paired(o, u) for f, o, u in verdict if abs(f - 1 / 8) < 1e-9), [])
    lines.append(f"- At least +1 pp at 1/8: **{'met' if d8 and statistics.mean(d8) >= 1.0 else 'NOT met'}**"
                 f" ({f'{statistics.mean(d8):+.2f} pp' if d8 else 'n/a'}).")
    pcts = [r["sram_pct_of_budget"] for r in rows if r["method"] == "ours"]
    if pcts:
        ok = max(pcts) <= 100.0 and min(pcts) >= 98.0
        lines.append(f"- Final SRAM within 2 % under the budget (98–100 % of it) in every run of ours (all variants): "
                     f"**{'met' if ok else 'NOT met'}** (range {min(pcts):.2f}–{max(pcts):.2f} % of budget; "
                     f"never over: {'yes' if max(pcts) <= 100 else 'NO'}).")
    lines.append("- Caveat: 3 seeds of short runs (6k images x 3 epochs); differences smaller than the seed std "
                 "(e.g. at 1/2) are not significant. Ours' fit wall time is longer than uniform's at the same budget "
                 "because it starts from the dense network; see the pruning-overhead section for the comparison "
                 "with dense training.")
    return "\n".join(lines)


def table(rows) -> Table:
    t = Table(title="fashion-mnist-sram: finished runs")
    for c in ("method", "variant", "budget", "seed", "width", "test acc %", "peak SRAM B", "% budget", "channels", "fit s"):
        t.add_column(c, justify="left" if c in ("method", "channels") else "right")
    for r in rows:
        t.add_row(r["method"], r["variant"], frac_name(r["fraction"]), str(r["seed"]), f"{r['width']:.4f}", f"{100 * r['test_acc']:.2f}",
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
    p.add_argument("--variant", default="default",
                   help="ours' callback options by name (" + ", ".join(f"{k}: {options_text(v) or 'defaults'}" for k, v in VARIANTS.items()) + "); "
                        "with --option, the name recorded for those options")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="an MCUPruneCallback option for ours (repeatable), e.g. reset_optimizer=true")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--no-write", action="store_true", help="do not write BENCHMARKS.md / the PNG")
    p.add_argument("--report-only", action="store_true", help="run nothing: write the section from the rows there")
    args = p.parse_args()
    options = dict(VARIANTS.get(args.variant, {}))
    options.update(parse_options(args.option))
    if args.variant not in VARIANTS and not args.option:
        raise SystemExit(f"unknown variant {args.variant!r}: one of {', '.join(VARIANTS)}, or give --option")
    variant = args.variant
    named = [k for k, v in VARIANTS.items() if v == options]
    if args.option and variant in VARIANTS and options != VARIANTS[variant]:
        # options given by themselves: the named variant with exactly these options, else named by the options
        variant = named[0] if named else options_text(options).replace(" ", ",")
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*LightningModule.*has parameters that were not used.*")

    dense_peak = peak_sram(zoo.reference_cnn()).peak_sram_bytes
    widths = {f: uniform_width(dense_peak * f) for f in args.fractions}
    console.print(f"dense peak SRAM {dense_peak} B on {BOARD}; train_subset={args.train_subset}, epochs={args.epochs}, "
                  f"batch={args.batch_size}, lr={args.lr}; ours: variant {variant} ({options_text(options) or 'defaults'})")
    for f, (w, s) in widths.items():
        console.print(f"  budget {frac_name(f)} = {int(dense_peak * f)} B: uniform width {w:.4f} "
                      f"(channels {channels(zoo.reference_cnn(width=w))}), peak {s} B")
    rows = load_rows(args)
    # a run of ours is done when a row ran with the same options as the callback resolves them now (a default such
    # as reset_optimizer's may have changed since a row of the same variant name ran)
    resolved = options_text({**options, "reset_optimizer": MCUPruneCallback(
        BOARD, {"sram": dense_peak}, verbose=False, export=False, **options).reset_optimizer})
    done = {(r["method"], "" if r["method"] != "ours" or r["variant"] in (PRE15, "default-earlier") else r["options"],
             r["fraction"], r["seed"]) for r in rows}
    plan = []
    for seed in args.seeds:
        if "dense" in args.only:
            plan.append(("dense", "", 1.0, seed))
        for f in args.fractions:
            for m in ("ours", "uniform"):
                if m in args.only:
                    plan.append((m, variant if m == "ours" else "", f, seed))
    todo = [k for k in plan if (k[0], resolved if k[0] == "ours" else "", k[2], k[3]) not in done]
    if args.report_only:
        todo = []
    console.print(f"{len(plan) - len(todo)} of {len(plan)} runs already done; {len(todo)} to run")
    t0 = time.perf_counter()
    for i, (m, v, f, seed) in enumerate(todo):
        budget = dense_peak * f
        width = 1.0 if m in ("dense", "ours") else widths[f][0]
        console.print(f"[bold]run {i + 1}/{len(todo)}[/]: {m} {v} budget {frac_name(f)} seed {seed} "
                      f"(elapsed {time.perf_counter() - t0:.0f} s)")
        row = run_one(m, f, budget, seed, width, args, options=options if m == "ours" else None)
        row.update(variant=v)
        path, fields = csv_for(m, v)
        append_csv_row(path, fields, {k: row[k] for k in fields})
        rows.append(row)
        console.print(table(rows))
    if not args.no_write:
        plot(rows, dense_peak)
        md = markdown(rows, dense_peak, args)
        write_section("fashion-mnist-sram", md)
        console.print(md)


if __name__ == "__main__":
    main()
