"""Issue 15: one longer run per task at 1/4 of dense latency, ours vs uniform width, to see whether the
ranking of the short runs (compute_budgets.py) changes with training length.

The same runs as compute_budgets.py's grid (its `run_one`: same data, board mps2-an386, Adam with cosine LR,
ours = MCUPruneCallback defaults, uniform = uniform width within the budget from fresh weights) with about 10x
the epochs: 30 for the Fashion-MNIST nets (6000 images), 120 for DS-CNN. One seed. Default order: ResNet-8
(where ours lost in short runs), MobileNetV2, DS-CNN, reference CNN. Each finished run is appended to
benchmarks/results/long_runs.csv (re-running skips runs already there); then the `long-runs` section of
BENCHMARKS.md is written, with the short runs' means from compute_budgets.csv beside them.

Run: python benchmarks/long_runs.py [--nets resnet8 mbv2 dscnn refcnn] [--factor 10]

More cells, seeds and a variant of ours (compute_budgets.py's VARIANTS), e.g. ResNet-8 at the cells it loses in the
short runs, 5x the epochs, 3 seeds, ours with reset_optimizer:
    python benchmarks/long_runs.py --nets resnet8 --factor 5 --cells latency_ms:0.25 latency_ms:0.1 macs:0.1 \
        --seeds 0 1 2 --variant optreset
Those runs get their own table in the section (per cell and seed, beside the short runs of the same seeds).
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
from compute_budgets import CSV as GRID, DIAG, DIAG_TEXT, FIELDS, NETS, RESOURCES, VARIANTS, Uniform, cell_diffs, \
    cell_rows, frac_name, load_rows, measure, option_call, run_one  # noqa: E402

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
             f"`MCUPruneCallback` defaults at the time, i.e. reset_optimizer off, uniform = uniform width within the budget from fresh weights, same data and "
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
    lines += multi_seed(rows)
    return "\n".join(lines)


def multi_seed(rows) -> list[str]:
    """Long runs beyond the one-seed table: per (network, cell, epochs, variant of ours) with uniform rows of the same
    seeds, ours - uniform per seed, beside the same seeds' short runs (compute_budgets.csv) of the same variant."""
    grid = load_rows(GRID)
    have = {r["variant"] for r in grid}
    grid += [r for r in load_rows(DIAG) if r["variant"] not in have]  # short runs of variants only diagnosed there
    groups = sorted({(r["net"], r["resource"], r["fraction"], r["epochs"], r["variant"]) for r in rows
                     if r["method"] == "ours"}, key=lambda g: (g[0], g[3], g[4].removeprefix("arch-"), g[4].startswith("arch-"), g[1] != "latency_ms", -g[2]))
    out = []
    for net, key, f, ep, var in groups:
        o = [r for r in cell_rows(rows, net, key, f, "ours") if r["epochs"] == ep and r["variant"] == var]
        if var in ("", "default") and key == KEY and abs(f - FRACTION) < 1e-9 and ep == 10 * NETS[net]["epochs"]:
            continue  # the one-seed runs of the table above
        u = [r for r in cell_rows(rows, net, key, f, "uniform") if r["epochs"] == ep]
        d = cell_diffs(o, u)
        if not d:
            continue
        pu = {r["seed"]: r for r in u}
        seeds = [r["seed"] for r in o if r["seed"] in pu]
        so = [r for r in cell_rows(grid, net, key, f, "ours") if r["variant"] == var and r["seed"] in seeds
              and r["epochs"] == NETS[net]["epochs"]]
        su = [r for r in cell_rows(grid, net, key, f, "uniform") if r["epochs"] == NETS[net]["epochs"]]
        sd = {r["seed"]: x for r, x in zip([r for r in so if r["seed"] in {q["seed"] for q in su}], cell_diffs(so, su))}
        per = "; ".join(f"s{r['seed']}: {100 * r['test_acc']:.2f} vs {100 * pu[r['seed']]['test_acc']:.2f} "
                        f"({100 * (r['test_acc'] - pu[r['seed']]['test_acc']):+.2f}"
                        + (f", short {sd[r['seed']]:+.2f}" if r["seed"] in sd else "") + ")"
                        for r in o if r["seed"] in pu)
        short = f"{statistics.mean(sd.values()):+.2f} ({sum(x >= 0 for x in sd.values())}/{len(sd)})" if sd else "n/a"
        out.append(f"| {NETS[net]['title']} | {RESOURCES[key]} {frac_name(f)} | {ep} | `{var}` | {len(d)} | {per} | "
                   f"{statistics.mean(d):+.2f} ({sum(x >= 0 for x in d)}/{len(d)}) | {short} | "
                   f"{', '.join(r['channels'] for r in o if r['seed'] in pu)} |")
    if not out:
        return []
    variants = sorted({g[4] for g in groups if g[4] not in ("", "default")})
    return ["", "### More seeds and cells at longer training", "",
            "The same runs at the cells and seeds listed, ours with the variant named (" + "; ".join(
                f"`{v}`: `{option_call(v)}`, {DIAG_TEXT.get(v, '')}" if v in VARIANTS else
                f"`{v}`: the architecture ours (`{v[5:]}`) found in the same cell, seed and epochs, trained from fresh "
                f"weights for those epochs like uniform width (architecture against recovery)" for v in variants) + "). Per seed: ours vs "
            "uniform test accuracy (%), (ours - uniform in pp, and the same seed's short run: 3 epochs, ours with the "
            "same variant, from `compute_budgets.csv`, or the diagnostics CSV for variants only there). Rows: `benchmarks/results/long_runs.csv`.", "",
            "| network | budget | epochs | ours | seeds | per seed: ours vs uniform (long - uniform, short - uniform) | "
            "ours - uniform, long: mean (seeds ≥) | ours - uniform, short, same seeds: mean (seeds ≥) | channels ours (long) |",
            "|---|---|---|---|---|---|---|---|---|"] + out


class _Fixed(Uniform):
    """A Uniform whose every width gives the same channel counts (to train a given architecture as run_one trains
    uniform width: fresh weights, plain training, same seed and recipe)."""

    def __init__(self, base: Uniform, counts: list[int]):
        self.__dict__.update(base.__dict__)
        self.fixed = counts

    def counts(self, w: float) -> list[int]:
        return list(self.fixed)


def arch_fresh(n, k, f, s, channels: str, ctx, a) -> dict:
    """The network with these channels per group, trained from fresh weights like uniform width (run_one's
    uniform branch on a fixed architecture). Row: method ours, variant arch-<variant of the run it came from>."""
    base = ctx["uniform"][n]
    w = base.width(k, ctx["dense"][n][k] * f)
    row = run_one(n, k, f, "uniform", s, {"dense": ctx["dense"], "uniform": {n: _Fixed(base, [int(c) for c in channels.split("-")])}}, a)
    assert row["channels"] == channels, (row["channels"], channels)
    soft = [min(4, c) for c in base.counts(w)]
    row.update(method="ours", variant=f"arch-{a.variant}", uniform_width=round(w, 5),
               below_soft_floor=sum(c < x for c, x in zip(map(int, channels.split("-")), soft)))
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--nets", nargs="+", choices=sorted(NETS), default=["resnet8", "mbv2", "dscnn", "refcnn"])
    p.add_argument("--factor", type=int, default=10, help="epochs = factor x the short runs' (3 / 12)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seeds", type=int, nargs="+", default=None, help="several seeds (overrides --seed)")
    p.add_argument("--cells", nargs="+", default=[f"{KEY}:{FRACTION}"],
                   help="resource:fraction pairs (default latency_ms:0.25), e.g. latency_ms:0.1 macs:0.1")
    p.add_argument("--variant", choices=sorted(VARIANTS), default="default", help="callback options of ours")
    p.add_argument("--arch-fresh", action="store_true",
                   help="instead of ours/uniform: the architecture ours (--variant) found in each of these long runs, "
                        "trained from fresh weights for the same epochs (rows: method ours, variant arch-<variant>)")
    p.add_argument("--train-subset", type=int, default=6000)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--report-only", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    for w in (".*does not have many workers.*", ".*has parameters that were not used.*", ".*already fits every budget.*"):
        warnings.filterwarnings("ignore", w)
    rows = load_rows(CSV)
    cells = [(c.split(":")[0], float(c.split(":")[1])) for c in args.cells]
    assert all(k in RESOURCES for k, _ in cells), f"resources: {', '.join(RESOURCES)}"
    seeds = args.seeds if args.seeds is not None else [args.seed]
    done = {(r["net"], r["resource"], round(r["fraction"], 6), r["method"], r["variant"], r["seed"], r["epochs"])
            for r in rows}
    # seed-major order, ours before uniform: the pairs finish one seed at a time
    methods = ("arch",) if args.arch_fresh else ("ours", "uniform")
    label = {"ours": args.variant, "uniform": "", "arch": f"arch-{args.variant}"}
    todo = [] if args.report_only else [
        (n, k, f, m, s) for s in seeds for n in args.nets for k, f in cells for m in methods
        if (n, k, round(f, 6), "uniform" if m == "uniform" else "ours", label[m], s, NETS[n]["epochs"] * args.factor)
        not in done]
    ctx = {"dense": {}, "uniform": {}}
    for n in {x[0] for x in todo}:
        rep = measure(NETS[n]["build"](), NETS[n])
        ctx["dense"][n] = {"latency_ms": float(rep.latency_ms), "macs": float(rep.macs)}
        ctx["uniform"][n] = Uniform(NETS[n])
    console.print(f"{len(todo)} runs to do")
    for n, k, f, m, s in todo:
        a = argparse.Namespace(variant=args.variant, epochs=NETS[n]["epochs"] * args.factor, train_subset=args.train_subset)
        console.print(f"[bold]{n} {k} {frac_name(f)} {m}{' ' + args.variant if m == 'ours' else ''} seed {s} "
                      f"{a.epochs} epochs[/] at {time.strftime('%H:%M:%S', time.gmtime())} UTC")
        if m == "arch":
            src = [r for r in cell_rows(rows, n, k, f, "ours") if r["variant"] == args.variant and r["seed"] == s
                   and r["epochs"] == a.epochs]
            if not src:
                console.print("  no such run of ours to take the architecture from: skipped")
                continue
            row = arch_fresh(n, k, f, s, src[-1]["channels"], ctx, a)
        else:
            row = run_one(n, k, f, m, s, ctx, a)
        append_csv_row(CSV, FIELDS, row)
        rows.append(row)
        console.print(f"  -> acc {100 * row['test_acc']:.2f} %, channels {row['channels']}, fit {row['fit_s']:.0f} s")
    md = markdown(rows, ["resnet8", "mbv2", "dscnn", "refcnn"], 10)  # the one-seed table: the 10x runs
    write_section("long-runs", md)
    console.print(md)


if __name__ == "__main__":
    main()
