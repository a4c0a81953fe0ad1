"""Issue 15: one longer run per task at 1/4 of dense latency, ours vs uniform width, to see whether the
ranking of the short runs (compute_budgets.py) changes with training length.

The same runs as compute_budgets.py's grid (its `run_one`: same data, board mps2-an386, Adam with cosine LR,
ours = MCUPruneCallback defaults, uniform = uniform width within the budget from fresh weights) with about 10x
the epochs: 30 for the Fashion-MNIST nets (6000 images), 120 for DS-CNN. One seed. Default order: ResNet-8
(where ours lost in short runs), MobileNetV2, DS-CNN, reference CNN. Each finished run is appended to
benchmarks/results/long_runs.csv (re-running skips runs already there); then the `long-runs` section of
BENCHMARKS.md is written, with the short runs' means from compute_budgets.csv beside them.

Run: python benchmarks/long_runs.py [--nets resnet8 mbv2 dscnn refcnn] [--factor 10]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import append_csv_row, write_section  # noqa: E402
from compute_budgets import CSV as GRID, FIELDS, NETS, Uniform, load_rows, measure, run_one  # noqa: E402

from rich.console import Console  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
CSV = RESULTS / "long_runs.csv"
KEY, FRACTION = "latency_ms", 0.25
console = Console(width=160)


def cell(rows, net, method, epochs=None):
    return [r for r in rows if r["net"] == net and r["resource"] == KEY and abs(r["fraction"] - FRACTION) < 1e-9
            and r["method"] == method and r["variant"] in ("", "default")
            and (epochs is None or r["epochs"] == epochs)]


def markdown(rows, nets, factor) -> str:
    grid = load_rows(GRID)
    lines = ["## Longer runs: does the ranking change with training length? (issue 15)", "",
             f"`benchmarks/long_runs.py`: compute_budgets.py's runs (board mps2-an386, 1/4 of dense latency, ours = "
             f"`MCUPruneCallback` defaults, uniform = uniform width within the budget from fresh weights, same data and "
             f"Adam/cosine recipe) with {factor}x the epochs of the short runs: {3 * factor} epochs on the 6000 "
             f"Fashion-MNIST images, {12 * factor} epochs for DS-CNN on keyword spotting. One seed (0). Short runs: the "
             f"mean over the seeds in `compute_budgets.csv` (n given). Rows: `benchmarks/results/{CSV.name}`.", "",
             "| network | epochs (long) | ours long (%) | uniform long (%) | ours - uniform, long (pp) | ours - uniform, "
             "short (pp, n) | ranking | channels ours (long) | fit s (ours, uniform) |", "|---|---|---|---|---|---|---|---|---|"]
    finished, missing = [], []
    for net in nets:
        ep = NETS[net]["epochs"] * factor
        o, u = cell(rows, net, "ours", ep), cell(rows, net, "uniform", ep)
        so, su = cell(grid, net, "ours", NETS[net]["epochs"]), cell(grid, net, "uniform", NETS[net]["epochs"])
        pu = {r["seed"]: r["test_acc"] for r in su}
        sd = [100 * (r["test_acc"] - pu[r["seed"]]) for r in so if r["seed"] in pu]
        short = f"{statistics.mean(sd):+.2f} (n={len(sd)})" if sd else "n/a"
        if not (o and u):
            missing.append(f"{NETS[net]['title']} ({'ours' if o else ''}{' and ' if not o and not u else ''}"
                           f"{'uniform' if u else ''}{' finished' if o or u else 'not run'})".replace("( and ", "("))
            if not o and not u:
                continue
        else:
            finished.append(net)
        d = 100 * (o[0]["test_acc"] - u[0]["test_acc"]) if o and u else None
        rank = "n/a" if d is None or not sd else (
            "unchanged" if (d >= 0) == (statistics.mean(sd) >= 0) else ("ours now ahead" if d >= 0 else "ours now behind"))
        lines.append(f"| {NETS[net]['title']} | {ep} | " + (f"{100 * o[0]['test_acc']:.2f} | " if o else "n/a | "))
        lines[-1] += (f"{100 * u[0]['test_acc']:.2f} | " if u else "n/a | ") + \
            (f"{d:+.2f} | " if d is not None else "n/a | ") + f"{short} | {rank} | " + \
            (f"{o[0]['channels']} | " if o else " | ") + \
            f"{o[0]['fit_s'] if o else 'n/a'}, {u[0]['fit_s'] if u else 'n/a'} |"
    lines += ["", f"- Pairs finished: {len(finished)} of {len(nets)} tasks"
              + (f"; not finished in the time we had: {'; '.join(missing)}." if missing else "."),
              "- One seed per long run: the short runs' seed-to-seed spread is 0.5-2 pp (more for DS-CNN and "
              "MobileNetV2), so a long-run difference below about 1 pp is within seed noise and says 'level', not "
              "'ahead' or 'behind'. The short-run column is read from compute_budgets.csv when this section is "
              "written (its n grows as the grid's seeds finish)."]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--nets", nargs="+", choices=sorted(NETS), default=["resnet8", "mbv2", "dscnn", "refcnn"])
    p.add_argument("--factor", type=int, default=10, help="epochs = factor x the short runs' (3 / 12)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train-subset", type=int, default=6000)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--report-only", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    for w in (".*does not have many workers.*", ".*has parameters that were not used.*", ".*already fits every budget.*"):
        warnings.filterwarnings("ignore", w)
    rows = load_rows(CSV)
    done = {(r["net"], r["method"], r["epochs"]) for r in rows}
    todo = [] if args.report_only else [(n, m) for n in args.nets for m in ("ours", "uniform")
                                        if (n, m, NETS[n]["epochs"] * args.factor) not in done]
    ctx = {"dense": {}, "uniform": {}}
    for n in {n for n, _ in todo}:
        rep = measure(NETS[n]["build"](), NETS[n])
        ctx["dense"][n] = {"latency_ms": float(rep.latency_ms), "macs": float(rep.macs)}
        ctx["uniform"][n] = Uniform(NETS[n])
    console.print(f"{len(todo)} runs to do")
    for n, m in todo:
        a = argparse.Namespace(variant="default", epochs=NETS[n]["epochs"] * args.factor, train_subset=args.train_subset)
        console.print(f"[bold]{n} {m} {a.epochs} epochs[/] at {time.strftime('%H:%M:%S', time.gmtime())} UTC")
        row = run_one(n, KEY, FRACTION, m, args.seed, ctx, a)
        append_csv_row(CSV, FIELDS, row)
        rows.append(row)
        console.print(f"  -> acc {100 * row['test_acc']:.2f} %, channels {row['channels']}, fit {row['fit_s']:.0f} s")
    md = markdown(rows, list(dict.fromkeys(["resnet8", "mbv2", "dscnn", "refcnn"] + args.nets)), args.factor)
    write_section("long-runs", md)
    console.print(md)


if __name__ == "__main__":
    main()
