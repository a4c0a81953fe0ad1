"""Issue 15: accuracy under compute budgets (latency, MACs), MCUPruneCallback vs uniform width scaling.

Board mps2-an386 (latency from its calibrated profile). Four networks: the reference CNN, ResNet-8
(16-32-64, 1 input channel) and a small MobileNetV2 (`zoo.mobilenet_v2_tiny`) on Fashion-MNIST; DS-CNN on
keyword spotting (10 espeak-ng words, `kws_data`). Budgets: 1/4 and 1/10 of the dense network's latency
and of its MACs. For each (network, budget, seed):
  ours     the dense network trained with MCUPruneCallback(board, {resource: B}) (library defaults, or the
           options of --variant)
  uniform  the same architecture with every prunable group at round(w * dense channels), the largest w whose
           resource is <= B (bisection on the resource model, checked with `analyze`), fresh weights,
           trained plainly for the same epochs
Same data, optimiser (Adam, cosine LR), epochs and seed for both. Each finished run is appended to
benchmarks/results/compute_budgets.csv as it finishes; re-running skips runs already there (same settings).
Then compute_budgets.png and the `compute-budgets` section of BENCHMARKS.md are written.

Run: python benchmarks/compute_budgets.py [--nets refcnn resnet8 dscnn mbv2] [--seeds 0 1 2]
"""
from __future__ import annotations

import argparse
import itertools
import csv
import statistics
import sys
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path

import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import append_csv_row, plain_trainer, write_section  # noqa: E402

import lightning.pytorch as pl  # noqa: E402
from rich.console import Console  # noqa: E402

from lightning_mcuprune import analyze, load_board  # noqa: E402
from lightning_mcuprune.examples import zoo  # noqa: E402
from lightning_mcuprune.callback import MCUPruneCallback  # noqa: E402
from lightning_mcuprune.examples.classifier import ImageClassifier  # noqa: E402
from lightning_mcuprune.data.datasets import FashionMNISTDataModule  # noqa: E402
from lightning_mcuprune.io import save_figure  # noqa: E402
from lightning_mcuprune.pruning.plan import make_plan  # noqa: E402
from lightning_mcuprune.pruning.removal import remove_channels  # noqa: E402
from lightning_mcuprune.resources import ResourceModel  # noqa: E402
from lightning_mcuprune.retrain import reinitialized  # noqa: E402

BOARD = "mps2-an386"
RESULTS = Path(__file__).resolve().parent / "results"
CSV = RESULTS / "compute_budgets.csv"
PNG = RESULTS / "compute_budgets.png"
DIAG = RESULTS / "compute_budgets_diagnostics.csv"  # the issue-15 diagnosis: variants of ours, ResNet-8, 1/4 latency
#: what each diagnostic variant was (schedule 10% -> 60% of the run unless it says otherwise)
DIAG_TEXT = {
    "old": "the method before issue 15 (per-group Adam on pi, cost-per-channel steps, no soft floor)",
    "default": "global normalisation of pi's task step + steps by resource share + soft floor (issue 15's method), "
               "schedule 10-60%",
    "impgroup": "as default, importance at the threshold relative to the group's own mean",
    "impnone": "as default, projection not divided by importance",
    "uni": "projection steps proportional to pi (uniform prior), importance as default",
    "uni-impgroup": "uniform prior, group-relative importance",
    "uni-impnone": "uniform prior, no importance (allocation moved only by the task step)",
    "share-lr01": "as default, pi_lr 0.01",
    "uni-frozen": "uniform widths reached by pruning while training (pi_lr 0, no importance), 10-60%",
    "uni-frozen-early": "the same, pruning 5-30%",
    "uni-frozen-vearly": "the same, pruning 0-5%",
    "uni-frozen-vearly-reinit": "the same, 0-5%, then fresh weights and optimiser state (reinit=True)",
    "early": "as default, pruning 5-30%",
    "early15": "as default, pruning 2-15% (the default schedule under compute budgets since issue 15)",
    "early15-reinit": "as early15, then fresh weights (reinit=True)",
    "reinit": "the grid's defaults (2-15% under compute budgets) with reinit=True: fresh weights at hardening",
    "vearly5": "as the grid's defaults (reset_optimizer off), but pruning 0-5% of the run",
    "uni15": "as the grid's defaults (2-15%), projection steps proportional to pi (uniform prior)",
    "ufloor75": "as the grid's defaults (reset_optimizer off), soft floor also >= 0.75 x each group's uniform-width count (a trust region "
                "around uniform width)",
    "rescale": "as the grid's defaults (reset_optimizer off), at each removal the weights of a layer that lost inputs scaled by "
               "sqrt(old fan-in / new fan-in) (the scale a fresh initialiser gives the smaller layer)",
    "optreset": "as the grid's defaults (reset_optimizer off), the optimiser's state (Adam moments, step count) cleared at hardening, "
                "weights kept",
    "optreset-early8": "as optreset (the defaults since reset_optimizer became one), pruning 0-8% of the run (architecture decided earlier, more steps left to "
                       "recover)",
    "optreset-lrwarm": "as optreset (the new defaults), and the learning rate ramped linearly from 1/11 to 1 of the schedule's over the 10 "
                       "optimiser steps after the reset (Adam's first steps from a cleared state are full-size, "
                       "sign-like; benchmark-only knob)",
    "optreset-ufloor75": "as optreset (the new defaults), soft floor also >= 0.75 x each group's uniform-width count (a "
                         "trust region around uniform width; benchmark-only knob)",
    "default-recal": "the grid's defaults re-run under the re-calibrated latency profile (the grid's seeds 0-1 of "
                     "ResNet-8 ran before it), to pair with reset_optimizer's rows",
    "arch-fresh": "the architecture ours found in the grid run of this cell and seed, trained from fresh weights "
                  "for the same epochs (architecture vs recovery)",
}
FIELDS = ["net", "resource", "fraction", "method", "variant", "seed", "epochs", "train_subset", "batch_size", "lr",
          "test_acc", "value", "budget", "dense_value", "meets_budget", "uniform_width", "channels", "min_channels",
          "below_soft_floor", "fit_s", "finished_utc"]
console = Console(width=160)


def _fmnist(args, seed):
    return FashionMNISTDataModule(batch_size=128, train_subset=args.train_subset, val_size=5000, seed=seed)


def _kws(args, seed):
    from lightning_mcuprune.data.kws import KWSDataModule
    return KWSDataModule(batch_size=64, seed=seed)


NETS = {
    "refcnn": dict(title="reference CNN", build=lambda: zoo.reference_cnn(), input=(1, 1, 28, 28), data=_fmnist,
                   task="Fashion-MNIST", lr=2e-3, epochs=3),
    "resnet8": dict(title="ResNet-8", build=lambda: zoo.resnet8(10, in_channels=1), input=(1, 1, 28, 28), data=_fmnist,
                    task="Fashion-MNIST", lr=2e-3, epochs=3),
    "mbv2": dict(title="MobileNetV2 (tiny, 0.35)", build=lambda: zoo.mobilenet_v2_tiny(10, 1), input=(1, 1, 28, 28),
                 data=_fmnist, task="Fashion-MNIST", lr=2e-3, epochs=3),
    "dscnn": dict(title="DS-CNN", build=lambda: zoo.ds_cnn(10), input=(1, 1, 49, 10), data=_kws, task="KWS", lr=3e-3,
                  epochs=12),
}
RESOURCES = {"latency_ms": "latency", "macs": "MACs"}  # the section and figure
#: every --resources choice; sram: the SRAM-schedule check (--csv sram_schedule.csv, section by sram_schedule.py)
KEYS = {**RESOURCES, "sram": "peak SRAM"}
#: --variant name -> MCUPruneCallback options (for diagnostics; the grid runs "default")
VARIANTS = {
    "default": {},
    "old": dict(pi_norm="group", compute_step="cost", soft_floor=False),  # the method before issue 15
    "cost": dict(compute_step="cost"),
    "groupnorm": dict(pi_norm="group"),
    "nofloor": dict(soft_floor=False),
    "impgroup": dict(_importance="group"),
    "impnone": dict(_importance="none"),
    "uni": dict(compute_step="uniform"),
    "uni-impgroup": dict(compute_step="uniform", _importance="group"),
    "uni-impnone": dict(compute_step="uniform", _importance="none"),
    "share-lr01": dict(pi_lr=0.01),
    "uni-frozen": dict(compute_step="uniform", _importance="none", pi_lr=0.0),
    "uni-frozen-early": dict(compute_step="uniform", _importance="none", pi_lr=0.0, warmup=0.05, prune_end=0.3),
    "early": dict(warmup=0.05, prune_end=0.3),
    "early15": dict(warmup=0.02, prune_end=0.15),
    "uni-frozen-vearly-reinit": dict(compute_step="uniform", _importance="none", pi_lr=0.0, warmup=0.0, prune_end=0.05,
                                     reinit=True),
    "early15-reinit": dict(warmup=0.02, prune_end=0.15, reinit=True),
    "reinit": dict(reinit=True),
    "early30-reinit": dict(warmup=0.05, prune_end=0.3, reinit=True),
    "uni-frozen-vearly": dict(compute_step="uniform", _importance="none", pi_lr=0.0, warmup=0.0, prune_end=0.05),
    "vearly5": dict(warmup=0.0, prune_end=0.05),
    "uni15": dict(compute_step="uniform", warmup=0.02, prune_end=0.15),
    "ufloor75": dict(_uniform_floor=0.75),
    "rescale": dict(_rescale=True),
    "optreset": dict(reset_optimizer=True),
    "optreset-early8": dict(reset_optimizer=True, warmup=0.0, prune_end=0.08),
    "optreset-lrwarm": dict(reset_optimizer=True, _lr_warmup=10),
    "optreset-ufloor75": dict(reset_optimizer=True, _uniform_floor=0.75),
    "sram-early": dict(warmup=0.02, prune_end=0.15),  # the compute-budget schedule under an SRAM-only budget
    "default-recal": {},  # the defaults again under the re-calibrated latency profile (paired with optreset's rows)
}


#: the variant whose rows are "ours (defaults)" in the section (--default-variant); "default" rows ran with
#: reset_optimizer off, the library's default before the flip under compute budgets
SHOWN = {"name": "default"}


def variant_call(name: str) -> str:
    """The callback options of a variant, as the section names them."""
    if name == "default":
        return "reset_optimizer=False" if SHOWN["name"] != "default" else "the defaults"
    return option_call(name)


def defaults_label() -> str:
    return "defaults" if SHOWN["name"] == "default" else "defaults, reset_optimizer on"


def cells(nets, fractions):
    """Every (net, resource key, budget fraction) of the grid, in the sections' order."""
    return itertools.product(nets, RESOURCES, fractions)


def report_value(rep, key: str) -> float:
    return float({"latency_ms": rep.latency_ms, "macs": rep.macs, "sram": rep.peak_sram_bytes}[key])


def measure(net: nn.Module, spec: dict):
    was = net.training
    net.eval()
    rep = analyze(net, torch.zeros(*spec["input"]), board=BOARD)
    net.train(was)
    return rep


class Uniform:
    """Uniform width scaling of one dense network: every prunable group (as the callback sees them) at
    max(floor, round(w * C0)) channels."""

    def __init__(self, spec: dict):
        self.spec = spec
        net = spec["build"]()
        self.example = torch.zeros(*spec["input"])
        self.plan = make_plan(net, self.example)
        self.rm = ResourceModel(self.plan.graph, load_board(BOARD))
        self.c0 = self.plan.dense_channels

    def counts(self, w: float) -> list[int]:
        return [min(c, max(f, round(w * c))) for c, f in zip(self.c0, self.plan.floors)]

    def value(self, key: str, w: float) -> float:
        n = self.rm.dense_counts.clone()
        for gid, k in zip(self.plan.ids, self.counts(w)):
            n[gid] = k
        with torch.no_grad():
            return float(self.rm.resource(key, n))

    def width(self, key: str, budget: float, iters: int = 40) -> float:
        lo, hi = 0.0, 1.0
        for _ in range(iters):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if self.value(key, mid) <= budget else (lo, mid)
        return lo

    def build(self, w: float, seed: int) -> nn.Module:
        torch.manual_seed(seed)
        net = self.spec["build"]()
        removals = {p: list(range(k, c)) for p, k, c in zip(self.plan.producers, self.counts(w), self.c0)}
        remove_channels(net, self.example, removals)
        return reinitialized(net, seed=seed)


class LRWarmupAfterHardening(pl.Callback):
    """Benchmark-only (variant optreset-lrwarm): for `steps` optimiser steps after `cb` hardens, scale every param
    group's learning rate by (i + 1) / (steps + 1) for the i-th step, restored right after the step (the cosine
    scheduler's chainable form reads the current lr, so it must not see the scaled value)."""

    def __init__(self, cb: MCUPruneCallback, steps: int):
        self.cb, self.steps, self.i, self.handles, self.saved = cb, steps, None, [], None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        from lightning_mcuprune.pruning.schedule import Phase
        if self.i is None and self.cb.phase == Phase.FINETUNE:
            self.i = 0
            for opt in trainer.optimizers:
                self.handles += [opt.register_step_pre_hook(self._pre), opt.register_step_post_hook(self._post)]

    def _pre(self, opt, args, kwargs):
        self.saved = None
        if self.i < self.steps:
            self.saved = [g["lr"] for g in opt.param_groups]
            for g in opt.param_groups:
                g["lr"] *= (self.i + 1) / (self.steps + 1)

    def _post(self, opt, args, kwargs):
        if self.saved is not None:
            for g, lr in zip(opt.param_groups, self.saved):
                g["lr"] = lr
        self.i += 1


def group_channels(net: nn.Module, spec: dict) -> list[int]:
    """Channels of every prunable group of `net` (the callback's groups, in its order)."""
    plan = make_plan(net, torch.zeros(*spec["input"]))
    return plan.dense_channels


def run_one(net_name, key, fraction, method, seed, ctx, args) -> dict:
    spec = NETS[net_name]
    pl.seed_everything(seed, workers=True, verbose=False)
    budget = ctx["dense"][net_name][key] * fraction
    uni: Uniform = ctx["uniform"][net_name]
    w = uni.width(key, budget)
    cbs = []
    if method == "ours":
        net = spec["build"]()
        opts = dict(VARIANTS[args.variant])
        from lightning_mcuprune.pruning.state import PruningState
        PruningState.COMPUTE_IMPORTANCE = opts.pop("_importance", "global")
        PruningState.UNIFORM_FLOOR = opts.pop("_uniform_floor", 0.0)
        MCUPruneCallback.RESCALE = opts.pop("_rescale", False)
        lr_warmup = opts.pop("_lr_warmup", 0)
        cbs.append(MCUPruneCallback(BOARD, {key: budget}, module="net", verbose=False, export=False, **opts))
        if lr_warmup:
            cbs.append(LRWarmupAfterHardening(cbs[0], lr_warmup))
    else:
        net = uni.build(w, seed)
    model = ImageClassifier(net, lr=spec["lr"], input_shape=spec["input"])
    dm = spec["data"](args, seed)
    epochs = args.epochs or spec["epochs"]
    trainer = plain_trainer(epochs, cbs)
    t = time.perf_counter()
    trainer.fit(model, datamodule=dm)
    fit_s = time.perf_counter() - t
    acc = trainer.test(model, datamodule=dm, verbose=False)[0]["test_acc"]
    rep = measure(model.net, spec)
    ch = group_channels(model.net, spec)
    soft = [min(4, k) for k in uni.counts(w)]  # the floor the issue asks for: min(4, uniform-width count)
    return {"net": net_name, "resource": key, "fraction": fraction, "method": method,
            "variant": args.variant if method == "ours" else "", "seed": seed, "epochs": epochs,
            "train_subset": args.train_subset if spec["task"] == "Fashion-MNIST" else 0, "batch_size": 128 if spec["task"] == "Fashion-MNIST" else 64,
            "lr": spec["lr"], "test_acc": float(acc), "value": round(report_value(rep, key), 4), "budget": round(budget, 4),
            "dense_value": round(ctx["dense"][net_name][key], 4), "meets_budget": report_value(rep, key) <= budget * (1 + 1e-9),
            "uniform_width": round(w, 5), "channels": "-".join(map(str, ch)), "min_channels": min(ch),
            "below_soft_floor": sum(c < s for c, s in zip(ch, soft)), "fit_s": round(fit_s, 1),
            "finished_utc": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")}


def load_rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    rows = []
    with path.open() as f:
        for r in csv.DictReader(f):
            for k in ("fraction", "lr", "test_acc", "value", "budget", "dense_value", "uniform_width", "fit_s"):
                r[k] = float(r[k])
            for k in ("seed", "epochs", "train_subset", "batch_size", "min_channels", "below_soft_floor"):
                r[k] = int(r[k])
            r["meets_budget"] = r["meets_budget"] == "True"
            rows.append(r)
    return rows


def frac_name(f: float) -> str:
    return f"1/{round(1 / f)}"


def cell_rows(rows, net, key, f, method):
    return sorted([r for r in rows if r["net"] == net and r["resource"] == key and abs(r["fraction"] - f) < 1e-9
                   and r["method"] == method], key=lambda r: r["seed"])


def ms(vals, scale=100.0):
    vals = [v * scale for v in vals]
    sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
    return f"{statistics.mean(vals):.2f} ± {sd:.2f}"


def plot(rows, nets, fractions) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(nets), figsize=(4.2 * len(nets), 4), squeeze=False)
    for ax, net in zip(axes[0], nets):
        labels, xs = [], []
        for key in RESOURCES:
            for f in fractions:
                labels.append(f"{RESOURCES[key]}\n{frac_name(f)}")
                xs.append(len(xs))
        for m, off, style in (("ours", -0.12, "o"), ("uniform", 0.12, "s")):
            for i, (key, f) in enumerate([(k, f) for k in RESOURCES for f in fractions]):
                rs = cell_rows(rows, net, key, f, m)
                if rs:
                    a = [100 * r["test_acc"] for r in rs]
                    ax.errorbar(i + off, statistics.mean(a), yerr=statistics.stdev(a) if len(a) > 1 else 0, fmt=style,
                                color="C0" if m == "ours" else "C1", capsize=3,
                                label=("ours (MCUPruneCallback)" if m == "ours" else "uniform width") if i == 0 else None)
                    ax.scatter([i + off] * len(a), a, s=8, color="grey", zorder=3)
        ax.set_xticks(xs, labels, fontsize=8)
        ax.set_title(f"{NETS[net]['title']} ({NETS[net]['task']})", fontsize=9)
        ax.set_ylabel("test accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower left")
    fig.suptitle("compute budgets on mps2-an386: mean ± std over seeds (grey: single seeds)", fontsize=10)
    fig.tight_layout()
    save_figure(fig, PNG, dpi=110)


def cell_diffs(o, u) -> list[float]:
    """ours - uniform (pp) per seed both have."""
    pu = {r["seed"]: r["test_acc"] for r in u}
    return [100 * (r["test_acc"] - pu[r["seed"]]) for r in o if r["seed"] in pu]


def wins_cell(d: list[float]) -> tuple[bool, bool]:
    """(mean >= 0, >= uniform in at least 2 of 3 seeds, or in every seed when fewer than 3 ran)."""
    if not d:
        return False, False
    w = sum(x >= 0 for x in d)
    return statistics.mean(d) >= 0, w >= min(2, len(d))


def profile_notes(rows, nets, fractions) -> list[str]:
    """Cells whose seeds ran with different dense latencies (the mps2-an386 profile was re-calibrated while the
    grid ran): each seed's budget is the fraction of the dense latency under the profile of its run."""
    out = []
    for net in nets:
        for f in fractions:
            o = [r for r in rows if r["net"] == net and r["resource"] == "latency_ms" and abs(r["fraction"] - f) < 1e-9]
            by = {}
            for r in o:
                by.setdefault(r["dense_value"], set()).add(r["seed"])
            if len(by) > 1:
                out.append(f"{NETS[net]['title']} latency {frac_name(f)}: " + ", ".join(
                    f"seed{'s' if len(v) > 1 else ''} {','.join(map(str, sorted(v)))} dense {k:.1f} ms"
                    for k, v in sorted(by.items())))
    if not out:
        return []
    return ["Latency profile: the mps2-an386 profile was re-calibrated (firmware 1.1.0, 1-d layers) between the seeds of "
            "some cells, so their latency budgets (the same fraction of the dense latency under the profile of the run) "
            "differ by a few percent in ms; the uniform-width networks are the same in all these cells except the "
            "reference CNN at 1/10 latency (8-17-34-34 before, 8-17-33-33 after): " + "; ".join(out) + "."]


def option_table(rows, opt_rows, nets, fractions, options) -> list[str]:
    """Ours with documented callback options (--variant rows) beside the defaults, for the cells where they ran."""
    options = [o for o in (options or []) if any(r["variant"] == o for r in opt_rows)]
    if not options:
        return []
    out = ["", "### Options tried to close the ResNet-8 gap (ours with one option each, beside the defaults)", "",
           "Rows with these variants in the CSV (the `optreset-*` ones in the diagnostics CSV); uniform width and the "
           f"{defaults_label()} as above (same seeds, same uniform rows). "
           "Diagnosis knobs (class attributes or callbacks set by this script, not public options) are marked *diag*:",
           ""] + [
           f"- `{o}`{' (*diag*)' if any(k.startswith('_') for k in VARIANTS[o]) else ''}: `{variant_call(o)}`, "
           + ("the library defaults before this change (everything else as above)" if o == "default" else
              DIAG_TEXT.get(o, '')) for o in options] + ["",
           f"| variant | network | budget | ours, {defaults_label()} - uniform (pp) | ours, variant (%) | "
           "ours, variant - uniform (pp) | variant ≥ uniform (seeds) | budget met | min ch | channels (variant, seed 0) |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for opt in options:
        for net, key, f in cells(nets, fractions):
            p = cell_rows([r for r in opt_rows if r["variant"] == opt], net, key, f, "ours")
            if not p:
                continue
            o, u = cell_rows(rows, net, key, f, "ours"), cell_rows(rows, net, key, f, "uniform")
            d0, d1 = cell_diffs(o, u), cell_diffs(p, u)
            out.append(
                f"| `{opt}` | {NETS[net]['title']} | "
                f"{RESOURCES[key]} {frac_name(f)} | {statistics.mean(d0):+.2f} (n={len(d0)}) | "
                f"{ms([r['test_acc'] for r in p])} | {statistics.mean(d1):+.2f} (n={len(d1)}) | "
                f"{sum(x >= 0 for x in d1)}/{len(d1)} | {sum(r['meets_budget'] for r in p)}/{len(p)} | "
                f"{', '.join(str(r['min_channels']) for r in p)} | {p[0]['channels']} |")
    return out


def frozen_label(variant: str) -> str:
    o = VARIANTS[variant]
    return (f"pruned over {round(100 * o.get('warmup', 0.1))}-{round(100 * o.get('prune_end', 0.6))}% of the run"
            + (", then fresh weights" if o.get("reinit") else ""))


def losing_why(rows, more, nets, fractions, all_opt=()) -> list[str]:
    """Every cell that misses the acceptance with the defaults (mean < 0 or fewer than 2 of 3 seeds >= uniform): by how
    much (the grid's seeds and every seed), and the measurements that say why: the architecture ours found trained
    from fresh weights (diagnostics `arch-fresh`), uniform widths reached by pruning while training (`uni-frozen*`),
    the longer runs of long_runs.py at this cell (same variant as the defaults' rows), and options that close it."""
    diag = load_rows(DIAG)
    long_csv = RESULTS / "long_runs.csv"
    longs = load_rows(long_csv) if long_csv.exists() else []
    grid_all = load_rows(CSV) + diag
    out = []
    for net, key, f in cells(nets, fractions):
        o, u = cell_rows(rows, net, key, f, "ours"), cell_rows(rows, net, key, f, "uniform")
        d = cell_diffs(o, u)
        if not d or all(wins_cell(d)):
            continue
        name = f"{NETS[net]['title']} {RESOURCES[key]} {frac_name(f)}"
        uall = u + cell_rows(more, net, key, f, "uniform")
        d5 = cell_diffs(o + cell_rows(more, net, key, f, "ours"), uall)
        txt = (f"- **{name}**: ours - uniform {statistics.mean(d):+.2f} pp over seeds "
               f"{','.join(str(r['seed']) for r in o)} ({sum(x >= 0 for x in d)}/{len(d)} seeds ≥; per seed "
               f"{' '.join(f'{x:+.2f}' for x in d)})")
        if len(d5) > len(d):
            se = statistics.stdev(d5) / len(d5) ** 0.5
            txt += f"; over {len(d5)} seeds {statistics.mean(d5):+.2f} ± {se:.2f} ({sum(x >= 0 for x in d5)}/{len(d5)} ≥)"
        txt += "."
        pu = {r["seed"]: r["test_acc"] for r in uall}
        for r in cell_rows(diag, net, key, f, "ours"):
            if r["variant"] != "arch-fresh" or r["seed"] not in pu:
                continue
            src = [q for q in cell_rows(grid_all, net, key, f, "ours") if q["seed"] == r["seed"]
                   and q["channels"] == r["channels"] and q["variant"] != "arch-fresh" and q["epochs"] == r["epochs"]]
            txt += (f" Architecture vs recovery (seed {r['seed']}): the network ours found ({r['channels']}"
                    + (f", in its grid run with {'reset_optimizer off' if src[0]['variant'] == 'default' else src[0]['variant']}"
                       if src else "") + f") trained from fresh weights for the "
                    f"same epochs {100 * r['test_acc']:.2f}%, uniform {100 * pu[r['seed']]:.2f}%"
                    + (f", pruned while training {100 * src[0]['test_acc']:.2f}%" if src else "") + ".")
        frozen = [r for r in cell_rows(diag, net, key, f, "ours") if r["variant"].startswith("uni-frozen")
                  and r["seed"] in pu]
        if frozen:
            txt += (" Uniform widths reached by pruning while training (the allocation fixed to uniform's): " +
                    ", ".join(f"{100 * r['test_acc']:.2f}% ({frozen_label(r['variant'])})" for r in frozen) + f" against {100 * pu[frozen[0]['seed']]:.2f}% trained at that "
                    "width from the start (seed " + str(frozen[0]["seed"]) + ").")
        for ep in sorted({r["epochs"] for r in longs if r["net"] == net}):
            lo = [r for r in cell_rows(longs, net, key, f, "ours") if r["epochs"] == ep
                  and r["variant"] == SHOWN["name"]]
            lu = [r for r in cell_rows(longs, net, key, f, "uniform") if r["epochs"] == ep]
            ld = cell_diffs(lo, lu)
            if ld:
                lpu = {r["seed"]: r["test_acc"] for r in lu}
                txt += (f" With {ep} epochs ({ep // NETS[net]['epochs']}x, long_runs.py): ours - uniform "
                        f"{statistics.mean(ld):+.2f} pp ({sum(x >= 0 for x in ld)}/{len(ld)} seeds ≥; " +
                        ", ".join(f"seed {r['seed']} {100 * r['test_acc']:.2f} vs {100 * lpu[r['seed']]:.2f}%"
                                  for r in lo if r["seed"] in lpu) + ")")
                la = {r["seed"]: r for r in cell_rows(longs, net, key, f, "ours") if r["epochs"] == ep
                      and r["variant"] == f"arch-{SHOWN['name']}"}
                if la:
                    lod = {r["seed"]: r["test_acc"] for r in lo}
                    fa = [100 * (a["test_acc"] - lpu[q]) for q, a in la.items() if q in lpu]
                    txt += ("; the architecture ours found there, trained from fresh weights for the same epochs: "
                            + ", ".join(f"seed {q} {100 * a['test_acc']:.2f}% ({a['channels']})"
                                        + (f", pruned while training {100 * lod[q]:.2f}%" if q in lod else "")
                                        for q, a in sorted(la.items()))
                            + f"; fresh - uniform {statistics.mean(fa):+.2f} pp, pruned while training - fresh "
                            + f"{statistics.mean([100 * (lod[q] - a['test_acc']) for q, a in la.items() if q in lod]):+.2f} pp")
                txt += "."
        for v in sorted({r["variant"] for r in all_opt if r["variant"].startswith(SHOWN["name"] + "-")}):
            po = cell_rows([r for r in all_opt if r["variant"] == v], net, key, f, "ours")
            pd = cell_diffs(po, uall)
            p3 = cell_diffs([r for r in po if r["seed"] in {q["seed"] for q in o}], u)
            if pd:
                txt += (f" With `{variant_call(v)}` (`{v}`): {statistics.mean(p3):+.2f} pp over the same seeds "
                        f"({sum(x >= 0 for x in p3)}/{len(p3)} ≥), {statistics.mean(pd):+.2f} over {len(pd)} "
                        f"({sum(x >= 0 for x in pd)}/{len(pd)} ≥)")
                for ep in sorted({r["epochs"] for r in longs if r["net"] == net and r["variant"] == v}):
                    lo = [r for r in cell_rows(longs, net, key, f, "ours") if r["epochs"] == ep and r["variant"] == v]
                    ld = cell_diffs(lo, [r for r in cell_rows(longs, net, key, f, "uniform") if r["epochs"] == ep])
                    if ld:
                        txt += (f"; with {ep} epochs {statistics.mean(ld):+.2f} pp ({sum(x >= 0 for x in ld)}/"
                                f"{len(ld)} seeds ≥; per seed {' '.join(f'{x:+.2f}' for x in ld)})")
                txt += "."
        out.append(txt)
    if not out:
        return []
    return ["", f"### Where ours ({defaults_label()}) still misses the acceptance: by how much and why", "",
            "A cell misses when ours is below uniform width on the mean over the grid's seeds or in more than one of "
            "them. Per cell: the gap, then what was measured about its cause: the architecture against the recovery "
            "(the found network trained from fresh weights), the cost of pruning while training itself (uniform's own "
            "widths reached by pruning), longer training (long_runs.py, same cell, seeds and defaults), and the options "
            "tried on top of the defaults.", ""] + out


def extra_seeds(rows, more, nets, fractions, opt_rows=(), more_opt=()) -> list[str]:
    """Cells with seeds beyond the grid's: ours - uniform over all seeds (defaults, and each option with as many
    seeds), to tell a gap from seed noise."""
    out = []
    sets = [(defaults_label(), rows, more)] + [(f"`{v}`", [r for r in opt_rows if r["variant"] == v],
                                          [r for r in more_opt if r["variant"] == v])
                                         for v in sorted({r["variant"] for r in more_opt})]
    for label, base, extra_rows in sets:
        for net, key, f in cells(nets, fractions):
            extra = cell_rows(extra_rows, net, key, f, "ours")
            if not extra:
                continue
            o = cell_rows(base, net, key, f, "ours") + extra
            u = cell_rows(rows, net, key, f, "uniform") + cell_rows(more, net, key, f, "uniform")
            d = cell_diffs(o, u)
            if len(d) < 2:
                continue
            se = statistics.stdev(d) / len(d) ** 0.5
            out.append(f"| {label} | {NETS[net]['title']} | {RESOURCES[key]} {frac_name(f)} | {len(d)} | "
                       f"{' '.join(f'{x:+.1f}' for x in d)} | {statistics.mean(d):+.2f} ± {se:.2f} | "
                       f"{sum(x >= 0 for x in d)}/{len(d)} |")
    if not out:
        return []
    return ["", "### Beyond 3 seeds: gap or seed noise?", "",
            "The same cells with more seeds (rows in the CSV with seeds outside the grid's): ours - uniform per "
            "seed in seed order, the mean ± its standard error (sd / sqrt(n)).", "",
            "| ours | network | budget | seeds | ours - uniform per seed (pp) | mean ± s.e. (pp) | ours ≥ uniform |",
            "|---|---|---|---|---|---|---|"] + out


def paired_effect(option: str, ours_rows, opt_rows, nets, fractions, base_label: str = "the defaults",
                  same_run: bool = True, recal_base: bool = True) -> list[str]:
    """The option against the defaults on the same seed and the same budget (dense value): same data order and, up
    to hardening, the same run; under MACs budgets the same architecture as well. Defaults rows come from the grid or,
    where the grid ran under the earlier latency profile, from the diagnostics' `default-recal` re-runs."""
    # the base is reset_optimizer off: its re-runs under the re-calibrated latency profile pair too
    recal = [r for r in load_rows(DIAG) if r["variant"] == "default-recal"] if recal_base else []
    out = []
    for net, key, f in cells(nets, fractions):
        p = cell_rows([r for r in opt_rows if r["variant"] == option], net, key, f, "ours")
        if not p:
            continue
        d, same_arch, n_pairs = [], 0, 0
        for r in p:
            base = [q for q in ours_rows + recal if q["net"] == net and q["resource"] == key
                    and abs(q["fraction"] - f) < 1e-9 and q["seed"] == r["seed"]
                    and abs(q["dense_value"] - r["dense_value"]) < 1e-6 * q["dense_value"]]
            if not base:
                continue
            n_pairs += 1
            d.append(100 * (r["test_acc"] - base[0]["test_acc"]))
            same_arch += r["channels"] == base[0]["channels"]
        if d:
            out.append(f"| {NETS[net]['title']} | {RESOURCES[key]} {frac_name(f)} | {n_pairs} | "
                       f"{' '.join(f'{x:+.2f}' for x in d)} | {statistics.mean(d):+.2f} | "
                       f"{sum(x > 0 for x in d)}/{len(d)} | {same_arch}/{n_pairs} |")
    if not out:
        return []
    why = ("Up to hardening the two runs are the same run (same seed, data order and pruning), so this difference is "
           "the option's effect on the recovery alone, without the seed-to-seed spread of the comparison with uniform "
           "width; where the architecture also matches (MACs budgets), it is the same network trained on.") if same_run \
        else ("Same seed, data order and budget; the schedule differs, so the pruning and the architecture differ "
              "too: this is the option's whole effect, without the seed-to-seed spread of uniform width.")
    return ["", f"### `{variant_call(option)}` against {base_label}, paired (same seed, same budget)", "", why, "",
            "| network | budget | pairs | option - base per seed (pp) | mean (pp) | option better | same channels |",
            "|---|---|---|---|---|---|---|"] + out


def markdown(rows, nets, fractions, args, opt_rows=None, more=None, more_opt=None) -> str:
    lines = ["## Compute budgets (latency, MACs): ours vs uniform width scaling (issue 15)", "",
             f"`benchmarks/compute_budgets.py` on board `{BOARD}` (latency: its calibrated profile, an emulated Cortex-M4). "
             "Budgets 1/4 and 1/10 of the dense network's latency and of its MACs. **ours**: the dense network trained with "
             "`MCUPruneCallback(board, {resource: B})`, library defaults (since issue 15: under a latency or MACs budget "
             "warm-up 0.02 and hardening at 0.15 of the run, `pi_norm=\"global\"`, `compute_step=\"share\"`, "
             "`soft_floor=True`" + (
                 ""  if SHOWN["name"] == "default" else
                 f"; and, since this change, `reset_optimizer=True` under a latency or MACs budget: Adam's state is "
                 f"cleared at hardening, weights kept). **The default flip happened in this change**: the rows counted as "
                 f"ours below are those of variant `{SHOWN['name']}` (`{option_call(SHOWN['name'])}` passed explicitly, "
                 f"so they do not depend on the library's default); the earlier defaults (reset_optimizer off, rows of "
                 f"variant `default`) are shown beside them as an option and paired against them below") +
             "). **uniform**: the same "
             "architecture with every prunable group at round(w x dense channels), the largest w within the budget, fresh "
             "weights, trained plainly. Same data, Adam (cosine LR), epochs and seeds for both: Fashion-MNIST nets "
             f"{args.train_subset} training images x 3 epochs (batch 128, lr 2e-3), test on the 10k test set; DS-CNN on "
             "keyword spotting (10 espeak-ng words, `KWSConfig()` defaults) x 12 epochs (batch 64, lr 3e-3), test on 7 "
             "unseen voices. Short runs sized for a shared 2-core CPU: absolute accuracies are below full training. "
             "min ch: the fewest channels of any prunable group in the final network (per seed); "
             "below floor: groups under min(4, their uniform-width count), summed over seeds. "
             "Per-run figures: `benchmarks/results/compute_budgets.csv`.", "",
             "| network | budget | ours (%) | uniform (%) | ours - uniform (pp) | ours ≥ uniform (seeds) | budget met (ours/uniform) | min ch (ours) | below floor | channels per group (ours, seed 0) | uniform channels |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    verdict = []
    for net, key, f in cells(nets, fractions):
        o, u = cell_rows(rows, net, key, f, "ours"), cell_rows(rows, net, key, f, "uniform")
        if not o and not u:
            continue
        pu = {r["seed"]: r["test_acc"] for r in u}
        d = [100 * (r["test_acc"] - pu[r["seed"]]) for r in o if r["seed"] in pu]
        wins = sum(x >= 0 for x in d)
        mean_d = statistics.mean(d) if d else None
        if d:
            verdict.append((net, key, f, mean_d, wins, len(d)))
        lines.append(
            f"| {NETS[net]['title']} | {RESOURCES[key]} {frac_name(f)} | {ms([r['test_acc'] for r in o]) if o else 'n/a'} | "
            f"{ms([r['test_acc'] for r in u]) if u else 'n/a'} | {'n/a' if mean_d is None else f'{mean_d:+.2f}'} | "
            f"{wins}/{len(d)} | {sum(r['meets_budget'] for r in o)}/{len(o)} , {sum(r['meets_budget'] for r in u)}/{len(u)} | "
            f"{', '.join(str(r['min_channels']) for r in o)} | {sum(r['below_soft_floor'] for r in o)} | "
            f"{o[0]['channels'] if o else ''} | {u[0]['channels'] if u else ''} |")
    notes = profile_notes(rows, nets, fractions)
    if notes:
        lines += [""] + notes
    lines += option_table(rows, opt_rows or [], nets, fractions, args.option)
    lines += ["", f"![compute budgets](benchmarks/results/{PNG.name})", "", "### Verdict against the acceptance", ""]
    if verdict:
        mean_ok = [v for v in verdict if v[3] >= 0]
        seed_ok = [v for v in verdict if 2 * v[4] >= v[5] + (v[5] > 1)]  # at least 2 of 3
        lines.append(f"- ours ({defaults_label()}) ≥ uniform on the mean over seeds: {len(mean_ok)}/{len(verdict)} cells.")
        lines.append(f"- ours ({defaults_label()}) ≥ uniform in at least 2 of 3 seeds: {len(seed_ok)}/{len(verdict)} cells.")
        for opt in args.option or []:
            orows = [r for r in opt_rows or [] if r["variant"] == opt]
            if not any(len(cell_rows(orows, r["net"], r["resource"], r["fraction"], "ours")) >= 3 for r in orows):
                continue  # the verdict counts an option in the cells where it ran 3 seeds
            both, alt, mean_either, alone, alone_mean, ran3 = 0, [], 0, 0, 0, 0
            for n, k, f, d, w, c in verdict:
                u = cell_rows(rows, n, k, f, "uniform")
                ok0 = wins_cell(cell_diffs(cell_rows(rows, n, k, f, "ours"), u))
                p = cell_rows(orows, n, k, f, "ours")
                ok1 = wins_cell(cell_diffs(p, u)) if len(p) >= 3 else (False, False)
                mean_either += ok0[0] or ok1[0]
                ran3 += len(p) >= 3
                alone += all(ok1)
                alone_mean += ok1[0]
                if all(ok0) or all(ok1):
                    both += 1
                    if not all(ok0):
                        alt.append(f"{NETS[n]['title']} {RESOURCES[k]} {frac_name(f)}")
            lines.append(f"- ours with the {defaults_label()} or with `{variant_call(opt)}` (`{opt}`; per cell, where it ran 3 seeds) ≥ "
                         f"uniform on the mean and in at least 2 of 3 seeds: {both}/{len(verdict)} cells" +
                         (f" (by the option: {', '.join(alt)})" if alt else " (the option wins no cell the defaults lose)")
                         + f"; on the mean alone: {mean_either}/{len(verdict)}. The option by itself, in the {ran3} "
                         f"cells where it ran 3 seeds: ≥ uniform on the mean in {alone_mean}, and also in at least 2 of 3 "
                         f"seeds in {alone}.")
        losing = [v for v in verdict if v[3] < 0]
        if losing:
            lines.append("- Cells where ours loses on the mean: " + "; ".join(
                f"{NETS[n]['title']} {RESOURCES[k]} {frac_name(f)} {d:+.2f} pp ({w}/{c} seeds ≥)" for n, k, f, d, w, c in losing)
                + ".")
        n_ours = [r for r in rows if r["method"] == "ours"]
        lines.append(f"- Budget met in every run: ours {sum(r['meets_budget'] for r in n_ours)}/{len(n_ours)}, uniform "
                     f"{sum(r['meets_budget'] for r in rows if r['method'] == 'uniform')}/"
                     f"{sum(1 for r in rows if r['method'] == 'uniform')}.")
        lines.append(f"- Groups below min(4, uniform-width count) in ours' final networks: "
                     f"{sum(r['below_soft_floor'] for r in n_ours)} over {len(n_ours)} runs.")
        short = [f"{NETS[n]['title']} {RESOURCES[k]} {frac_name(f)} (n={c})" for n, k, f, d, w, c in verdict if c < 3]
        lines.append("- Cells with fewer than 3 seeds (not yet the acceptance's 3-seed comparison): " +
                     ("; ".join(short) if short else "none") + ".")
    lines += losing_why(rows, more or [], nets, fractions, (opt_rows or []) + (more_opt or []))
    lines += extra_seeds(rows, more or [], nets, fractions, opt_rows or [], more_opt or [])
    everything = [r for r in rows + (more or []) if r["method"] == "ours"]
    all_opt = (opt_rows or []) + (more_opt or [])
    if SHOWN["name"] != "default" and "default" in (args.option or []):  # the flip: the new defaults against the old
        lines += paired_effect(SHOWN["name"], [r for r in all_opt if r["variant"] == "default"], everything, nets,
                               fractions, base_label="the earlier defaults (reset_optimizer off)")
    elif args.option:
        lines += paired_effect(args.option[0], everything, all_opt, nets, fractions,
                               base_label="the defaults (reset_optimizer off)")
    for opt in [o for o in args.option or [] if o.startswith(SHOWN["name"] + "-")]:  # the new defaults + one more
        lines += paired_effect(opt, everything, all_opt, nets, fractions, base_label=f"the {defaults_label()}",
                               same_run=VARIANTS[opt].keys() <= {"reset_optimizer", "_lr_warmup"},
                               recal_base=SHOWN["name"] == "default")
    lines += sram_check()
    lines += diagnostics({o for o in args.option or [] if o.startswith("optreset-")})
    return "\n".join(lines)


def option_call(name: str) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in VARIANTS[name].items())


def sram_check() -> list[str]:
    """Ours with the issue-15 defaults under SRAM budgets (fashion_mnist_sram.py's recipe, rows in
    fashion_mnist_sram_issue15.csv) beside uniform width and the earlier ours from fashion_mnist_sram.csv."""
    new, old = RESULTS / "fashion_mnist_sram_issue15.csv", RESULTS / "fashion_mnist_sram.csv"
    if not new.exists() or not old.exists():
        return []
    with new.open() as f:
        rows = list(csv.DictReader(f))
    with old.open() as f:
        prev = list(csv.DictReader(f))
    out = ["", "### The SRAM lead with the new defaults", "",
           "`fashion_mnist_sram.py`'s recipe (reference CNN, 6k images x 3 epochs), ours re-run with the issue-15 method "
           "and `reset_optimizer=False` (the defaults before reset_optimizer became one; with it on, section "
           "\"Fashion-MNIST under a peak-SRAM budget\") (rows: `benchmarks/results/fashion_mnist_sram_issue15.csv`); "
           "uniform width and ours before issue 15 from `fashion_mnist_sram.csv` (same seeds and settings):", "",
           "| SRAM budget | seed | ours, issue 15 (%) | ours before (%) | uniform (%) | channels (ours, issue 15) |",
           "|---|---|---|---|---|---|"]
    for r in rows:
        def pick(m):
            x = [q for q in prev if q["method"] == m and q["seed"] == r["seed"] and abs(float(q["fraction"]) - float(r["fraction"])) < 1e-9]
            return f"{100 * float(x[0]['test_acc']):.2f}" if x else "n/a"
        out.append(f"| 1/{round(1 / float(r['fraction']))} | {r['seed']} | {100 * float(r['test_acc']):.2f} | {pick('ours')} | "
                   f"{pick('uniform')} | {r['channels']} |")
    return out


def diagnostics(shown=()) -> list[str]:
    """The diagnosis of issue 15 from DIAG: variants of ours (mostly ResNet-8 at 1/4 of dense latency, seed 0);
    variants in `shown` (the options table has them, with every seed) are left out."""
    rows = [r for r in load_rows(DIAG) if r["variant"] not in shown]
    if not rows:
        return []
    out = ["", "### Why: the diagnosis (mostly ResNet-8, Fashion-MNIST, 1/4 of dense latency, seed 0)", "",
           f"Per-run figures: `benchmarks/results/{DIAG.name}`. One seed each (the seed-to-seed spread of these runs is "
           "1-2 pp, more at 1/10), so single differences below ~2 pp are not significant; the trends across variants are "
           "the evidence. Variants ran with the schedule 10-60% unless the text says otherwise.", "",
           "| network, budget, seed | variant | what | test acc (%) | channels per group |", "|---|---|---|---|---|"]
    order = sorted(rows, key=lambda r: (r["net"] != "resnet8", r["net"], r["resource"], -r["fraction"], r["seed"],
                                        r["method"] != "uniform"))
    for r in order:
        cell = f"{r['net']} {RESOURCES[r['resource']]} 1/{round(1 / r['fraction'])}, s{r['seed']}"
        if r["method"] == "uniform":
            out.append(f"| {cell} | uniform | uniform width trained from fresh weights (the baseline) | "
                       f"{100 * r['test_acc']:.2f} | {r['channels']} |")
        else:
            out.append(f"| {cell} | {r['variant']} | {DIAG_TEXT.get(r['variant'], '')} | {100 * r['test_acc']:.2f} | "
                       f"{r['channels']} |")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--nets", nargs="+", choices=sorted(NETS), default=["refcnn", "resnet8", "dscnn", "mbv2"])
    p.add_argument("--resources", nargs="+", choices=sorted(KEYS), default=list(RESOURCES))
    p.add_argument("--fractions", type=float, nargs="+", default=[1 / 4, 1 / 10])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--methods", nargs="+", choices=["ours", "uniform"], default=["ours", "uniform"])
    p.add_argument("--variant", choices=sorted(VARIANTS), default="default", help="callback options of ours (diagnostics)")
    p.add_argument("--option", nargs="*", choices=sorted(VARIANTS), default=[],
                   help="section: also show ours with these variants (one option each) beside the defaults")
    p.add_argument("--default-variant", choices=sorted(VARIANTS), default="default",
                   help="section: the variant whose rows count as ours with the defaults (optreset: the defaults under "
                        "compute budgets since reset_optimizer became one of them)")
    p.add_argument("--epochs", type=int, default=None, help="default: 3 (Fashion-MNIST nets), 12 (DS-CNN)")
    p.add_argument("--train-subset", type=int, default=6000)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--csv", type=Path, default=CSV)
    p.add_argument("--no-write", action="store_true", help="do not write BENCHMARKS.md / the PNG")
    p.add_argument("--report-only", action="store_true", help="run nothing; write the section from the finished runs")
    args = p.parse_args()
    SHOWN["name"] = args.default_variant
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*LightningModule.*has parameters that were not used.*")
    warnings.filterwarnings("ignore", ".*already fits every budget.*")

    ctx = {"dense": {}, "uniform": {}}
    for n in args.nets:
        rep = measure(NETS[n]["build"](), NETS[n])
        ctx["dense"][n] = {k: report_value(rep, k) for k in KEYS}
        ctx["uniform"][n] = Uniform(NETS[n])
        console.print(f"{n}: dense latency {rep.latency_ms:.2f} ms ({rep.latency_source}), {rep.macs:,} MACs, groups "
                      f"{ctx['uniform'][n].c0}")
    rows = load_rows(args.csv)

    def same(r, net, m):
        ep = args.epochs or NETS[net]["epochs"]
        return r["epochs"] == ep and (r["variant"] == (args.variant if m == "ours" else "")) and \
            (NETS[net]["task"] != "Fashion-MNIST" or r["train_subset"] == args.train_subset)
    plan = [(n, k, f, m, s) for s in args.seeds for n in args.nets for k in args.resources for f in args.fractions
            for m in args.methods]
    done = {(r["net"], r["resource"], round(r["fraction"], 6), r["method"], r["seed"]) for r in rows if same(r, r["net"], r["method"])}
    todo = [] if args.report_only else [x for x in plan if (x[0], x[1], round(x[2], 6), x[3], x[4]) not in done]
    console.print(f"{len(done & {(n, k, round(f, 6), m, s) for n, k, f, m, s in plan})} of {len(plan)} runs in "
                  f"{args.csv.name}; {len(todo)} to run")
    t0 = time.perf_counter()
    for i, (n, k, f, m, s) in enumerate(todo):
        console.print(f"[bold]run {i + 1}/{len(todo)}[/]: {n} {k} {frac_name(f)} {m} seed {s} "
                      f"(elapsed {time.perf_counter() - t0:.0f} s)")
        row = run_one(n, k, f, m, s, ctx, args)
        append_csv_row(args.csv, FIELDS, row)
        rows.append(row)
        console.print(f"  -> acc {100 * row['test_acc']:.2f} %, {k} {row['value']:.4g}/{row['budget']:.4g} "
                      f"({'met' if row['meets_budget'] else 'EXCEEDED'}), channels {row['channels']}, fit {row['fit_s']:.0f} s")
    if args.report_only and args.default_variant != "default":
        args.variant = args.default_variant  # the section's "ours (defaults)" rows
    if args.csv == CSV:  # options whose rows are only in the diagnostics CSV (e.g. optreset-early8, optreset-lrwarm)
        have = {r["variant"] for r in rows}
        rows += [r for r in load_rows(DIAG) if r["method"] == "ours" and r["variant"] in set(args.option) - have]
    all_rows = list(rows)
    keep = {(n, k, round(f, 6), m, s) for n, k, f, m, s in plan}
    in_plan = [r for r in rows if (r["net"], r["resource"], round(r["fraction"], 6), r["method"], r["seed"]) in keep]
    opt_rows = [r for r in in_plan if r["method"] == "ours" and r["variant"] in args.option
                and r["epochs"] == (args.epochs or NETS[r["net"]]["epochs"])]
    rows = [r for r in in_plan if same(r, r["net"], r["method"])]
    outside = [r for r in all_rows if r["seed"] not in args.seeds and r["net"] in args.nets
               and r["epochs"] == (args.epochs or NETS[r["net"]]["epochs"])]  # seeds beyond the plan's (noise check)
    more = [r for r in outside if same(r, r["net"], r["method"])]
    more_opt = [r for r in outside if r["method"] == "ours" and r["variant"] in args.option]
    if not args.no_write and rows:
        plot(rows, args.nets, args.fractions)
        md = markdown(rows, args.nets, args.fractions, args, opt_rows, more, more_opt)
        write_section("compute-budgets", md)
        console.print(md)


if __name__ == "__main__":
    main()
