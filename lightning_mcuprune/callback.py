"""MCUPruneCallback: the Lightning face of `pruning/`.

    trainer = L.Trainer(max_epochs=30, callbacks=[
        MCUPruneCallback(board="mps2-an386", budgets={"sram": "64KiB", "flash": "256KiB", "latency_ms": 50})])
    trainer.fit(model, datamodule)      # the network that comes out fits every budget

Schedule (fractions of the run's optimiser steps, or whole epochs when given as ints):
warm-up (dense; importance only) -> pruning (pi, masks and the shrinking budget target updated every
`update_every` steps; channels that stayed masked are physically removed `removals` times) ->
hardening at `prune_end` (final counts, the budget guarantee, everything masked removed) -> fine-tuning.
"""
from __future__ import annotations

import math
import warnings

import lightning.pytorch as pl
import pandas as pd
import torch

from lightning_mcuprune.analysis import Report, analyze, report_from_model
from lightning_mcuprune.boards import load_board
from lightning_mcuprune.graph import trace_graph
from lightning_mcuprune.pruning.budgets import BUDGET_KEYS, format_value, parse_budgets, target
from lightning_mcuprune.pruning.masks import MaskHooks, mask_sites
from lightning_mcuprune.pruning.removal import remove_channels
from lightning_mcuprune.pruning.state import PruningState
from lightning_mcuprune.resources import ResourceModel

_PRUNABLE_PRODUCERS = ("conv2d", "pointwise_conv2d", "dense")


class MCUPruneCallback(pl.Callback):
    """Prune channels during `trainer.fit` so the network fits `budgets` on `board`.

    Args:
        board: built-in board name, profile JSON path, or a loaded BoardProfile.
        budgets: any of "sram", "flash" (bytes: int or "64KiB"), "latency_ms", "macs". SRAM and flash
            not given default to what the board has left after its runtime.
        module: attribute path of the network inside the LightningModule (default: its own forward).
        exclude: module paths whose output channels are never pruned (the classifier output never is).
        min_channels: fewest channels any group keeps. multiple: round kept channels up to a multiple (4, 8 for SIMD).
        warmup, prune_end: where pruning starts and hardens: a float is a fraction of the run's optimiser
            steps, an int an epoch number.
        update_every: optimiser steps between pi/mask updates. removals: physical removals during pruning.
        pi_lr: learning rate of pi's own Adam. importance_decay: EMA decay of channel importance.
        order: execution order for peak SRAM: "traced" or "optimal".
    """

    def __init__(self, board="mps2-an386", budgets=None, *, module: str | None = None, exclude=(),
                 min_channels: int = 1, multiple: int = 1, warmup: float | int = 0.1, prune_end: float | int = 0.6,
                 update_every: int = 1, removals: int = 3, pi_lr: float = 0.05, importance_decay: float = 0.9,
                 temperature: float | None = None, order: str = "traced", verbose: bool = True):
        super().__init__()
        self.board = load_board(board)
        self.budgets = parse_budgets(budgets, self.board)
        for name, v in (("warmup", warmup), ("prune_end", prune_end)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0 or (isinstance(v, float) and v > 1):
                raise ValueError(f"bad {name} {v!r}: give a fraction of the run in [0, 1] (float) or an epoch (int)")
        if type(warmup) is type(prune_end) and warmup >= prune_end:
            raise ValueError(f"warmup ({warmup}) must come before prune_end ({prune_end})")
        if int(min_channels) < 1 or int(multiple) < 1 or int(update_every) < 1 or int(removals) < 0:
            raise ValueError("min_channels, multiple and update_every must be >= 1, removals >= 0")
        if order not in ("traced", "optimal"):
            raise ValueError(f"order must be 'traced' or 'optimal', not {order!r}")
        self.module, self.exclude = module, tuple(exclude)
        self.min_channels, self.multiple = int(min_channels), int(multiple)
        self.warmup, self.prune_end = warmup, prune_end
        self.update_every, self.removals = int(update_every), int(removals)
        self.pi_lr, self.importance_decay, self.temperature = pi_lr, importance_decay, temperature
        self.order, self.verbose = order, verbose
        self.phase = "idle"
        self.report: Report | None = None
        self.dense_report: Report | None = None
        self._rows: list[dict] = []
        self.state: PruningState | None = None
        self.hooks: MaskHooks | None = None

    # ---- public results ---------------------------------------------------------------------
    @property
    def history(self) -> pd.DataFrame:
        """Per update: step, phase, each resource (at the integer mask counts), its target and budget, pi and kept channels per group."""
        return pd.DataFrame(self._rows)

    @property
    def group_names(self) -> list[str]:
        return list(self._group_names)

    # ---- setup --------------------------------------------------------------------------------
    def _root(self, pl_module) -> torch.nn.Module:
        if self.module is None:
            return pl_module
        try:
            return pl_module.get_submodule(self.module)
        except AttributeError:
            raise ValueError(f"module={self.module!r}: the LightningModule has no submodule of that name") from None

    def _example(self, pl_module, batch) -> torch.Tensor:
        x = getattr(pl_module, "example_input_array", None)
        if x is None:
            x = batch[0] if isinstance(batch, (list, tuple)) else batch
        if not isinstance(x, torch.Tensor):
            raise ValueError("MCUPruneCallback needs an example input: set `example_input_array` on the "
                             "LightningModule or yield batches as tensors or (input, target) tuples")
        return x[:1].detach().to(pl_module.device)

    def _schedule(self, trainer) -> None:
        total = trainer.estimated_stepping_batches
        if not math.isfinite(total) or total <= 0:
            raise ValueError("MCUPruneCallback needs a finite run: set max_epochs or max_steps on the Trainer")
        per_epoch = max(1, int(total // max(1, trainer.max_epochs))) if trainer.max_epochs and trainer.max_epochs > 0 else int(total)

        def step(v):
            return int(round(v * total)) if isinstance(v, float) else int(v) * per_epoch
        self.total_steps = int(total)
        self.warmup_step = min(step(self.warmup), int(total))
        self.harden_step = max(self.warmup_step + 1, min(step(self.prune_end), int(total)))
        span = self.harden_step - self.warmup_step
        self.removal_steps = {self.warmup_step + round(span * (j + 1) / (self.removals + 1)) for j in range(self.removals)}

    def _init(self, trainer, pl_module, batch) -> None:
        self.root = self._root(pl_module)
        self.example = self._example(pl_module, batch)
        was_training = self.root.training
        graph = trace_graph(self.root, self.example, exclude=self.exclude)
        self.root.train(was_training)
        self.rm = ResourceModel(graph, self.board, order=self.order)
        sites, unmaskable = mask_sites(graph)
        ops = {op.name: op for op in graph.ops}
        prunable, producer, names = [], {}, {}
        for g in graph.groups:
            if not g.prunable:
                continue
            if g.id in unmaskable:
                g.prunable, g.reason = False, unmaskable[g.id]
                continue
            mods = [ops[p].module for p in g.producers if ops[p].type in _PRUNABLE_PRODUCERS and ops[p].module]
            if not mods:
                g.prunable, g.reason = False, "no conv/linear module produces it"
                continue
            prunable.append(g.id)
            producer[g.id] = mods[0]
            names[g.id] = mods[0]
        self._producer = [producer[g] for g in prunable]
        self._group_names = [names[g] for g in prunable]
        self.state = PruningState(self.rm, self.budgets, prunable, min_channels=self.min_channels, multiple=self.multiple,
                                  pi_lr=self.pi_lr, importance_decay=self.importance_decay, temperature=self.temperature)
        self.dense_report = report_from_model(self.rm)
        self.dense_values = self.state.resources(self.rm.dense_counts)
        self._schedule(trainer)
        if all(self.dense_values[k] <= b for k, b in self.budgets.items()):
            warnings.warn(f"mcuprune: the dense network already fits every budget on {self.board.name} "
                          f"({self._budget_text(self.dense_values)}); it is left unpruned", stacklevel=2)
            self.phase = "dense-fits"
            self.report = self.dense_report
            return
        self.state.check_reachable()
        sizes = [int(c) for c in self.rm.dense_counts.tolist()]
        self.hooks = MaskHooks(self.root, [s for s in sites if any(g in producer for g, _ in s[1])],
                               {g: i for i, g in enumerate(prunable)}, sizes)
        self.hooks.set_masks(self.state.keep, device=self.example.device)
        self.hooks.install()
        self._ever_kept = [k.clone() for k in self.state.keep]
        self.phase = "warmup"
        self._record(trainer.global_step, self.rm.dense_counts, {k: self.dense_values[k] for k in self.budgets})

    def _budget_text(self, values: dict) -> str:
        return ", ".join(f"{k} {format_value(k, values[k])}/{format_value(k, self.budgets[k])}" for k in self.budgets)

    # ---- Lightning hooks ----------------------------------------------------------------------
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.phase == "idle":
            self._init(trainer, pl_module, batch)

    def on_after_backward(self, trainer, pl_module) -> None:
        if self.phase in ("warmup", "pruning"):
            self.state.accumulate(self.hooks.grads())

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.phase not in ("warmup", "pruning"):
            return
        step = trainer.global_step
        if self.phase == "warmup" and step >= self.warmup_step:
            self.phase = "pruning"
            for fb in self.state.feedback:
                fb.zero_()
        if self.phase == "pruning":
            if (step - self.warmup_step) % self.update_every == 0:
                self._update(step)
            if step in self.removal_steps:
                self._remove(trainer, final=False)
            if step >= self.harden_step:
                self._harden(trainer)
        self._log(pl_module)

    def on_train_end(self, trainer, pl_module) -> None:
        if self.phase in ("warmup", "pruning"):
            self._harden(trainer)  # the run ended before the schedule did: the budgets still hold

    # ---- the steps ----------------------------------------------------------------------------
    def targets(self, step: int) -> dict[str, float]:
        progress = (step - self.warmup_step) / max(1, self.harden_step - self.warmup_step)
        return {k: target(self.dense_values[k], b, progress) for k, b in self.budgets.items()}

    def _update(self, step: int) -> None:
        st = self.state
        st.task_step()
        targets = self.targets(step)
        st.project(targets)
        st.update_masks()
        self._set_masks()
        self._record(step, st.integer_counts(), targets)

    def _set_masks(self) -> None:
        self.hooks.set_masks(self.state.keep, device=self.example.device)
        for i, k in enumerate(self.state.keep):
            self._ever_kept[i] |= k

    def _remove(self, trainer, final: bool) -> None:
        """Physically remove channels masked now (and, unless final, at every update since the last removal)."""
        st = self.state
        self.hooks.remove()
        for i in range(len(st.ids)):
            gone = ~st.keep[i] if final else ~(st.keep[i] | self._ever_kept[i])
            idxs = gone.nonzero().flatten()
            if len(idxs) == 0:
                continue
            remove_channels(self.root, self.example, self._producer[i], idxs.tolist(), trainer.optimizers)
            st.drop_channels(i, idxs)
            self.hooks.group_sizes[st.ids[i]] = st.current[i]
        self._ever_kept = [k.clone() for k in st.keep]
        self.hooks.set_masks(st.keep, device=self.example.device)
        self.hooks.install()

    def _harden(self, trainer) -> None:
        st = self.state
        final = dict(self.budgets)
        st.project(final)
        kept = st.guarantee(st.kept_counts())
        st.update_masks(kept)
        self._set_masks()
        self._remove(trainer, final=True)
        self.hooks.remove()
        self.phase = "finetune"
        self._record(trainer.global_step, st.integer_counts(), final)
        self._finish()

    def _finish(self) -> None:
        was_training = self.root.training
        self.root.eval()
        self.report = analyze(self.root, self.example, board=self.board, order=self.order)
        self.root.train(was_training)
        values = self._report_values(self.report)
        bad = {k: values[k] for k in self.budgets if values[k] > self.budgets[k]}
        if bad:  # cannot happen unless the traced network and the state disagree: say so loudly
            raise RuntimeError(f"mcuprune: the pruned network exceeds its budgets: {self._budget_text({**self.budgets, **bad})}")
        if self.verbose:
            self.print_summary()

    @staticmethod
    def _report_values(rep: Report) -> dict[str, float]:
        return {"sram": rep.peak_sram_bytes, "flash": rep.flash_bytes, "latency_ms": rep.latency_ms, "macs": rep.macs}

    # ---- history, logging, summary -----------------------------------------------------------
    def _record(self, step: int, n: torch.Tensor, targets: dict) -> None:
        values = self.state.resources(n)
        row = {"step": int(step), "phase": self.phase}
        for k in self.budgets:
            row[k] = values[k]
            row[f"{k}_target"] = targets[k]
            row[f"{k}_budget"] = self.budgets[k]
        for name, pi, gid in zip(self._group_names, self.state.pi.detach().tolist(), self.state.ids):
            row[f"pi/{name}"] = pi
            row[f"channels/{name}"] = int(n[gid])
        self._rows.append(row)

    def _log(self, pl_module) -> None:
        if not self._rows or pl_module._trainer is None:
            return
        row = self._rows[-1]
        binding = max(self.budgets, key=lambda k: row[k] / self.budgets[k])
        metrics = {f"mcuprune/{k}{'_bytes' if k in ('sram', 'flash') else ''}": float(row[k]) for k in self.budgets}
        for k, v in metrics.items():
            pl_module.log(k, v, on_step=True, on_epoch=False, prog_bar=False, logger=True, sync_dist=False)
        pl_module.log(f"{binding}/budget", row[binding] / self.budgets[binding], prog_bar=True, on_step=True, on_epoch=False)

    def summary_table(self):
        from rich.table import Table
        t = Table(title=f"mcuprune on {self.board.name}: resources")
        for c in ("resource", "dense", "pruned", "budget", ""):
            t.add_column(c, justify="right" if c not in ("resource", "") else "left")
        after = self._report_values(self.report)
        before = self._report_values(self.dense_report)
        for k in BUDGET_KEYS:
            b = self.budgets.get(k)
            ok = "" if b is None else ("[green]met[/]" if after[k] <= b else "[red]exceeded[/]")
            t.add_row(k + (" (estimate)" if k == "latency_ms" and self.board.latency_source == "estimate" else ""),
                      format_value(k, before[k]), format_value(k, after[k]), "" if b is None else format_value(k, b), ok)
        g = Table(title="channels per group")
        for c in ("group", "dense", "kept"):
            g.add_column(c, justify="left" if c == "group" else "right")
        for name, gid, cur in zip(self._group_names, self.state.ids, self.state.current):
            g.add_row(name, str(int(self.state.C0[gid])), str(cur))
        return t, g

    def print_summary(self) -> None:
        from rich.console import Console
        console = Console()
        for t in self.summary_table():
            console.print(t)
