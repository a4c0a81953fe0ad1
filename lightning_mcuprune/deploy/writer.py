"""A pure-Python int8 TFLite writer: the quantised graph the lab benchmark runs, as a `.tflite` flatbuffer.

Built with the `tflite` package's generated flatbuffer builders (pure Python, over `flatbuffers`), so the
writer installs wherever the library does; TensorFlow and the tflite-micro wheel (Linux x86-64 only)
are not needed to write a model, only to check one (`lightning_mcuprune.deploy.tflm`).

What is written, from a `QuantizedGraph` (`lightning_mcuprune.quantize`):
* int8 input and output tensors with their scale and zero point; int8 activations (NHWC);
* per-output-channel int8 weights (scales, zero points 0, quantized_dimension 0, or 3 for depthwise),
  int32 biases at scale s_in * s_w; BatchNorm already folded, ReLU/ReLU6 fused as the builtin activation;
* builtin ops only: CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED, ADD, MAX_POOL_2D, AVERAGE_POOL_2D,
  MEAN (global average pooling), CONCATENATION, MUL (same shape or a channel-wise (1, 1, C) gate),
  LOGISTIC / HARD_SWISH / TANH for the lookup tables that equal them (`lut_builtin`); a table fused after an
  op becomes its own op after it, through an int8 tensor "<op>_pre" quantised by QOp.pre_qparams, and PAD / PADV2 where PyTorch's symmetric padding is
  not TFLite's SAME (a stride-2 window on an even input): then the pad is an op of its own;
* ops in the given execution order (default: the traced order), so TFLM's planner sees our order;
* optionally TFLM's offline memory plan (`OfflineMemoryAllocation` metadata): an arena offset per tensor.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional, Sequence

import numpy as np

from lightning_mcuprune.quantize.ptq import QuantizedGraph
# the file's layout and serialisation (no quantisation) live with the resource model that sizes them; re-exported
from lightning_mcuprune.resources.tflite_layout import (  # noqa: F401
    _ACT, _INT8, _INT32, _VALID, LUT_BUILTINS, OFFLINE_PLAN_KEY, TFLITE_OPS, TFLiteExportError, TFLiteModel, TOp,
    TTensor, _padding_mode, buffer_section_bytes, layout, window_geometry)

if TYPE_CHECKING:
    from lightning_mcuprune.quantize.layer import LayerSpec
    from lightning_mcuprune.quantize.ptq import QOp, QParams


def _shape(qg: QuantizedGraph, name: str) -> tuple:
    """TFLite shape of an activation buffer: [1, F] for a vector, [1, H, W, C] otherwise (1-d: H = 1)."""
    torch_shape = qg.graph.buffers[name].shape
    if len(torch_shape) == 2:
        return 1, int(torch_shape[1])
    h, w, c = qg.shapes[name]
    return 1, h, w, c


def lut_builtin(qg: QuantizedGraph, op: QOp, table_spec: LayerSpec, qin: QParams, runtime: str = "tflm") -> str:
    """The TFLite builtin that computes `op`'s lookup table (standalone or fused) bit-exactly, or TFLiteExportError.

    Only sigmoid (LOGISTIC, output 1/256, -128), hard-swish (HARD_SWISH, TFLite's own arithmetic) and tanh
    (TANH, output 1/128, 0) have one; hard-sigmoid, SiLU, GELU, LeakyReLU, ... have no int8 builtin."""
    from lightning_mcuprune.quantize import reference as ref
    from lightning_mcuprune.quantize.ptq import FIXED_OUTPUT_QPARAMS
    name = op.activation
    qo = qg.qparams[op.output]
    code = LUT_BUILTINS.get(name)
    ok = code is not None
    if ok and name in FIXED_OUTPUT_QPARAMS:
        ok = (qo.scale, qo.zero_point) == tuple(FIXED_OUTPUT_QPARAMS[name])
    if ok and name == "hardswish":
        try:
            ok = np.array_equal(np.asarray(table_spec.weights, np.int8),
                                ref.hardswish_table_tflite(qin.scale, qin.zero_point, qo.scale, qo.zero_point))
        except ValueError:
            ok = False
    if not ok:
        why = ("has no int8 TFLite builtin" if code is None else
               f"has a table that TFLite's {code} does not compute at these scales")
        raise TFLiteExportError(
            f"op {op.label!r}: its {name} activation {why} on runtime {runtime!r} (TFLite writes sigmoid as LOGISTIC, "
            "hard-swish as HARD_SWISH, tanh as TANH, ReLU/ReLU6 fused); replace it (e.g. hard-sigmoid -> nn.Sigmoid) "
            "or deploy on runtime 'mcuprune-firmware', which runs any elementwise activation as a lookup table")
    return code


def to_model(qg: QuantizedGraph, order: Optional[Sequence[int]] = None, runtime: str = "tflm") -> TFLiteModel:
    """The TFLite model of a quantised graph, ops in `order` (indices into qg.ops; default traced order).

    Raises TFLiteExportError (naming op, module path and runtime) for an op the writer lacks.
    """
    for op in qg.ops:
        if op.type not in TFLITE_OPS:
            raise TFLiteExportError(
                f"op {op.label!r} (resource-model type {op.type!r}) has no int8 TFLite builtin in this writer for "
                f"runtime {runtime!r}; supported: {', '.join(sorted(TFLITE_OPS))}")
        if op.type == "activation":
            lut_builtin(qg, op, op.spec, qg.qparams[op.inputs[0]], runtime)
        elif op.post is not None:
            lut_builtin(qg, op, op.post, op.pre_qparams, runtime)
        elif op.activation not in _ACT:
            raise TFLiteExportError(f"op {op.label!r} ends in a {op.activation} activation, which runtime {runtime!r} "
                                    "cannot fuse; use ReLU or ReLU6")
    order = list(range(len(qg.ops))) if order is None else list(order)
    tensors: list[TTensor] = []
    index: dict[str, int] = {}

    fused_table: list = []   # the op being written, if it has a fused table
    final: dict = {}         # op output -> the table's output tensor

    def act(name):
        if name not in index:
            q = qg.qparams[name]
            index[name] = len(tensors)
            tensors.append(TTensor(name, _shape(qg, name), _INT8, None, [q.scale], [q.zero_point]))
            if fused_table and name == fused_table[0].output:   # the op writes "<op>_pre"; the table reads it
                final[name] = index[name]
                pq = fused_table[0].pre_qparams
                tensors.append(TTensor(f"{fused_table[0].name}_pre", tensors[-1].shape, _INT8, None, [pq.scale],
                                       [pq.zero_point]))
                index[name] = len(tensors) - 1
        return index[name]

    def const(name, arr, dtype, scale=(), zp=(), qdim=0):
        tensors.append(TTensor(name, tuple(int(d) for d in arr.shape), dtype, np.ascontiguousarray(arr).tobytes(),
                               list(scale), list(zp), qdim))
        return len(tensors) - 1

    act(qg.input)
    ops: list[TOp] = []
    for i in order:
        op = qg.ops[i]
        spec = op.spec
        fused = _ACT.get(op.activation, 0)
        x = act(op.inputs[0])
        fused_table[:] = [op] if op.post is not None else []
        if op.type == "activation":
            out = act(op.output)
            ops.append(TOp(LUT_BUILTINS[op.activation], [x], [out], {}, op.label))
            continue
        if op.type == "concat":
            ins = [act(b) for b in op.inputs]
            out = act(op.output)
            ops.append(TOp("CONCATENATION", ins, [out], {"axis": len(tensors[out].shape) - 1, "act": 0}, op.label))
        elif op.type in ("conv2d", "pointwise_conv2d", "depthwise_conv2d", "max_pool", "avg_pool"):
            h, w, _ = spec.input_shape
            oh, ow, _ = spec.output_shape
            kernel = spec.kernel if op.type != "pointwise_conv2d" else (1, 1)
            stride = spec.stride if op.type != "pointwise_conv2d" else (1, 1)
            pads = spec.padding if op.type != "pointwise_conv2d" else (0, 0, 0, 0)
            mode = _padding_mode((h, w), (oh, ow), kernel, stride, pads)
            if mode is None:   # an explicit pad op, then a VALID window
                if op.type == "avg_pool":
                    raise TFLiteExportError(
                        f"average pooling {op.label!r} with padding {pads} on a {h}x{w} input has no TFLite "
                        f"equivalent on runtime {runtime!r} (TFLite pads SAME or VALID); use padding that keeps "
                        "the windows of SAME padding, or no padding")
                t, b, l, r = pads
                xq = qg.qparams[op.inputs[0]]
                pname = f"{op.name}_pad"
                tensors.append(TTensor(pname, (1, h + t + b, w + l + r, spec.input_shape[2]), _INT8, None,
                                       [xq.scale], [xq.zero_point]))
                padded = len(tensors) - 1
                pv = const(f"{op.name}_paddings", np.array([[0, 0], [t, b], [l, r], [0, 0]], np.int32), _INT32)
                if op.type == "max_pool":   # pad with the smallest int8: never the max
                    v = const(f"{op.name}_pad_value", np.array([-128], np.int8), _INT8, [xq.scale], [xq.zero_point])
                    ops.append(TOp("PADV2", [x, pv, v], [padded], {}, op.label))
                else:                       # pad with the zero point: a real zero, as PyTorch's padding
                    ops.append(TOp("PAD", [x, pv], [padded], {}, op.label))
                x, mode = padded, _VALID
            out = act(op.output)
            opts = {"padding": mode, "stride": stride, "act": fused}
            if op.type in ("max_pool", "avg_pool"):
                opts["filter"] = kernel
                ops.append(TOp("MAX_POOL_2D" if op.type == "max_pool" else "AVERAGE_POOL_2D", [x], [out], opts, op.label))
            else:
                qi = qg.qparams[op.inputs[0]]
                oc = spec.output_shape[2]
                ws = np.asarray(op.weight_scales, dtype=np.float32)
                bscale = [float(np.float32(qi.scale * float(s))) for s in ws]
                if op.type == "depthwise_conv2d":
                    wt = const(f"{op.name}_weights", np.asarray(op.weights, np.int8).reshape(1, *kernel, oc), _INT8,
                               ws.tolist(), [0] * oc, 3)
                    opts["depth_multiplier"] = spec.depth_multiplier
                    code = "DEPTHWISE_CONV_2D"
                else:
                    wt = const(f"{op.name}_weights", np.asarray(op.weights, np.int8).reshape(oc, *kernel, -1), _INT8,
                               ws.tolist(), [0] * oc, 0)
                    code = "CONV_2D"
                bias = const(f"{op.name}_bias", np.asarray(spec.bias, np.int32).reshape(oc), _INT32, bscale, [0] * oc, 0)
                ops.append(TOp(code, [x, wt, bias], [out], opts, op.label))
        elif op.type == "dense":
            out = act(op.output)
            qi = qg.qparams[op.inputs[0]]
            oc = spec.output_shape[2]
            ws = np.asarray(op.weight_scales, dtype=np.float32)
            wt = const(f"{op.name}_weights", np.asarray(op.weights, np.int8).reshape(oc, -1), _INT8, ws.tolist(), [0] * oc, 0)
            bias = const(f"{op.name}_bias", np.asarray(spec.bias, np.int32).reshape(oc), _INT32,
                         [float(np.float32(qi.scale * float(s))) for s in ws], [0] * oc, 0)
            ops.append(TOp("FULLY_CONNECTED", [x, wt, bias], [out], {"act": fused}, op.label))
        elif op.type == "global_avg_pool":
            out = act(op.output)
            axis = const(f"{op.name}_axis", np.array([1, 2], np.int32), _INT32)
            ops.append(TOp("MEAN", [x, axis], [out], {"keep_dims": len(tensors[out].shape) == 4}, op.label))
        elif op.type == "add":
            x2 = act(op.inputs[1])
            out = act(op.output)
            ops.append(TOp("ADD", [x, x2], [out], {"act": fused}, op.label))
        elif op.type == "mul":   # same shape, or channel-wise broadcast of a (1, 1, C) gate
            x2 = act(op.inputs[1])
            out = act(op.output)
            ops.append(TOp("MUL", [x, x2], [out], {"act": fused}, op.label))
        if op.output in final:
            pre, index[op.output] = index[op.output], final.pop(op.output)
            ops.append(TOp(LUT_BUILTINS[op.activation], [pre], [index[op.output]], {}, op.label))
    return TFLiteModel(tensors, ops, [index[qg.input]], [index[qg.output]])


def to_tflite(qg: QuantizedGraph, order: Optional[Sequence[int]] = None, offline_plan: Optional[list] = None,
              runtime: str = "tflm") -> bytes:
    """The int8 .tflite flatbuffer (bytes) of a quantised graph; see the module docstring."""
    model = to_model(qg, order, runtime)
    model.offline_plan = offline_plan
    return model.to_bytes()


__all__ = ["to_tflite", "to_model", "layout", "window_geometry", "TFLiteModel", "TFLiteExportError", "TFLITE_OPS", "OFFLINE_PLAN_KEY"]
