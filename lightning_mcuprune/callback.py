"""MCUPruneCallback: the Lightning face of `pruning/`.

    trainer = L.Trainer(max_epochs=30, callbacks=[
        MCUPruneCallback(board="mps2-an386", budgets={"sram": "64KiB", "flash": "256KiB", "latency_ms": 50})])
    trainer.fit(model, datamodule)      # the network that comes out fits every budget

Schedule (fractions of the run's optimiser steps, or whole epochs when given as ints):
warm-up (dense; importance only) -> pruning (pi, masks and the shrinking budget target updated every
`update_every` steps; channels that stayed masked are physically removed `removals` times) ->
hardening at `prune_end` (final counts, the budget guarantee, everything masked removed) -> fine-tuning
(`pruning/schedule.py`).
"""
from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any, Callable

import lightning.pytorch as pl
import pandas as pd
import torch
from lightning.pytorch.utilities.rank_zero import rank_zero_only, rank_zero_warn
from typing_extensions import override

from lightning_mcuprune.analysis import Report, analyze, report_from_model
from lightning_mcuprune.boards import load_board
from lightning_mcuprune.graph import check_train_eval_structure
from lightning_mcuprune.pruning.budgets import BUDGET_KEYS, format_value, parse_budgets, target
from lightning_mcuprune.pruning.masks import MaskHooks
from lightning_mcuprune.pruning.plan import apply_present, check_signature, make_plan
from lightning_mcuprune.pruning.removal import remove_channels
from lightning_mcuprune.pruning.schedule import Phase, check_schedule, make_schedule
from lightning_mcuprune.pruning.state import PruningState
from lightning_mcuprune.resources import ResourceModel

STATE_VERSION = 1


class MCUPruneCallback(pl.Callback):
    """Prune channels during `trainer.fit` so the network fits `budgets` on `board`.

    Warm-up (dense; channel importance accumulates), then pruning (each group's keep proportion pi learns from the
    task loss and is projected onto a budget target that shrinks to the budgets; masked channels are physically
    removed `removals` times), hardening at `prune_end` (the budgets are guaranteed at integer channel counts and every
    masked channel is removed), then fine-tuning at the final size. After `fit`: `report` (the pruned network's
    resources), `history` (one row per update), the export (see `export`) and a summary table (`verbose`).

    Args:
        board: built-in board name, profile JSON path, or a loaded BoardProfile.
        budgets: any of "sram", "flash" (bytes: int or "64KiB"), "latency_ms", "macs". SRAM and flash
            not given default to what the board has left after its runtime.
        module: attribute path of the network inside the LightningModule (default: its own forward).
        exclude: module paths whose output channels are never pruned (the classifier output never is).
        min_channels: fewest channels any group keeps.
        multiple: round kept channels up to a multiple (4, 8 for SIMD).
        warmup: where pruning starts: a float is a fraction of the run's optimiser steps, an int an epoch number.
            Default (None): 0.02 when a latency or MACs budget is given (decide the architecture early, train it
            for most of the run), else 0.1.
        prune_end: where pruning hardens, as `warmup`. Default (None): 0.15 with a latency or MACs budget, else 0.6.
        update_every: optimiser steps between pi/mask updates.
        removals: physical removals of masked channels during pruning (hardening removes the rest).
        pi_lr: learning rate of pi's own Adam.
        importance_decay: decay of the exponential moving average of channel importance (|dL/dmask|).
        temperature: temperature of the soft rank threshold through which the task loss moves pi (in channels:
            larger spreads pi's gradient over more channels around the threshold). Default (None): per group,
            5% of its dense channels, at least 0.5.
        pi_norm: "global" (pi's Adam normalises the task feedback of all groups by one scale) or "group" (each by
            its own, the behaviour before 0.x: weak signals drift like strong ones).
        compute_step: how the projection under MACs/latency budgets spreads a cut over groups: "share" (by each
            group's share of the resource, uniform-like when importance is equal), "cost" (by the cost of one
            channel, as under SRAM) or "uniform" (the same fraction of every group that can shrink).
        soft_floor: keep every group at >= min(4, its uniform-width count) unless the budget forces less.
        reinit: at hardening, give the pruned network fresh weights (each layer's own initialiser) and clear the
            optimiser's state: search, then retrain within the same run (pair it with an early prune_end).
        reset_optimizer: at hardening, clear the optimiser's state (Adam's moments and step count), weights kept: the
            pruned network's steps then follow its own gradient statistics, not those of the dense and masked network
            (Adam's second moment, beta2=0.999, remembers longer than a short run). Default True since issue 15's
            follow-up: against keeping the state (same seed, budget and architecture) it was more accurate in 40 of 44
            paired runs under latency/MACs budgets, 5 of 6 under SRAM + latency together and 8 of 9 under SRAM alone
            (+0.15 pp on average there, within seed noise but never worse by more than 0.1 pp). False keeps the
            state (the optimiser's moments, sliced to the kept channels, carry on).
        order: execution order for peak SRAM: "traced" or "optimal".
        export: after fit, write the export (see `export`) to `mcuprune/` in the log dir (the Trainer's
            default_root_dir without a logger), or to `mcuprune_1/`, ... if an earlier run's export is there.
        verbose: print the summary tables (resources dense/pruned/budget, channels per group) when the network is
            hardened, and say where the network was saved when it changed after the last checkpoint (rank zero only).
        runtime: what the network will run on, for the resource model and the export: "mcuprune-firmware" (our int8
            firmware) or "tflm" (TensorFlow Lite Micro; SRAM is its planned arena).
        calib_samples: training inputs kept (from the first batches) to calibrate the int8 TFLite export; 0 keeps none.

    Raises:
        ValueError: an option out of range (at construction); at the first training batch, a run without a
            finite length, a LightningModule without an example input, or a network none of whose channel
            groups can be pruned while it exceeds its budgets.
        BudgetUnreachableError: (a ValueError) even the smallest network the options allow exceeds a budget.
        RuntimeError: the model's structure changes between forward calls, or outside the callback.

    Example:
        >>> import torch, lightning.pytorch as pl
        >>> from torch import nn
        >>> class Net(pl.LightningModule):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.net = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1),
        ...                                  nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))
        ...     def forward(self, x):
        ...         return self.net(x)
        ...     def training_step(self, batch, batch_idx):
        ...         x, y = batch
        ...         return nn.functional.cross_entropy(self(x), y)
        ...     def configure_optimizers(self):
        ...         return torch.optim.Adam(self.parameters(), lr=1e-3)
        >>> _ = torch.manual_seed(0)
        >>> data = torch.utils.data.TensorDataset(torch.randn(64, 1, 12, 12), torch.randint(0, 10, (64,)))
        >>> cb = MCUPruneCallback("mps2-an386", budgets={"sram": 3000}, verbose=False, export=False)
        >>> trainer = pl.Trainer(max_epochs=2, callbacks=[cb], logger=False, enable_checkpointing=False,
        ...                      enable_progress_bar=False, enable_model_summary=False)
        >>> trainer.fit(Net(), torch.utils.data.DataLoader(data, batch_size=16))
        >>> cb.phase
        <Phase.FINETUNE: 'finetune'>
        >>> cb.report.peak_sram_bytes <= 3000
        True
    """

    RESCALE = False  # for benchmarks/compute_budgets.py's diagnosis only: at each removal, scale the weights of a conv
    # or linear that lost input channels by sqrt(old fan-in / new fan-in), the ratio of a fresh initialiser's scales

    def __init__(self, board: str | dict = "mps2-an386", budgets: dict | None = None, *, module: str | None = None,
                 exclude: list | tuple = (), min_channels: int = 1, multiple: int = 1, warmup: float | int | None = None,
                 prune_end: float | int | None = None, update_every: int = 1, removals: int = 3, pi_lr: float = 0.05,
                 importance_decay: float = 0.9, temperature: float | None = None, pi_norm: str = "global",
                 compute_step: str = "share", soft_floor: bool = True, reinit: bool = False,
                 reset_optimizer: bool = True, order: str = "traced",
                 export: bool = True, verbose: bool = True, runtime: str = "mcuprune-firmware",
                 calib_samples: int = 256):
        super().__init__()
        self.board = load_board(board)
        self.budgets = parse_budgets(budgets, self.board)
        # default schedule: under a latency or MACs budget the architecture is decided early (pruning from 2% to 15%
        # of the run), since a network pruned late loses to one trained at its final size (issue 15: ResNet-8 at 1/4
        # of dense latency with uniform widths, pruned 10-60% of the run 67.1%, 0-5% 70.2%, trained at that width
        # from the start 73.0%); under memory budgets alone 10% -> 60%, where the allocation wins more than that.
        compute = any(k in self.budgets for k in ("latency_ms", "macs"))
        warmup = (0.02 if compute else 0.1) if warmup is None else warmup
        prune_end = (0.15 if compute else 0.6) if prune_end is None else prune_end
        check_schedule(warmup, prune_end)
        if int(min_channels) < 1 or int(multiple) < 1 or int(update_every) < 1 or int(removals) < 0:
            raise ValueError("min_channels, multiple and update_every must be >= 1, removals >= 0")
        if order not in ("traced", "optimal"):
            raise ValueError(f"order must be 'traced' or 'optimal', not {order!r}")
        self.module, self.exclude = module, tuple(exclude)
        self.min_channels, self.multiple = int(min_channels), int(multiple)
        self.warmup, self.prune_end = warmup, prune_end
        self.update_every, self.removals = int(update_every), int(removals)
        self.pi_lr, self.importance_decay, self.temperature = pi_lr, importance_decay, temperature
        if pi_norm not in ("global", "group"):
            raise ValueError(f"pi_norm must be 'global' or 'group', not {pi_norm!r}")
        if compute_step not in ("share", "cost", "uniform"):
            raise ValueError(f"compute_step must be 'share', 'uniform' or 'cost', not {compute_step!r}")
        self.pi_norm, self.compute_step, self.soft_floor = pi_norm, compute_step, bool(soft_floor)
        self.reinit, self.reset_optimizer = bool(reinit), bool(reset_optimizer)
        self.order, self.export_after_fit, self.verbose = order, export, verbose
        from lightning_mcuprune.resources.model import RUNTIMES
        if runtime not in RUNTIMES:
            raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}, not {runtime!r}")
        if int(calib_samples) < 0:
            raise ValueError("calib_samples must be >= 0 (training inputs kept to calibrate the int8 export)")
        self.runtime, self.calib_samples = runtime, int(calib_samples)
        self._calib: list = []
        self.phase = Phase.IDLE
        self.report: Report | None = None
        self.dense_report: Report | None = None
        self.export_dir: Path | None = None
        self.export_errors: dict[str, str] = {}
        self._rows: list[dict] = []
        self.state: PruningState | None = None
        self.hooks: MaskHooks | None = None
        self._deferred = False
        self._logged: dict | None = None   # the history row last sent to the loggers

    # ---- public results ---------------------------------------------------------------------
    @property
    def history(self) -> pd.DataFrame:
        """Per update: step, phase, each resource (at the integer mask counts), its target and budget, pi and kept channels per group."""
        return pd.DataFrame(self._rows)

    @property
    def group_names(self) -> list[str]:
        """Module paths of the producers of the prunable channel groups (empty before the first training batch)."""
        return list(self.plan.producers) if self.state else []

    def architecture_hash(self) -> str:
        """sha256 over the channels present and the masks of every group: equal runs give equal hashes."""
        h = hashlib.sha256()
        if self.state is not None:
            for name, present, keep in zip(self.plan.producers, self.state.present, self.state.keep):
                h.update(name.encode())
                h.update(present.numpy().astype("int64").tobytes())
                h.update(keep.numpy().astype("bool").tobytes())
        return h.hexdigest()

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

    def _schedule(self, trainer: pl.Trainer) -> None:
        s = make_schedule(trainer.estimated_stepping_batches, trainer.max_epochs, self.warmup, self.prune_end, self.removals)
        self.total_steps, self.warmup_step, self.harden_step, self.removal_steps = s.total, s.warmup, s.harden, list(s.removals)

    def _build(self, pl_module, example) -> None:
        """Trace the dense network and set up the resource model and the pruning state."""
        self.root = self._root(pl_module)
        self.example = example
        check_train_eval_structure(self.root)  # a training-only branch is refused before the first step
        self.plan = make_plan(self.root, example, self.exclude)
        self.rm = ResourceModel(self.plan.graph, self.board, order=self.order, runtime=self.runtime)
        self.state = PruningState(self.rm, self.budgets, self.plan.ids, min_channels=self.min_channels,
                                  floors=self.plan.floors, multiple=self.multiple,
                                  pi_lr=self.pi_lr, importance_decay=self.importance_decay, temperature=self.temperature,
                                  pi_norm=self.pi_norm, compute_step=self.compute_step, soft_floor=self.soft_floor)
        self.dense_report = report_from_model(self.rm)
        self.dense_values = self.state.resources(self.rm.dense_counts)
        sizes = [int(c) for c in self.rm.dense_counts.tolist()]
        self.hooks = MaskHooks(self.root, self.plan.sites, {g: i for i, g in enumerate(self.plan.ids)}, sizes,
                               self.plan.module_calls())

    def _start(self, trainer, pl_module, batch) -> None:
        self._build(pl_module, self._example(pl_module, batch))
        self._schedule(trainer)
        self._warn_deployment_gaps()
        if all(self.dense_values[k] <= b for k, b in self.budgets.items()):
            rank_zero_warn(f"mcuprune: the dense network already fits every budget on {self.board.name} "
                           f"({self._budget_text(self.dense_values)}); it is left unpruned")
            self.phase = Phase.DENSE_FITS
            self.report = self.dense_report
            return
        if not self.plan.ids:
            reasons = sorted({g.reason for g in self.plan.graph.groups if g.reason})
            raise ValueError(f"mcuprune: no channel group of this network can be pruned ({'; '.join(reasons)}), and the dense "
                             f"network exceeds its budgets: {self._budget_text(self.dense_values)}")
        self.state.check_reachable()
        self._install()
        self._ever_kept = [k.clone() for k in self.state.keep]
        self.phase = Phase.WARMUP
        self._record(trainer.global_step, self.rm.dense_counts, {k: self.dense_values[k] for k in self.budgets})

    def _warn_deployment_gaps(self) -> None:
        """Before the first step: say which ops the chosen runtime (our int8 firmware for `mcuprune benchmark` and
        `quantize`, or the TFLite export for runtime="tflm") cannot run."""
        from lightning_mcuprune.quantize import runtime_gaps
        gaps = runtime_gaps(self.plan.graph, self.runtime)
        if gaps:
            what = "the int8 firmware" if self.runtime == "mcuprune-firmware" else f"runtime {self.runtime!r}"
            rank_zero_warn(f"mcuprune: {what} cannot run {len(gaps)} op(s) of this network, so its int8 export will be "
                           "refused after training (pruning goes on; other runtimes may run them): " + "; ".join(gaps))

    def _install(self) -> None:
        self.hooks.set_masks(self.state.keep, device=self.example.device)
        self.hooks.install()

    def _budget_text(self, values: dict) -> str:
        return ", ".join(f"{k} {format_value(k, values[k])}/{format_value(k, self.budgets[k])}" for k in self.budgets)

    # ---- Lightning hooks ----------------------------------------------------------------------
    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._deferred = trainer.world_size > 1
        self._wrap_on_load_checkpoint(pl_module)
        bar = trainer.progress_bar_callback
        if bar is not None and not getattr(bar.get_metrics, "_mcuprune_wrapper", False):
            get = bar.get_metrics

            def get_metrics(tr, pm, _get=get):
                m = _get(tr, pm)
                text = self.binding_text()
                if text:
                    m["mcuprune"] = text
                return m
            get_metrics._mcuprune_wrapper = True
            bar.get_metrics = get_metrics
            self._bar = bar

    @override
    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._unwrap_on_load_checkpoint(pl_module)
        bar = getattr(self, "_bar", None)
        if bar is not None and getattr(bar.__dict__.get("get_metrics"), "_mcuprune_wrapper", False):
            del bar.get_metrics
        self._bar = None

    def _wrap_on_load_checkpoint(self, pl_module: pl.LightningModule) -> None:
        """Restore a checkpoint's pruned structure before Lightning loads its (pruned) weights into the dense module:
        `LightningModule.on_load_checkpoint` runs right before `load_state_dict`, so it is wrapped (on the instance,
        until `_unwrap_on_load_checkpoint` in `teardown`) to call `_restore` first."""
        if getattr(pl_module.__dict__.get("on_load_checkpoint"), "_mcuprune_wrapper", False):
            return
        original = pl_module.on_load_checkpoint

        def on_load_checkpoint(checkpoint: dict[str, Any], _original: Callable = original) -> None:
            saved = checkpoint.get("callbacks", {}).get(self.state_key)
            if saved is not None:
                self._restore(pl_module, saved)
            return _original(checkpoint)
        on_load_checkpoint._mcuprune_wrapper = True
        pl_module.on_load_checkpoint = on_load_checkpoint

    @staticmethod
    def _unwrap_on_load_checkpoint(module: torch.nn.Module) -> None:
        """Undo `_wrap_on_load_checkpoint`: the module's own `on_load_checkpoint` again, nothing of the callback's left
        on the instance (the module pickles without it)."""
        if getattr(module.__dict__.get("on_load_checkpoint"), "_mcuprune_wrapper", False):
            del module.on_load_checkpoint

    @override
    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int) -> None:
        if self.phase == Phase.IDLE:
            self._start(trainer, pl_module, batch)
        kept = sum(len(x) for x in self._calib)
        if kept < self.calib_samples:   # a sample of training inputs, to calibrate the int8 export
            x = batch[0] if isinstance(batch, (list, tuple)) else batch
            if isinstance(x, torch.Tensor):
                self._calib.append(x[: self.calib_samples - kept].detach().cpu().float())

    @override
    def on_after_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.phase.active:
            grads = self.hooks.grads()
            if trainer.world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
                grads = self._all_reduce(grads, trainer.world_size)
            self.state.accumulate(grads)

    def _all_reduce(self, grads, world: int):
        """Average the mask gradients over ranks, so every rank takes the same pi and mask decisions."""
        flat = torch.cat([g if g is not None else torch.zeros(c, device=self.example.device)
                          for g, c in zip(grads, self.state.current)]).to(torch.float32)
        torch.distributed.all_reduce(flat)
        return list(torch.split(flat.cpu() / world, self.state.current))

    @override
    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if not self.phase.active:
            return
        step = trainer.global_step
        if self.phase == Phase.WARMUP and step >= self.warmup_step:
            self.phase = Phase.PRUNING
            for fb in self.state.feedback:
                fb.zero_()
        if self.phase == Phase.PRUNING:
            if (step - self.warmup_step) % self.update_every == 0:
                self._update(step)
            if step in self.removal_steps and not self._deferred:
                self._remove(trainer, final=False)
            if step >= self.harden_step:
                self._harden(trainer)
        self._log(pl_module)

    @override
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        changed = False
        if self.phase.active:
            self._harden(trainer)  # the run ended before the schedule did: the budgets still hold
            changed = True
        if self._deferred and self.phase == Phase.FINETUNE and self.hooks.handles:
            self._remove(trainer, final=True)  # DDP: channels leave only after training (see _harden)
            self.hooks.remove()
            self._finish()
            changed = True
        if changed:
            self._checkpoint_after_training(trainer)

    def _checkpoint_after_training(self, trainer) -> None:
        """The network changed after the last checkpoint (hardening or DDP's final removal in on_train_end):
        write it to every ModelCheckpoint's last checkpoint, so load_pruned(last.ckpt) gives the network that
        meets the budgets. Every rank calls this (saving a checkpoint is a collective under DDP)."""
        import os

        from lightning.pytorch.callbacks import ModelCheckpoint
        for cb in trainer.checkpoint_callbacks:
            if not isinstance(cb, ModelCheckpoint) or cb.dirpath is None:
                continue
            path = cb.last_model_path or os.path.join(cb.dirpath, cb.CHECKPOINT_NAME_LAST + cb.FILE_EXTENSION)
            path = trainer.strategy.broadcast(path)
            if trainer.is_global_zero and os.path.islink(path):
                os.unlink(path)  # save_last="link" points at a top-k checkpoint: keep that one as it was
            trainer.strategy.barrier("mcuprune_last_checkpoint")
            trainer.save_checkpoint(path)
            cb.last_model_path = path
            if self.verbose and trainer.is_global_zero:
                print(f"mcuprune: the network was hardened after the last checkpoint; saved it to {path}")

    @override
    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not (self.export_after_fit and self.report is not None and self.state is not None):
            return  # the same on every rank
        base = Path(trainer.log_dir or trainer.default_root_dir)  # log_dir broadcasts under DDP: every rank calls it
        directory = _fresh_directory(base / "mcuprune") if trainer.is_global_zero else None
        directory = trainer.strategy.broadcast(directory)
        if trainer.is_global_zero:
            self.export(directory)
        self.export_dir = directory

    # ---- the steps ----------------------------------------------------------------------------
    def targets(self, step: int) -> dict[str, float]:
        """The budget target of every budgeted resource at `step`: from the dense value at warm-up's end to the
        budget at hardening (`pruning.budgets.target`)."""
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
        """Physically remove masked channels. Mid-training only those masked at every update since the last
        removal and ranked well below the threshold (a margin of 10% of the group, at least one rounding step,
        stays present so hardening can still give channels back); at hardening, every masked channel."""
        st = self.state
        self.hooks.remove()
        gone = []
        for i in range(len(st.ids)):
            out = ~st.keep[i]
            if not final:
                k = int(st.keep[i].sum())
                margin = max(self.multiple, math.ceil(0.1 * st.current[i]))
                out = out & ~self._ever_kept[i] & (st.ranks(i) >= k + margin)
            gone.append(out.nonzero().flatten())
        fan_in = {m: m.weight.shape[1] for m in self.root.modules()
                  if isinstance(m, (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Linear))} if self.RESCALE else {}
        remove_channels(self.root, self.example, {self.plan.producers[i]: g.tolist() for i, g in enumerate(gone)},
                        trainer.optimizers)
        with torch.no_grad():  # diagnostic (RESCALE): weights of a layer that lost inputs scaled to its new fan-in
            for m, before in fan_in.items():
                if m.weight.shape[1] < before:
                    m.weight.mul_(math.sqrt(before / m.weight.shape[1]))
        for i, g in enumerate(gone):
            if len(g):
                st.drop_channels(i, g)
                self.hooks.group_sizes[st.ids[i]] = st.current[i]
        self._ever_kept = [k.clone() for k in st.keep]
        self._install()

    def _harden(self, trainer) -> None:
        """Final counts: project onto the budgets, guarantee them at integer counts, give back what fits.
        Under DDP the masks stay in place until training ends (the DDP wrapper holds the parameters)."""
        st = self.state
        st.project(dict(self.budgets))
        kept = st.fill(st.guarantee(st.kept_counts()))
        if self.runtime == "tflm" and "sram" in self.budgets:
            kept = self._fit_tflm_arena(kept)
        with torch.no_grad():  # pi follows the final integer counts, so history and progress bar show what is kept
            st.pi.copy_(torch.tensor(kept, dtype=torch.float64) / st.C0[st.ids])
        st.update_masks(kept)
        self._set_masks()
        self.phase = Phase.FINETUNE
        self._record(trainer.global_step, st.integer_counts(kept), dict(self.budgets))
        if self.reset_optimizer:  # the pruned network's optimiser starts afresh (every rank at the same step under DDP)
            for opt in trainer.optimizers:
                opt.state.clear()
        if self._deferred:
            return
        self._remove(trainer, final=True)
        self.hooks.remove()
        if self.reinit:
            self._reinitialize(trainer)
        self._finish()

    def _fit_tflm_arena(self, kept: list) -> list:
        """TFLM plans its arena greedily, which can need more than the smooth model that pruning followed
        (fragmentation): tighten the SRAM target by the difference until TFLM's planned arena fits too."""
        st, budget = self.state, self.budgets["sram"]
        for _ in range(50):
            over = self.rm.tflm_arena_bytes(st.integer_counts(kept)) - budget
            if over <= 0:
                break
            st.budgets["sram"] = float(st.resources(st.integer_counts(kept))["sram"]) - over
            try:
                kept = st.guarantee(kept)
            finally:
                st.budgets["sram"] = budget
        return kept
    def _reinitialize(self, trainer) -> None:
        """Fresh weights for the pruned network, in place (the optimiser keeps its parameter objects), and no
        optimiser state: the rest of the run trains the found architecture from scratch."""
        with torch.no_grad():
            for m in self.root.modules():
                if isinstance(m, torch.nn.modules.batchnorm._NormBase):
                    m.reset_running_stats()
                if hasattr(m, "reset_parameters") and callable(m.reset_parameters):
                    m.reset_parameters()
        for opt in trainer.optimizers:
            opt.state.clear()

    def _finish(self) -> None:
        was_training = self.root.training
        self.root.eval()
        self.report = analyze(self.root, self.example, board=self.board, order=self.order, runtime=self.runtime)
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

    # ---- checkpoints --------------------------------------------------------------------------
    @override
    def state_dict(self) -> dict[str, Any]:
        """The phase, history and random state; after the first batch also the pruning state, schedule and the
        architecture (tensors and plain containers only: loadable with `torch.load(weights_only=True)`)."""
        d = {"version": STATE_VERSION, "phase": self.phase.value, "budgets": dict(self.budgets), "board": self.board.name,
             "history": list(self._rows), "rng": _rng_state()}
        if self.state is not None:
            d.update(module=self.module, exclude=list(self.exclude), example_shape=list(self.example.shape), signature=self.plan.signature(),
                     state=self.state.state_dict(), ever_kept=[k.clone() for k in self._ever_kept],
                     schedule=dict(total=self.total_steps, warmup=self.warmup_step, harden=self.harden_step,
                                   removals=list(self.removal_steps)),
                     architecture=self.architecture_hash())
        return d

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Check the checkpoint against the structure `_restore` rebuilt (before the weights were loaded) and, in one
        process, restore its random state."""
        # the structure and state were restored in `_restore`, before the weights; only check agreement here
        if self.state is not None and "architecture" in state_dict and self.architecture_hash() != state_dict["architecture"]:
            raise RuntimeError("mcuprune: the restored pruning state does not match the checkpoint")
        if "rng" in state_dict and not self._deferred:  # one process: the checkpoint holds its random state
            _set_rng_state(state_dict["rng"])

    def _restore(self, pl_module, saved: dict) -> None:
        if saved.get("version") != STATE_VERSION:
            raise ValueError(f"pruning state version {saved.get('version')} in the checkpoint; this version reads {STATE_VERSION}")
        self.phase = Phase(saved["phase"])
        self._rows = list(saved.get("history", []))
        if "state" not in saved:
            return
        example = torch.zeros(saved["example_shape"], device=pl_module.device)
        self._build(pl_module, example)
        check_signature(self.plan, saved["signature"])
        apply_present(self.root, example, self.plan, saved["state"]["present"])
        self.state.load_state_dict(saved["state"])
        for i, gid in enumerate(self.state.ids):
            self.hooks.group_sizes[gid] = self.state.current[i]
        self._ever_kept = [k.clone() for k in saved["ever_kept"]]
        s = saved["schedule"]
        self.total_steps, self.warmup_step, self.harden_step = s["total"], s["warmup"], s["harden"]
        self.removal_steps = list(s["removals"])
        saved_budgets = {k: float(v) for k, v in saved.get("budgets", {}).items()}
        if saved_budgets != {k: float(v) for k, v in self.budgets.items()}:
            self._check_new_budgets(saved_budgets)
        if self.phase.active or (self.phase == Phase.FINETUNE and self._deferred):
            self._install()
        elif self.phase in (Phase.FINETUNE, Phase.DENSE_FITS):
            self.report = analyze(self.root, example, board=self.board, order=self.order, runtime=self.runtime)

    def _check_new_budgets(self, saved: dict) -> None:
        """Resuming with budgets other than the checkpoint's: before hardening, pruning continues toward the new
        budgets; after it, the network is kept only if it already meets them (it is never reported against
        budgets it does not meet)."""
        def text(b):
            return ", ".join(f"{k} {format_value(k, v)}" for k, v in b.items()) or "none"
        change = f"the checkpoint's budgets are {text(saved)}, this callback's {text(self.budgets)}"
        if self.phase.active:
            self.state.check_reachable()
            rank_zero_warn(f"mcuprune: {change}; pruning continues toward the new budgets")
            return
        st = self.state
        values = st.resources(st.integer_counts([int(k.sum()) for k in st.keep]))
        bad = {k: v for k, v in values.items() if v > self.budgets[k]}
        if bad:
            raise ValueError(
                f"mcuprune: {change}, but the checkpoint's network was already hardened (phase {self.phase.value!r}) and "
                f"exceeds the new budgets: {self._budget_text({**self.budgets, **bad})}. A hardened network is not "
                "pruned again on resume; to prune it further start a new run from it: "
                "lightning_mcuprune.load_pruned(model, CKPT), then trainer.fit(model) with a new MCUPruneCallback "
                "and no ckpt_path. Or resume with the checkpoint's budgets.")
        rank_zero_warn(f"mcuprune: {change}; the hardened network meets the new budgets "
                       f"({self._budget_text(values)})")

    # ---- export -------------------------------------------------------------------------------
    def artefacts(self) -> list[tuple[str, Callable[[Path], dict]]]:
        """What `export` writes, most valuable first: (name, writer) pairs, writer(directory) -> {key: path}.
        Each is written on its own: one that fails (e.g. ONNX) is reported and the others are still written."""
        return [("pruned_state", self._write_pruned_state), ("module", self._write_module),
                ("tflite", self._write_tflite), ("report", self._write_report), ("onnx", self._write_onnx), ("plots", self._write_plots)]

    def export(self, directory: str | Path) -> dict[str, Path]:
        """Write into `directory`, each on its own and atomically: pruned_state.pt (weights, kept channels and
        architecture signature: data only, for `load_pruned(dense_module, path)`), model.pt (the pruned network
        pickled: code, load only your own), model.tflite with model_data.h/.cc and model_ops.h (int8, for TFLite Micro),
        report.json, model.onnx (opset 17) and the PNG plots. Returns the
        paths written; an artefact that fails is warned about and listed in `self.export_errors`, it does not
        raise. `mcuprune benchmark DIRECTORY` runs the export on a board."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        paths, self.export_errors = {}, {}
        wrapper = self.root.__dict__.get("on_load_checkpoint")  # during fit (module=None): not part of the network
        self._unwrap_on_load_checkpoint(self.root)
        try:
            for name, write in self.artefacts():
                try:
                    paths.update(write(directory))
                except Exception as e:  # noqa: BLE001 - the pruned network must survive any one failing writer
                    self.export_errors[name] = f"{type(e).__name__}: {e}"
                    rank_zero_warn(f"mcuprune: export of {name} to {directory} failed ({type(e).__name__}: {e}); "
                                   "the other files were written")
        finally:
            if getattr(wrapper, "_mcuprune_wrapper", False):
                self.root.on_load_checkpoint = wrapper
        self.export_dir = directory
        return paths

    def _write_pruned_state(self, directory: Path) -> dict:
        from lightning_mcuprune.export import save_pruned_state
        return {"pruned_state": save_pruned_state(
            self.root, directory / "pruned_state.pt", module=self.module, example_shape=self.example.shape,
            signature=self.plan.signature(), present=self.state.present, exclude=self.exclude, board=self.board.name,
            budgets=self.budgets, architecture=self.architecture_hash())}

    def _write_module(self, directory: Path) -> dict:
        from lightning_mcuprune.export import save_module
        return {"module": save_module(self.root, directory / "model.pt")}

    def _write_report(self, directory: Path) -> dict:
        from lightning_mcuprune.io import write_json_atomic
        rep = self.report.to_dict()
        rep.update(budgets=self.budgets, dense=self.dense_report.to_dict() if self.dense_report else None,
                   latency_is_estimate=self.board.latency_source == "estimate", architecture=self.architecture_hash(),
                   channels={n: {"dense": int(self.state.C0[g]), "kept": c}
                             for n, g, c in zip(self.plan.producers, self.state.ids, self.state.current)},
                   example_shape=list(self.example.shape))
        rep["tflite"] = getattr(self, "_tflite_info", None)
        return {"report": write_json_atomic(directory / "report.json", rep)}

    def _write_onnx(self, directory: Path) -> dict:
        from lightning_mcuprune.export import export_onnx
        return {"onnx": export_onnx(self.root, self.example, directory / "model.onnx")}

    def _write_plots(self, directory: Path) -> dict:
        from lightning_mcuprune.plots import plot_history, plot_memory_before_after
        paths = dict(plot_history(self.history, self.budgets, directory)) if self._rows else {}
        if self.dense_report is not None:
            paths["memory"] = plot_memory_before_after(self.dense_report, self.report, directory / "memory_profile.png",
                                                      budget=self.budgets.get("sram"))
        return paths

    def _write_tflite(self, directory: Path) -> dict:
        """model.tflite (int8) and the C files for TFLite Micro, calibrated on the kept training inputs; what was
        done (or why not) goes into report.json under "tflite"."""
        from lightning_mcuprune.deploy import export_tflite
        calib = torch.cat(self._calib) if self._calib else None
        info = self._tflite_info = {"calibration_samples": 0 if calib is None else len(calib),
                                    "calib_samples_option": self.calib_samples}
        if calib is None:
            info["error"] = "no training inputs kept (calib_samples=0): call lightning_mcuprune.export_tflite"
            return {}
        was = self.root.training
        try:
            res = export_tflite(self.root.eval(), self.example.cpu(), calib, directory / "model.tflite",
                                order=self.order, c_dir=directory)
        except Exception as e:
            info["error"] = f"{type(e).__name__}: {e}"
            raise
        finally:
            self.root.train(was)
        info.update(res.summary())
        return dict(res.paths)

    # ---- history, logging, summary -----------------------------------------------------------
    def _record(self, step: int, n: torch.Tensor, targets: dict) -> None:
        last = getattr(self, "_recorded", None)  # (state, counts, values) of the previous row
        if last is not None and last[0] is self.state and torch.equal(last[1], n):
            values = last[2]  # the counts did not move: no resource-model evaluation
        else:
            values = self.state.resources(n)
            self._recorded = (self.state, n.clone(), values)
        row = {"step": int(step), "phase": self.phase.value}
        for k in self.budgets:
            row[k] = values[k]
            row[f"{k}_target"] = targets[k]
            row[f"{k}_budget"] = self.budgets[k]
        for name, pi, gid in zip(self.plan.producers, self.state.pi.detach().tolist(), self.state.ids):
            row[f"pi/{name}"] = pi
            row[f"channels/{name}"] = int(n[gid])
        self._rows.append(row)

    def binding_text(self) -> str:
        """The binding budget for the progress bar, e.g. "sram 71.2/64.0 KiB"."""
        if not self._rows:
            return ""
        row = self._rows[-1]
        keys = [key for key in self.budgets if key in row]  # a resume may have added a budget
        if not keys:
            return ""
        k = max(keys, key=lambda key: row[key] / self.budgets[key])
        if k in ("sram", "flash"):
            return f"{k} {row[k] / 1024:.1f}/{self.budgets[k] / 1024:.1f} KiB"
        if k == "latency_ms":
            return f"latency {row[k]:.1f}/{self.budgets[k]:.1f} ms"
        return f"macs {row[k] / 1e6:.2f}/{self.budgets[k] / 1e6:.2f} M"

    def _log(self, pl_module) -> None:
        """Send the newest history row to the loggers, once, following the Trainer's `log_every_n_steps`
        (and always the first row of a phase, e.g. the hardened counts); `history` keeps every row."""
        if not self._rows or pl_module._trainer is None or not pl_module.trainer.loggers:
            return
        row, every = self._rows[-1], pl_module.trainer.log_every_n_steps
        new_phase = len(self._rows) == 1 or self._rows[-2]["phase"] != row["phase"]
        if row is self._logged or not every or (row["step"] % every and not new_phase):
            return
        self._logged = row
        keys = [k for k in self.budgets if k in row]  # a resume may have added a budget
        metrics = {f"mcuprune/{k}{'_bytes' if k in ('sram', 'flash') else ''}": float(row[k]) for k in keys}
        metrics.update({f"mcuprune/{k}_target": float(row[f'{k}_target']) for k in keys})
        metrics.update({f"mcuprune/pi/{n}": float(row[f'pi/{n}']) for n in self.plan.producers})
        for logger in pl_module.trainer.loggers:
            logger.log_metrics(metrics, step=row["step"])

    def summary_table(self) -> tuple[Any, Any]:
        """Two rich Tables: each resource dense, pruned, against its budget; channels per group dense and kept."""
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
        for name, gid, cur in zip(self.plan.producers, self.state.ids, self.state.current):
            g.add_row(name, str(int(self.state.C0[gid])), str(cur))
        return t, g

    @rank_zero_only
    def print_summary(self) -> None:
        """Print `summary_table` (on rank zero only)."""
        from lightning_mcuprune.console import console as make_console
        console = make_console()
        for t in self.summary_table():
            console.print(t)


def _fresh_directory(path: Path) -> Path:
    """`path` if it holds no earlier export, else the first free `path_1`, `path_2`, ... (with a warning):
    an export never overwrites another run's."""
    def used(p: Path) -> bool:
        return p.exists() and (not p.is_dir() or any(p.iterdir()))
    if not used(path):
        return path
    n = 1
    while used(path.with_name(f"{path.name}_{n}")):
        n += 1
    fresh = path.with_name(f"{path.name}_{n}")
    rank_zero_warn(f"mcuprune: {path} holds an earlier export; this run's export goes to {fresh}")
    return fresh


def _rng_state() -> dict:
    """The process's random states (torch, CUDA, numpy, Python) as tensors and plain containers (loadable with
    torch.load(weights_only=True)). Lightning does not checkpoint them; without them a resumed run draws another
    shuffle order and other dropout masks than the uninterrupted one."""
    import random

    import numpy as np
    py = random.getstate()
    npst = np.random.get_state()
    d = {"torch": torch.get_rng_state(), "python": [py[0], list(py[1]), py[2]],
         "numpy": [npst[0], torch.from_numpy(npst[1].astype("int64")), int(npst[2]), int(npst[3]), float(npst[4])]}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        d["cuda"] = torch.cuda.get_rng_state_all()
    return d


def _set_rng_state(d: dict) -> None:
    import random

    import numpy as np
    torch.set_rng_state(d["torch"])
    random.setstate((d["python"][0], tuple(d["python"][1]), d["python"][2]))
    n = d["numpy"]
    np.random.set_state((n[0], n[1].numpy().astype(np.uint32), n[2], n[3], n[4]))
    if "cuda" in d and torch.cuda.is_available() and len(d["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(d["cuda"])
