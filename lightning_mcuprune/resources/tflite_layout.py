"""The .tflite flatbuffer's layout and serialisation, without quantisation: the one emitter of the file's
structure, shared by the TFLite writer (`lightning_mcuprune.deploy.writer.to_model`, which fills in the numbers)
and the TFLM resource model (`lightning_mcuprune.resources.tflm`, which sizes the file at any channel counts).

`layout(graph)` lays a traced graph out: its tensors (names, shapes, types, quantisation vector lengths and
dimension), ops (codes, tensor lists, options) and arena-plan metadata, in the order they are written; the
constants the traced graph fixes (pad amounts, pad value, MEAN's axes) as their bytes, weights and biases as byte
counts, and each tensor's `role`: what the writer fills in from the quantised graph (quantisation parameters,
weight and bias data). `TFLiteModel.to_bytes` serialises a model with the `tflite` package's generated flatbuffer
builders; a layout's weights and biases are written as zeros, so its file has the written file's size, exactly.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Optional, Sequence

import numpy as np

from lightning_mcuprune.errors import MCUPruneError
from lightning_mcuprune.graph.geometry import _pair, _pool_geometry, hwc_shape

if TYPE_CHECKING:
    from lightning_mcuprune.graph.types import Op, ResourceGraph

#: resource-model op type -> TFLite builtin operator name (what `to_tflite` writes for it)
TFLITE_OPS = {
    "conv2d": "CONV_2D", "pointwise_conv2d": "CONV_2D", "depthwise_conv2d": "DEPTHWISE_CONV_2D",
    "dense": "FULLY_CONNECTED", "add": "ADD", "max_pool": "MAX_POOL_2D", "avg_pool": "AVERAGE_POOL_2D",
    "global_avg_pool": "MEAN", "concat": "CONCATENATION", "mul": "MUL", "activation": "(LOGISTIC, HARD_SWISH, TANH)",
}
#: lookup-table activations with an int8 TFLite builtin whose arithmetic our table reproduces exactly
LUT_BUILTINS = {"sigmoid": "LOGISTIC", "hardswish": "HARD_SWISH", "tanh": "TANH"}
#: versions written in the operator codes (those TFLite's converter gives the int8 kernels)
_VERSIONS = {"CONV_2D": 3, "DEPTHWISE_CONV_2D": 3, "FULLY_CONNECTED": 4, "ADD": 2, "MAX_POOL_2D": 2,
             "AVERAGE_POOL_2D": 2, "MEAN": 2, "CONCATENATION": 2, "PAD": 2, "PADV2": 2, "RESHAPE": 1,
             "MUL": 2, "LOGISTIC": 2, "HARD_SWISH": 1, "TANH": 2}
_INT8, _INT32 = 9, 2
_ACT = {None: 0, "relu": 1, "relu6": 3}
_SAME, _VALID = 0, 1
OFFLINE_PLAN_KEY = "OfflineMemoryAllocation"


class TFLiteExportError(MCUPruneError, ValueError):
    """The network cannot be written as an int8 .tflite; the message names the op and the runtime."""


def _fb(name):
    return importlib.import_module(f"tflite.{name}")


@dataclass
class TTensor:
    """A tensor of the model being written."""

    name: str
    shape: tuple
    dtype: int = _INT8
    data: Optional[bytes] = None            # constant data (weights, bias, axis), None for activations
    scale: Sequence[float] = ()
    zero_point: Sequence[int] = ()
    qdim: int = 0
    #: (`layout`) what the writer fills in, and from where: ("activation", buffer name), or ("pre" | "pad" |
    #: "pad_value" | "weights" | "bias", graph op index); () for a tensor the layout writes whole
    role: tuple = ()


@dataclass
class TOp:
    """An operator of the model being written: builtin name, tensor indices, options."""

    code: str
    inputs: list
    outputs: list
    options: dict = field(default_factory=dict)
    source: str = ""                         # the resource-model op it comes from (module path)


@dataclass
class TFLiteModel:
    """The model before serialisation: what `to_bytes` writes, and what the TFLM arena model reads."""

    tensors: list
    ops: list
    inputs: list
    outputs: list
    offline_plan: Optional[list] = None      # arena offset per tensor (-1: online), or None
    op_of_tensor: Optional[list] = None      # (`layout`) the graph op whose writing added each tensor (-1: input)
    op_of_op: Optional[list] = None          # (`layout`) the graph op each written op comes from

    @property
    def op_codes(self) -> list:
        """The distinct builtin operators, in first-use order."""
        return list(dict.fromkeys(op.code for op in self.ops))

    def activation_tensors(self) -> list:
        """Indices of the activation tensors (those without constant data)."""
        return [i for i, t in enumerate(self.tensors) if t.data is None]

    def to_bytes(self, spans: Optional[dict] = None) -> bytes:
        """The flatbuffer; with `spans` (a dict), also the bytes each part takes in it, alignment included:
        spans["tensors"][t] (tables, name, shape, quantisation), spans["buffers"][k] (buffer k + 1's table and
        data), spans["ops"][j] (table, tensor lists, options); the rest is the file's fixed part."""
        return _serialise(self, spans)


def _same_padding(in_size: int, k: int, s: int) -> tuple[int, int]:
    """(output size, top padding) of TFLite's SAME padding (TFLM ComputePaddingHeightWidth)."""
    out = (in_size + s - 1) // s
    total = max((out - 1) * s + k - in_size, 0)
    return out, total // 2


def _padding_mode(in_hw, out_hw, kernel, stride, pads) -> Optional[int]:
    """SAME or VALID if TFLite's padding gives PyTorch's windows (same output size and top/left offset), else None."""
    t, _, l, _ = pads
    if t == 0 and l == 0:
        valid = all((i - k) // s + 1 == o for i, k, s, o in zip(in_hw, kernel, stride, out_hw))
        if valid:
            return _VALID
    ok = True
    for i, k, s, o, p in zip(in_hw, kernel, stride, out_hw, (t, l)):
        so, sp = _same_padding(i, k, s)
        ok &= so == o and sp == p
    return _SAME if ok else None


# ---- the layout without data: what the resource model sizes ----------------------------------------
def window_geometry(graph: ResourceGraph, op: Op, mods: Optional[dict] = None) -> Optional[tuple]:
    """(input (H, W), output (H, W), kernel, stride, pads (t, b, l, r)) of a windowed op as `quantize` gives its
    LayerSpec (so as `to_model` writes it), from the traced graph alone; None for other ops."""
    if op.type not in ("conv2d", "pointwise_conv2d", "depthwise_conv2d", "max_pool", "avg_pool"):
        return None
    in_hwc, out_hwc = hwc_shape(graph.buffers[op.inputs[0]].shape), hwc_shape(graph.buffers[op.output].shape)
    if op.type == "pointwise_conv2d":
        return in_hwc[:2], out_hwc[:2], (1, 1), (1, 1), (0, 0, 0, 0)
    mods = dict(graph.gm.named_modules()) if mods is None else mods
    if op.type in ("max_pool", "avg_pool"):
        k, st, pads = _pool_geometry(graph, mods, op, in_hwc, out_hwc)
        return in_hwc[:2], out_hwc[:2], tuple(k), tuple(st), tuple(pads)
    m = mods[op.module]                       # as quantize's conv branch (Conv1d: (1, K) windows)
    one_d = len(m.kernel_size) == 1
    k = (1, m.kernel_size[0]) if one_d else tuple(m.kernel_size)
    st = _pair((1, m.stride[0]) if one_d else m.stride)
    pad = m.padding
    if isinstance(pad, str):
        pad = (0, 0) if pad == "valid" else ((k[0] - 1) // 2, (k[1] - 1) // 2)
        pad = pad[1:] if one_d else pad
    pad = _pair((0, pad[0]) if one_d else pad)
    return in_hwc[:2], out_hwc[:2], k, st, (pad[0], pad[0], pad[1], pad[1])


def layout(graph: ResourceGraph, order: Optional[Sequence[int]] = None, out_channels: Optional[Sequence[int]] = None,
           weight_bytes: Optional[Sequence[int]] = None, offline_plan: bool = True) -> TFLiteModel:
    """The model `to_model` writes for `graph` (a ResourceGraph), without its numbers: `to_model` is this layout
    with the quantisation parameters, weights and biases filled in (by each tensor's `role`). Placeholders:
    quantisation 1.0 / 0 (vectors of the written length), weights and biases as byte counts (zeros when
    serialised); with `offline_plan`, an arena plan of the written length (zeros). Serialised (`to_bytes`) it has
    the byte size of the written file, exactly.

    `out_channels[i]`, `weight_bytes[i]`: output channels and int8 weight bytes of op i (default: the graph's);
    the other tensors' sizes do not enter the file size (a shape is 4 bytes per dimension whatever its value).
    A graph the writer refuses (an activation without an int8 builtin, ...) is laid out as the nearest model it
    could write, for estimates.
    """
    ops_g = graph.ops
    order = list(range(len(ops_g))) if order is None else list(order)
    mods = dict(graph.gm.named_modules())
    tensors: list[TTensor] = []
    index: dict[str, int] = {}
    fused_table: list = []
    final: dict = {}

    def shape(name):
        s = graph.buffers[name].shape
        return (1, int(s[1])) if len(s) == 2 else (1, *hwc_shape(s))

    def act(name):
        if name not in index:
            index[name] = len(tensors)
            tensors.append(TTensor(name, shape(name), _INT8, None, [1.0], [0], role=("activation", name)))
            if fused_table and name == fused_table[0][1].output:   # the op writes "<op>_pre"; the table reads it
                final[name] = index[name]
                j, op_ = fused_table[0]
                tensors.append(TTensor(f"{op_.name}_pre", tensors[-1].shape, _INT8, None, [1.0], [0], role=("pre", j)))
                index[name] = len(tensors) - 1
        return index[name]

    def const(name, shp, dtype, data, nq=0, qdim=0, role=()):
        """A constant: `data` its bytes, or (weights, biases) its byte count, filled in by the writer."""
        data = data.tobytes() if isinstance(data, np.ndarray) else int(data)
        tensors.append(TTensor(name, tuple(shp), dtype, data, [1.0] * nq, [0] * nq, qdim, role))
        return len(tensors) - 1

    def weighted(i, op):
        oc = int(out_channels[i]) if out_channels is not None else int(graph.buffers[op.output].shape[1])
        wb = int(weight_bytes[i]) if weight_bytes is not None else None
        return oc, wb

    act(graph.inputs[0])
    ops: list[TOp] = []
    op_of_tensor, op_of_op, prev = [-1] * len(tensors), [], -1
    for i in order:
        op_of_tensor += [prev] * (len(tensors) - len(op_of_tensor))   # what the previous op added
        op_of_op += [prev] * (len(ops) - len(op_of_op))
        prev = i
        op = ops_g[i]
        fused = _ACT.get(op.activation, 0)
        x = act(op.inputs[0])
        has_post = (op.type not in ("activation", "concat") and op.activation is not None
                    and op.activation not in _ACT)
        fused_table[:] = [(i, op)] if has_post else []
        if op.type == "activation":
            out = act(op.output)
            ops.append(TOp(LUT_BUILTINS.get(op.activation, "LOGISTIC"), [x], [out], {}, op.label))
            continue
        if op.type == "concat":
            ins = [act(b) for b in op.inputs]
            out = act(op.output)
            ops.append(TOp("CONCATENATION", ins, [out], {"axis": len(tensors[out].shape) - 1, "act": 0}, op.label))
        elif op.type in ("conv2d", "pointwise_conv2d", "depthwise_conv2d", "max_pool", "avg_pool"):
            (h, w), out_hw, kernel, stride, pads = window_geometry(graph, op, mods)
            mode = _padding_mode((h, w), out_hw, kernel, stride, pads)
            if mode is None:
                t, b, l, r = pads
                c = int(tensors[x].shape[-1])
                tensors.append(TTensor(f"{op.name}_pad", (1, h + t + b, w + l + r, c), _INT8, None, [1.0], [0],
                                       role=("pad", i)))     # quantised as the op's input
                padded = len(tensors) - 1
                pv = const(f"{op.name}_paddings", (4, 2), _INT32, np.array([[0, 0], [t, b], [l, r], [0, 0]], np.int32))
                if op.type == "max_pool":   # pad with the smallest int8: never the max
                    v = const(f"{op.name}_pad_value", (1,), _INT8, np.array([-128], np.int8), 1, role=("pad_value", i))
                    ops.append(TOp("PADV2", [x, pv, v], [padded], {}, op.label))
                else:                       # pad with the zero point: a real zero, as PyTorch's padding
                    ops.append(TOp("PAD", [x, pv], [padded], {}, op.label))
                x, mode = padded, _VALID
            out = act(op.output)
            opts = {"padding": mode, "stride": stride, "act": fused}
            if op.type in ("max_pool", "avg_pool"):
                opts["filter"] = kernel
                code = "MAX_POOL_2D" if op.type == "max_pool" else "AVERAGE_POOL_2D"
                ops.append(TOp(code, [x], [out], opts, op.label))
            else:
                oc, wb = weighted(i, op)
                cin = int(tensors[x].shape[-1])
                if op.type == "depthwise_conv2d":
                    wb = kernel[0] * kernel[1] * oc if wb is None else wb
                    wt = const(f"{op.name}_weights", (1, *kernel, oc), _INT8, wb, oc, 3, ("weights", i))
                    opts["depth_multiplier"] = max(1, oc // max(cin, 1))
                    code = "DEPTHWISE_CONV_2D"
                else:
                    wb = kernel[0] * kernel[1] * cin * oc if wb is None else wb
                    wt = const(f"{op.name}_weights", (oc, *kernel, max(1, wb // max(oc * kernel[0] * kernel[1], 1))),
                               _INT8, wb, oc, 0, ("weights", i))
                    code = "CONV_2D"
                bias = const(f"{op.name}_bias", (oc,), _INT32, 4 * oc, oc, 0, ("bias", i))
                ops.append(TOp(code, [x, wt, bias], [out], opts, op.label))
        elif op.type == "dense":
            out = act(op.output)
            oc, wb = weighted(i, op)
            fin = 1
            for d in tensors[x].shape[1:]:
                fin *= int(d)
            wb = fin * oc if wb is None else wb
            wt = const(f"{op.name}_weights", (oc, max(1, wb // max(oc, 1))), _INT8, wb, oc, 0, ("weights", i))
            bias = const(f"{op.name}_bias", (oc,), _INT32, 4 * oc, oc, 0, ("bias", i))
            ops.append(TOp("FULLY_CONNECTED", [x, wt, bias], [out], {"act": fused}, op.label))
        elif op.type == "global_avg_pool":
            out = act(op.output)
            axis = const(f"{op.name}_axis", (2,), _INT32, np.array([1, 2], np.int32))
            ops.append(TOp("MEAN", [x, axis], [out], {"keep_dims": len(tensors[out].shape) == 4}, op.label))
        elif op.type in ("add", "mul"):   # (a one-input mul, an unfolded BN the writer refuses: sized as one)
            x2 = [act(b) for b in op.inputs[1:2]]
            out = act(op.output)
            ops.append(TOp(op.type.upper(), [x, *x2], [out], {"act": fused}, op.label))
        else:
            raise TFLiteExportError(f"op {op.label!r} (resource-model type {op.type!r}) has no int8 TFLite builtin "
                                    f"in this writer; supported: {', '.join(sorted(TFLITE_OPS))}")
        if op.output in final:
            pre, index[op.output] = index[op.output], final.pop(op.output)
            ops.append(TOp(LUT_BUILTINS.get(op.activation, "LOGISTIC"), [pre], [index[op.output]], {}, op.label))
    op_of_tensor += [prev] * (len(tensors) - len(op_of_tensor))
    op_of_op += [prev] * (len(ops) - len(op_of_op))
    model = TFLiteModel(tensors, ops, [index[graph.inputs[0]]], [index[graph.outputs[0]]],
                        op_of_tensor=op_of_tensor, op_of_op=op_of_op)
    if offline_plan:
        model.offline_plan = [0] * len(tensors)
    return model


# ---- serialisation --------------------------------------------------------------------------------
_VEC_DTYPES = {"Int32": "<i4", "Float32": "<f4", "Int64": "<i8"}


def _vec(b, module, name, values, kind):
    """A scalar vector, as the generated Start<name>Vector + Prepend<kind> loop writes it (same alignment, same
    bytes), in one copy (`module` kept for the call sites' readability)."""
    return b.CreateNumpyVector(np.asarray(values, dtype=_VEC_DTYPES[kind]).reshape(-1))


def _options(b, op: TOp):
    """Build the op's builtin options table; -> (BuiltinOptions type, offset)."""
    bo = _fb("BuiltinOptions").BuiltinOptions
    o = op.options
    if op.code == "CONV_2D":
        m = _fb("Conv2DOptions")
        m.Start(b); m.AddPadding(b, o["padding"]); m.AddStrideW(b, o["stride"][1]); m.AddStrideH(b, o["stride"][0])
        m.AddFusedActivationFunction(b, o["act"]); m.AddDilationWFactor(b, 1); m.AddDilationHFactor(b, 1)
        return bo.Conv2DOptions, m.End(b)
    if op.code == "DEPTHWISE_CONV_2D":
        m = _fb("DepthwiseConv2DOptions")
        m.Start(b); m.AddPadding(b, o["padding"]); m.AddStrideW(b, o["stride"][1]); m.AddStrideH(b, o["stride"][0])
        m.AddDepthMultiplier(b, o["depth_multiplier"]); m.AddFusedActivationFunction(b, o["act"])
        m.AddDilationWFactor(b, 1); m.AddDilationHFactor(b, 1)
        return bo.DepthwiseConv2DOptions, m.End(b)
    if op.code == "FULLY_CONNECTED":
        m = _fb("FullyConnectedOptions")
        m.Start(b); m.AddFusedActivationFunction(b, o["act"]); m.AddKeepNumDims(b, False)
        return bo.FullyConnectedOptions, m.End(b)
    if op.code in ("MAX_POOL_2D", "AVERAGE_POOL_2D"):
        m = _fb("Pool2DOptions")
        m.Start(b); m.AddPadding(b, o["padding"]); m.AddStrideW(b, o["stride"][1]); m.AddStrideH(b, o["stride"][0])
        m.AddFilterWidth(b, o["filter"][1]); m.AddFilterHeight(b, o["filter"][0]); m.AddFusedActivationFunction(b, o["act"])
        return bo.Pool2DOptions, m.End(b)
    if op.code == "MEAN":
        m = _fb("ReducerOptions")
        m.Start(b); m.AddKeepDims(b, o["keep_dims"])
        return bo.ReducerOptions, m.End(b)
    if op.code == "ADD":
        m = _fb("AddOptions")
        m.Start(b); m.AddFusedActivationFunction(b, o["act"])
        return bo.AddOptions, m.End(b)
    if op.code == "CONCATENATION":
        m = _fb("ConcatenationOptions")
        m.Start(b); m.AddAxis(b, o["axis"]); m.AddFusedActivationFunction(b, o["act"])
        return bo.ConcatenationOptions, m.End(b)
    if op.code == "MUL":
        m = _fb("MulOptions")
        m.Start(b); m.AddFusedActivationFunction(b, o["act"])
        return bo.MulOptions, m.End(b)
    if op.code in ("LOGISTIC", "TANH", "HARD_SWISH"):
        return bo.NONE, None
    if op.code == "PAD":
        m = _fb("PadOptions")
        m.Start(b)
        return bo.PadOptions, m.End(b)
    if op.code == "PADV2":
        m = _fb("PadV2Options")
        m.Start(b)
        return bo.PadV2Options, m.End(b)
    raise TFLiteExportError(f"no options writer for {op.code}")


def _serialise(model: TFLiteModel, spans: Optional[dict] = None) -> bytes:
    import flatbuffers
    bops = _fb("BuiltinOperator").BuiltinOperator
    T, Q, B, O, OC, SG, M, MD = (_fb(n) for n in ("Tensor", "QuantizationParameters", "Buffer", "Operator",
                                                   "OperatorCode", "SubGraph", "Model", "Metadata"))
    b = flatbuffers.Builder(1024)
    # buffers: 0 is the empty sentinel; one per constant tensor
    buf_data = [None] + [t.data for t in model.tensors if t.data is not None]
    metadata = []
    if model.offline_plan is not None:
        plan = np.array([0, 0, len(model.offline_plan)] + list(model.offline_plan), dtype="<i4")
        buf_data.append(plan.tobytes())
        metadata.append((OFFLINE_PLAN_KEY, len(buf_data) - 1))
    buf_spans, t_spans, op_spans = [], [], []
    buf_offsets = _write_buffers(b, buf_data, buf_spans)
    tensor_offsets = []
    next_buf = 1
    for t in model.tensors:
        at = b.Offset()
        name = b.CreateString(t.name)
        shape = _vec(b, T, "Shape", t.shape, "Int32")
        q = None
        if t.scale:
            sc = _vec(b, Q, "Scale", [float(s) for s in t.scale], "Float32")
            zp = _vec(b, Q, "ZeroPoint", [int(z) for z in t.zero_point], "Int64")
            Q.Start(b); Q.AddScale(b, sc); Q.AddZeroPoint(b, zp); Q.AddQuantizedDimension(b, t.qdim)
            q = Q.End(b)
        T.Start(b); T.AddShape(b, shape); T.AddType(b, t.dtype); T.AddName(b, name)
        if t.data is not None:
            T.AddBuffer(b, next_buf)
            next_buf += 1
        else:
            T.AddBuffer(b, 0)
        if q is not None:
            T.AddQuantization(b, q)
        tensor_offsets.append(T.End(b))
        t_spans.append(b.Offset() - at)
    codes = model.op_codes
    op_offsets = []
    for op in model.ops:
        at = b.Offset()
        ins = _vec(b, O, "Inputs", op.inputs, "Int32")
        outs = _vec(b, O, "Outputs", op.outputs, "Int32")
        otype, opts = _options(b, op)
        O.Start(b); O.AddOpcodeIndex(b, codes.index(op.code)); O.AddInputs(b, ins); O.AddOutputs(b, outs)
        if opts is not None:
            O.AddBuiltinOptionsType(b, otype); O.AddBuiltinOptions(b, opts)
        op_offsets.append(O.End(b))
        op_spans.append(b.Offset() - at)
    code_offsets = []
    for c in codes:
        v = getattr(bops, c)
        OC.Start(b); OC.AddDeprecatedBuiltinCode(b, min(v, 127)); OC.AddBuiltinCode(b, v)
        OC.AddVersion(b, _VERSIONS.get(c, 1))
        code_offsets.append(OC.End(b))
    sg_name = b.CreateString("main")
    tv = _offsets(b, SG, "Tensors", tensor_offsets)
    iv = _vec(b, SG, "Inputs", model.inputs, "Int32")
    ov = _vec(b, SG, "Outputs", model.outputs, "Int32")
    opv = _offsets(b, SG, "Operators", op_offsets)
    SG.Start(b); SG.AddTensors(b, tv); SG.AddInputs(b, iv); SG.AddOutputs(b, ov); SG.AddOperators(b, opv)
    SG.AddName(b, sg_name)
    sg = SG.End(b)
    md_offsets = []
    for key, bi in metadata:
        n = b.CreateString(key)
        MD.Start(b); MD.AddName(b, n); MD.AddBuffer(b, bi)
        md_offsets.append(MD.End(b))
    desc = b.CreateString("lightning-mcuprune int8")
    codes_v = _offsets(b, M, "OperatorCodes", code_offsets)
    sgs = _offsets(b, M, "Subgraphs", [sg])
    bufs = _offsets(b, M, "Buffers", buf_offsets)
    mdv = _offsets(b, M, "Metadata", md_offsets) if md_offsets else None
    M.Start(b); M.AddVersion(b, 3); M.AddOperatorCodes(b, codes_v); M.AddSubgraphs(b, sgs)
    M.AddDescription(b, desc); M.AddBuffers(b, bufs)
    if mdv is not None:
        M.AddMetadata(b, mdv)
    b.Finish(M.End(b), file_identifier=b"TFL3")
    if spans is not None:
        spans.update(tensors=t_spans, ops=op_spans, buffers=buf_spans[1:])
    return bytes(b.Output())


def _write_buffers(b, buf_data, spans: Optional[list] = None) -> list:
    """Write the Buffer tables (each data vector 16-byte aligned); `buf_data` items: bytes, or a length (zeros)."""
    B = _fb("Buffer")
    offsets = []
    for data in buf_data:
        at = b.Offset()
        n = data if isinstance(data, int) else len(data or b"")
        if n:
            b.StartVector(1, n, 16)
            b.head = b.head - n
            if not isinstance(data, int):
                b.Bytes[b.head:b.head + n] = data
            vec = b.EndVector()
            B.Start(b); B.AddData(b, vec)
        else:
            B.Start(b)
        offsets.append(B.End(b))
        if spans is not None:
            spans.append(b.Offset() - at)
    return offsets


def buffer_section_bytes(lengths: Sequence[int]) -> int:
    """Bytes the buffer section of a .tflite takes (data, alignment padding, tables), for buffers of `lengths`
    bytes written first, as `to_bytes` writes them: exact, without the data itself."""
    import flatbuffers
    b = flatbuffers.Builder(1024)
    _write_buffers(b, [0] + [int(n) for n in lengths])
    return b.Offset()


def _offsets(b, module, name, offs):
    getattr(module, f"Start{name}Vector")(b, len(offs))
    for o in reversed(offs):
        b.PrependUOffsetTRelative(o)
    return b.EndVector()


__all__ = ["layout", "window_geometry", "TFLiteModel", "TTensor", "TOp", "TFLiteExportError", "TFLITE_OPS",
           "LUT_BUILTINS", "OFFLINE_PLAN_KEY", "buffer_section_bytes"]
