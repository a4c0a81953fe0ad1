"""Trace an nn.Module into a resource graph: fused ops in execution order, int8 activation buffers,
and for every channel dimension the channel group it belongs to.

How it works: torch.fx traces the module (modules and functional calls alike); every tensor's shape
is propagated on meta tensors (shapes only, no arithmetic) at batch 1, and at batch 2 to catch models
whose shapes depend on the batch; a model that fails at batch 1 is reported with the failing node.
Nodes are then folded into the ops an MCU runtime executes: BatchNorm folds into the conv/linear
before it, activations fuse into their producer, flatten/view/reshape/dropout alias their input.

Channel groups: every channel dimension is a list of segments (group, coef): its size is
sum(coef * n_group). A conv/linear output starts a new group; BN, activations, pools and depthwise
convs pass their input's segments through; `add` and channel-wise `mul` unite the groups of their
operands; `cat` concatenates segment lists; flatten scales segments by the spatial size.
"""
from __future__ import annotations

import contextlib
import operator
from dataclasses import dataclass

import torch
import torch.fx
import torch.nn as nn
import torch.nn.functional as F

from lightning_mcuprune.graph.geometry import (
    conv_geometry,
    function_pool_params,
    module_pool_params,
    pool_geometry,
)
from lightning_mcuprune.graph.types import (  # noqa: F401  (moved; importable from here as before)
    Buffer,
    GraphError,
    Group,
    Op,
    ResourceGraph,
    Segments,
    UnsupportedOpError,
)


_ACTIVATION_MODULES = {
    nn.ReLU: "relu", nn.ReLU6: "relu6", nn.Hardswish: "hardswish", nn.Sigmoid: "sigmoid",
    nn.Hardsigmoid: "hardsigmoid", nn.Tanh: "tanh", nn.Softmax: "softmax", nn.LogSoftmax: "log_softmax",
    nn.SiLU: "silu", nn.LeakyReLU: "leaky_relu", nn.GELU: "gelu", nn.ELU: "elu", nn.Hardtanh: "hardtanh",
    nn.Mish: "mish",
}
_ACTIVATION_FUNCS = {
    F.relu: "relu", torch.relu: "relu", F.relu6: "relu6", F.hardswish: "hardswish",
    torch.sigmoid: "sigmoid", F.sigmoid: "sigmoid", F.hardsigmoid: "hardsigmoid", torch.tanh: "tanh",
    F.tanh: "tanh", F.softmax: "softmax", F.log_softmax: "log_softmax", torch.softmax: "softmax",
    F.silu: "silu", F.leaky_relu: "leaky_relu", F.gelu: "gelu", F.elu: "elu", F.hardtanh: "hardtanh",
    F.mish: "mish",
}
_ACTIVATION_METHODS = {"relu": "relu", "sigmoid": "sigmoid", "tanh": "tanh", "softmax": "softmax",
                       "log_softmax": "log_softmax", "relu_": "relu"}
_ALIAS_MODULES = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Identity, nn.Flatten)
_ALIAS_FUNCS = {torch.flatten, F.dropout, F.dropout2d, torch.reshape}
_ALIAS_METHODS = {"view", "reshape", "flatten", "contiguous", "unsqueeze", "squeeze"}
_UNSQUEEZE_FUNCS = {torch.unsqueeze, torch.squeeze}
#: activations that int8 runtimes run as a clamp of the producer's output (act_min/act_max): no extra op.
#: Every other activation (and scalar arithmetic such as `x + 3`, `x / 6`) is an elementwise function of
#: one int8 value, which the int8 paths run as a 256-entry lookup table (see lightning_mcuprune.quantize).
CLAMP_ACTIVATIONS = ("relu", "relu6")
#: activations that are not elementwise and so have no int8 lookup table: analyze/prune only
NON_ELEMENTWISE_ACTIVATIONS = ("softmax", "log_softmax")
_POOL_FUNCS = {F.max_pool1d: "max_pool", F.max_pool2d: "max_pool", F.avg_pool1d: "avg_pool", F.avg_pool2d: "avg_pool",
               F.adaptive_avg_pool1d: "avg_pool", F.adaptive_avg_pool2d: "avg_pool",
               F.adaptive_max_pool1d: "max_pool", F.adaptive_max_pool2d: "max_pool"}
_POOL_MODULES = {nn.MaxPool1d: "max_pool", nn.MaxPool2d: "max_pool", nn.AvgPool1d: "avg_pool", nn.AvgPool2d: "avg_pool",
                 nn.AdaptiveAvgPool1d: "avg_pool", nn.AdaptiveAvgPool2d: "avg_pool",
                 nn.AdaptiveMaxPool1d: "max_pool", nn.AdaptiveMaxPool2d: "max_pool"}
_ADD = {operator.add, operator.iadd, torch.add}
_MUL = {operator.mul, operator.imul, torch.mul}
_SCALAR_ARITH = {operator.add, operator.iadd, torch.add, operator.mul, operator.imul, torch.mul,
                 operator.sub, operator.truediv, torch.sub, torch.div, operator.neg}
_CAT = {torch.cat, torch.concat}
_SUPPORTED_HINT = ("supported: Conv1d/Conv2d (dense, depthwise, grouped), Linear, BatchNorm1d/2d, ReLU/ReLU6/Hardswish/"
                   "Sigmoid/Hardsigmoid/SiLU/LeakyReLU/Tanh/GELU, MaxPool/AvgPool/AdaptiveAvgPool, Dropout, "
                   "flatten/view/reshape/unsqueeze/s[:, :, None, None], add, cat, channel-wise mul, mean over spatial dims")


class _UnionFind:
    def __init__(self):
        self.parent: list[int] = []

    def new(self) -> int:
        self.parent.append(len(self.parent))
        return len(self.parent) - 1

    def find(self, a: int) -> int:
        while self.parent[a] != a:
            self.parent[a] = self.parent[self.parent[a]]
            a = self.parent[a]
        return a

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


@dataclass
class _View:
    """What an fx node's tensor is: a view onto a buffer, with its own channel segments."""

    buffer: str
    channels: Segments
    spatial: int
    shape: tuple


def _fn_name(target) -> str:
    mod = getattr(target, "__module__", "") or ""
    name = getattr(target, "__name__", repr(target))
    return f"{mod}.{name}" if mod and not mod.startswith("_operator") else name


def _node_where(node: torch.fx.Node) -> str:
    stack = node.meta.get("stack_trace")
    if stack:
        last = [ln.strip() for ln in stack.strip().splitlines() if ln.strip().startswith("File")]
        if last:
            return f" ({last[-1]})"
    return ""


def _module_text(node: torch.fx.Node) -> str:
    """' in module <path> (<class>)' from fx's module stack, or '' at the top level."""
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return ""
    path, cls = list(stack.values())[-1]
    name = getattr(cls, "__name__", str(cls))
    return f" in module {path!r} ({name})" if path else f" in {name}.forward"


def _index_text(i) -> str:
    if i is None:
        return "None"
    if i is Ellipsis:
        return "..."
    if isinstance(i, slice):
        return ":".join("" if v is None else str(v) for v in (i.start, i.stop)) + ("" if i.step is None else f":{i.step}")
    return repr(i)


def _channels_and_spatial(shape: tuple) -> tuple[int, int]:
    if len(shape) < 2:
        raise GraphError(f"tensor of shape {tuple(shape)} has no channel dimension (expected [N, C, ...])")
    spatial = 1
    for d in shape[2:]:
        spatial *= int(d)
    return int(shape[1]), spatial


#: torch.nn layers no MCU kernel of ours runs; named up front (see _Tracer._refuse_unsupported_layers)
_NO_KERNEL_MODULES = (nn.RNNBase, nn.RNNCellBase, nn.MultiheadAttention, nn.Embedding, nn.EmbeddingBag,
                      nn.TransformerEncoderLayer, nn.TransformerDecoderLayer, nn.TransformerEncoder,
                      nn.TransformerDecoder, nn.Transformer)


def _children_text(model: nn.Module) -> str:
    names = [n for n, _ in model.named_children()]
    return ", ".join(repr(n) for n in names[:6]) + (" ..." if len(names) > 6 else "") if names else "none"


def _symbolic_trace(model: nn.Module) -> torch.fx.GraphModule:
    """torch.fx.symbolic_trace with errors that say what to do."""
    if getattr(type(model).forward, "__qualname__", "") in ("_forward_unimplemented", "LightningModule.forward"):
        raise GraphError(
            f"{type(model).__name__} has no forward() of its own, so there is no network to trace. Name the "
            f"network inside it: MCUPruneCallback(module='net') or analyze(model.net, ...) "
            f"(its submodules: {_children_text(model)})")
    try:
        return torch.fx.symbolic_trace(model)
    except Exception as e:  # fx raises many types for untraceable code
        text = f"{type(e).__name__}: {e}"
        if "cannot be iterated" in str(e):
            raise GraphError(
                f"torch.fx could not trace {type(model).__name__}: {text}. Its forward() unpacks or iterates its "
                "input (e.g. `x, y = batch`); trace the network that takes the input tensor itself: "
                f"MCUPruneCallback(module='net') or analyze(model.net, ...) (its submodules: {_children_text(model)})"
            ) from None
        raise GraphError(
            f"torch.fx could not trace {type(model).__name__}: {text}. "
            "Data-dependent Python control flow (if/for on tensor values) cannot be traced; "
            "move it out of forward() or make the shapes static.") from None


#: ops that only act in training (identity at inference): a mode-dependent call of these is harmless
_TRAINING_ONLY_IDENTITIES = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)
_DROPOUT_FUNCS = {F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout}


def _structure(gm: torch.fx.GraphModule) -> list:
    """Every call in the traced graph as "what in OwnerModule at 'path'", in order, dropout left out."""
    mods = dict(gm.named_modules())
    out = []
    for node in gm.graph.nodes:
        if node.op == "call_module":
            m = mods[node.target]
            if isinstance(m, _TRAINING_ONLY_IDENTITIES):
                continue
            what = f"{type(m).__name__} at {node.target!r}"
        elif node.op == "call_function":
            if node.target in _DROPOUT_FUNCS:
                continue
            what = _fn_name(node.target)
        elif node.op == "call_method":
            what = f"Tensor.{node.target}()"
        else:
            continue
        stack = node.meta.get("nn_module_stack") or {}
        owners = [(path, cls) for path, cls in stack.values() if path != node.target]
        where = f" in {getattr(owners[-1][1], '__name__', owners[-1][1])} at {owners[-1][0]!r}" if owners else ""
        out.append(what + where)
    return out


def check_train_eval_structure(model: nn.Module) -> None:
    """Refuse a network that runs other layers in training than in eval mode (e.g. `if self.training:
    y = y + self.b(x)`): pruning needs one structure, the one that is trained and deployed. Traces the
    model symbolically in both modes (no forward pass; modes restored): in training mode as it is set
    (submodules a user keeps in eval mode stay so), or all in training mode if the model is in eval mode.
    Dropout is ignored."""
    if not isinstance(model, nn.Module):
        raise GraphError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    modes = {m: m.training for m in model.modules()}
    try:
        if not model.training:
            model.train(True)
        train = _structure(_symbolic_trace(model))
        model.train(False)
        infer = _structure(_symbolic_trace(model))
    finally:
        for m, mode in modes.items():
            m.training = mode
    if train == infer:
        return
    from collections import Counter
    only_train = list((Counter(train) - Counter(infer)).elements())
    only_eval = list((Counter(infer) - Counter(train)).elements())
    parts = []
    if only_train:
        parts.append(f"only in training mode: {'; '.join(only_train[:4])}{' ...' if len(only_train) > 4 else ''}")
    if only_eval:
        parts.append(f"only in eval mode: {'; '.join(only_eval[:4])}{' ...' if len(only_eval) > 4 else ''}")
    if not parts:
        parts.append("the same layers run in another order")
    raise GraphError(
        f"{type(model).__name__} runs other layers in training than in eval mode ({', '.join(parts)}). "
        "Pruning needs one structure, trained and deployed alike: remove the branch under `if self.training:` "
        "(or move it into training_step), or run it in both modes.")


class _NodeFailed(Exception):
    """Running an fx node raised `error`."""

    def __init__(self, node, error: BaseException):
        super().__init__(str(error))
        self.node, self.error = node, error


def _error_text(e: BaseException) -> str:
    """An exception as one readable line: its type and first lines, without fx's graph dump."""
    lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
    text = " ".join(lines[:3])
    return f"{type(e).__name__}: {text[:400]}"


class _ShapeInterpreter(torch.fx.Interpreter):
    """Runs a GraphModule node by node and records the output shape of every tensor node.

    meta=True: inputs are meta tensors (shapes only, no arithmetic); run it inside _meta_weights so that
    parameters and buffers are too. A failing node raises _NodeFailed naming the node."""

    def __init__(self, gm: torch.fx.GraphModule, meta: bool):
        super().__init__(gm, garbage_collect_values=True)
        self.meta = meta
        self.recorded: dict[str, tuple] = {}
        self.record = True

    def shapes(self, example_inputs, batch: int, record: bool = True) -> dict:
        self.record = record
        xs = []
        for x in example_inputs:
            shape = (batch, *x.shape[1:])
            xs.append(torch.empty(shape, dtype=x.dtype, device="meta") if self.meta
                      else x[:1].expand(*shape).contiguous())
        self.run(*xs)
        return self.recorded

    def _to_meta(self, v):
        if self.meta and isinstance(v, torch.Tensor) and v.device.type != "meta":
            return v.to("meta")
        return v

    def run_node(self, n):
        try:
            result = super().run_node(n)
        except _NodeFailed:
            raise
        except Exception as e:  # noqa: BLE001 - any error of the user's forward is reported with its node
            raise _NodeFailed(n, e) from e
        if isinstance(result, torch.Tensor):
            self.recorded[n.name] = tuple(result.shape)
            if self.record:
                n.meta["tensor_meta"] = _ShapeMeta(tuple(result.shape), result.dtype)
        elif self.record:
            n.meta.pop("tensor_meta", None)
        return result

    def call_module(self, target, args, kwargs):
        submod = self.fetch_attr(target)
        x = args[0] if args else None
        if self.meta and isinstance(submod, _SHAPE_KEEPING_MODULES) and isinstance(x, torch.Tensor) \
                and len(args) == 1 and not kwargs:
            # the output has the input's shape (meta batch_norm runs a slow Python decomposition)
            features = getattr(submod, "num_features", None)
            if features is not None and (x.dim() < 2 or x.shape[1] != features):
                raise RuntimeError(f"{type(submod).__name__}({features}) got an input of shape {tuple(x.shape)}")
            return torch.empty_like(x)
        return submod(*args, **kwargs)

    def get_attr(self, target, args, kwargs):
        return self._to_meta(super().get_attr(target, args, kwargs))

    def call_function(self, target, args, kwargs):
        if self.meta:  # tensors made inside forward (torch.ones, constants) join the meta tensors
            args, kwargs = torch.fx.node.map_aggregate((args, kwargs), self._to_meta)
        return super().call_function(target, args, kwargs)

    def call_method(self, target, args, kwargs):
        if self.meta:
            args, kwargs = torch.fx.node.map_aggregate((args, kwargs), self._to_meta)
        return super().call_method(target, args, kwargs)


@contextlib.contextmanager
def _meta_weights(module: nn.Module):
    """Within the block every parameter and buffer of `module` is a meta tensor of the same shape; the
    original tensor objects (which optimisers hold) are put back afterwards, also on an error."""
    saved = []
    try:
        for m in module.modules():
            for d in (m._parameters, m._buffers):
                for k, v in d.items():
                    if v is not None and v.device.type != "meta":
                        saved.append((d, k, v))
                        meta = v.to("meta")
                        d[k] = nn.Parameter(meta, v.requires_grad) if isinstance(v, nn.Parameter) else meta
        yield
    finally:
        for d, k, v in saved:
            d[k] = v


_SHAPE_KEEPING_MODULES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.ReLU, nn.ReLU6, nn.Identity, nn.Dropout, nn.Dropout1d,
                          nn.Dropout2d)


@dataclass(frozen=True)
class _ShapeMeta:
    """What the tracer keeps of a node's tensor: its shape at batch 1 and dtype."""

    shape: tuple
    dtype: torch.dtype


class _Tracer:
    def __init__(self, model: nn.Module, example_inputs: tuple, exclude: set[str]):
        self.model = model
        self.exclude = exclude
        self.uf = _UnionFind()
        self.group_size: list[int] = []
        self.fixed: dict[int, str] = {}
        self.group_producers: dict[int, list] = {}
        self.group_modules: dict[int, list] = {}
        self.views: dict[str, _View] = {}
        self.buffers: dict[str, Buffer] = {}
        self.ops: list[Op] = []
        self.op_of_buffer: dict[str, Op] = {}
        self.gm = self._trace(model)
        self.modules = dict(self.gm.named_modules())
        self._refuse_unsupported_layers()
        self._propagate_shapes(example_inputs)

    def _refuse_unsupported_layers(self) -> None:
        """Name a recurrent, attention or embedding layer itself, before the reshapes around it are refused."""
        for node in self.gm.graph.nodes:
            if node.op == "call_module" and isinstance(self.modules[node.target], _NO_KERNEL_MODULES):
                raise UnsupportedOpError(
                    f"{type(self.modules[node.target]).__name__} at {node.target!r} is not supported: recurrent, "
                    f"attention and embedding layers have no int8 MCU kernel here; {_SUPPORTED_HINT} (for sequences: "
                    "Conv1d over time, e.g. a temporal CNN or a DS-CNN on MFCCs)")

    # ---- tracing ----------------------------------------------------------------------------
    def _trace(self, model):
        return _symbolic_trace(model)

    def _propagate_shapes(self, example_inputs):
        """Record every node's shape at batch 1 (node.meta["tensor_meta"]) and check that batch 2 changes
        only dimension 0. Shapes are propagated on meta tensors (no arithmetic, linear in the graph size);
        only where meta tensors fail does a real float forward at batch 1 tell a user error from an op
        meta tensors cannot run."""
        self.gm.eval()  # modes are restored by trace_graph
        with torch.no_grad():
            meta = True
            try:
                with _meta_weights(self.gm):
                    s1 = _ShapeInterpreter(self.gm, meta=True).shapes(example_inputs, 1)
            except _NodeFailed:
                meta = False
                try:
                    s1 = _ShapeInterpreter(self.gm, meta=False).shapes(example_inputs, 1)
                except _NodeFailed as f:
                    raise GraphError(self._failure_text(f, example_inputs)) from None
            try:
                with _meta_weights(self.gm) if meta else contextlib.nullcontext():
                    s2 = _ShapeInterpreter(self.gm, meta=meta).shapes(example_inputs, 2, record=False)
            except _NodeFailed as f:
                raise GraphError(
                    f"the model runs at batch 1 but fails at batch 2 at {self.describe(f.node)} "
                    f"({_error_text(f.error)}); its shapes depend on the batch size (e.g. view(1, -1) or a "
                    "hard-coded batch). Use x.flatten(1) or x.view(x.size(0), -1).") from None
        for node in self.gm.graph.nodes:
            sh, other = s1.get(node.name), s2.get(node.name)
            if sh is None:
                continue
            if other is None or len(other) != len(sh) or other[1:] != sh[1:] or (len(sh) and sh[0] != 1) or other[0] != 2:
                raise GraphError(
                    f"the shape of {node.name!r} ({self.describe(node)}) "
                    f"depends on the batch: {sh} at batch 1, {other} at batch 2; the batch must stay dimension 0 "
                    "everywhere (use x.flatten(1) or x.view(x.size(0), -1), not view(-1) or view(1, -1))")

    def _failure_text(self, f: "_NodeFailed", example_inputs) -> str:
        given = ", ".join(str(list(x.shape)) for x in example_inputs)
        n = f.node
        if n.op == "call_function" and n.target is operator.getitem and getattr(n.args[0], "op", "") == "placeholder":
            return (f"the model fails on the example input (shape {given}) at {self.describe(n)}: "
                    f"{_error_text(f.error)}. Its forward() indexes or unpacks its input (e.g. `x, y = batch`); "
                    "trace the network that takes the input tensor itself: MCUPruneCallback(module='net') or "
                    f"analyze(model.net, ...) (its submodules: {_children_text(self.model)})")
        return (f"the model fails on the example input (shape {given}) at {self.describe(f.node)}: "
                f"{_error_text(f.error)}. Check the input shape (batch first, e.g. [1, C, H, W]) and that the "
                "weights belong to this architecture.")

    # ---- groups -----------------------------------------------------------------------------
    def new_group(self, size: int, producer: str | None = None, module: str | None = None) -> int:
        g = self.uf.new()
        self.group_size.append(size)
        self.group_producers[g] = [producer] if producer else []
        self.group_modules[g] = [module] if module else []
        return g

    def fix(self, segs: Segments, reason: str) -> None:
        for g, _ in segs:
            self.fixed.setdefault(self.uf.find(g), reason)

    def unite(self, a: Segments, b: Segments, where: str) -> Segments:
        a, b = self.canon(a), self.canon(b)
        if len(a) != len(b) or any(ca != cb for (_, ca), (_, cb) in zip(a, b)):
            if len(a) == len(b) and all(self.group_size[ga] * ca == self.group_size[gb] * cb for (ga, ca), (gb, cb) in zip(a, b)):
                pass
            else:
                raise UnsupportedOpError(
                    f"{where}: joins tensors whose channels are laid out differently ({len(a)} vs {len(b)} "
                    "concatenated parts); an add/mul across differently concatenated tensors is not supported")
        for (ga, _), (gb, _) in zip(a, b):
            self.uf.union(ga, gb)
        return self.canon(a)

    def canon(self, segs: Segments) -> Segments:
        return tuple((self.uf.find(g), c) for g, c in segs)

    # ---- helpers ----------------------------------------------------------------------------
    def shape(self, node) -> tuple:
        tm = node.meta.get("tensor_meta")
        return tuple(tm.shape) if tm is not None and hasattr(tm, "shape") else None

    def view_of(self, arg, node) -> _View:
        if not isinstance(arg, torch.fx.Node) or arg.name not in self.views:
            raise UnsupportedOpError(f"{self.describe(node)}: its input {arg!r} is not a traced tensor")
        return self.views[arg.name]

    def describe(self, node) -> str:
        if node.op == "call_module":
            return f"{type(self.modules[node.target]).__name__} at {node.target!r}"
        if node.op == "call_method":
            return f"Tensor.{node.target}() at node {node.name!r}{_node_where(node)}"
        if node.op == "call_function":
            return f"{_fn_name(node.target)} at node {node.name!r}{_node_where(node)}"
        return f"{node.op} {node.target!r}"

    def new_buffer(self, node, segs: Segments, producer: Op | None) -> _View:
        shape = self.shape(node)
        _, spatial = _channels_and_spatial(shape)
        buf = Buffer(name=node.name, shape=shape, spatial=spatial, channels=segs,
                     producer=producer.name if producer else None)
        self.buffers[buf.name] = buf
        view = _View(buffer=buf.name, channels=segs, spatial=spatial, shape=shape)
        self.views[node.name] = view
        if producer is not None:
            self.op_of_buffer[buf.name] = producer
        return view

    def add_op(self, node, type_: str, inputs: list[_View], out_segs: Segments, **kw) -> Op:
        shape = self.shape(node)
        _, spatial = _channels_and_spatial(shape)
        op = Op(name=node.name, type=type_, target=kw.pop("target", self.describe(node).split(" at ")[0]),
                nodes=[node.name], inputs=[v.buffer for v in inputs], output=node.name,
                out_channels=out_segs, out_spatial=spatial, out_rows=int(shape[2]) if len(shape) > 3 else 1,
                mask_node=node.name, mask_module=node.target if node.op == "call_module" else None,
                node_modules=[node.target if node.op == "call_module" else None], **kw)
        self.ops.append(op)
        for v in inputs:
            self.buffers[v.buffer].consumers.append(op.name)
        self.new_buffer(node, out_segs, op)
        return op

    def fusable_producer(self, arg) -> Op | None:
        """The op whose output `arg` is, if `arg` is that op's own buffer with this node as its only user."""
        if not isinstance(arg, torch.fx.Node) or arg.name not in self.views:
            return None
        view = self.views[arg.name]
        op = self.op_of_buffer.get(view.buffer)
        if op is None or op.output != arg.name or len(arg.users) != 1:
            return None
        return op

    def extend_op(self, op: Op, node) -> None:
        """Fold `node` into `op`: the op's output buffer now stands for node's tensor."""
        old = self.buffers.pop(op.output)
        old.name = node.name
        old.shape = self.shape(node)
        self.buffers[node.name] = old
        del self.op_of_buffer[op.output]
        self.op_of_buffer[node.name] = op
        self.views.pop(op.output, None)
        self.views[node.name] = _View(node.name, old.channels, old.spatial, old.shape)
        op.nodes.append(node.name)
        op.node_modules.append(node.target if node.op == "call_module" else None)
        op.output = node.name
        op.mask_node = node.name
        op.mask_module = node.target if node.op == "call_module" else None

    # ---- node handlers ----------------------------------------------------------------------
    def run(self) -> ResourceGraph:
        inputs, outputs = [], []
        for node in self.gm.graph.nodes:
            if node.op == "placeholder":
                shape = self.shape(node)
                if shape is None:
                    raise GraphError(f"input {node.name!r} is not a tensor")
                c, _ = _channels_and_spatial(shape)
                g = self.new_group(c)
                self.fixed[g] = "network input"
                self.new_buffer(node, ((g, 1.0),), None)
                inputs.append(node.name)
            elif node.op == "output":
                outs = node.args[0]
                outs = list(outs) if isinstance(outs, (tuple, list)) else [outs]
                for o in outs:
                    v = self.view_of(o, node)
                    self.fix(v.channels, "network output")
                    self.buffers[v.buffer].is_output = True
                    outputs.append(v.buffer)
            elif node.op == "get_attr":
                continue  # constants; their users are checked where they are used
            elif self.shape(node) is None:
                # size(), dim(), getitem on sizes: Python values, no tensor, no cost
                if node.op == "call_method" and node.target in ("size", "dim") or node.op == "call_function" and node.target in (getattr, operator.getitem, operator.floordiv, operator.mul, operator.add):
                    continue
                raise UnsupportedOpError(f"{self.describe(node)} does not produce a single tensor; {_SUPPORTED_HINT}")
            elif node.op == "call_module":
                self.on_module(node)
            elif node.op == "call_function":
                self.on_function(node)
            elif node.op == "call_method":
                self.on_method(node)
        return self.finish(inputs, outputs)

    def on_module(self, node):
        m = self.modules[node.target]
        x = node.args[0]
        if isinstance(m, (nn.Conv1d, nn.Conv2d)):
            return self.conv(node, m, x)
        if isinstance(m, nn.Linear):
            return self.linear(node, m, x)
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            return self.batchnorm(node, x, 2 if m.affine else 0)
        for cls, name in _ACTIVATION_MODULES.items():
            if type(m) is cls:
                return self.activation(node, x, name)
        for cls, kind in _POOL_MODULES.items():
            if type(m) is cls:
                return self.pool(node, x, kind, module_pool_params(m))
        if isinstance(m, _ALIAS_MODULES):
            return self.alias(node, x)
        raise UnsupportedOpError(f"{type(m).__name__} at {node.target!r} is not supported; {_SUPPORTED_HINT}")

    def on_function(self, node):
        t = node.target
        args = node.args
        tensor_args = [a for a in args if isinstance(a, torch.fx.Node) and a.name in self.views]
        if t in _ACTIVATION_FUNCS:
            return self.activation(node, args[0], _ACTIVATION_FUNCS[t])
        if t in _POOL_FUNCS:
            return self.pool(node, args[0], _POOL_FUNCS[t], function_pool_params(t, args, node.kwargs))
        if t in _ALIAS_FUNCS or t in _UNSQUEEZE_FUNCS:
            return self.alias(node, args[0])
        if t is operator.getitem and tensor_args and args[0] is tensor_args[0]:
            return self.getitem(node)
        if t in _CAT:
            return self.cat(node)
        if t is torch.mean:
            return self.mean(node)
        if len(tensor_args) == 2 and t in _ADD:
            return self.binary(node, "add", tensor_args)
        if len(tensor_args) == 2 and t in _MUL:
            return self.binary(node, "mul", tensor_args)
        if len(tensor_args) == 1 and t in _SCALAR_ARITH and all(
                not isinstance(a, torch.fx.Node) or a in tensor_args or self.shape(a) is None for a in args):
            return self.activation(node, tensor_args[0], _fn_name(t).split(".")[-1])
        raise UnsupportedOpError(f"{self.describe(node)} is not supported; {_SUPPORTED_HINT}")

    def on_method(self, node):
        t = node.target
        if t in _ACTIVATION_METHODS:
            return self.activation(node, node.args[0], _ACTIVATION_METHODS[t])
        if t in _ALIAS_METHODS:
            return self.alias(node, node.args[0])
        if t in ("expand_as", "expand"):
            return self.expand(node)
        if t == "mean":
            return self.mean(node)
        tensor_args = [a for a in node.args if isinstance(a, torch.fx.Node) and a.name in self.views]
        if t in ("add", "add_") and len(tensor_args) == 2:
            return self.binary(node, "add", tensor_args)
        if t in ("mul", "mul_") and len(tensor_args) == 2:
            return self.binary(node, "mul", tensor_args)
        raise UnsupportedOpError(f"{self.describe(node)} is not supported; {_SUPPORTED_HINT}")

    def conv(self, node, m, x):
        v = self.view_of(x, node)
        cin, cout, G = m.in_channels, m.out_channels, m.groups
        k = 1
        for d in m.kernel_size:
            k *= d
        excluded = self.is_excluded(node.target)
        geo = conv_geometry(v.shape, self.shape(node), m.kernel_size, m.stride, m.padding, m.dilation)
        if G == 1:
            g = self.new_group(cout, node.name, node.target)
            out = ((g, 1.0),)
            pointwise = k == 1 and all(s == 1 for s in m.stride) and (
                isinstance(m.padding, str) or all(p == 0 for p in m.padding))
            op = self.add_op(node, "pointwise_conv2d" if pointwise else "conv2d", [v], out,
                             in_channels=v.channels, kernel_elems=k, has_bias=m.bias is not None, module=node.target,
                             **geo)
            if excluded:
                self.fix(out, f"excluded module {node.target}")
            return op
        if G == cin and cout == cin:  # depthwise (a group it belongs to keeps >= 2 channels, see pruning.plan)
            self.group_modules[self.uf.find(v.channels[0][0])].append(node.target)
            op = self.add_op(node, "depthwise_conv2d", [v], v.channels, in_const=1.0, kernel_elems=k, groups=G,
                             has_bias=m.bias is not None, module=node.target, **geo)
            if excluded:
                self.fix(v.channels, f"excluded module {node.target}")
            return op
        # grouped conv or depthwise with a channel multiplier: counted exactly, channels kept
        self.fix(v.channels, f"grouped conv {node.target} (groups={G})")
        g = self.new_group(cout, node.name, node.target)
        self.fixed[g] = f"grouped conv {node.target} (groups={G})"
        type_ = "depthwise_conv2d" if G == cin else "conv2d"
        return self.add_op(node, type_, [v], ((g, 1.0),), in_const=cin / G, kernel_elems=k, groups=G,
                           has_bias=m.bias is not None, module=node.target, **geo)

    def linear(self, node, m, x):
        v = self.view_of(x, node)
        if len(v.shape) != 2:
            raise UnsupportedOpError(f"Linear at {node.target!r} gets a {len(v.shape)}-d input {v.shape}; "
                                     "flatten it to [N, features] first")
        g = self.new_group(m.out_features, node.name, node.target)
        op = self.add_op(node, "dense", [v], ((g, 1.0),), in_channels=v.channels, kernel_elems=1,
                         has_bias=m.bias is not None, module=node.target, window=1, valid_taps=1,
                         kernel_h=1, row_taps=1, valid_rows=1)
        if self.is_excluded(node.target):
            self.fix(op.out_channels, f"excluded module {node.target}")
        return op

    def batchnorm(self, node, x, params):
        op = self.fusable_producer(x)
        if op is not None and op.type in ("conv2d", "pointwise_conv2d", "depthwise_conv2d", "dense") \
                and op.activation is None and op.bn_params == 0:
            self.extend_op(op, node)
            op.bn_params = params
            self.group_modules[self.uf.find(op.out_channels[0][0])].append(node.target)
            return op
        v = self.view_of(x, node)  # BN that cannot be folded: a per-channel affine op
        return self.add_op(node, "mul", [v], v.channels, bn_params=params, target="BatchNorm (unfolded)",
                           module=node.target)

    def activation(self, node, x, name):
        op = self.fusable_producer(x)
        if op is not None and op.activation is None and op.type not in ("concat",):
            self.extend_op(op, node)
            op.activation = name
            return op
        v = self.view_of(x, node)
        return self.add_op(node, "activation", [v], v.channels, activation=name)

    def pool(self, node, x, kind, params=None):
        v = self.view_of(x, node)
        shape = self.shape(node)
        geo = pool_geometry(v.shape, shape, params or {})
        if len(shape) > 2 and all(d == 1 for d in shape[2:]) and kind == "avg_pool":
            kind = "global_avg_pool"
        return self.add_op(node, kind, [v], v.channels, **geo)

    def mean(self, node):
        x = node.args[0]
        v = self.view_of(x, node)
        dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
        dims = (dims,) if isinstance(dims, int) else tuple(dims or ())
        rank = len(v.shape)
        dims = tuple(d % rank for d in dims)
        if not dims or 0 in dims or 1 in dims:
            raise UnsupportedOpError(f"{self.describe(node)}: mean over dims {dims} is not supported; "
                                     "only a mean over the spatial dims (global average pooling) is")
        return self.add_op(node, "global_avg_pool" if set(dims) == set(range(2, rank)) else "avg_pool", [v], v.channels,
                           **pool_geometry(v.shape, self.shape(node), {"mean_dims": dims}))

    def alias(self, node, x):
        v = self.view_of(x, node)
        shape = self.shape(node)
        if len(shape) == len(v.shape) and shape == v.shape:
            self.views[node.name] = _View(v.buffer, v.channels, v.spatial, shape)
            return
        c, spatial = _channels_and_spatial(shape)
        cin_total = int(v.shape[1])
        if len(shape) == 2 and c == cin_total * v.spatial:
            segs = tuple((g, coef * v.spatial) for g, coef in v.channels)
            self.views[node.name] = _View(v.buffer, segs, 1, shape)
            return
        if c == cin_total and spatial == v.spatial:
            self.views[node.name] = _View(v.buffer, v.channels, spatial, shape)
            return
        raise UnsupportedOpError(f"{self.describe(node)}: reshape {v.shape} -> {shape} mixes channels with other "
                                 "dimensions; only flattening [N, C, ...] to [N, C*...] is supported")

    def getitem(self, node):
        """`s[:, :, None, None]` and the like (full slices, None, Ellipsis only) alias their input."""
        index = node.args[1] if isinstance(node.args[1], tuple) else (node.args[1],)
        if all(i is None or i is Ellipsis or i == slice(None) for i in index):
            return self.alias(node, node.args[0])
        raise UnsupportedOpError(
            f"indexing {node.args[0].name}[{', '.join(_index_text(i) for i in index)}] at node {node.name!r}"
            f"{_module_text(node)} is not supported: only indexing that adds dims (s[:, :, None, None]) is. "
            "To pick channels, use a conv with fewer output channels; to pick positions, use a pool or a strided conv")

    def expand(self, node):
        """`s.expand_as(x)` of a [N, C, 1, 1] gate before a channel-wise multiply: the gate is not copied."""
        v = self.view_of(node.args[0], node)
        if v.spatial != 1:
            raise UnsupportedOpError(f"{self.describe(node)}{_module_text(node)}: expand of {v.shape} is supported only "
                                     "for a [N, C, 1, 1] tensor before a channel-wise multiply; write x * s instead")
        self.views[node.name] = _View(v.buffer, v.channels, 1, v.shape)

    def binary(self, node, kind, args):
        va, vb = (self.view_of(a, node) for a in args)
        where = self.describe(node)
        if kind == "mul" and va.spatial != vb.spatial:
            big, small = (va, vb) if va.spatial > vb.spatial else (vb, va)
            if small.spatial != 1:
                raise UnsupportedOpError(f"{where}: mul of {va.shape} and {vb.shape}; only same-shape or channel-wise "
                                         "([N, C, 1, 1]) multiplication is supported")
            segs = self.unite(big.channels, small.channels, where)
            return self.add_op(node, "mul", [big, small], segs)
        if va.shape != vb.shape:
            raise UnsupportedOpError(f"{where}: {kind} of tensors of shapes {va.shape} and {vb.shape}; "
                                     "only same-shape operands are supported")
        segs = self.unite(va.channels, vb.channels, where)
        return self.add_op(node, kind, [va, vb], segs)

    def cat(self, node):
        tensors = node.args[0]
        dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
        views = [self.view_of(t, node) for t in tensors]
        rank = len(views[0].shape)
        if dim % rank != 1:
            raise UnsupportedOpError(f"{self.describe(node)}: cat along dim {dim}; only along channels (dim 1)")
        segs = tuple(s for v in views for s in v.channels)
        return self.add_op(node, "concat", views, segs)

    def is_excluded(self, path: str) -> bool:
        return any(path == e or path.startswith(e + ".") for e in self.exclude)

    # ---- finish -----------------------------------------------------------------------------
    def finish(self, inputs, outputs) -> ResourceGraph:
        roots = sorted({self.uf.find(g) for g in range(len(self.group_size))})
        # only groups that still name a channel dimension survive (united ones merge)
        new_id = {r: i for i, r in enumerate(roots)}

        def remap(segs):
            return tuple((new_id[self.uf.find(g)], c) for g, c in segs)

        members_of: dict[int, list] = {r: [] for r in roots}
        for g in range(len(self.group_size)):
            members_of[self.uf.find(g)].append(g)
        groups = []
        for r in roots:
            members = members_of[r]
            sizes = {self.group_size[g] for g in members}
            if len(sizes) != 1:
                raise GraphError(f"channel group joins dimensions of different sizes {sorted(sizes)}")
            reason = next((self.fixed[g] for g in members if g in self.fixed), "")
            if r in self.fixed:
                reason = self.fixed[r]
            prods = [p for g in members for p in self.group_producers.get(g, [])]
            mods = [p for g in members for p in self.group_modules.get(g, [])]
            groups.append(Group(id=new_id[r], size=sizes.pop(), prunable=not reason, reason=reason,
                                producers=prods, modules=mods))
        for op in self.ops:
            op.in_channels = remap(op.in_channels)
            op.out_channels = remap(op.out_channels)
        for b in self.buffers.values():
            b.channels = remap(b.channels)
        return ResourceGraph(ops=self.ops, buffers=self.buffers, groups=groups, inputs=inputs, outputs=outputs,
                             gm=self.gm)


def _as_inputs(example_input) -> tuple:
    if isinstance(example_input, torch.Tensor):
        return (example_input,)
    if isinstance(example_input, (tuple, list)) and all(isinstance(x, torch.Tensor) for x in example_input):
        return tuple(example_input)
    raise GraphError(f"example_input must be a tensor or a tuple of tensors, got {type(example_input).__name__}")


def trace_graph(model: nn.Module, example_input: "torch.Tensor | tuple", exclude: "tuple[str, ...] | list[str]" = ()
                ) -> ResourceGraph:
    """Trace `model` at `example_input` (a tensor or tuple; batch dim first) into a ResourceGraph.

    `exclude`: module paths whose output channels are never pruned (their groups are fixed).
    """
    if not isinstance(model, nn.Module):
        raise GraphError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    inputs = tuple(x.detach() for x in _as_inputs(example_input))
    modes = {m: m.training for m in model.modules()}  # the traced GraphModule shares these modules
    try:
        return _Tracer(model, inputs, set(exclude)).run()
    finally:
        for m, mode in modes.items():
            m.training = mode
