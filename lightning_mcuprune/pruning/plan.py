"""Which channel groups of a network are pruned, where their masks go, and which module owns each.

The plan is derived from the traced resource graph alone, so the same network always gives the same
plan: a checkpoint's pruned structure can be re-applied to a freshly built dense network.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from lightning_mcuprune.graph import ResourceGraph, trace_graph
from lightning_mcuprune.pruning.masks import mask_sites
from lightning_mcuprune.pruning.removal import remove_channels

from lightning_mcuprune.graph.ops import CHANNEL_MIXING_OPS as _PRODUCERS


@dataclass
class PruningPlan:
    graph: ResourceGraph
    ids: list          # graph group ids of the prunable groups
    producers: list    # per prunable group: the conv/linear module path whose output channels are the group
    sites: list        # (module path, channel segments) of every mask hook
    floors: list       # per prunable group: fewest channels it may keep (2 where a depthwise conv runs on it, so
                       # it stays depthwise: at one channel it would become a dense conv with other costs)

    @property
    def dense_channels(self) -> list[int]:
        return [self.graph.groups[g].size for g in self.ids]

    def module_calls(self) -> dict[str, int]:
        """Calls per forward of each module in the traced network."""
        calls: dict[str, int] = {}
        for node in self.graph.gm.graph.nodes:
            if node.op == "call_module":
                calls[node.target] = calls.get(node.target, 0) + 1
        return calls

    def signature(self) -> dict:
        """What identifies the architecture: group producers and their dense channel counts."""
        return {"producers": list(self.producers), "dense": self.dense_channels}


def make_plan(root: torch.nn.Module, example: torch.Tensor, exclude: "tuple[str, ...] | list[str]" = ()) -> PruningPlan:
    """Trace `root` at `example` and decide which channel groups are pruned, where their masks go and which
    module produces each (groups that cannot be masked or have no conv/linear producer stay dense, with a reason)."""
    was_training = root.training
    graph = trace_graph(root, example, exclude=exclude)
    root.train(was_training)
    sites, unmaskable = mask_sites(graph)
    ops = {op.name: op for op in graph.ops}
    ids, producers, groups = [], [], []
    for g in graph.groups:
        mods = [ops[p].module for p in g.producers if ops[p].type in _PRODUCERS and ops[p].module]
        if g.prunable and g.id in unmaskable:
            g = replace(g, prunable=False, reason=unmaskable[g.id])
        elif g.prunable and not mods:
            g = replace(g, prunable=False, reason="no conv/linear module produces it")
        elif g.prunable:
            ids.append(g.id)
            producers.append(mods[0])
        groups.append(g)
    graph = replace(graph, groups=groups)   # the plan's view of the groups; the traced graph is left as traced
    keep = set(ids)
    sites = [s for s in sites if any(g in keep for g, _ in s[1])]
    depthwise = {g for op in graph.ops if op.type == "depthwise_conv2d" for g, _ in op.out_channels}
    floors = [min(2, graph.groups[g].size) if g in depthwise else 1 for g in ids]
    return PruningPlan(graph=graph, ids=ids, producers=producers, sites=sites, floors=floors)


def check_signature(plan: PruningPlan, saved: dict, what: str = "checkpoint") -> None:
    mine = plan.signature()
    if mine != {"producers": list(saved["producers"]), "dense": list(saved["dense"])}:
        diff = [f"{a}:{ca} vs {b}:{cb}" for a, ca, b, cb in zip(saved["producers"], saved["dense"], mine["producers"], mine["dense"])
                if (a, ca) != (b, cb)][:4]
        raise ValueError(
            f"the {what} was made for another architecture: its prunable groups are "
            f"{len(saved['producers'])} ({', '.join(diff) or 'different count'} ...) against this network's "
            f"{len(mine['producers'])}; build the same dense network the checkpoint was trained from")


def apply_present(root: torch.nn.Module, example: torch.Tensor, plan: PruningPlan, present: list,
                  optimizers: "tuple | list" = ()) -> None:
    """Physically remove from a dense `root` every channel not in `present` (dense indices per prunable group)."""
    removals = {}
    for path, c, keep in zip(plan.producers, plan.dense_channels, present):
        mask = torch.ones(c, dtype=torch.bool)
        mask[torch.as_tensor(keep, dtype=torch.long)] = False
        removals[path] = mask.nonzero().flatten().tolist()
    remove_channels(root, example, removals, optimizers)
