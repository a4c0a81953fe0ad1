"""Issue 15, the paper's claim (c): MCUPruneCallback against an MCU-specific architecture search (µNAS kind).

The search is a baseline written here, not part of the library. It searches per-layer widths: the channel
count of every prunable group (the groups the callback prunes, from `make_plan`, as compute_budgets.py's
uniform width uses), under the same resource model and budget key as the callback (board mps2-an386,
`ResourceModel.resource(key, counts)`; the winner is checked with `analyze`).

  search  aging (regularised) evolution, µNAS-style: a population of P candidates, first P drawn at random
          (per-group width fractions uniform in [0.05, 1]), then each step samples S of the population,
          mutates the best of them (1-2 groups' widths x a factor in [0.5, 2]) and retires the oldest.
          Every candidate is *repaired* to the budget before any training (all its widths scaled by one
          factor, bisection, so that it uses the budget: a candidate never costs training time to reject).
          Each candidate is trained briefly from fresh weights (Fashion-MNIST: 1 of the 3 epochs on the same
          6000 images; KWS: 2 of the 12 epochs, or --cand-epochs) and scored on the validation split held out of the
          TRAINING data (Fashion-MNIST: 5000 training images not among the 6000; KWS: the validation
          voices) -- never the test set. The best candidate by validation accuracy is then trained from
          fresh weights with the grid's uniform-width recipe (same data, Adam/cosine, epochs) and tested.
  ours    the dense network trained with MCUPruneCallback(board, {key: B}), library defaults, same epochs.

Wall time: the whole of each method, measured the same way (from building the data module to the end of
the test): the search's includes every candidate and the final training. Rows are appended to
benchmarks/results/nas_search.csv as each method finishes (re-running skips finished rows); every
candidate goes to nas_search_candidates.csv. Then nas_search.png and the `nas-search` section of
BENCHMARKS.md are written.

Run: python benchmarks/nas_search.py [--settings dscnn:latency_ms dscnn:sram refcnn:latency_ms refcnn:sram]
     python benchmarks/nas_search.py --smoke     (a few steps of everything, writes only to a temp dir)
"""
from __future__ import annotations

import argparse
import csv
import math
import random
import statistics
import sys
import tempfile
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import append_csv_row, plain_trainer, write_section  # noqa: E402
from compute_budgets import BOARD, NETS, Uniform, group_channels, measure  # noqa: E402

import lightning.pytorch as pl  # noqa: E402
from rich.console import Console  # noqa: E402

from lightning_mcuprune.callback import MCUPruneCallback  # noqa: E402
from lightning_mcuprune.examples.classifier import ImageClassifier  # noqa: E402
from lightning_mcuprune.io import save_figure  # noqa: E402
from lightning_mcuprune.pruning.removal import remove_channels  # noqa: E402
from lightning_mcuprune.retrain import reinitialized  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
CSV = RESULTS / "nas_search.csv"
CAND_CSV = RESULTS / "nas_search_candidates.csv"
PNG = RESULTS / "nas_search.png"
KEYS = {"latency_ms": "latency", "sram": "peak SRAM"}
FIELDS = ["net", "resource", "fraction", "method", "seed", "epochs", "test_acc", "val_acc", "value", "budget",
          "dense_value", "meets_budget", "channels", "min_channels", "candidates", "population", "cand_epochs",
          "search_s", "final_s", "wall_s", "finished_utc"]
CAND_FIELDS = ["net", "resource", "fraction", "seed", "cand_epochs", "candidates", "idx", "origin", "channels", "value", "budget", "val_acc",
               "train_s", "elapsed_s"]
DEFAULT_SETTINGS = ["dscnn:latency_ms", "dscnn:sram", "refcnn:latency_ms", "refcnn:sram"]
console = Console(width=160)


def value_of(key, rep) -> float:
    return float({"latency_ms": rep.latency_ms, "macs": rep.macs, "sram": rep.peak_sram_bytes}[key])


def dm_args(args):
    return argparse.Namespace(train_subset=args.train_subset)


def make_trainer(epochs, cbs, args):
    t = plain_trainer(epochs, cbs)
    if args.smoke:  # a few steps only
        t.limit_train_batches = 2
        t.limit_test_batches = 2
    return t


class Space:
    """Per-group widths of one network: counts from fractions, resource of counts, repair to a budget."""

    def __init__(self, spec, key, budget):
        self.u = Uniform(spec)
        self.spec, self.key, self.budget = spec, key, budget
        self.c0, self.floors = self.u.c0, self.u.plan.floors

    def counts(self, r) -> list[int]:
        return [min(c, max(f, round(x * c))) for x, c, f in zip(r, self.c0, self.floors)]

    def value(self, counts) -> float:
        n = self.u.rm.dense_counts.clone()
        for gid, k in zip(self.u.plan.ids, counts):
            n[gid] = k
        with torch.no_grad():
            return float(self.u.rm.resource(self.key, n))

    def repair(self, r):
        """Scale every fraction by the largest common s (capped at dense) whose network fits the budget;
        None when even the floors do not fit."""
        if self.value(self.counts([0.0] * len(r))) > self.budget:
            return None
        lo, hi = 0.0, 1.0 / max(min(r), 1e-3)
        for _ in range(30):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if self.value(self.counts([x * mid for x in r])) <= self.budget else (lo, mid)
        return [min(1.0, x * lo) for x in r]

    def build(self, counts, seed):
        torch.manual_seed(seed)
        net = self.spec["build"]()
        removals = {p: list(range(k, c)) for p, k, c in zip(self.u.plan.producers, counts, self.c0)}
        remove_channels(net, self.u.example, removals)
        return reinitialized(net, seed=seed)


@torch.no_grad()
def val_accuracy(net, dm, args) -> float:
    was = net.training
    net.eval()
    right = total = 0
    for i, (x, y) in enumerate(dm.val_dataloader()):
        if args.smoke and i >= 2:
            break
        right += int((net(x).argmax(1) == y).sum())
        total += len(y)
    net.train(was)
    return right / max(total, 1)


def train(net, spec, dm, epochs, args, cbs=()):
    model = ImageClassifier(net, lr=spec["lr"], input_shape=spec["input"])
    trainer = make_trainer(epochs, list(cbs), args)
    trainer.fit(model, datamodule=dm)
    return model, trainer


def mutate(r, rng: random.Random):
    r = list(r)
    for g in rng.sample(range(len(r)), k=min(len(r), rng.choice([1, 2]))):
        r[g] = min(1.0, max(0.02, r[g] * math.exp(rng.uniform(math.log(0.5), math.log(2.0)))))
    return r


def run_search(net_name, key, fraction, seed, dense, args, cand_csv) -> dict:
    spec = NETS[net_name]
    t0 = time.perf_counter()
    pl.seed_everything(seed, workers=True, verbose=False)
    budget = dense * fraction
    dm = spec["data"](dm_args(args), seed)
    space = Space(spec, key, budget)
    rng = random.Random(seed)
    cand_epochs = args.cand_epochs or (2 if spec["task"] == "KWS" else 1)
    history, population = [], []
    for idx in range(args.candidates):
        if idx < args.population:
            r, origin = None, "random"
            while r is None:
                r = space.repair([rng.uniform(0.05, 1.0) for _ in space.c0])
        else:
            parent = max(rng.sample(population, k=min(args.sample, len(population))), key=lambda c: c["val_acc"])
            r, origin = None, f"mutant of {parent['idx']}"
            while r is None:
                r = space.repair(mutate(parent["r"], rng))
        counts = space.counts(r)
        ts = time.perf_counter()
        pl.seed_everything(seed * 1000 + idx, workers=True, verbose=False)
        model, _ = train(space.build(counts, seed * 1000 + idx), spec, dm, cand_epochs, args)
        acc = val_accuracy(model.net, dm, args)
        cand = {"idx": idx, "r": r, "counts": counts, "val_acc": acc}
        history.append(cand)
        population.append(cand)
        if len(population) > args.population:
            population.pop(0)  # aging: the oldest leaves
        row = {"net": net_name, "resource": key, "fraction": fraction, "seed": seed, "cand_epochs": cand_epochs,
               "candidates": args.candidates, "idx": idx, "origin": origin,
               "channels": "-".join(map(str, counts)), "value": round(space.value(counts), 4), "budget": round(budget, 4),
               "val_acc": round(acc, 5), "train_s": round(time.perf_counter() - ts, 1),
               "elapsed_s": round(time.perf_counter() - t0, 1)}
        append_csv_row(cand_csv, CAND_FIELDS, row)
        console.print(f"  cand {idx} ({origin}) {row['channels']} val {100 * acc:.2f} % ({row['train_s']} s)")
    search_s = time.perf_counter() - t0
    best = max(history, key=lambda c: c["val_acc"])
    t1 = time.perf_counter()
    pl.seed_everything(seed, workers=True, verbose=False)
    epochs = spec["epochs"]
    model, trainer = train(space.build(best["counts"], seed), spec, dm, epochs, args)
    acc = trainer.test(model, datamodule=dm, verbose=False)[0]["test_acc"]
    final_s = time.perf_counter() - t1
    rep = measure(model.net, spec)
    ch = group_channels(model.net, spec)
    return {"net": net_name, "resource": key, "fraction": fraction, "method": "search", "seed": seed, "epochs": epochs,
            "test_acc": float(acc), "val_acc": round(best["val_acc"], 5), "value": round(value_of(key, rep), 4),
            "budget": round(budget, 4), "dense_value": round(dense, 4),
            "meets_budget": value_of(key, rep) <= budget * (1 + 1e-9), "channels": "-".join(map(str, ch)),
            "min_channels": min(ch), "candidates": args.candidates, "population": args.population,
            "cand_epochs": cand_epochs, "search_s": round(search_s, 1), "final_s": round(final_s, 1),
            "wall_s": round(time.perf_counter() - t0, 1),
            "finished_utc": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")}


def run_ours(net_name, key, fraction, seed, dense, args) -> dict:
    spec = NETS[net_name]
    t0 = time.perf_counter()
    pl.seed_everything(seed, workers=True, verbose=False)
    budget = dense * fraction
    dm = spec["data"](dm_args(args), seed)
    cb = MCUPruneCallback(BOARD, {key: budget}, module="net", verbose=False, export=False)
    model, trainer = train(spec["build"](), spec, dm, spec["epochs"], args, [cb])
    acc = trainer.test(model, datamodule=dm, verbose=False)[0]["test_acc"]
    wall = time.perf_counter() - t0
    rep = measure(model.net, spec)
    ch = group_channels(model.net, spec)
    return {"net": net_name, "resource": key, "fraction": fraction, "method": "ours", "seed": seed,
            "epochs": spec["epochs"], "test_acc": float(acc), "val_acc": "", "value": round(value_of(key, rep), 4),
            "budget": round(budget, 4), "dense_value": round(dense, 4),
            "meets_budget": value_of(key, rep) <= budget * (1 + 1e-9), "channels": "-".join(map(str, ch)),
            "min_channels": min(ch), "candidates": "", "population": "", "cand_epochs": "", "search_s": "",
            "final_s": round(wall, 1), "wall_s": round(wall, 1),
            "finished_utc": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")}


def load_rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with path.open() as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        for k in ("fraction", "test_acc", "value", "budget", "dense_value", "wall_s"):
            r[k] = float(r[k])
        r["seed"] = int(r["seed"])
        r["meets_budget"] = r["meets_budget"] == "True"
    return rows


def grid_uniform(net, key, fraction) -> list[float]:
    """Uniform width's test accuracies for this cell from compute_budgets.csv (latency only; same recipe)."""
    from compute_budgets import CSV as GRID, load_rows as grid_rows
    return [r["test_acc"] for r in grid_rows(GRID) if r["net"] == net and r["resource"] == key
            and abs(r["fraction"] - fraction) < 1e-9 and r["method"] == "uniform" and r["variant"] == ""
            and r["epochs"] == NETS[net]["epochs"]]


def cell(rows, net, key, f, m):
    return sorted([r for r in rows if r["net"] == net and r["resource"] == key and abs(r["fraction"] - f) < 1e-9
                   and r["method"] == m], key=lambda r: r["seed"])


def plot(rows, settings, fraction, png):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker  # noqa: F401
    fig, axes = plt.subplots(1, len(settings), figsize=(3.8 * len(settings), 3.8), squeeze=False)
    for ax, (net, key) in zip(axes[0], settings):
        o = cell(rows, net, key, fraction, "ours")
        if o:
            ax.scatter([r["wall_s"] / 60 for r in o], [100 * r["test_acc"] for r in o], color="C0", marker="o", s=40,
                       label="ours (MCUPruneCallback)")
        ss = cell(rows, net, key, fraction, "search")
        for i, conf in enumerate(sorted({config(r) for r in ss})):
            rs = [r for r in ss if config(r) == conf]
            ax.scatter([r["wall_s"] / 60 for r in rs], [100 * r["test_acc"] for r in rs], color=f"C{3 + i}", marker="s",
                       s=40, label=f"search, {conf_name(conf)} + final")
        ax.set_xscale("log")
        ax.margins(0.25)
        ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.xaxis.set_minor_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.tick_params(axis="x", which="minor", labelsize=6)
        ax.set_xlabel("total wall time (min, log)")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(f"{NETS[net]['title']}, {KEYS[key]} 1/{round(1 / fraction)}", fontsize=9)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=6.5, loc="best")
    fig.suptitle(f"ours vs evolutionary width search on {BOARD}: accuracy vs wall time (1 torch thread)", fontsize=10)
    fig.tight_layout()
    save_figure(fig, png, dpi=110)


def markdown(rows, cands, settings, fraction, args) -> str:
    lines = ["## Claim (c): ours vs an MCU architecture search (µNAS kind), accuracy and wall time (issue 15)", "",
             f"`benchmarks/nas_search.py` on board `{BOARD}`, budget 1/{round(1 / fraction)} of the dense network's "
             "latency (calibrated profile) or peak SRAM. **search**: aging evolution over the per-group channel counts "
             "(the prunable groups the callback sees), population 8, tournament 3, "
             "24 candidates per search unless the config says otherwise (the first 8 random), each repaired to the budget "
             "on the same resource model before any training, each trained briefly from fresh weights (search config "
             "column; Fashion-MNIST: 1 of the 3 epochs on the same 6000 images; KWS: 2 or 4 of the 12 epochs) and scored on the validation split held out "
             "of the training data (5000 Fashion-MNIST training images outside the 6000; KWS: the validation voices), "
             "never the test set; the best then trained from fresh weights with the grid's uniform-width recipe "
             "(3 epochs / 12 epochs, Adam cosine) and tested. **ours**: `MCUPruneCallback(board, {key: B})`, library "
             "defaults, the same epochs. Wall time: the whole method, data module to test, 1 torch thread on a shared "
             "2-core machine (other engineers' jobs ran at the same time, so times carry load noise; both methods ran "
             "back to back in one process). Seeds: the n in each cell (seed s of ours against seed s of the search). "
             f"Rows: `benchmarks/results/{CSV.name}`; every candidate: `benchmarks/results/{CAND_CSV.name}`.", "",
             "| task, network | budget | search config | ours (%) | search (%) | ours - search (pp) | ours wall (s) "
             "| search wall (s) | search / ours time | search: best val (%) | channels ours (seed 0) | channels search "
             "(seed 0) | budget met (ours, search) | uniform width, grid (%) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    verdict = []
    for net, key in settings:
        o, ss = cell(rows, net, key, fraction, "ours"), cell(rows, net, key, fraction, "search")
        if not o and not ss:
            continue
        uni = grid_uniform(net, key, fraction) if key == "latency_ms" else []
        uni_s = f"{statistics.mean(uni) * 100:.2f} (n={len(uni)})" if uni else "n/a"
        mo = statistics.mean(r["test_acc"] for r in o) if o else None
        to = statistics.mean(r["wall_s"] for r in o) if o else None
        for conf in sorted({config(r) for r in ss}) or [None]:
            s = [r for r in ss if config(r) == conf]
            msr = statistics.mean(r["test_acc"] for r in s) if s else None
            tsr = statistics.mean(r["wall_s"] for r in s) if s else None
            if o and s:
                po = {r["seed"]: r["test_acc"] for r in o}
                wins = sum(po[r["seed"]] >= r["test_acc"] for r in s if r["seed"] in po)
                verdict.append((net, key, conf, 100 * (mo - msr), tsr / to, len(o), len(s), wins))
            vals = ", ".join(f"{100 * float(r['val_acc']):.2f}" for r in s) or "n/a"
            lines.append(
                f"| {NETS[net]['task']}, {NETS[net]['title']} | {KEYS[key]} 1/{round(1 / fraction)} | "
                f"{conf_name(conf)} | {fmt(mo and 100 * mo, '{:.2f}')} (n={len(o)}) | "
                f"{fmt(msr and 100 * msr, '{:.2f}')} (n={len(s)}) | "
                f"{'n/a' if not (o and s) else f'{100 * (mo - msr):+.2f}'} | {fmt(to, '{:.0f}')} | {fmt(tsr, '{:.0f}')} | "
                f"{'n/a' if not (o and s) else f'{tsr / to:.1f}x'} | {vals} | "
                f"{o[0]['channels'] if o else ''} | {s[0]['channels'] if s else ''} | "
                f"{sum(r['meets_budget'] for r in o)}/{len(o)}, {sum(r['meets_budget'] for r in s)}/{len(s)} | {uni_s} |")
    lines += ["", f"![ours vs search](benchmarks/results/{PNG.name})", "", "### Verdict", ""]
    for net, key, conf, d, ratio, no, ns, wins in verdict:
        ok = d >= 0 and ratio >= 5
        why = " and ".join(x for x, bad in (("accuracy", d < 0), ("time", ratio < 5)) if bad)
        lines.append(f"- {NETS[net]['title']} ({NETS[net]['task']}), {KEYS[key]}, search {conf_name(conf)}: ours "
                     f"{d:+.2f} pp against the search, the search taking {ratio:.1f}x ours' wall time (seeds: ours {no}, "
                     f"search {ns}; ours ≥ the search in {wins} of {ns} seeds) -> goal (≥ the search's accuracy in ≥ 5x less time) "
                     f"{'met' if ok else f'NOT met ({why})'}.")
    done = {(n, k) for n, k, *_ in verdict}
    missing = [f"{NETS[n]['title']} {KEYS[k]}" for n, k in settings if (n, k) not in done]
    lines.append(f"- Settings finished (both methods): {len(done)} of {len(settings)}"
                 + (f"; not finished in the time we had: {', '.join(missing)}." if missing else "."))
    lines.append("- What the times measure: ours trains the dense network once while it prunes it, so its time is about "
                 "one dense run; the search trains small networks (its candidates and the winner are already within the "
                 "budget), so under a tight SRAM budget, where the candidates are tiny, its candidates are cheap and "
                 "the ratio is lower than under latency. The candidates' validation accuracies after their brief "
                 "training (the 'best val' column) are far below the final accuracies: the ranking they give is noisy, "
                 "which is why the search can pick a network with a 3-6 channel first layer (DS-CNN latency, seed 0).")
    per = {}
    for r in rows:
        if r["method"] == "search":
            per.setdefault((r["net"], r["resource"], config(r)), []).append(float(r["search_s"]) / int(r["candidates"]))
    if per:
        lines.append("- Per-candidate cost, training + validation (search time / candidates, mean over seeds): " + "; ".join(
            f"{NETS[n]['title']} {KEYS[k]} ({conf_name(c)}) {statistics.mean(v):.1f} s" for (n, k, c), v in per.items())
            + ". A real µNAS run evaluates hundreds to thousands of candidates; this search is deliberately small "
              "(sized to fit the shared machine), so its time is a lower bound for a search of that kind, and its "
              "accuracy could rise with more candidates or longer candidate training.")
    return "\n".join(lines)


def config(r):
    """A search row's configuration: (candidates, epochs per candidate)."""
    return (int(r["candidates"]), int(r["cand_epochs"]))


def conf_name(conf) -> str:
    return "n/a" if conf is None else f"{conf[0]} cand. x {conf[1]} ep."


def fmt(x, f):
    return "n/a" if x is None else f.format(x)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--settings", nargs="+", default=DEFAULT_SETTINGS,
                   help="net:key pairs, net in %s, key in %s" % (sorted(NETS), sorted(KEYS)))
    p.add_argument("--fraction", type=float, default=0.25, help="budget = fraction x dense value")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--methods", nargs="+", choices=["ours", "search"], default=["ours", "search"])
    p.add_argument("--candidates", type=int, default=24)
    p.add_argument("--population", type=int, default=8)
    p.add_argument("--sample", type=int, default=3, help="tournament size")
    p.add_argument("--cand-epochs", type=int, default=None, help="default: 1 (Fashion-MNIST), 2 (KWS)")
    p.add_argument("--train-subset", type=int, default=6000)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--smoke", action="store_true", help="a few steps of everything; writes only to a temp dir")
    p.add_argument("--report-only", action="store_true", help="run nothing; write the section from the CSV")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    for w in (".*does not have many workers.*", ".*has parameters that were not used.*", ".*already fits every budget.*",
              ".*max_steps.*", ".*limit_.*"):
        warnings.filterwarnings("ignore", w)
    settings = [tuple(s.split(":")) for s in args.settings]
    csv_path, cand_path, png, write = CSV, CAND_CSV, PNG, True
    if args.smoke:
        tmp = Path(tempfile.mkdtemp(prefix="nas_smoke_"))
        csv_path, cand_path, png, write = tmp / "nas.csv", tmp / "cand.csv", tmp / "nas.png", False
        args.candidates, args.population, args.sample = 3, 2, 2
        settings = settings[:1]
    dense = {}
    for net, key in settings:
        if net not in NETS or key not in KEYS:
            p.error(f"unknown setting {net}:{key}")
        dense[(net, key)] = value_of(key, measure(NETS[net]["build"](), NETS[net]))
        console.print(f"{net} dense {key} {dense[(net, key)]:.4g}")
    rows = load_rows(csv_path)
    def conf_of(n):
        return (args.candidates, args.cand_epochs or (2 if NETS[n]["task"] == "KWS" else 1))
    done = {(r["net"], r["resource"], r["method"], r["seed"], config(r) if r["method"] == "search" else None)
            for r in rows if abs(r["fraction"] - args.fraction) < 1e-9}
    todo = [] if args.report_only else [(n, k, m, s) for s in args.seeds for n, k in settings for m in args.methods
                                        if (n, k, m, s, conf_of(n) if m == "search" else None) not in done]
    console.print(f"{len(todo)} runs to do")
    for n, k, m, s in todo:
        console.print(f"[bold]{n} {k} 1/{round(1 / args.fraction)} {m} seed {s}[/] at "
                      f"{datetime.now(timezone.utc).strftime('%H:%M:%S')} UTC")
        d = dense[(n, k)]
        row = run_ours(n, k, args.fraction, s, d, args) if m == "ours" else \
            run_search(n, k, args.fraction, s, d, args, cand_path)
        append_csv_row(csv_path, FIELDS, row)
        console.print(f"  -> {m} acc {100 * row['test_acc']:.2f} %, {k} {row['value']:.4g}/{row['budget']:.4g}, "
                      f"channels {row['channels']}, wall {row['wall_s']:.0f} s")
    rows = load_rows(csv_path)
    cands = list(csv.DictReader(cand_path.open())) if cand_path.exists() else []
    if rows:
        # the section reports every default setting (and any other run), finished or not
        shown = settings if args.smoke else list(dict.fromkeys([tuple(x.split(":")) for x in DEFAULT_SETTINGS] + settings))
        plot(rows, shown, args.fraction, png)
        md = markdown(rows, cands, shown, args.fraction, args)
        if write:
            write_section("nas-search", md)
        console.print(md)


if __name__ == "__main__":
    main()
