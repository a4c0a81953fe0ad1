"""Physical channel removal with Torch-Pruning, keeping the user's optimiser working.

Torch-Pruning's `group.prune()` removes a group's channels from every coupled layer and replaces the
pruned `nn.Parameter` objects. To carry the optimiser along, each parameter is first overwritten with
its own flat element indices (float64, exact), the group is pruned, and the surviving indices say
exactly which elements each new parameter kept: its real values and its optimiser state (momentum,
Adam moments) are gathered with them, and `param_groups` are re-pointed to the new objects. This is
exact for every coupling Torch-Pruning handles (concat, residual adds, depthwise, flatten->linear).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch_pruning as tp


def _out_pruner(module: nn.Module):
    if isinstance(module, (nn.Conv1d, nn.Conv2d)):
        return tp.prune_conv_out_channels
    if isinstance(module, nn.Linear):
        return tp.prune_linear_out_channels
    raise TypeError(f"cannot prune the output channels of {type(module).__name__}")


def remove_channels(root: nn.Module, example_input: "torch.Tensor", removals: dict, optimizers: "tuple | list" = ()) -> None:
    """Remove output channels from `root`: `removals` maps a conv/linear module path to the channel indices
    to remove (and everything coupled to them goes too). One dependency trace serves all of them.

    `optimizers`: torch optimisers over root's parameters; their param refs and state are updated.
    """
    removals = {path: sorted(int(i) for i in idxs) for path, idxs in removals.items() if len(idxs)}
    if not removals:
        return
    was_training = root.training
    root.eval()  # the dependency trace runs a forward pass: keep BN running statistics untouched
    try:
        dg = tp.DependencyGraph().build_dependency(root, example_inputs=example_input, verbose=False)
    finally:
        root.train(was_training)

    old = dict(root.named_parameters())
    shapes = {name: p.shape for name, p in old.items()}
    real = {name: p.data for name, p in old.items()}
    for p in old.values():
        p.grad = None  # removal happens between optimiser steps; gradients are spent
        p.data = torch.arange(p.numel(), dtype=torch.float64, device=p.device).view(p.shape)
    try:
        for path, idxs in removals.items():
            module = root.get_submodule(path)
            dg.get_pruning_group(module, _out_pruner(module), idxs=idxs).prune()
    finally:
        new = dict(root.named_parameters())
        index = {}
        for name, p in new.items():
            idx = p.data.long().flatten()
            index[name] = idx
            p.data = real[name].flatten()[idx].view(p.shape)
    for opt in optimizers:
        _repoint(opt, old, shapes, new, index)


def _repoint(opt: torch.optim.Optimizer, old: dict, shapes: dict, new: dict, index: dict) -> None:
    by_id = {id(p): name for name, p in old.items()}
    for group in opt.param_groups:
        params = []
        for p in group["params"]:
            name = by_id.get(id(p))
            if name is None:
                params.append(p)
                continue
            q, idx = new[name], index[name]
            state = opt.state.pop(p, None)
            if state is not None:
                opt.state[q] = {k: (v.flatten()[idx].view(q.shape) if torch.is_tensor(v) and v.dim() > 0 and v.shape == shapes[name] else v)
                                for k, v in state.items()}
            params.append(q)
        group["params"] = params
