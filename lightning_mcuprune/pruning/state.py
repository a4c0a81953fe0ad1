"""The pruning state and its updates, independent of Lightning.

Per prunable channel group g (C0_g channels in the dense network, C_g left after physical removal):
- a keep proportion pi_g in [pi_min_g, C_g / C0_g], learned; the kept channel count is n_g = pi_g * C0_g;
- a channel importance s_g,c: an exponential moving average of |dL/dm_c|, the first-order Taylor score
  of the channel (m is the channel's mask, so dL/dm = sum over the channel of a * dL/da);
- a binary mask keeping the top ceil(n_g) channels by importance (rounded to a multiple if asked).

Updates:
- `task_step`: the signed mask gradients become a gradient for pi through a soft relaxation of the rank
  threshold, m_c ~ sigmoid((pi_g*C0_g - r_c - 1/2) / tau_g); pi takes an Adam step with one second-moment
  scale for all groups (pi_norm="global"; "group" normalises each group apart, as before issue 15);
- `project`: budget tracking. While some resource exceeds its current target, pi moves along
  -dR_k/dn of the most violated resource k (under MACs and latency, compute_step="share": -n_g dR_k/dn_g,
  each group's share of the resource), each group's step divided by the importance of the channels at
  its keep threshold (so the budget is taken first where the marginal channels matter least per unit of
  resource: the Taylor criterion per unit cost), by bisection on the step length, until R_k = target_k;
  no group goes below its soft floor min(4, uniform-width count) unless the target cannot be met otherwise;
- `guarantee`: after hardening, if rounding left a budget exceeded, remove the channels with the least
  importance per (normalised) resource saved until every budget holds.
"""
from __future__ import annotations

import math

import torch

from lightning_mcuprune.pruning.budgets import format_value
from lightning_mcuprune.resources import ResourceModel
from lightning_mcuprune.errors import MCUPruneError


class BudgetUnreachableError(MCUPruneError, ValueError):
    """Even the smallest network the options allow exceeds a budget."""


class PruningState:
    """Keep proportions, importance and masks of the prunable groups of one ResourceModel."""

    IMPORTANCE_FLOOR = 0.05  # added to the relative marginal importance: a group whose threshold channels show no
    # importance yet still moves, at most 20x faster than an average one

    COMPUTE_IMPORTANCE = "global"  # for benchmarks/compute_budgets.py's diagnosis only: "global" | "group" | "none"
    # (how the marginal importance divides the steps under MACs/latency; no measured gain from "group" or "none")
    SOFT_FLOOR = 4  # projection keeps every group at >= min(SOFT_FLOOR, its uniform-width count) unless the budget forces it
    UNIFORM_FLOOR = 0.0  # for benchmarks/compute_budgets.py's diagnosis only: the soft floor is also >= this fraction of
    # each group's uniform-width count (a trust region around uniform width for an allocation from short-run importance)

    def __init__(self, rm: ResourceModel, budgets: dict, prunable: list[int], *, min_channels: int = 1, floors=None,
                 multiple: int = 1, pi_lr: float = 0.05, importance_decay: float = 0.9, temperature: float | None = None,
                 pi_norm: str = "global", compute_step: str = "share", soft_floor: bool = True):
        self.rm = rm
        self.budgets = dict(budgets)
        self.ids = list(prunable)                  # graph group ids of the prunable groups
        self.C0 = rm.dense_counts.clone()          # float64, all groups
        c0 = self.C0[self.ids]
        self._idx, self._c0 = torch.tensor(self.ids, dtype=torch.long), c0  # for `counts`, called in every projection step
        self.current = [int(c) for c in c0]        # channels physically left per prunable group
        self.multiple = max(1, int(multiple))
        floors = floors or [1] * len(self.ids)
        self.min_kept = [min(int(c), max(1, int(min_channels), f)) for c, f in zip(c0, floors)]
        self.pi_min = torch.tensor([m / c for m, c in zip(self.min_kept, c0.tolist())], dtype=torch.float64)
        self.pi = torch.ones(len(self.ids), dtype=torch.float64, requires_grad=True)
        if pi_norm not in ("global", "group"):
            raise ValueError(f"pi_norm must be 'global' or 'group', not {pi_norm!r}")
        if compute_step not in ("share", "cost", "uniform"):
            raise ValueError(f"compute_step must be 'share', 'uniform' or 'cost', not {compute_step!r}")
        self.pi_norm, self.compute_step = pi_norm, compute_step
        self.pi_lr = float(pi_lr)
        self.opt = torch.optim.Adam([self.pi], lr=pi_lr)  # pi_norm="group": each group's feedback normalised apart
        self._m = torch.zeros(len(self.ids), dtype=torch.float64)  # pi_norm="global": Adam moments, one shared scale
        self._v, self._t = 0.0, 0
        self.decay = importance_decay
        self.tau = [temperature if temperature else max(0.5, 0.05 * float(c)) for c in c0]
        self.importance = [torch.zeros(c) for c in self.current]
        self._ranks: dict[int, tuple] = {}   # group -> (importance tensor, its version, ranks): see `ranks`
        self.keep = [torch.ones(c, dtype=torch.bool) for c in self.current]
        self.feedback = [torch.zeros(c) for c in self.current]  # signed dL/dm, summed since the last task step
        self.present = [torch.arange(c) for c in self.current]  # dense-network index of each channel still present
        self.pi_floor = self.soft_floors() if soft_floor else self.pi_min.clone()

    # ---- counts ------------------------------------------------------------------------------
    def upper(self) -> torch.Tensor:
        return torch.tensor([c / float(c0) for c, c0 in zip(self.current, self.C0[self.ids].tolist())], dtype=torch.float64)

    def counts(self, pi: torch.Tensor | None = None) -> torch.Tensor:
        """Channel counts of all groups (float64): prunable groups pi * C0, fixed groups C0."""
        pi = self.pi if pi is None else pi
        return self.C0.index_put((self._idx,), pi * self._c0)

    def kept_counts(self) -> list[int]:
        """Channels to keep per prunable group: ceil(pi * C0), rounded up to the multiple, in [min, current]."""
        out = []
        for i, c0 in enumerate(self.C0[self.ids].tolist()):
            k = math.ceil(float(self.pi.detach()[i]) * c0 - 1e-6)
            if self.multiple > 1 and self.current[i] >= self.multiple:
                k = math.ceil(k / self.multiple) * self.multiple
            out.append(int(min(max(k, self.min_kept[i]), self.current[i])))
        return out

    def integer_counts(self, kept: list[int] | None = None) -> torch.Tensor:
        kept = self.kept_counts() if kept is None else kept
        n = self.C0.clone()
        for gid, k in zip(self.ids, kept):
            n[gid] = k
        return n

    def excess(self, n: torch.Tensor) -> float:
        """How far n is over the budgets, normalised by each budget; for SRAM the excess of every op over
        the budget counts, so that shrinking any op above the budget counts as progress even with ties."""
        total = 0.0
        with torch.no_grad():
            for k, b in self.budgets.items():
                v = self.rm.working_set(n) if k == "sram" else torch.as_tensor(self._value(k, n))
                total += float((v - b).clamp(min=0).sum()) / b
        return total

    def _value(self, key: str, n: torch.Tensor) -> float:
        """One budgeted resource at counts n; at integer counts flash is the exported artefact's exact size."""
        if key == "flash" and bool((n == n.round()).all()):
            return self.rm.exported_flash_bytes(n)
        return float(self.rm.resource(key, n))

    def resources(self, n: torch.Tensor) -> dict[str, float]:
        """The budgeted resources at counts n (see `_value`)."""
        with torch.no_grad():
            return {k: self._value(k, n) for k in self.budgets}

    # ---- feasibility -------------------------------------------------------------------------
    def check_reachable(self) -> None:
        """Raise if even the smallest allowed network exceeds a budget (smallest value vs budget)."""
        n_min = self.C0.clone()
        for gid, m in zip(self.ids, self.min_kept):
            n_min[gid] = m
        smallest = self.resources(n_min)
        bad = [k for k, v in smallest.items() if v > self.budgets[k]]
        if bad:
            parts = [f"{k}: the smallest network allowed needs {format_value(k, smallest[k])}, budget "
                     f"{format_value(k, self.budgets[k])} ({smallest[k] / self.budgets[k]:.2f}x)" for k in bad]
            raise BudgetUnreachableError(
                "budget cannot be met by pruning channels; " + "; ".join(parts) +
                f". Raise the budget, lower min_channels (now {max(self.min_kept) if self.min_kept else 0}), or make "
                "the fixed parts smaller (input size, classifier, excluded modules).")

    def uniform_width(self, iters: int = 40) -> float:
        """The largest w in (0, 1] such that every prunable group at max(min, w * C0) channels (continuous) meets
        every budget: uniform width scaling to the same budgets (0.0 if even the smallest network does not)."""
        c0 = self.C0[self.ids]

        def fits(w):
            n = self.C0.clone()
            n[self.ids] = torch.maximum(w * c0, self.pi_min * c0)
            return all(v <= self.budgets[k] for k, v in self.resources(n).items())
        if fits(1.0):
            return 1.0
        lo, hi = 0.0, 1.0
        for _ in range(iters):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if fits(mid) else (lo, mid)
        return lo

    def soft_floors(self) -> torch.Tensor:
        """Per prunable group, the keep proportion of min(SOFT_FLOOR, its uniform-width count) channels (never below
        pi_min). The projection does not go below it unless the budget cannot be met otherwise: measured on ResNet-8
        under a MACs budget, the cost-per-channel steps took the inner conv of a block to 1-2 channels."""
        w = self.uniform_width()
        c0 = self.C0[self.ids]
        uni = torch.ceil(w * c0 - 1e-6).clamp(min=1)
        floor = torch.minimum(uni, torch.full_like(uni, float(self.SOFT_FLOOR)))
        if self.UNIFORM_FLOOR > 0:
            floor = torch.maximum(floor, torch.ceil(self.UNIFORM_FLOOR * uni - 1e-6))
        return torch.maximum(floor / c0, self.pi_min)

    # ---- importance and task feedback -----------------------------------------------------------
    def accumulate(self, grads: list[torch.Tensor | None]) -> None:
        """Take the mask gradients dL/dm of one backward pass (one per prunable group)."""
        for i, g in enumerate(grads):
            if g is None:
                continue
            g = g.detach().to("cpu", torch.float32)
            self.feedback[i] += g
            self.importance[i].mul_(self.decay).add_(g.abs(), alpha=1 - self.decay)

    def ranks(self, i: int) -> torch.Tensor:
        """Rank of each current channel of prunable group i by importance (0 = most important)."""
        imp = self.importance[i]
        cached = self._ranks.get(i)
        if cached is not None and cached[0] is imp and cached[1] == imp._version:
            return cached[2]  # importance unchanged since (task_step and update_masks of one update share the sort)
        order = torch.argsort(imp, descending=True, stable=True)
        r = torch.empty_like(order)
        r[order] = torch.arange(order.numel())
        self._ranks[i] = (imp, imp._version, r)
        return r

    def task_step(self) -> None:
        """One Adam step of pi along the task-loss feedback, through the soft rank-threshold relaxation.

        pi_norm="global" (default): one second-moment estimate for the whole pi vector (the mean square over groups),
        so pi moves along the task gradient's direction and a group with weak feedback moves little. "group": torch's
        Adam, each group's feedback normalised by its own history, so every group with consistent feedback moves by
        about pi_lr per step however weak its signal (the behaviour before issue 15)."""
        grad = torch.zeros_like(self.pi)
        c0 = self.C0[self.ids]
        for i in range(len(self.ids)):
            fb = self.feedback[i].to(torch.float64)
            if not torch.any(fb):
                continue
            z = (self.pi.detach()[i] * c0[i] - self.ranks(i).to(torch.float64) - 0.5) / self.tau[i]
            s = torch.sigmoid(z)
            grad[i] = (fb * s * (1 - s)).sum() * c0[i] / self.tau[i]
            self.feedback[i].zero_()
        if self.pi_norm == "group":
            self.opt.zero_grad()
            self.pi.grad = grad
            self.opt.step()
        else:
            b1, b2 = 0.9, 0.999
            self._t += 1
            self._m.mul_(b1).add_(grad, alpha=1 - b1)
            self._v = b2 * self._v + (1 - b2) * float((grad ** 2).mean())
            v_hat = self._v / (1 - b2 ** self._t)
            if v_hat > 0:
                with torch.no_grad():
                    self.pi.sub_(self.pi_lr * (self._m / (1 - b1 ** self._t)) / (math.sqrt(v_hat) + 1e-12))
        self.clamp()

    def ranked_importance(self) -> list[torch.Tensor]:
        """Each prunable group's channel importance, most important first."""
        return [torch.sort(imp, descending=True).values for imp in self.importance]

    def marginal_importance(self, ranked: list[torch.Tensor] | None = None, per_group: bool = False) -> torch.Tensor:
        """Importance of the channels at each prunable group's keep threshold (mean over ranks k-w..k+w, w = 5% of
        the group, at least 1), relative to the mean importance of all channels (1.0 = average; float64).
        `ranked`: `ranked_importance()`, when the caller already has it."""
        ranked = self.ranked_importance() if ranked is None else ranked
        vals = []
        for i, k in enumerate(self.kept_counts()):
            w = max(1, round(0.05 * self.current[i]))
            window = ranked[i][max(0, k - w):min(len(ranked[i]), k + w)]
            vals.append(float(window.mean()) if len(window) else 0.0)
        v = torch.tensor(vals, dtype=torch.float64)
        if per_group:
            means = torch.tensor([float(imp.mean()) if len(imp) else 0.0 for imp in self.importance], dtype=torch.float64)
            return torch.where(means > 0, v / means.clamp(min=1e-30), torch.ones_like(v))
        mean = float(torch.cat(self.importance).mean()) if self.importance else 0.0
        return v / mean if mean > 0 else torch.ones_like(v)

    def clamp(self) -> None:
        with torch.no_grad():
            self.pi.copy_(torch.minimum(torch.maximum(self.pi, self.pi_min), self.upper()))

    # ---- budget tracking ------------------------------------------------------------------------
    def project(self, targets: dict[str, float], max_rounds: int = 60, bisections: int = 40) -> None:
        """Move pi along -grad R_k until every resource is within its target (continuous counts).

        Each round takes the most violated resource; for peak SRAM, the working set of the op at the peak
        (not the max itself): shrinking the groups of the bottleneck op can only bring *that* op down to
        the target, and treating the max as the function would drive those groups to their floor
        whenever another op is also above the target.
        Groups stay at or above their soft floor (`pi_floor`: min(4, uniform-width count)) unless the targets
        cannot be met that way; then the projection runs again down to the hard floor `pi_min`.
        """
        if not self._project(targets, torch.maximum(self.pi_floor, self.pi_min), max_rounds, bisections):
            self._project(targets, self.pi_min, max_rounds, bisections)

    def _step_direction(self, key: str, d: torch.Tensor, pi: torch.Tensor, ranked) -> torch.Tensor:
        """Per-group step in pi for one unit of step length, from d = dR_key/dpi (see `project`)."""
        # "cost" (SRAM always; MACs and latency with compute_step="cost"): a step in pi by the cost of one channel
        # (dR/dn = dR/dpi / C0): groups in the same bottleneck shrink by the same fraction per unit of cost. The raw
        # pi-gradient (C0 * dR/dn) would take channels in proportion to C0^2 and starve the widest group (a
        # 64-channel conv pruned to 1 beside a 32-channel one).
        # "share" (MACs and latency by default): a step in pi by each group's share of the resource (its elasticity),
        # d pi_g ~ n_g dR/dn_g: with equal importance groups of equal share shrink by the same fraction, as in
        # uniform width scaling, and a group's steps diminish as it narrows. MACs and latency are sums of
        # products n_in * n_out over all layers: per channel, an early full-resolution layer costs several times a
        # late one, so cost-per-channel steps starved the early stages and the inner convs of residual blocks
        # (ResNet-8 at 1/4 latency: 5-4-5-14-14-14-29-61-61 channels, 2.7 pp below uniform width).
        if key in ("macs", "latency_ms") and self.compute_step == "share":
            d = d * pi
        elif key in ("macs", "latency_ms") and self.compute_step == "uniform":
            d = torch.where(d > 0, pi, torch.zeros_like(d))
        else:
            d = d / self.C0[self.ids]
        # ... divided by the importance at each group's threshold: measured on Fashion-MNIST (3 seeds x 1/2,
        # 1/4, 1/8 of dense SRAM) +1.1, +0.7, +0.1 pp over cost-only steps; on keyword spotting +0.7 pp (3 seeds).
        # Before any importance is measured (all zero) every group counts as average.
        if key in ("macs", "latency_ms") and self.COMPUTE_IMPORTANCE != "global":
            if self.COMPUTE_IMPORTANCE == "none":
                return d
            return d / (self.marginal_importance(ranked, per_group=True) + self.IMPORTANCE_FLOOR)
        return d / (self.marginal_importance(ranked) + self.IMPORTANCE_FLOOR)

    def _project(self, targets: dict[str, float], lo: torch.Tensor, max_rounds: int, bisections: int) -> bool:
        """`project` with lower bound `lo`; True when every target holds at the end."""
        ranked = self.ranked_importance()  # importance does not change while projecting: sort once
        with torch.no_grad():
            self.pi.copy_(torch.maximum(self.pi, torch.minimum(lo, self.upper())))
        for _ in range(max_rounds):
            pi = self.pi.detach()
            vals = self.resources(self.counts(pi))
            viol = {k: vals[k] / targets[k] - 1 for k in targets if vals[k] > targets[k] * (1 + 1e-9)}
            if not viol:
                return True
            key = max(viol, key=viol.get)
            if key == "sram":
                with torch.no_grad():
                    op = int(self.rm.working_set(self.counts(pi)).argmax())

                def f(p, op=op):
                    return self.rm.working_set(self.counts(p))[op]
            else:
                def f(p, key=key):
                    return self.rm.resource(key, self.counts(p))
            p = pi.clone().requires_grad_()
            value = f(p)
            (d,) = torch.autograd.grad(value, p)
            exact = f
            if key == "sram" and self.rm.working_set_is_affine:
                # the op's working set is affine in the counts, hence in pi: the bisection below evaluates it from its
                # value and gradient at pi (6 small ops instead of the whole resource model, ~40 times per update);
                # the step found is checked against the resource model itself
                f0, grad = value.detach(), d

                def f(q, f0=f0, grad=grad, pi=pi):
                    return f0 + torch.dot(grad, q - pi)
            d = self._step_direction(key, d, pi, ranked)
            d = torch.where(pi > lo + 1e-12, d.clamp(min=0), torch.zeros_like(d))
            if not torch.any(d > 0):
                return False  # nothing can shrink this resource further above `lo`
            room = torch.where(d > 0, (pi - lo) / d, torch.full_like(d, float("inf")))
            a_hi0 = float(room[d > 0].max())

            def at(a):
                return torch.maximum(pi - a * d, lo)

            def search(f):
                """Step length along d: the whole room if the target is not reached there (None), else the bisection's."""
                if f(at(a_hi0)) > targets[key]:
                    return None
                a_lo, a_hi = 0.0, a_hi0
                for _ in range(bisections):
                    mid = 0.5 * (a_lo + a_hi)
                    if f(at(mid)) > targets[key]:
                        a_lo = mid
                    else:
                        a_hi = mid
                return a_hi

            with torch.no_grad():
                a = search(f)
                if f is not exact and (exact(at(a_hi0 if a is None else a)) > targets[key]) != (a is None):
                    a = search(exact)  # rounding put the affine evaluation on the other side of the target
                self.pi.copy_(at(a_hi0 if a is None else a))
        return False

    def update_masks(self, kept: list[int] | None = None) -> None:
        """Keep the top `kept` channels of each group by importance."""
        kept = self.kept_counts() if kept is None else kept
        for i, k in enumerate(kept):
            r = self.ranks(i)
            self.keep[i] = r < k

    # ---- hardening --------------------------------------------------------------------------
    def guarantee(self, kept: list[int]) -> list[int]:
        """Lower `kept` until every budget holds at integer counts, greedily by least importance per resource saved;
        first without taking any group below its soft floor (`pi_floor`), then, if that cannot meet the budgets,
        down to `min_kept`."""
        soft = [min(k, max(m, math.ceil(float(f) * c0 - 1e-6)))
                for k, m, f, c0 in zip(kept, self.min_kept, self.pi_floor, self.C0[self.ids].tolist())]
        try:
            return self._guarantee(kept, soft)
        except BudgetUnreachableError:
            return self._guarantee(kept, self.min_kept)

    def _guarantee(self, kept: list[int], floor: list[int]) -> list[int]:
        kept = list(kept)
        step = [self.multiple if self.current[i] >= self.multiple else 1 for i in range(len(kept))]
        by_rank = self.ranked_importance()
        scale = float(torch.cat(self.importance).mean()) if self.importance and sum(self.current) else 1.0
        scale = scale if scale > 0 else 1.0
        while True:
            n = self.integer_counts(kept)
            vals = self.resources(n)
            violated = [k for k in self.budgets if vals[k] > self.budgets[k]]
            if not violated:
                return kept
            base = self.excess(n)
            best, best_score = None, math.inf
            for i in range(len(kept)):
                new_k = kept[i] - step[i]
                if new_k < floor[i]:
                    continue
                trial = list(kept)
                trial[i] = new_k
                saved = base - self.excess(self.integer_counts(trial))
                if saved <= 0:
                    continue
                # importance of the channels that would go: the least important of the kept ones
                cost = float(by_rank[i][new_k:kept[i]].sum()) / scale + 1e-9
                if cost / saved < best_score:
                    best, best_score = i, cost / saved
            if best is None:
                raise BudgetUnreachableError(
                    "after hardening, budgets still exceeded and no group can shrink further: " +
                    "; ".join(f"{k} {format_value(k, vals[k])} > {format_value(k, self.budgets[k])}" for k in violated))
            kept[best] -= step[best]

    def fill(self, kept: list[int]) -> list[int]:
        """Give back channels (still present, most important first per resource cost) while every budget holds:
        rounding down in `guarantee` and the continuous projection can leave part of a budget unused."""
        kept = list(kept)
        step = [self.multiple if self.current[i] >= self.multiple else 1 for i in range(len(kept))]
        by_rank = self.ranked_importance()
        while True:
            vals = self.resources(self.integer_counts(kept))
            best, best_score = None, -math.inf
            for i in range(len(kept)):
                new_k = kept[i] + step[i]
                if new_k > self.current[i]:
                    continue
                trial = list(kept)
                trial[i] = new_k
                v2 = self.resources(self.integer_counts(trial))
                if any(v2[k] > self.budgets[k] for k in self.budgets):
                    continue
                cost = sum((v2[k] - vals[k]) / self.budgets[k] for k in self.budgets) + 1e-12
                score = float(by_rank[i][kept[i]:new_k].sum()) / cost
                if score > best_score:
                    best, best_score = i, score
            if best is None:
                return kept
            kept[best] += step[best]

    # ---- physical removal ------------------------------------------------------------------------
    def drop_channels(self, i: int, removed: torch.Tensor) -> None:
        """Forget channels `removed` (current indices) of prunable group i after physical removal."""
        keep = torch.ones(self.current[i], dtype=torch.bool)
        keep[removed] = False
        self.importance[i] = self.importance[i][keep]
        self.feedback[i] = self.feedback[i][keep]
        self.keep[i] = self.keep[i][keep]
        self.present[i] = self.present[i][keep]
        self.current[i] = int(keep.sum())
        self.clamp()

    # ---- checkpoints -------------------------------------------------------------------------------
    _TENSOR_LISTS = ("importance", "keep", "feedback", "present")

    def state_dict(self) -> dict:
        d = {k: [t.clone() for t in getattr(self, k)] for k in self._TENSOR_LISTS}
        d.update(pi=self.pi.detach().clone(), pi_opt=self.opt.state_dict(), current=list(self.current),
                 pi_moments=dict(m=self._m.clone(), v=self._v, t=self._t),
                 dense=[int(c) for c in self.C0[self.ids]])
        return d

    def load_state_dict(self, d: dict) -> None:
        """Restore a state saved by state_dict() (the network must already have `present` channels only)."""
        if d["dense"] != [int(c) for c in self.C0[self.ids]]:
            raise ValueError(f"pruning state is for groups of {d['dense']} channels, this network has "
                             f"{[int(c) for c in self.C0[self.ids]]}")
        for k in self._TENSOR_LISTS:
            setattr(self, k, [t.clone() for t in d[k]])
        self.current = list(d["current"])
        with torch.no_grad():
            self.pi.copy_(d["pi"])
        self.opt.load_state_dict(d["pi_opt"])
        if "pi_moments" in d:
            self._m, self._v, self._t = d["pi_moments"]["m"].clone(), float(d["pi_moments"]["v"]), int(d["pi_moments"]["t"])
