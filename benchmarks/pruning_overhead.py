"""Issue 3: the training-time overhead of MCUPruneCallback on the reference CNN, Fashion-MNIST, mps2-an386.

(i)  median optimiser-step time (on_train_batch_start -> on_train_batch_end, including the callback's own
     hooks) during the pruning phase, while the masks are active and before the first physical removal
     (the network is still dense-sized), vs plain training of the same dense network on the same batches.
     Target: ratio <= 1.05. Warm-up steps (masks and importance only) against plain at the same step indices:
     target <= 1.02 (issue 17).
(ii) whole-run wall time of `trainer.fit` with the callback (SRAM budget 1/4 of the dense peak) vs dense
     training for the same epochs. Target: ratio <= 1.0.
(iii) where the time of one warm-up and one pruning-phase step goes: each piece of the callback timed (wall,
     median over the window's steps) and profiled (torch.profiler aten op calls and self-CPU, less sensitive to
     the machine's load than wall time), and the whole step's op calls, ours against plain.
Baseline and ours alternate (repeated) because the machine is shared and noisy.
Run: python benchmarks/pruning_overhead.py [--repeats 3] [--threads 1]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_section  # noqa: E402

import lightning.pytorch as pl  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from lightning_mcuprune import analyze  # noqa: E402
from lightning_mcuprune.examples import zoo  # noqa: E402
from lightning_mcuprune.callback import MCUPruneCallback  # noqa: E402
from lightning_mcuprune.examples.classifier import ImageClassifier  # noqa: E402
from lightning_mcuprune.data.datasets import FashionMNISTDataModule  # noqa: E402

BOARD = "mps2-an386"
INPUT = (1, 1, 28, 28)
console = Console(width=240)


class Lockstep:
    """Two runs in two threads taking turns step by step (plain, ours, plain, ...): a step of one never overlaps a
    step of the other, and both see the same machine load (the 2-core machine is shared; between whole runs the
    load changes by more than the overhead measured)."""

    def __init__(self, first: str):
        self.turn, self.done, self.cond = first, set(), threading.Condition()

    @staticmethod
    def other(me: str) -> str:
        return "ours" if me == "plain" else "plain"

    def wait(self, me: str) -> None:
        with self.cond:
            self.cond.wait_for(lambda: self.turn == me or self.other(me) in self.done)

    def hand_over(self, me: str, finished: bool = False) -> None:
        with self.cond:
            if finished:
                self.done.add(me)
            self.turn = self.other(me)
            self.cond.notify_all()


class StepStart(pl.Callback):
    """Put first in the callback list: stamps the start of each training batch (after waiting for its turn)."""

    def __init__(self, lockstep: Lockstep | None = None, me: str = ""):
        self.t0 = None
        self.lockstep, self.me = lockstep, me

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self.lockstep is not None:
            self.lockstep.wait(self.me)
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
            return  # keep the turn until fit returns: the end of fit (export) traces with torch.fx, which patches
            # nn.Module.__call__ process-wide, so the other thread must not run a forward meanwhile
        if self.start.lockstep is not None:
            self.start.lockstep.hand_over(self.start.me)


def make(seed, args, subset):
    pl.seed_everything(seed, workers=True, verbose=False)
    model = ImageClassifier(zoo.reference_cnn(), lr=2e-3, input_shape=INPUT)
    dm = FashionMNISTDataModule(batch_size=args.batch_size, train_subset=subset, val_size=0, seed=seed)
    return model, dm


_ROOT = tempfile.TemporaryDirectory(prefix="pruning_overhead_")  # the callback's export after fit goes here


def trainer(callbacks, **kw):
    return pl.Trainer(accelerator="cpu", devices=1, callbacks=callbacks, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                      limit_val_batches=0, deterministic=True, default_root_dir=_ROOT.name, **kw)


def paired_step_times(budget: int, seed: int, args, first: str) -> dict:
    """(i): plain and ours in lockstep (see Lockstep), `first` taking the first step."""
    lockstep, res, errors = Lockstep(first), {}, []
    models = {m: make(seed, args, args.batch_size * args.step_run_steps) for m in ("plain", "ours")}  # seeded in turn

    def run(method):
        try:
            res[method] = step_times(method, budget, seed, args, lockstep, models[method])
        except BaseException as e:  # noqa: BLE001 - re-raised in the main thread
            errors.append(e)
        finally:
            lockstep.hand_over(method, finished=True)
    threads = [threading.Thread(target=run, args=(m,)) for m in ("plain", "ours")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return res


def step_times(method: str, budget: int, seed: int, args, lockstep: Lockstep | None = None, made=None) -> dict:
    """(i): one short run; ours is stopped right after the first physical removal."""
    model, dm = made or make(seed, args, args.batch_size * args.step_run_steps)
    start = StepStart(lockstep, method)
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
    if lockstep is not None:
        lockstep.wait(method)  # setup (tracing) inside this run's turn, for the same reason
    tr.fit(model, datamodule=dm)
    rows = end.rows
    if cb is None:
        sel = [dt for step, dt, _ in rows if warm < step < first]  # same step indices as ours' window
        # same step indices as ours' warm-up steps (the step that ends the warm-up switches to pruning: not one)
        warm_sel = [dt for step, dt, _ in rows if args.skip < step < warm]
        return {"steps": sel, "warmup_steps": warm_sel, "first": rows[0][1]}
    first_removal = min(cb.removal_steps)
    # global_step after the batch = index of the batch + 1; the removal runs at the end of batch with step == first_removal
    pruning = [dt for step, dt, ph in rows if ph == "pruning" and cb.warmup_step < step < first_removal]
    warm = [dt for step, dt, ph in rows if ph == "warmup" and step > args.skip]
    return {"steps": pruning, "warmup_steps": warm, "first": rows[0][1], "window": (cb.warmup_step, first_removal)}


class _Pieces(pl.Callback):
    """(iii): wraps the pieces of MCUPruneCallback's step; times each (wall, per step) and profiles each once
    (aten op calls, self-CPU) at step `profile_at[phase]`; profiles whole steps when `whole` is set."""

    def __init__(self, cb, args, whole: dict | None = None):
        self.cb, self.args, self.whole = cb, args, whole
        self.wall: dict = {}   # (phase, piece) -> [seconds per step]
        self.ops: dict = {}    # (phase, piece) -> (op calls, self-CPU s)
        self.prof = None
        if cb is None:
            return
        for name, obj, attr in (("on_train_batch_start (first step: tracing; then the calibration sample)", cb, "on_train_batch_start"),
                                ("on_after_backward: mask gradients, importance EMA", cb, "on_after_backward"),
                                ("on_train_batch_end: pi task step", None, "task_step"),
                                ("on_train_batch_end: projection onto the budget target", None, "project"),
                                ("on_train_batch_end: masks from importance ranks", None, "update_masks"),
                                ("on_train_batch_end: masks to the hooks", cb, "_set_masks"),
                                ("on_train_batch_end: history row (resource model)", cb, "_record"),
                                ("on_train_batch_end: logging", cb, "_log")):
            self._wrap(name, obj, attr)

    def _wrap(self, name, obj, attr):
        if obj is not None:
            original = getattr(obj, attr)
        self._state_attrs = getattr(self, "_state_attrs", [])

        def wrapped(*a, **kw):
            target = original if obj is not None else getattr(type(self.cb.state), attr).__get__(self.cb.state)
            phase, step = self.cb.phase, self.step
            if self.whole is None and step == self.args.profile_at.get(phase) and (phase, name) not in self.ops:
                with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
                    out = target(*a, **kw)
                ka = prof.key_averages()
                self.ops[(phase, name)] = (sum(e.count for e in ka), sum(e.self_cpu_time_total for e in ka) / 1e6)
                return out
            t = time.perf_counter()
            out = target(*a, **kw)
            per_step = self.wall.setdefault((phase, name), {})
            per_step[step] = per_step.get(step, 0.0) + time.perf_counter() - t
            return out
        if obj is None:  # a PruningState method: the state exists once training starts (see on_train_batch_start)
            self._state_attrs.append((attr, wrapped))
        else:
            setattr(obj, attr, wrapped)

    step = -1

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.step = trainer.global_step + 1  # the step this batch ends at (as in StepEnd's rows)
        state = self.cb.state if self.cb is not None else None
        if state is not None and not getattr(state, "_bench_wrapped", False):
            for attr, w in self._state_attrs:
                setattr(state, attr, w)
            state._bench_wrapped = True
        if self.whole is not None and self.step in self.whole:
            self.prof = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU])
            self.prof.__enter__()

    def end(self):
        """Called last in the batch (after MCUPruneCallback's on_train_batch_end)."""
        if self.prof is not None:
            self.prof.__exit__(None, None, None)
            ka = self.prof.key_averages()
            self.whole[self.step] = (sum(e.count for e in ka), sum(e.self_cpu_time_total for e in ka) / 1e6)
            self.prof = None


class _PiecesEnd(pl.Callback):
    def __init__(self, pieces):
        self.pieces = pieces

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.pieces.end()


def profile_steps(budget: int, args) -> dict:
    """(iii): ours with every piece wrapped (times over the windows, op profiles at one warm-up and one pruning step),
    then whole-step op profiles of plain and ours at those two steps."""
    n = args.step_run_steps
    warm, harden = int(round(0.1 * n)), int(round(0.6 * n))
    first = warm + round((harden - warm) / 4)
    args.profile_at = {"warmup": (args.skip + warm) // 2 + 1, "pruning": (warm + first) // 2 + 1}
    out = {"profile_at": args.profile_at, "window": {"warmup": (args.skip + 1, warm - 1), "pruning": (warm + 1, first - 1)}}
    for method in ("ours", "plain"):
        for whole in (False, True):
            if method == "plain" and not whole:
                continue
            model, dm = make(0, args, args.batch_size * n)
            cb = MCUPruneCallback(board=BOARD, budgets={"sram": budget}, module="net", verbose=False) if method == "ours" else None
            steps = {args.profile_at["warmup"]: None, args.profile_at["pruning"]: None} if whole else None
            pieces = _Pieces(cb, args, steps)
            start = StepStart()
            end = StepEnd(start, cb, stop_at=first - 1)
            trainer([start, pieces] + ([cb] if cb else []) + [_PiecesEnd(pieces), end], max_steps=n).fit(model, datamodule=dm)
            if whole:
                out[f"whole_{method}"] = steps
            else:
                out["wall"], out["ops"] = pieces.wall, pieces.ops
    return out


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


def _load() -> str:
    return "load average %.2f, %.2f, %.2f" % os.getloadavg()


def _spread(xs) -> str:
    return f"{min(xs):.3f}-{max(xs):.3f}" if len(xs) > 1 else f"{xs[0]:.3f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=6, help="(i): lockstep pairs; the first step alternates")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--step-run-steps", type=int, default=160, help="(i): length of the run the schedule is made for")
    p.add_argument("--skip", type=int, default=3, help="(i): steps skipped at the start")
    p.add_argument("--train-subset", type=int, default=1920, help="(ii): training images")
    p.add_argument("--epochs", type=int, default=2, help="(ii): epochs")
    p.add_argument("--whole-repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1, help="torch threads (the shared machine's rule: 1)")
    p.add_argument("--no-lockstep", dest="lockstep", action="store_false",
                   help="(i): plain and ours one after the other instead of in lockstep, step by step")
    p.add_argument("--no-profile", action="store_true", help="skip (iii)")
    p.add_argument("--no-write", action="store_true", help="do not write BENCHMARKS.md")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*no logger configured.*")
    dense_peak = analyze(zoo.reference_cnn().eval(), torch.zeros(*INPUT), board=BOARD).peak_sram_bytes
    budget = dense_peak // 4
    t_all = time.perf_counter()
    load_before = _load()

    # (i) step time, alternating plain / ours
    base_med, ours_med, warm_med, warm_base, ratios, wratios_step, window = [], [], [], [], [], [], None
    for r in range(args.repeats):
        order = ("plain", "ours") if r % 2 == 0 else ("ours", "plain")
        if args.lockstep:
            res = paired_step_times(budget, r, args, first=order[0])
        else:
            res = {m: step_times(m, budget, r, args) for m in order}
        # compare like with like: the baseline's steps at the same step indices as ours' pruning window
        window = res["ours"]["window"]
        b = statistics.median(res["plain"]["steps"])
        o = statistics.median(res["ours"]["steps"])
        base_med.append(b); ours_med.append(o); ratios.append(o / b)
        wb, wo = statistics.median(res["plain"]["warmup_steps"]), statistics.median(res["ours"]["warmup_steps"])
        warm_base.append(wb); warm_med.append(wo); wratios_step.append(wo / wb)
        console.print(f"(i) repeat {r} ({' then '.join(order)}): plain median {1000 * b:.1f} ms/step over {len(res['plain']['steps'])} steps, "
                      f"ours (pruning, masks active, steps {window[0] + 1}..{window[1] - 1}) {1000 * o:.1f} ms/step over "
                      f"{len(res['ours']['steps'])} steps: ratio {o / b:.3f}; warm-up steps {args.skip + 1}..{window[0] - 1}: "
                      f"plain {1000 * wb:.1f}, ours {1000 * wo:.1f} ms: ratio {wo / wb:.3f}; ours' first step (tracing etc.) "
                      f"{res['ours']['first']:.2f} s vs {res['plain']['first']:.2f} s; {_load()}")

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
    load_after = _load()

    # (iii) where the time goes
    prof = None if args.no_profile else profile_steps(budget, args)

    med_ratio = statistics.median(ratios)
    warm_ratio = statistics.median(wratios_step)
    whole_ratio = statistics.median(wratios)
    t = Table(title="pruning overhead")
    for c in ("measure", "plain / dense", "ours", "ratio (median over repeats)", "spread", "target"):
        t.add_column(c)
    t.add_row("median step time (pruning phase)", f"{1000 * statistics.median(base_med):.1f} ms",
              f"{1000 * statistics.median(ours_med):.1f} ms", f"{med_ratio:.3f}", _spread(ratios), "<= 1.05")
    t.add_row("median step time (warm-up)", f"{1000 * statistics.median(warm_base):.1f} ms",
              f"{1000 * statistics.median(warm_med):.1f} ms", f"{warm_ratio:.3f}", _spread(wratios_step), "<= 1.02")
    t.add_row("whole-run fit wall time", f"{statistics.median(dense_w):.1f} s", f"{statistics.median(ours_w):.1f} s",
              f"{whole_ratio:.3f}", _spread(wratios), "<= 1.0")
    console.print(t)

    def ok(v, lim, per=None):
        if per and min(per) <= lim < max(per):  # repeats on both sides of the target: the noise decides
            return "inconclusive (repeats straddle the target; machine noise)"
        return "met" if v <= lim else "NOT met"
    md = ["## Pruning overhead (issues 3, 17)", "",
          "`benchmarks/pruning_overhead.py` (defaults): the reference CNN on Fashion-MNIST, board `mps2-an386`, batch "
          f"{args.batch_size}, Adam + cosine LR, SRAM budget 1/4 of the dense peak ({budget} B), callback defaults, "
          f"{args.threads} torch thread(s). Plain and ours alternate ({args.repeats} repeats of (i), {args.whole_repeats} of (ii)), "
          "on the same data and seeds (the 2-core machine is shared with other work, so absolute times are noisy; the "
          "ratios are per repeat, then the median). "
          + ("In (i) the two runs go in lockstep, in two threads taking turns step by step (plain, ours, plain, ...; "
             "the first alternates between repeats), so that both see the same machine load. " if args.lockstep else "")
          + 
          f"Machine load ({'`uptime`'}): {load_before} before, {load_after} after (i) and (ii).", "",
          "| measure | plain / dense | ours | ratio ours/plain (median) | per repeat | target | verdict |",
          "|---|---|---|---|---|---|---|",
          f"| (i) median step time, pruning phase with masks active, network not yet shrunk (steps "
          f"{window[0] + 1}..{window[1] - 1} of a {args.step_run_steps}-step schedule) | "
          f"{1000 * statistics.median(base_med):.1f} ms | {1000 * statistics.median(ours_med):.1f} ms | "
          f"**{med_ratio:.3f}** | {', '.join(f'{x:.3f}' for x in ratios)} | <= 1.05 | {ok(med_ratio, 1.05, ratios)} |",
          f"| (i) median step time, warm-up (dense, masks and importance only; steps {args.skip + 1}..{window[0] - 1}, "
          f"plain at the same steps) | {1000 * statistics.median(warm_base):.1f} ms | {1000 * statistics.median(warm_med):.1f} ms | "
          f"**{warm_ratio:.3f}** | {', '.join(f'{x:.3f}' for x in wratios_step)} | <= 1.02 | {ok(warm_ratio, 1.02, wratios_step)} |",
          f"| (ii) whole-run `trainer.fit` wall time, {args.train_subset} images x {args.epochs} epochs | "
          f"{statistics.median(dense_w):.1f} s | {statistics.median(ours_w):.1f} s | **{whole_ratio:.3f}** | "
          f"{', '.join(f'{x:.3f}' for x in wratios)} | <= 1.0 | {ok(whole_ratio, 1.0, wratios)} |", "",
          "Step time = `on_train_batch_start` -> `on_train_batch_end` measured by callbacks placed first and last, "
          "so it includes MCUPruneCallback's own hooks (pi/mask update every step, mask hooks, importance). "
          f"(ii) includes tracing, removals, hardening and the final `analyze`; pruned run ended at "
          f"{info.get('sram')} B, convs {info.get('channels')}."]
    if prof is not None:
        md += ["", f"(iii) Where the time goes (ours, seed 0): wall time of each piece of the callback, median over the "
               f"warm-up steps {prof['window']['warmup'][0]}..{prof['window']['warmup'][1]} and the pruning steps "
               f"{prof['window']['pruning'][0]}..{prof['window']['pruning'][1]}; aten op calls and self-CPU time under "
               f"torch.profiler at warm-up step {prof['profile_at']['warmup']} and pruning step {prof['profile_at']['pruning']}. "
               "The whole-step rows profile those steps of plain and ours (their difference is the callback's share, "
               "including the masked weights in forward and backward and the structure watch, which have no row of their own).", "",
               "| piece | warm-up: ms/step | ops | self-CPU ms | pruning: ms/step | ops | self-CPU ms |", "|---|---|---|---|---|---|---|"]
        names = list(dict.fromkeys(name for _, name in list(prof["wall"]) + list(prof["ops"])))

        def cell(phase, name):
            w = prof["wall"].get((phase, name))
            steps = range(prof["window"][phase][0], prof["window"][phase][1] + 1)
            vals = [w.get(s, 0.0) for s in steps if s != prof["profile_at"][phase]] if w else []
            o = prof["ops"].get((phase, name))
            return (f"{1000 * statistics.median(vals):.2f}" if vals else "-",
                    str(o[0]) if o else "-", f"{1000 * o[1]:.2f}" if o else "-")
        for name in names:
            if name.startswith("on_train_batch_start"):
                continue  # step 1 only (tracing) plus a list length check: in the whole-step rows
            md.append(f"| {name} | " + " | ".join(cell("warmup", name) + cell("pruning", name)) + " |")
        for method in ("plain", "ours"):
            w = prof[f"whole_{method}"]
            a, b = w[prof["profile_at"]["warmup"]], w[prof["profile_at"]["pruning"]]
            md.append(f"| whole step, {method} | | {a[0]} | {1000 * a[1]:.1f} | | {b[0]} | {1000 * b[1]:.1f} |")
        md += ["", "Before issue 17 (commit 0afd264, this script, 2026-11-26 16:16 UTC, load average ~8): the projection was "
               "4267 op calls and 15.4 ms self-CPU (12.1 ms wall) per pruning step, the whole pruning step 6016 op calls "
               "against 856 plain; the masks from importance ranks 162 calls. The projection's bisection evaluated the "
               "whole resource model ~40 times per update; under our firmware the bottleneck op's working set is affine "
               "in pi, so it is now evaluated from its value and gradient (checked against the resource model at the "
               "end), with identical histories on the reference runs. Everything else the callback adds (mask "
               "multiply in forward and backward, structure watch, mask gradients and importance EMA: 168 op calls "
               "in a warm-up step) costs well under 1% of a step."]
    md.append(f"\nTotal benchmark time {time.perf_counter() - t_all:.0f} s.")
    if not args.no_write:
        write_section("pruning-overhead", "\n".join(md))
    console.print("\n".join(md))


if __name__ == "__main__":
    main()
