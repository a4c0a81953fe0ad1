"""Channel masks in the forward pass, applied to the weights of the convs and linears that read the channels.

A masked channel must have no effect on the rest of the network, so that removing it physically later
changes nothing. Rather than multiplying the producer's output activations by the mask (three extra passes
over every masked activation per step: the multiply, its backward, and the mask gradient; 14% of a
training step on the Fashion-MNIST reference CNN), the mask multiplies the input-channel slice of every
dense conv and linear that consumes the group's channels: W' = W * m. Every consumer then sees the channel
as zero, exactly as if the producer's output were masked (a prunable group reaches the network output only
through such a consumer: groups at the output are never pruned), and the cost is weight-sized. The mask's
gradient is the same Taylor score: dL/dm_c = sum over consumers of sum W_c * dL/dW'_c = sum a_c * dL/da_c.
Pass-through ops (pools, add, mul, cat, activations, depthwise convs in the group) need no mask.
"""
from __future__ import annotations

import torch
import torch.fx
import torch.nn as nn
import torch.nn.functional as F

from lightning_mcuprune.graph import ResourceGraph

from lightning_mcuprune.graph.ops import CHANNEL_MIXING_OPS as _CONSUMERS


def mask_sites(graph: ResourceGraph) -> tuple[list[tuple[str, tuple]], dict[int, str]]:
    """Modules whose input-channel weights get masks (path, input channel segments), and groups that cannot be
    masked (id -> reason): those read by a module that the network calls more than once."""
    prunable = {g.id for g in graph.groups if g.prunable}
    sites, unmaskable, seen = [], {}, {}
    for op in graph.ops:
        touched = {g for g, _ in op.in_channels if g in prunable}
        if op.type not in _CONSUMERS or not touched or op.groups != 1:
            continue
        if op.module is None:
            for g in touched:
                unmaskable[g] = f"read by a functional {op.target} at node {op.name!r} (use a module)"
            continue
        if op.module in seen:
            for g in touched | {g for g, _ in seen[op.module]}:
                unmaskable[g] = f"module {op.module!r} is called more than once"
            continue
        seen[op.module] = op.in_channels
        sites.append((op.module, op.in_channels))
    return [s for s in sites if not any(g in unmaskable for g, _ in s[1])], unmaskable


class MaskHooks:
    """Masks applied to the consumers' weights (see the module docstring), and a watch on the model's structure."""

    def __init__(self, root: nn.Module, sites, group_index: dict[int, int], group_sizes: list[int],
                 expected_calls: dict[str, int] | None = None):
        self.root = root
        self.expected_calls = expected_calls or {}  # leaf module path -> calls per forward when traced
        self.sites = sites
        self.group_index = group_index      # graph group id -> prunable index (absent: fixed group)
        self.group_sizes = group_sizes      # current channels of every graph group (fixed ones stay dense)
        self.masks: list[torch.Tensor] = []  # one float tensor per prunable group, requires_grad
        self.handles = []
        self.patched: list[nn.Module] = []

    def set_masks(self, keep: list[torch.Tensor], device: torch.device | str | None = None,
                  requires_grad: bool = True) -> None:
        """Use `keep` (one 0/1 or soft keep-mask per channel group, float32 on `device`) as the masks the hooks apply."""
        self.masks = [k.to(device=device, dtype=torch.float32).requires_grad_(requires_grad) for k in keep]

    def _vector(self, segs, like: torch.Tensor) -> torch.Tensor:
        """The mask over a consumer's input features: each group's mask, repeated `coef` times per channel
        (a linear after flattening C x H x W reads each channel H*W times, channel-major)."""
        parts = []
        for g, coef in segs:
            i = self.group_index.get(g)
            m = self.masks[i] if i is not None else torch.ones(self.group_sizes[g], device=like.device)
            parts.append(m if coef == 1 else m.repeat_interleave(int(coef)))
        v = parts[0] if len(parts) == 1 else torch.cat(parts)
        return v.to(like.dtype)

    def install(self) -> None:
        """Replace the forward of every consumer by one that uses the masked weights."""
        self.remove()
        self._watch_structure()
        for path, segs in self.sites:
            module = self.root.get_submodule(path)

            def forward(x, mod=module, segs=segs, path=path):
                v = self._vector(segs, mod.weight)
                if v.numel() != mod.weight.shape[1]:
                    raise RuntimeError(
                        f"mcuprune: module {path!r} now reads {mod.weight.shape[1]} input channels, the pruning state "
                        f"expects {v.numel()}; the model's structure changed outside the callback")
                w = mod.weight * v.view(1, -1, *([1] * (mod.weight.dim() - 2)))
                return F.linear(x, w, mod.bias) if isinstance(mod, nn.Linear) else mod._conv_forward(x, w, mod.bias)
            module.forward = forward
            self.patched.append(module)

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
        for module in self.patched:
            module.__dict__.pop("forward", None)
        self.patched = []

    def grads(self) -> list[torch.Tensor | None]:
        """dL/dm per prunable group since the last call; resets them."""
        out = []
        for m in self.masks:
            out.append(None if m.grad is None else m.grad.detach().clone())
            m.grad = None
        return out
