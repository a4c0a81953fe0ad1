"""Channel masks in the forward pass, applied by forward hooks where channels leave their producer chain.

A mask is needed after every op that can make a masked channel non-zero: convs and linears (bias, folded
BN), unfolded BN, and activations with f(0) != 0. Pass-through ops (pools, add, mul, cat, zero-preserving
activations) keep zeros zero. The hook sits on the op's last module; when the chain ends with functional
calls, on the last module before them, which is exact for binary masks when those calls keep 0 at 0
(relu, relu6, hardswish, ...). Where no such place exists the group is left unpruned, with the reason.
"""
from __future__ import annotations

import torch
import torch.fx
import torch.nn as nn

from lightning_mcuprune.graph import ResourceGraph

ZERO_PRESERVING = {None, "relu", "relu6", "hardswish", "tanh", "silu", "leaky_relu", "mul", "truediv", "neg"}
_NEEDS_MASK = {"conv2d", "depthwise_conv2d", "pointwise_conv2d", "dense"}


def mask_sites(graph: ResourceGraph) -> tuple[list[tuple[str, tuple]], dict[int, str]]:
    """Modules whose outputs get masks (path, channel segments), and groups that cannot be masked (id -> reason)."""
    prunable = {g.id for g in graph.groups if g.prunable}
    sites, unmaskable, seen = [], {}, {}
    for op in graph.ops:
        touched = {g for g, _ in op.out_channels if g in prunable}
        if not touched:
            continue
        needs = op.type in _NEEDS_MASK or (op.type == "mul" and op.bn_params) or \
            (op.type == "activation" and op.activation not in ZERO_PRESERVING)
        if not needs:
            continue
        path = None
        for j in range(len(op.nodes) - 1, -1, -1):
            if op.node_modules[j] is not None:
                path = op.node_modules[j]
                break
            if op.activation not in ZERO_PRESERVING:
                break  # a functional activation with f(0) != 0 ends the chain: no module output to mask
        if path is None or any(c != 1 for _, c in op.out_channels):
            for g in touched:
                unmaskable[g] = f"no module to mask after {op.target} at node {op.name!r} (use a module activation)"
            continue
        if path in seen and seen[path] != op.name:
            for g in touched:
                unmaskable[g] = f"module {path!r} is called more than once"
            continue
        seen[path] = op.name
        sites.append((path, op.out_channels))
    return sites, unmaskable


class MaskHooks:
    """Forward hooks multiplying module outputs by the current channel masks of their groups."""

    def __init__(self, root: nn.Module, sites, group_index: dict[int, int], group_sizes: list[int],
                 expected_calls: dict[str, int] | None = None):
        self.root = root
        self.expected_calls = expected_calls or {}  # leaf module path -> calls per forward when traced
        self.sites = sites
        self.group_index = group_index      # graph group id -> prunable index (absent: fixed group)
        self.group_sizes = group_sizes      # current channels of every graph group (fixed ones stay dense)
        self.masks: list[torch.Tensor] = []  # one float tensor per prunable group, requires_grad
        self.handles = []

    def set_masks(self, keep: list[torch.Tensor], device=None, requires_grad: bool = True) -> None:
        self.masks = [k.to(device=device, dtype=torch.float32).requires_grad_(requires_grad) for k in keep]

    def _vector(self, segs, like: torch.Tensor) -> torch.Tensor:
        parts = []
        for g, _ in segs:
            i = self.group_index.get(g)
            parts.append(self.masks[i] if i is not None else torch.ones(self.group_sizes[g], device=like.device))
        v = parts[0] if len(parts) == 1 else torch.cat(parts)
        return v.to(like.dtype)

    def install(self) -> None:
        self.remove()
        self._watch_structure()
        for path, segs in self.sites:
            module = self.root.get_submodule(path)

            def hook(mod, inp, out, segs=segs, path=path):
                v = self._vector(segs, out)
                if v.numel() != out.shape[1]:
                    raise RuntimeError(
                        f"mcuprune: module {path!r} now has {out.shape[1]} output channels, the pruning state expects "
                        f"{v.numel()}; the model's structure changed outside the callback")
                return out * v.view(1, -1, *([1] * (out.dim() - 2)))
            self.handles.append(module.register_forward_hook(hook))

    def _watch_structure(self) -> None:
        """Count the calls of every leaf module per forward of the root, and compare with the trace."""
        tracer = torch.fx.Tracer()  # the modules fx keeps whole (torch.nn's own) are the ones it records calls of
        leaves = [name for name, m in self.root.named_modules() if name and tracer.is_leaf_module(m, name)]
        self.calls = {name: 0 for name in leaves}

        def reset(mod, inp):
            for k in self.calls:
                self.calls[k] = 0

        def check(mod, inp, out):
            for k, c in self.calls.items():
                if c != self.expected_calls.get(k, 0):
                    raise RuntimeError(
                        f"mcuprune: the model's structure changed between forward calls: module {k!r} ran {c} time(s) in "
                        f"this forward, {self.expected_calls.get(k, 0)} when the network was traced; MCUPruneCallback "
                        "needs the same ops in every forward (no data- or flag-dependent branches)")
        self.handles.append(self.root.register_forward_pre_hook(reset))
        self.handles.append(self.root.register_forward_hook(check))
        for name in leaves:
            def count(mod, inp, out, name=name):
                self.calls[name] += 1
            self.handles.append(self.root.get_submodule(name).register_forward_hook(count))

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []

    def grads(self) -> list[torch.Tensor | None]:
        """dL/dm per prunable group since the last call; resets them."""
        out = []
        for m in self.masks:
            out.append(None if m.grad is None else m.grad.detach().clone())
            m.grad = None
        return out
