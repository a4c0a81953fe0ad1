"""The pruning schedule and its phases, independent of Lightning.

A run of `total` optimiser steps goes through: warm-up (dense; channel importance only) until `warmup`, pruning
(pi, masks and the shrinking budget target updated; channels that stayed masked are physically removed at each of
`removals`) until `harden` (final counts, the budget guarantee, everything masked removed), then fine-tuning.

>>> s = make_schedule(100, max_epochs=10, warmup=0.1, prune_end=0.6, removals=3)
>>> s.warmup, s.harden, s.removals
(10, 60, (22, 35, 48))
>>> s.progress(35)
0.5
>>> make_schedule(100, max_epochs=10, warmup=1, prune_end=3, removals=0).harden   # ints are epochs
30
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum


class Phase(str, Enum):
    """Where MCUPruneCallback is in its schedule. Compares equal to its string value (``Phase.PRUNING == "pruning"``)."""

    IDLE = "idle"              # before the first training batch
    DENSE_FITS = "dense-fits"  # the dense network already meets every budget: left unpruned
    WARMUP = "warmup"          # dense; channel importance accumulates
    PRUNING = "pruning"        # pi, masks and the budget target move; masked channels are removed now and then
    FINETUNE = "finetune"      # hardened: the network meets the budgets and trains on at its final size

    def __str__(self) -> str:
        return self.value

    @property
    def active(self) -> bool:
        """Whether the masks and importance are live (warm-up and pruning)."""
        return self in (Phase.WARMUP, Phase.PRUNING)


def check_schedule(warmup: float | int, prune_end: float | int) -> None:
    """Raise ValueError unless `warmup` and `prune_end` are fractions of the run in [0, 1] (float) or epochs (int),
    with warmup before prune_end when both are of one kind.

    >>> check_schedule(0.5, 0.2)
    Traceback (most recent call last):
    ...
    ValueError: warmup (0.5) must come before prune_end (0.2)
    """
    for name, v in (("warmup", warmup), ("prune_end", prune_end)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0 or (isinstance(v, float) and v > 1):
            raise ValueError(f"bad {name} {v!r}: give a fraction of the run in [0, 1] (float) or an epoch (int)")
    if type(warmup) is type(prune_end) and warmup >= prune_end:
        raise ValueError(f"warmup ({warmup}) must come before prune_end ({prune_end})")


@dataclass(frozen=True)
class Schedule:
    """Optimiser steps of one run: `total`; pruning starts at `warmup` and hardens at `harden`; physical removals at
    `removals` (in between)."""

    total: int
    warmup: int
    harden: int
    removals: tuple[int, ...]

    def progress(self, step: int) -> float:
        """Fraction of the pruning phase done at `step` (0 at warm-up's end, 1 at hardening; not clipped)."""
        return (step - self.warmup) / max(1, self.harden - self.warmup)


def make_schedule(total_steps: float, max_epochs: int | None, warmup: float | int, prune_end: float | int,
                  removals: int) -> Schedule:
    """The schedule of a run of `total_steps` optimiser steps (e.g. `Trainer.estimated_stepping_batches`) over
    `max_epochs` epochs (None or <= 0: one epoch). `warmup` and `prune_end` are fractions of the run (float) or epoch
    numbers (int); `removals` physical removals are spread evenly over the pruning phase.

    Raises:
        ValueError: the run has no finite positive length.
    """
    if not math.isfinite(total_steps) or total_steps <= 0:
        raise ValueError("MCUPruneCallback needs a finite run: set max_epochs or max_steps on the Trainer")
    total = int(total_steps)
    per_epoch = max(1, int(total_steps // max(1, max_epochs))) if max_epochs and max_epochs > 0 else total

    def step(v: float | int) -> int:
        return int(round(v * total_steps)) if isinstance(v, float) else int(v) * per_epoch
    start = min(step(warmup), total)
    harden = max(start + 1, min(step(prune_end), total))
    span = harden - start
    return Schedule(total=total, warmup=start, harden=harden,
                    removals=tuple(sorted({start + round(span * (j + 1) / (removals + 1)) for j in range(removals)})))
