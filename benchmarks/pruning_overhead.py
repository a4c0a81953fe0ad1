"""Issue 3: the training-time overhead of MCUPruneCallback on the reference CNN, Fashion-MNIST, mps2-an386.

(i)  median optimiser-step time (on_train_batch_start -> on_train_batch_end, including the callback's own
     hooks) during the pruning phase, while the masks are active and before the first physical removal
     (the network is still dense-sized), vs plain training of the same dense network on the same batches.
     Target: ratio <= 1.05.
(ii) whole-run wall time of `trainer.fit` with the callback (SRAM budget 1/4 of the dense peak) vs dense
     training for the same epochs. Target: ratio <= 1.0.
Baseline and ours alternate (repeated) because the machine is shared and noisy.
Run: python benchmarks/pruning_overhead.py [--repeats 3]
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
from _common import write_section  # noqa: E402

import lightning.pytorch as pl  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from lightning_mcuprune import analyze, zoo  # noqa: E402
from lightning_mcuprune.callback import MCUPruneCallback  # noqa: E402
from lightning_mcuprune.classifier import ImageClassifier  # noqa: E402
from lightning_mcuprune.datasets import FashionMNISTDataModule  # noqa: E402

BOARD = "mps2-an386"
INPUT = (1, 1, 28, 28)
console = Console()


class StepStart(pl.Callback):
    """Put first in the callback list: stamps the start of each training batch."""

    def __init__(self):
        self.t0 = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.t0 = time.perf_counter()


class StepEnd(pl.Callback):
    """Put last: records (step, seconds, phase of the pruning callback) at the end of each batch; can stop the run."""

    def __init__(self, start: StepStart, prune: MCUPruneCallback | None = None, stop_at: int | None = None):
        self.start, self.prune, self.stop_at = start, prune, stop_at
        self.rows: list[tuple[int, float, str]] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        dt = time.perf_counter() - self.start.t0
        self.rows.append((trainer.global_step, dt, self.prune.phase if self.prune else "plain"))
        if self.stop_at is not None and trainer.global_step >= self.stop_at:
            trainer.should_stop = True


def make(seed, args, subset):
    pl.seed_everything(seed, workers=True, verbose=False)
    model = ImageClassifier(zoo.reference_cnn(), lr=2e-3, input_shape=INPUT)
    dm = FashionMNISTDataModule(batch_size=args.batch_size, train_subset=subset, val_size=0, seed=seed)
    return model, dm


def trainer(callbacks, **kw):
    return pl.Trainer(accelerator="cpu", devices=1, callbacks=callbacks, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                      limit_val_batches=0, deterministic=True, **kw)


def step_times(method: str, budget: int, seed: int, args) -> dict:
    """(i): one short run; ours is stopped right after the first physical removal."""
    model, dm = make(seed, args, args.batch_size * args.step_run_steps)
    start = StepStart()
    cb = MCUPruneCallback(board=BOARD, budgets={"sram": budget}, module="net", verbose=False) if method == "ours" else None
    # the pruning schedule is that of a run of step_run_steps; ours stops after its first removal
    n = args.step_run_steps  # the callback's default schedule: warm-up 0.1, hardening 0.6, 3 removals
    warm, harden = int(round(0.1 * n)), int(round(0.6 * n))
    first = warm + round((harden - warm) / 4)
    end = StepEnd(start, cb, stop_at=first)  # plain runs stop where ours first shrinks the network
    callbacks = [start] + ([cb] if cb else []) + [end]
    tr = trainer(callbacks, max_steps=args.step_run_steps)
    if cb is not None:
        orig = cb._schedule

        def schedule(trainer_):
            orig(trainer_)
            end.stop_at = min(cb.removal_steps)  # stop once the network starts to shrink
        cb._schedule = schedule
    tr.fit(model, datamodule=dm)
    rows = end.rows
    if cb is None:
        sel = [dt for step, dt, _ in rows if warm < step < first]  # same step indices as ours' window
        return {"steps": sel, "first": rows[0][1]}
    first_removal = min(cb.removal_steps)
    # global_step after the batch = index of the batch + 1; the removal runs at the end of batch with step == first_removal
    pruning = [dt for step, dt, ph in rows if ph == "pruning" and cb.warmup_step < step < first_removal]
    warm = [dt for step, dt, ph in rows if ph == "warmup" and step - 1 >= args.skip]
    return {"steps": pruning, "warmup_steps": warm, "first": rows[0][1], "window": (cb.warmup_step, first_removal)}


def whole_run(method: str, budget: int, seed: int, args) -> dict:
    """(ii): a full run of `epochs` epochs; wall time of trainer.fit."""
    model, dm = make(seed, args, args.train_subset)
    cb = MCUPruneCallback(board=BOARD, budgets={"sram": budget}, module="net", verbose=False) if method == "ours" else None
    tr = trainer([cb] if cb else [], max_epochs=args.epochs)
    dm.setup("fit")  # data loading outside the timed region, for both
    t = time.perf_counter()
    tr.fit(model, datamodule=dm)
    wall = time.perf_counter() - t
    out = {"wall": wall}
    if cb is not None:
        out["sram"] = cb.report.peak_sram_bytes
        out["channels"] = "-".join(str(m.out_channels) for m in model.net.modules() if isinstance(m, torch.nn.Conv2d))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--step-run-steps", type=int, default=80, help="(i): length of the run the schedule is made for")
    p.add_argument("--skip", type=int, default=3, help="(i): baseline steps skipped at the start")
    p.add_argument("--train-subset", type=int, default=1920, help="(ii): training images")
    p.add_argument("--epochs", type=int, default=2, help="(ii): epochs")
    p.add_argument("--whole-repeats", type=int, default=2)
    p.add_argument("--no-write", action="store_true", help="do not write BENCHMARKS.md")
    args = p.parse_args()
    torch.set_num_threads(2)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*no logger configured.*")
    dense_peak = analyze(zoo.reference_cnn().eval(), torch.zeros(*INPUT), board=BOARD).peak_sram_bytes
    budget = dense_peak // 4
    t_all = time.perf_counter()

    # (i) step time, alternating plain / ours
    base_med, ours_med, warm_med, ratios, window = [], [], [], [], None
    for r in range(args.repeats):
        order = ("plain", "ours") if r % 2 == 0 else ("ours", "plain")
        res = {m: step_times(m, budget, r, args) for m in order}
        # compare like with like: the baseline's steps at the same step indices as ours' pruning window
        window = res["ours"]["window"]
        b = statistics.median(res["plain"]["steps"])
        o = statistics.median(res["ours"]["steps"])
        base_med.append(b); ours_med.append(o); ratios.append(o / b)
        if res["ours"]["warmup_steps"]:
            warm_med.append(statistics.median(res["ours"]["warmup_steps"]))
        console.print(f"(i) repeat {r}: plain median {1000 * b:.1f} ms/step over {len(res['plain']['steps'])} steps, "
                      f"ours (pruning, masks active, steps {window[0] + 1}..{window[1] - 1}) {1000 * o:.1f} ms/step over "
                      f"{len(res['ours']['steps'])} steps: ratio {o / b:.3f}; ours' first step (tracing etc.) "
                      f"{res['ours']['first']:.2f} s vs {res['plain']['first']:.2f} s")

    # (ii) whole runs, alternating
    dense_w, ours_w, wratios, info = [], [], [], {}
    for r in range(args.whole_repeats):
        order = ("dense", "ours") if r % 2 == 0 else ("ours", "dense")
        res = {m: whole_run(m, budget, r, args) for m in order}
        dense_w.append(res["dense"]["wall"]); ours_w.append(res["ours"]["wall"])
        wratios.append(res["ours"]["wall"] / res["dense"]["wall"])
        info = res["ours"]
        console.print(f"(ii) repeat {r}: dense {res['dense']['wall']:.1f} s, ours {res['ours']['wall']:.1f} s "
                      f"(final SRAM {res['ours']['sram']} B of {budget}, convs {res['ours']['channels']}): "
                      f"ratio {wratios[-1]:.3f}")

    med_ratio = statistics.median(ratios)
    whole_ratio = statistics.median(wratios)
    t = Table(title="pruning overhead")
    for c in ("measure", "plain / dense", "ours", "ratio (median over repeats)", "target"):
        t.add_column(c)
    t.add_row("median step time (pruning phase)", f"{1000 * statistics.median(base_med):.1f} ms",
              f"{1000 * statistics.median(ours_med):.1f} ms", f"{med_ratio:.3f}", "<= 1.05")
    t.add_row("whole-run fit wall time", f"{statistics.median(dense_w):.1f} s", f"{statistics.median(ours_w):.1f} s",
              f"{whole_ratio:.3f}", "<= 1.0")
    console.print(t)

    def ok(v, lim, per=None):
        if per and min(per) <= lim < max(per):  # repeats on both sides of the target: the noise decides
            return "inconclusive (repeats straddle the target; machine noise)"
        return "met" if v <= lim else "NOT met"
    md = ["## Pruning overhead (issue 3)", "",
          "`benchmarks/pruning_overhead.py`: the reference CNN on Fashion-MNIST, board `mps2-an386`, batch "
          f"{args.batch_size}, Adam + cosine LR, SRAM budget 1/4 of the dense peak ({budget} B), callback defaults. "
          "Plain and ours alternate, repeated, on the same data and seeds (the 2-core machine is shared with other work, "
          "so absolute times are noisy; the ratios are per repeat, then the median).", "",
          "| measure | plain / dense | ours | ratio ours/plain (median) | per repeat | target | verdict |",
          "|---|---|---|---|---|---|---|",
          f"| (i) median step time, pruning phase with masks active, network not yet shrunk (steps "
          f"{window[0] + 1}..{window[1] - 1} of a {args.step_run_steps}-step schedule) | "
          f"{1000 * statistics.median(base_med):.1f} ms | {1000 * statistics.median(ours_med):.1f} ms | "
          f"**{med_ratio:.3f}** | {', '.join(f'{x:.3f}' for x in ratios)} | <= 1.05 | {ok(med_ratio, 1.05, ratios)} |",
          f"| (ii) whole-run `trainer.fit` wall time, {args.train_subset} images x {args.epochs} epochs | "
          f"{statistics.median(dense_w):.1f} s | {statistics.median(ours_w):.1f} s | **{whole_ratio:.3f}** | "
          f"{', '.join(f'{x:.3f}' for x in wratios)} | <= 1.0 | {ok(whole_ratio, 1.0, wratios)} |", ""]
    if warm_med:
        md.append(f"Warm-up steps of ours (dense, importance accumulation only): median {1000 * statistics.median(warm_med):.1f} ms. "
                  f"Step time = `on_train_batch_start` -> `on_train_batch_end` measured by callbacks placed first and last, "
                  f"so it includes MCUPruneCallback's own hooks (pi/mask update every step, mask hooks, importance). "
                  f"(ii) includes tracing, removals, hardening and the final `analyze`; pruned run ended at "
                  f"{info.get('sram')} B, convs {info.get('channels')}.")
    md.append(f"\nTotal benchmark time {time.perf_counter() - t_all:.0f} s.")
    if not args.no_write:
        write_section("pruning-overhead", "\n".join(md))
    console.print("\n".join(md))


if __name__ == "__main__":
    main()
