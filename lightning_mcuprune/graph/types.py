"""The resource graph's data types: ops, int8 activation buffers, channel groups, and the graph's errors.

Channel groups: every channel dimension is a list of segments (group, coef): its size is
sum(coef * n_group). See graph.trace for how a module is traced into these.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.fx
from lightning_mcuprune.errors import MCUPruneError

Segments = tuple  # tuple[tuple[int, float], ...]: (group id, channels per group channel)


class GraphError(MCUPruneError, ValueError):
    """The model cannot be turned into a resource graph; the message names the place and the fix."""


class UnsupportedOpError(GraphError):
    """An op with no resource model: named with its module path or function and where it sits."""


@dataclass
class Group:
    """A set of channels that must be pruned together. `size` = channels in the dense network."""

    id: int
    size: int
    prunable: bool = True
    reason: str = ""            # why not prunable
    producers: list = field(default_factory=list)  # names of the ops whose output starts this group
    modules: list = field(default_factory=list)    # module paths whose channels belong to the group


@dataclass
class Buffer:
    """An int8 activation in the arena (1 byte per element). `spatial` = elements per channel."""

    name: str
    shape: tuple                # at batch 1
    spatial: int
    channels: Segments
    producer: str | None        # op name; None for a graph input
    consumers: list = field(default_factory=list)  # op names, in execution order
    is_output: bool = False


@dataclass
class Op:
    """One op of the MCU runtime (after BN folding and activation fusion). Shapes at batch 1."""

    name: str
    type: str                   # one of graph.ops.OP_TYPES
    target: str                 # module path or function name, for messages and tables
    nodes: list                 # fx node names folded into this op, in order
    inputs: list                # buffer names
    output: str                 # buffer name
    in_channels: Segments = ()  # per-filter input channels (Cin/groups); () = constant `in_const`
    in_const: float = 0.0
    out_channels: Segments = ()
    out_spatial: int = 1        # output elements per channel
    out_rows: int = 1           # output rows (H) for the per-row latency feature
    kernel_elems: int = 0       # kh*kw for convs, 1 for dense, 0 for weightless ops
    window: int = 0             # kernel/window elements incl. padding (convs, pools; 1 for dense), 0 otherwise
    valid_taps: int = 0         # per channel: kernel/window taps inside the input, summed over output positions
    kernel_h: int = 0           # kernel/window rows (first spatial dim; 1 for dense), 0 otherwise
    row_taps: int = 0           # per channel: taps in kernel rows inside the input (padded columns included), summed over outputs
    valid_rows: int = 0         # per channel: kernel/window rows inside the input, summed over output positions
    groups: int = 1
    has_bias: bool = False
    bn_params: int = 0          # BN parameters per output channel folded in (2 if affine)
    activation: str | None = None
    module: str | None = None   # main module path, if any
    mask_node: str = ""         # fx node after which the op's output channels leave the op
    mask_module: str | None = None  # module whose output is that node (None: functional)
    node_modules: list = field(default_factory=list)  # per folded node: its module path, or None if functional

    @property
    def label(self) -> str:
        """A readable name: the main module's path, else the fx node name."""
        return self.module or self.name


@dataclass
class ResourceGraph:
    """Ops in execution order, activation buffers, channel groups. See module docstring."""

    ops: list
    buffers: dict
    groups: list
    inputs: list                # buffer names of graph inputs
    outputs: list               # buffer names of graph outputs
    gm: torch.fx.GraphModule = field(repr=False, default=None)

    @property
    def dense_counts(self) -> torch.Tensor:
        """Channels per group in the traced network (float64)."""
        return torch.tensor([g.size for g in self.groups], dtype=torch.float64)

    @property
    def prunable(self) -> list:
        return [g.id for g in self.groups if g.prunable]

    def buffer_lifetimes(self, order: "list[int] | None" = None) -> dict[str, tuple[int, int]]:
        """buffer name -> (first, last) position in `order` (op indices; default: traced order) at which the
        buffer is in the arena: from its producer (0 for a graph input) to its last consumer, and to the
        end for a graph output. The one liveness rule of the resource model and the arena planners."""
        order = list(range(len(self.ops))) if order is None else order
        pos = {o: t for t, o in enumerate(order)}
        idx = {op.name: i for i, op in enumerate(self.ops)}
        last = len(self.ops) - 1
        life = {}
        for name, b in self.buffers.items():
            start = pos[idx[b.producer]] if b.producer else 0
            end = last if b.is_output else max((pos[idx[c]] for c in b.consumers), default=start)
            life[name] = (start, end)
        return life
