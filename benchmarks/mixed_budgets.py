"""Mixed budgets (peak SRAM and latency together) on Fashion-MNIST: ours with and without reset_optimizer, and uniform.

fashion_mnist_sram.py's recipe (the reference CNN on mps2-an386, 6k training images x 3 epochs, Adam lr 2e-3 with a
cosine schedule, batch 128, test on the 10k test set) under two budgets at once: a fraction of the dense network's
peak SRAM and a fraction of its latency (the board's calibrated latency model). Per cell and seed:
  keep      MCUPruneCallback(board, {"sram": S, "latency_ms": L}, reset_optimizer=False), other options the library
            defaults (a latency budget is given, so the compute-budget schedule: warm-up 0.02, hardening at 0.15)
  optreset  the same with reset_optimizer=True (the optimiser's state cleared at hardening, weights kept)
  uniform   zoo.reference_cnn(width=w), the largest w (bisection) that meets both budgets, trained plainly
Rows: benchmarks/results/mixed_budgets.csv (re-running skips what is there); section "mixed-budgets" of BENCHMARKS.md.

Run: python benchmarks/mixed_budgets.py [--cells 0.25:0.125 0.5:0.25] [--seeds 0 1 2] [--only keep optreset uniform]
"""
from __future__ import annotations

import argparse
import csv
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import append_csv_row, write_section  # noqa: E402
import fashion_mnist_sram as fm  # noqa: E402

from lightning_mcuprune.examples import zoo  # noqa: E402

CSV = fm.RESULTS / "mixed_budgets.csv"
FIELDS = ["method", "variant", "options", "sram_fraction", "latency_fraction", "sram_budget_bytes", "latency_budget_ms",
          "seed", "width", "train_subset", "epochs", "batch_size", "lr", "test_acc", "peak_sram_bytes", "latency_ms",
          "params", "macs", "channels", "fit_s", "test_s", "finished_utc"]
METHODS = {"keep": ("ours", {"reset_optimizer": False}), "optreset": ("ours", {"reset_optimizer": True}),
           "uniform": ("uniform", {})}  # variant -> (method, MCUPruneCallback options)


def cell_name(s: float, lat: float) -> str:
    return f"SRAM {fm.frac_name(s)} + latency {fm.frac_name(lat)}"


def uniform_width(sram: float, latency: float, iters: int = 40) -> float:
    """Largest width w in (0, 1] with zoo.reference_cnn(width=w) within both budgets (bisection)."""
    def fits(w):
        rep = fm.peak_sram(zoo.reference_cnn(width=w))
        return rep.peak_sram_bytes <= sram and rep.latency_ms <= latency
    lo, hi = 1e-3, 1.0
    if fits(hi):
        return hi
    for _ in range(iters):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return lo


def load(args) -> list[dict]:
    if not CSV.exists():
        return []
    out = []
    with CSV.open() as f:
        for r in csv.DictReader(f):
            if (int(r["train_subset"]), int(r["epochs"]), int(r["batch_size"]), float(r["lr"])) != \
                    (args.train_subset, args.epochs, args.batch_size, args.lr):
                continue
            for k in ("sram_fraction", "latency_fraction", "latency_budget_ms", "width", "test_acc", "latency_ms",
                      "fit_s", "test_s"):
                r[k] = float(r[k])
            for k in ("sram_budget_bytes", "seed", "peak_sram_bytes", "params", "macs"):
                r[k] = int(r[k])
            out.append(r)
    return out


def markdown(rows, dense, args) -> str:
    lines = ["## Mixed budgets (peak SRAM + latency): reset_optimizer under both (issue 15)", "",
             "`benchmarks/mixed_budgets.py`: `fashion_mnist_sram.py`'s recipe (reference CNN on `mps2-an386`, "
             f"{args.train_subset} training images x {args.epochs} epochs, batch {args.batch_size}, Adam lr {args.lr} with "
             "a cosine schedule, test on the 10k test set) under an SRAM and a latency budget at once, fractions of the "
             f"dense network's peak SRAM ({dense.peak_sram_bytes} B) and latency ({dense.latency_ms:.0f} ms, the board's "
             "calibrated model). **keep**: `MCUPruneCallback(board, {\"sram\": S, \"latency_ms\": L}, "
             "reset_optimizer=False)`, other options the library defaults (a latency budget is given, so the "
             "compute-budget schedule: warm-up 0.02, hardening at 0.15); **optreset**: the same with "
             "`reset_optimizer=True`; **uniform**: "
             "`zoo.reference_cnn(width=w)`, the largest w within both budgets, trained plainly. Per-run figures: "
             "`benchmarks/results/mixed_budgets.csv`. Wall times were measured on a 2-core machine shared with other "
             "jobs, 1 torch thread: not clean speed figures.", ""]
    cells = sorted({(r["sram_fraction"], r["latency_fraction"]) for r in rows}, key=lambda c: (-c[0], -c[1]))
    for s, lat in cells:
        rs = [r for r in rows if (r["sram_fraction"], r["latency_fraction"]) == (s, lat)]
        by = {(r["variant"], r["seed"]): r for r in rs}
        seeds = sorted({r["seed"] for r in rs})
        lines += [f"### {cell_name(s, lat)}: {rs[0]['sram_budget_bytes']} B, {rs[0]['latency_budget_ms']:.0f} ms", "",
                  "| seed | keep (%) | optreset (%) | optreset − keep (pp) | uniform (%) | keep − uniform (pp) | "
                  "optreset − uniform (pp) | channels keep / optreset / uniform | SRAM B, latency ms (keep) |",
                  "|---|---|---|---|---|---|---|---|---|"]
        d_ro, d_ou, d_ru = [], [], []
        for seed in seeds:
            o, r_, u = by.get(("keep", seed)), by.get(("optreset", seed)), by.get(("uniform", seed))
            acc = lambda x: f"{100 * x['test_acc']:.2f}" if x else "not run"  # noqa: E731

            def diff(a, b, acc_list):
                if a and b:
                    acc_list.append(100 * (a["test_acc"] - b["test_acc"]))
                    return f"{acc_list[-1]:+.2f}"
                return "n/a"
            ch = " / ".join(x["channels"] if x else "-" for x in (o, r_, u))
            res = f"{o['peak_sram_bytes']}, {o['latency_ms']:.0f}" if o else "n/a"
            lines.append(f"| {seed} | {acc(o)} | {acc(r_)} | {diff(r_, o, d_ro)} | {acc(u)} | {diff(o, u, d_ou)} | "
                         f"{diff(r_, u, d_ru)} | {ch} | {res} |")
        mean = lambda d: f"{statistics.mean(d):+.2f} (n={len(d)}, {sum(x > 0 for x in d)} positive)" if d else "n/a"  # noqa: E731
        lines += ["", f"Mean of paired differences: optreset − keep {mean(d_ro)}; keep − uniform {mean(d_ou)}; "
                  f"optreset − uniform {mean(d_ru)}.", ""]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cells", nargs="+", default=["0.25:0.125", "0.5:0.25"],
                   help="SRAM_FRACTION:LATENCY_FRACTION of the dense network's, e.g. 0.25:0.125")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--only", nargs="+", choices=list(METHODS), default=list(METHODS))
    p.add_argument("--train-subset", type=int, default=6000)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--val-size", type=int, default=5000)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-write", action="store_true", help="do not write BENCHMARKS.md")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    dense = fm.peak_sram(zoo.reference_cnn())
    cells = [tuple(float(x) for x in c.split(":")) for c in args.cells]
    rows = load(args)
    done = {(r["variant"], r["sram_fraction"], r["latency_fraction"], r["seed"]) for r in rows}
    t0 = time.perf_counter()
    for seed in args.seeds:
        for s, lat in cells:
            sram_b, lat_b = int(dense.peak_sram_bytes * s), dense.latency_ms * lat
            for name in args.only:
                method, options = METHODS[name]
                variant = name
                if (variant, s, lat, seed) in done:
                    continue
                width = uniform_width(sram_b, lat_b) if method == "uniform" else 1.0
                fm.console.print(f"[bold]{name}[/] {cell_name(s, lat)} seed {seed} (elapsed {time.perf_counter() - t0:.0f} s)")
                row = fm.run_one(method, s, sram_b, seed, width, args, options=options,
                                 budgets={"sram": sram_b, "latency_ms": lat_b} if method == "ours" else None)
                row.update(variant=variant, options=fm.options_text(options), sram_fraction=s, latency_fraction=lat,
                           sram_budget_bytes=sram_b, latency_budget_ms=round(lat_b, 3))
                if row["peak_sram_bytes"] > sram_b or row["latency_ms"] > lat_b + 1e-6:
                    fm.console.print(f"[red]over budget: {row['peak_sram_bytes']} B, {row['latency_ms']} ms[/]")
                append_csv_row(CSV, FIELDS, {k: row[k] for k in FIELDS})
                rows.append(row)
                fm.console.print(f"  test acc {100 * row['test_acc']:.2f} %, channels {row['channels']}, "
                                 f"{row['peak_sram_bytes']} B, {row['latency_ms']:.0f} ms, fit {row['fit_s']:.0f} s")
    if not args.no_write:
        md = markdown(rows, dense, args)
        write_section("mixed-budgets", md)
        fm.console.print(md)


if __name__ == "__main__":
    main()
