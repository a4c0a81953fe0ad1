"""A pure-Python int8 TFLite writer: the quantised graph the lab benchmark runs, as a `.tflite` flatbuffer.

Built with the `tflite` package's generated flatbuffer builders (pure Python, over `flatbuffers`), so the
writer installs wherever the library does; TensorFlow and the tflite-micro wheel (Linux x86-64 only)
are not needed to write a model, only to check one (`lightning_mcuprune.deploy.tflm`).

One emitter of the file's structure: `to_model` is `resources.tflite_layout.layout` of the traced graph (the
tensors, ops and options the resource model sizes to the byte) with the numbers filled in from the quantised graph
(quantisation parameters, weights, biases; `_fill`, by each tensor's role). What is written, from a
`QuantizedGraph` (`lightning_mcuprune.quantize`):
* int8 input and output tensors with their scale and zero point; int8 activations (NHWC);
* per-output-channel int8 weights (scales, zero points 0, quantized_dimension 0, or 3 for depthwise),
  int32 biases at scale s_in * s_w; BatchNorm already folded, ReLU/ReLU6 fused as the builtin activation;
* builtin ops only: CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED, ADD, MAX_POOL_2D, AVERAGE_POOL_2D,
  MEAN (global average pooling), CONCATENATION, MUL (same shape or a channel-wise (1, 1, C) gate),
  LOGISTIC / HARD_SWISH / TANH for the lookup tables that equal them (`lut_builtin`); a table fused after an
  op becomes its own op after it, through an int8 tensor "<op>_pre" quantised by QOp.pre_qparams; PAD / PADV2
  where PyTorch's symmetric padding is not TFLite's SAME (a stride-2 window on an even input): then the pad is an
  op of its own;
* ops in the given execution order (default: the traced order), so TFLM's planner sees our order;
* optionally TFLM's offline memory plan (`OfflineMemoryAllocation` metadata): an arena offset per tensor.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional, Sequence

import numpy as np

from lightning_mcuprune.quantize.ptq import QuantizedGraph
# the file's layout and serialisation (no quantisation) live with the resource model that sizes them; re-exported
from lightning_mcuprune.resources.tflite_layout import (  # noqa: F401
    _ACT, LUT_BUILTINS, OFFLINE_PLAN_KEY, TFLITE_OPS, TFLiteExportError, TFLiteModel, TOp, TTensor,
    buffer_section_bytes, layout, window_geometry)

if TYPE_CHECKING:
    from lightning_mcuprune.quantize.layer import LayerSpec
    from lightning_mcuprune.quantize.ptq import QOp, QParams


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


def check_writable(qg: QuantizedGraph, runtime: str = "tflm") -> None:
    """TFLiteExportError (naming op, module path and runtime) for an op of `qg` the writer lacks: an op type
    without a builtin, a lookup-table activation no builtin computes bit-exactly, a fused activation TFLite cannot
    fuse."""
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


def to_model(qg: QuantizedGraph, order: Optional[Sequence[int]] = None, runtime: str = "tflm") -> TFLiteModel:
    """The TFLite model of a quantised graph, ops in `order` (indices into qg.ops; default traced order): the
    traced graph's `layout` (tensors, ops, options: the structure the resource model sizes) with the quantisation
    parameters, weights and biases filled in from `qg`, tensor by tensor (`TTensor.role`).

    Raises TFLiteExportError (naming op, module path and runtime) for an op the writer lacks.
    """
    check_writable(qg, runtime)
    model = layout(qg.graph, order, offline_plan=False)
    for t in model.tensors:
        _fill(qg, t)
    return model


def _fill(qg: QuantizedGraph, t: TTensor) -> None:
    """Fill in a laid-out tensor's numbers from the quantised graph: the quantisation of an activation (a fused
    table's "<op>_pre" tensor: QOp.pre_qparams; a pad op's output and pad value: the op's input's), the int8
    weights (per-output-channel scales, zero points 0) and the int32 bias (scale s_in * s_w) of a weighted op."""
    kind, key = t.role or (None, None)
    if kind in ("activation", "pre", "pad", "pad_value"):
        q = (qg.qparams[key] if kind == "activation" else qg.ops[key].pre_qparams if kind == "pre"
             else qg.qparams[qg.ops[key].inputs[0]])
        t.scale, t.zero_point = [q.scale], [q.zero_point]
        return
    if kind in ("weights", "bias"):
        op = qg.ops[key]
        ws = np.asarray(op.weight_scales, dtype=np.float32)
        if kind == "weights":
            arr = np.asarray(op.weights, np.int8)
            scale = ws.tolist()
        else:
            arr = np.asarray(op.spec.bias, np.int32)
            si = qg.qparams[op.inputs[0]].scale
            scale = [float(np.float32(si * float(s))) for s in ws]
        if arr.nbytes != t.data or arr.size != int(np.prod(t.shape)) or len(scale) != len(t.scale):
            raise TFLiteExportError(f"internal: tensor {t.name!r} laid out as {t.shape} ({t.data} B, {len(t.scale)} "
                                    f"scales), but the quantised op has {arr.shape} ({arr.nbytes} B, {len(scale)})")
        t.data, t.scale, t.zero_point = arr.tobytes(), scale, [0] * len(scale)
        return
    if kind is not None or (t.data is not None and not isinstance(t.data, bytes)):
        raise TFLiteExportError(f"internal: tensor {t.name!r} ({kind}) has no data to fill it with")


def to_tflite(qg: QuantizedGraph, order: Optional[Sequence[int]] = None, offline_plan: Optional[list] = None,
              runtime: str = "tflm") -> bytes:
    """The int8 .tflite flatbuffer (bytes) of a quantised graph; see the module docstring."""
    model = to_model(qg, order, runtime)
    model.offline_plan = offline_plan
    return model.to_bytes()


__all__ = ["to_tflite", "to_model", "check_writable", "layout", "window_geometry", "TFLiteModel", "TFLiteExportError", "TFLITE_OPS", "OFFLINE_PLAN_KEY"]
