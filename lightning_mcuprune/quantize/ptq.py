"""Post-training int8 quantisation of a (pruned) network, built from its ResourceGraph.

The quantised graph has exactly the ops, fusion (BN folded, ReLU/ReLU6 fused), execution order and
activation buffers of the resource model (`trace_graph`), so what the board runs is what was predicted.

* weights: per-output-channel symmetric int8 (scale = max|w| / 127), BN folded first;
* biases: int32 at scale s_in * s_w, clipped (`bias_limit`) where the int32 accumulator could overflow;
* activations: per-tensor asymmetric int8 from the min/max over a calibration batch (range widened to
  include 0); max/avg pooling keep their input's scale and zero point, and a concatenation's inputs share
  its output's (as TFLite);
* every scale is a float32 (what a .tflite file stores) and every multiplier is derived from the float32
  scales exactly as TFLite Micro's kernels derive it at Prepare, so that TFLM runs the same integers;
* requantisation: TFLite's (per-channel int32 multiplier and shift, `reference.quantize_multiplier`),
  add with left_shift 20, global average pooling with 1/(H*W) folded into the multiplier;
* fused ReLU / ReLU6 as act_min / act_max;
* every other activation (sigmoid, hard-sigmoid, hard-swish, tanh, SiLU, LeakyReLU, GELU, ..., and scalar
  arithmetic such as `x + 3`) is an elementwise function of one int8 value: a ``lut`` op whose 256-entry
  int8 table holds the quantised function of each dequantised input (rounding half away from zero);
  hard-swish tables follow TFLite's int8 HARD_SWISH fixed-point arithmetic instead (`reference.
  hardswish_table_tflite`), and sigmoid's float table equals TFLite Micro's int8 LOGISTIC (tested against
  its interpreter). Scales are float32 values, as a .tflite stores them.
  Fused after a conv/linear/add/mul/pool, it runs in place on that op's output (``QOp.post``), so the
  activation buffers and arena are those of the resource model; the intermediate (pre-activation) tensor
  has its own quantisation (``QOp.pre_qparams``). Outputs of sigmoid and hard-sigmoid are quantised with
  scale 1/256, zero point -128 and tanh with 1/128, 0 (TFLite's fixed LOGISTIC/TANH output parameters);
* multiply (``mul``, elementwise or channel-wise [N, C, 1, 1] as in squeeze-excitation): TFLite's
  reference int8 Mul, one multiplier s1*s2/s_out.

The host executor (`QuantizedGraph.run`) runs the graph over the int8 reference kernels in
`lightning_mcuprune.quantize.reference`, which are bit-exact with the firmware.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Optional, Union

import numpy as np
import torch
import torch.nn as nn

from lightning_mcuprune.graph import trace_graph
from lightning_mcuprune.graph.ops import FIRMWARE_OPS, TFLM_OPS, WEIGHTED_OPS
from lightning_mcuprune.graph.geometry import _pool_geometry, hwc_shape  # noqa: F401 (hwc_shape re-exported)
from lightning_mcuprune.graph.trace import CLAMP_ACTIVATIONS, NON_ELEMENTWISE_ACTIVATIONS, ResourceGraph
from lightning_mcuprune.quantize.layer import LayerSpec
from lightning_mcuprune.quantize import reference as ref
# (the quantiser's errors live in errors.py, below the layout that raises them too; re-exported here)
from lightning_mcuprune.errors import QuantizationError, UnsupportedOnBoardError

#: (FIRMWARE_OPS / TFLM_OPS: the op types the firmware runs / the TFLite writer exports, from graph.ops; for
#: TFLM "activation" only for the tables with a TFLite builtin (TFLM_ACTIVATIONS), standalone or fused)
#: activations the TFLite writer writes: ReLU/ReLU6 fused, sigmoid/hard-swish/tanh as LOGISTIC/HARD_SWISH/TANH
TFLM_ACTIVATIONS = CLAMP_ACTIVATIONS + ("sigmoid", "hardswish", "tanh")
#: op types the host executor runs per runtime ("tflm": TensorFlow Lite Micro, see lightning_mcuprune.deploy).
#: Extension point: an op kind added to the quantiser and the writer is listed here for the runtimes that have it.
RUNTIME_OPS = {"mcuprune-firmware": FIRMWARE_OPS, "tflm": TFLM_OPS}
#: fixed output quantisation of bounded activations (TFLite's LOGISTIC and TANH int8 output parameters)
FIXED_OUTPUT_QPARAMS = {"sigmoid": (1.0 / 256, -128), "hardsigmoid": (1.0 / 256, -128), "tanh": (1.0 / 128, 0)}


def _f32(x) -> float:
    """The float32 nearest x, as a Python float (a .tflite file stores scales as float32)."""
    return float(np.float32(x))


@dataclass
class QParams:
    """Per-tensor affine quantisation: real = scale * (q - zero_point)."""

    scale: float
    zero_point: int

    def quantize(self, x: np.ndarray) -> np.ndarray:
        return np.clip(np.round(np.asarray(x, dtype=np.float64) / self.scale) + self.zero_point, -128, 127).astype(np.int8)

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        return (np.asarray(q, dtype=np.float64) - self.zero_point) * self.scale


@dataclass
class QOp:
    """One quantised op: the LayerSpec the firmware runs (offsets unset), its int8 weights, and its buffers.

    For an exporter, everything is explicit: ``spec.op`` is the kernel ("conv2d" ... "add", "mul", "lut"),
    input and output scales/zero points are ``QuantizedGraph.qparams[name]`` of ``inputs`` and ``output``,
    a ``lut`` spec carries its 256-entry table in ``spec.weights`` (entry i for input i - 128) and the function
    in ``spec.function``. A fused non-clamp activation is ``post`` (a ``lut`` spec run in place on the
    output), with ``activation`` naming it and ``pre_qparams`` the quantisation of the tensor between the two.
    """

    name: str
    type: str
    label: str
    inputs: list
    output: str
    spec: LayerSpec
    weights: Optional[np.ndarray] = field(default=None, repr=False)   # in the firmware's layout
    weight_scales: Optional[np.ndarray] = field(default=None, repr=False)  # float32 per output channel
    activation: Optional[str] = None   # the fused or standalone activation (None, "relu", "relu6", "sigmoid", ...)
    post: Optional[LayerSpec] = None   # a fused lookup-table activation, run in place after the op
    pre_qparams: Optional["QParams"] = None

    def run(self, x: np.ndarray, x2: Optional[np.ndarray] = None) -> np.ndarray:
        """Run on a batch (N, H, W, C) int8 with the reference kernels; -> (N, OH, OW, OC)."""
        n, shape = x.shape[0], self.spec.input_shape
        y = self.spec.reference(x.reshape(n, *shape), None if x2 is None else x2.reshape(n, *self.spec.input2_shape),
                                weights=self.weights)
        return y if self.post is None else self.post.reference(y)


def to_nhwc(x: np.ndarray) -> np.ndarray:
    """(N, C[, H[, W]]) -> (N, H, W, C)."""
    x = np.asarray(x)
    if x.ndim == 2:
        return x[:, None, None, :]
    if x.ndim == 3:
        return x.transpose(0, 2, 1)[:, None]
    return x.transpose(0, 2, 3, 1)


@dataclass
class QuantizedGraph:
    """A quantised network: ops in execution order over int8 buffers; the host int8 executor."""

    graph: ResourceGraph
    ops: list
    qparams: dict                 # buffer name -> QParams
    shapes: dict                  # buffer name -> (H, W, C)
    input: str
    output: str

    def quantize_input(self, x: Union[torch.Tensor, np.ndarray]) -> np.ndarray:
        """Float NCHW input (tensor or array) -> int8 NHWC."""
        x = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
        return self.qparams[self.input].quantize(to_nhwc(x))

    def run(self, xq: np.ndarray, keep: bool = False) -> Union[np.ndarray, dict[str, np.ndarray]]:
        """Host int8 executor: int8 NHWC batch -> int8 output (N, H, W, C); keep=True -> dict of every buffer."""
        bufs = {self.input: np.asarray(xq, dtype=np.int8).reshape(-1, *self.shapes[self.input])}
        for op in self.ops:
            if op.type == "concat":   # inputs share the output's quantisation: a copy along channels
                n = bufs[op.inputs[0]].shape[0]
                bufs[op.output] = np.concatenate([bufs[b].reshape(n, *self.shapes[b]) for b in op.inputs], axis=3)
                continue
            x2 = bufs[op.inputs[1]] if len(op.inputs) > 1 else None
            bufs[op.output] = op.run(bufs[op.inputs[0]], x2)
            if not keep:
                for b in list(bufs):
                    if b != self.input and b != op.output and all(
                            b not in o.inputs for o in self.ops[self.ops.index(op) + 1:]) and b != self.output:
                        del bufs[b]
        return bufs if keep else bufs[self.output]

    def predict(self, x: Union[torch.Tensor, np.ndarray], batch: int = 500) -> np.ndarray:
        """Float NCHW input -> dequantised float output (N, features), via the int8 executor."""
        outs = []
        for i in range(0, len(x), batch):
            q = self.run(self.quantize_input(x[i:i + batch]))
            outs.append(self.qparams[self.output].dequantize(q.reshape(q.shape[0], -1)))
        return np.concatenate(outs)

    @property
    def weights_bytes(self) -> int:
        return sum(op.spec.weights_bytes + 4 * op.spec.params_array().size + (op.post.weights_bytes if op.post else 0)
                   for op in self.ops if op.spec is not None)


# ---- building ---------------------------------------------------------------------------------
def _capture(graph: ResourceGraph, calib: torch.Tensor) -> dict:
    """Float value of every buffer on the calibration batch (fx node outputs, eval mode)."""
    names = set(graph.buffers) | {n for op in graph.ops for n in op.nodes}
    out: dict = {}

    class Rec(torch.fx.Interpreter):
        def run_node(self, n):
            r = super().run_node(n)
            if n.name in names and isinstance(r, torch.Tensor):
                out[n.name] = r.detach().to(torch.float64).numpy()
            return r
    with torch.no_grad():
        Rec(graph.gm).run(calib)
    return out


def _qparams_from(values: np.ndarray) -> QParams:
    lo = min(0.0, float(values.min()))
    hi = max(0.0, float(values.max()))
    if hi - lo < 1e-3:        # a (nearly) constant tensor, e.g. a dead channel after pruning: keep scales sane
        hi = lo + 1e-3
    scale = _f32((hi - lo) / 255.0)
    zp = int(np.clip(round(-128 - lo / scale), -128, 127))
    return QParams(scale, zp)


def _act_range(op, qp: QParams) -> tuple[int, int]:
    if op.activation is None or op.type == "activation" or op.activation not in CLAMP_ACTIVATIONS:
        if op.activation in NON_ELEMENTWISE_ACTIVATIONS:
            _refuse_non_elementwise(op)
        return -128, 127      # no clamp, or an elementwise activation that runs as a lookup table
    if op.activation == "relu":
        return max(-128, qp.zero_point), 127
    if op.activation == "relu6":  # TFLite: zp + round(6.0f / scale) in float32, rounded half away from zero
        six = float(np.float32(6.0) / np.float32(qp.scale))
        return max(-128, qp.zero_point), int(min(127, qp.zero_point + int(np.floor(six + 0.5))))
    _refuse_non_elementwise(op)


def _refuse_non_elementwise(op):
    raise UnsupportedOnBoardError(
        f"op {op.label!r} ({op.type}) ends in a {op.activation}, which is not elementwise: no int8 kernel runs it. "
        f"Drop it from the network (the argmax is unchanged; train on logits with cross-entropy)")


def firmware_gaps(graph: ResourceGraph) -> list[str]:
    """What in the traced network the int8 firmware cannot run: one message per op, naming it (module path or
    node) and the supported alternative. Empty when `quantize` and `mcuprune benchmark` can take it."""
    gaps = []
    mods = dict(graph.gm.named_modules()) if graph.gm is not None else {}
    for op in graph.ops:
        where = f"op {op.label!r} ({op.target})"
        if op.type == "concat":
            gaps.append(f"{where}: the firmware has no concat kernel; join branches with add (same channels) "
                        "instead of torch.cat, or deploy on another runtime")
        elif op.type not in FIRMWARE_OPS:
            gaps.append(f"{where}, resource-model type {op.type!r}, is not in the firmware, which runs "
                        f"{', '.join(FIRMWARE_OPS)}")
        elif op.activation in NON_ELEMENTWISE_ACTIVATIONS:
            gaps.append(f"{where} ends in a {op.activation}, which is not elementwise: no int8 kernel runs it. "
                        "Drop it from the network (the argmax is unchanged; train on logits with cross-entropy)")
        elif op.type == "mul" and len(op.inputs) != 2:
            gaps.append(f"BatchNorm {op.label!r} follows no conv or linear, so it cannot be folded and the firmware has "
                        "no per-channel affine kernel; put it right after a conv/linear (or remove it)")
        elif op.type == "conv2d" and op.groups != 1:
            gaps.append(f"grouped convolution {op.label!r} (groups={op.groups}) is not in the firmware; use depthwise "
                        "(groups = channels) or dense convolutions")
        elif op.type in ("conv2d", "depthwise_conv2d") and op.module in mods and \
                any(d != 1 for d in getattr(mods[op.module], "dilation", (1,))):
            gaps.append(f"dilated convolution {op.label!r} is not in the firmware; use dilation=1 (a larger kernel or "
                        "a pool before the conv)")
    return gaps


def runtime_gaps(graph: ResourceGraph, runtime: str = "mcuprune-firmware") -> list[str]:
    """What in the traced network `runtime` cannot run ("mcuprune-firmware": `firmware_gaps`; "tflm": the ops and
    activations the TFLite writer does not write): one message per op, naming it, its module and the runtime."""
    if runtime not in RUNTIME_OPS:
        raise ValueError(f"runtime must be one of {', '.join(RUNTIME_OPS)}, not {runtime!r}")
    if runtime == "mcuprune-firmware":
        return firmware_gaps(graph)
    supported, gaps = RUNTIME_OPS[runtime], []
    for op in graph.ops:
        where = f"op {op.label!r} ({op.target})"
        if op.type not in supported:
            gaps.append(f"{where}, resource-model type {op.type!r}, is not supported on runtime {runtime!r}, which runs "
                        f"{', '.join(supported)} (with fused ReLU/ReLU6); deploy it on runtime 'mcuprune-firmware'")
        elif op.activation not in TFLM_ACTIVATIONS + (None,) or (op.type == "activation" and op.activation is None):
            what = (f"ends in a {op.activation} activation" if op.type != "activation" else
                    f"is a {op.activation} activation" if op.activation else "is elementwise arithmetic")
            gaps.append(f"{where} {what}, which has no int8 TFLite builtin on runtime {runtime!r} (the export writes "
                        "ReLU/ReLU6 fused, sigmoid as LOGISTIC, hard-swish as HARD_SWISH, tanh as TANH): use one of "
                        "those (e.g. nn.Sigmoid for a hard-sigmoid gate) for TFLite Micro, or deploy on runtime "
                        "'mcuprune-firmware', which runs it as a lookup table")
        elif op.type == "conv2d" and op.groups != 1:
            gaps.append(f"grouped convolution {op.label!r} (groups={op.groups}) is not supported on runtime {runtime!r}")
    return gaps


def _lut_qparams(name: str, values: np.ndarray) -> QParams:
    """Output quantisation of a lookup-table activation: fixed for bounded ones, else from calibration."""
    if name in FIXED_OUTPUT_QPARAMS:
        return QParams(*FIXED_OUTPUT_QPARAMS[name])
    return _qparams_from(values)


def _elementwise_fn(graph: ResourceGraph, node_name: str):
    """The float function of one elementwise fx node (module, function or method with one tensor operand):
    numpy float64 array -> numpy float64 array, computed by the node's own target."""
    gm = graph.gm
    node = next(n for n in gm.graph.nodes if n.name == node_name)
    src = next(a for a in node.all_input_nodes if a.meta.get("tensor_meta") is not None)
    mods = dict(gm.named_modules())

    def fn(x: np.ndarray) -> np.ndarray:
        t = torch.as_tensor(x, dtype=torch.float64)
        args = torch.fx.node.map_arg(node.args, lambda a: t if a is src else a)
        kwargs = torch.fx.node.map_arg(node.kwargs, lambda a: t if a is src else a)
        with torch.no_grad():
            if node.op == "call_module":
                y = mods[node.target](*args, **kwargs)
            elif node.op == "call_method":
                y = getattr(args[0], node.target)(*args[1:], **kwargs)
            else:
                y = node.target(*args, **kwargs)
        return torch.as_tensor(y, dtype=torch.float64).numpy()
    return fn


def _lut_spec(graph, op, hwc, qin: QParams, qout: QParams) -> LayerSpec:
    table = None
    if op.activation == "hardswish":   # TFLite's own int8 HARD_SWISH arithmetic, entry by entry
        try:
            table = ref.hardswish_table_tflite(qin.scale, qin.zero_point, qout.scale, qout.zero_point)
        except ValueError:             # an output scale TFLite refuses: fall back to the float function
            table = None
    if table is None:
        fn = _elementwise_fn(graph, op.nodes[-1])
        table = ref.lut_table(fn, qin.scale, qin.zero_point, qout.scale, qout.zero_point)
    return LayerSpec("lut", hwc, input_zp=qin.zero_point, output_zp=qout.zero_point, weights=table,
                     function=op.activation)


def _fold(gm_modules: dict, op) -> tuple[np.ndarray, np.ndarray]:
    """The op's main module's weight and bias (float64) with any BatchNorm folded in."""
    m = gm_modules[op.module]
    w = m.weight.detach().to(torch.float64).numpy().copy()
    b = m.bias.detach().to(torch.float64).numpy().copy() if m.bias is not None else np.zeros(w.shape[0])
    for path in op.node_modules[1:]:
        bn = gm_modules.get(path) if path else None
        if isinstance(bn, (nn.BatchNorm1d, nn.BatchNorm2d)):
            var = bn.running_var.detach().to(torch.float64).numpy()
            mean = bn.running_mean.detach().to(torch.float64).numpy()
            g = bn.weight.detach().to(torch.float64).numpy() if bn.affine else np.ones_like(var)
            beta = bn.bias.detach().to(torch.float64).numpy() if bn.affine else np.zeros_like(var)
            k = g / np.sqrt(var + bn.eps)
            w = w * k.reshape(-1, *([1] * (w.ndim - 1)))
            b = (b - mean) * k + beta
    return w, b


def quantize(model: nn.Module, example_input: torch.Tensor, calib_data: Union[torch.Tensor, Iterable],
             graph: Optional[ResourceGraph] = None, runtime: str = "mcuprune-firmware") -> QuantizedGraph:
    """Post-training int8 quantisation of `model` (eval mode) for the HIL firmware or TFLite Micro.

    `calib_data`: a float batch (N, C, H, W) from the training data, or an iterable of batches / (x, y).
    `runtime`: "mcuprune-firmware" (our firmware's ops) or "tflm" (the ops the TFLite writer writes, `runtime_gaps`).
    Raises UnsupportedOnBoardError naming the op when the runtime lacks an op or activation.
    """
    if runtime not in RUNTIME_OPS:
        raise ValueError(f"runtime must be one of {', '.join(RUNTIME_OPS)}, not {runtime!r}")
    was = model.training
    model.eval()
    try:
        if graph is None:
            graph = trace_graph(model, example_input)
        calib = _calib_tensor(calib_data)
        gaps = runtime_gaps(graph, runtime)   # check support before any work
        if gaps:
            raise UnsupportedOnBoardError(gaps[0])
        if len(graph.inputs) != 1 or len(graph.outputs) != 1:
            raise QuantizationError("the board runs networks with one input and one output")
        values = _capture(graph, calib)
        mods = dict(graph.gm.named_modules())
        shapes = {name: hwc_shape(b.shape) for name, b in graph.buffers.items()}
        qp = {graph.inputs[0]: _qparams_from(values[graph.inputs[0]])}
        shared = _shared_qparams(graph, values)
        if graph.inputs[0] in shared:
            qp[graph.inputs[0]] = shared[graph.inputs[0]]
        ops = []
        for op in graph.ops:
            ins = op.inputs
            in_hwc, out_hwc = shapes[ins[0]], shapes[op.output]
            qi = qp[ins[0]]
            lut_act = op.activation is not None and op.activation not in CLAMP_ACTIVATIONS
            if op.type == "activation":       # a standalone elementwise op: one lookup table
                qo = qp[op.output] = (_lut_qparams(op.activation, values[op.output]) if lut_act
                                      else _qparams_from(values[op.output]))
                spec = _lut_spec(graph, op, in_hwc, qi, qo)
                spec.function = op.activation
                ops.append(QOp(op.name, op.type, op.label, list(ins), op.output, spec, spec.weights,
                               activation=op.activation))
                continue
            if op.type in ("max_pool", "avg_pool"):
                qo = QParams(qi.scale, qi.zero_point)
            elif op.output in shared:
                qo = shared[op.output]
            else:   # the op's own output: before a fused lookup-table activation, else the buffer
                qo = _qparams_from(values[op.nodes[-2] if lut_act else op.output])
            qp[op.output] = qo
            if op.type == "concat":
                if any((qp[b].scale, qp[b].zero_point) != (qo.scale, qo.zero_point) for b in ins):
                    raise QuantizationError(f"concatenation {op.label!r}: its inputs could not share its quantisation "
                                            "(an input also feeds another concatenation or comes from a pooling op)")
                ops.append(QOp(op.name, op.type, op.label, list(ins), op.output, None, None, activation=op.activation))
                continue
            post = None
            if lut_act:
                qp[op.output] = _lut_qparams(op.activation, values[op.output])
                post = _lut_spec(graph, op, out_hwc, qo, qp[op.output])
            amin, amax = _act_range(op, qo)
            common = dict(input_zp=qi.zero_point, output_zp=qo.zero_point, act_min=amin, act_max=amax)
            weights = None
            if op.type in WEIGHTED_OPS:
                m = mods[op.module]
                w, b = _fold(mods, op)
                if isinstance(m, nn.Conv1d):
                    w = w[:, :, None, :]          # (O, I, 1, K)
                if op.type == "dense" and len(graph.buffers[ins[0]].shape) == 4:
                    _, c, h, wd = graph.buffers[ins[0]].shape   # PyTorch flattens CHW, the firmware HWC
                    w = w.reshape(w.shape[0], c, h, wd).transpose(0, 2, 3, 1).reshape(w.shape[0], -1)
                oc = w.shape[0]
                absmax = np.abs(w.reshape(oc, -1)).max(axis=1)
                sw = np.where(absmax > 0, absmax / 127.0, 1.0).astype(np.float32).astype(np.float64)
                wq = np.clip(np.round(w / sw.reshape(-1, *([1] * (w.ndim - 1)))), -127, 127).astype(np.int8)
                bias = np.clip(np.round(b / (qi.scale * sw)), -bias_limit(wq, qi.zero_point),
                               bias_limit(wq, qi.zero_point)).astype(np.int64)
                # TFLite's PopulateConvolutionQuantizationParams: double(s_in) * double(s_w) / double(s_out)
                ms = [ref.quantize_multiplier(qi.scale * float(s) / qo.scale) for s in sw]
                mult = np.array([v[0] for v in ms], dtype=np.int64)
                shift = np.array([v[1] for v in ms], dtype=np.int64)
                kw = dict(bias=bias.astype(np.int32), mult=mult.astype(np.int32), shift=shift.astype(np.int32))
                if op.type == "dense":
                    spec = LayerSpec("dense", in_hwc, out_channels=oc, **common, **kw)
                    weights = wq.reshape(oc, -1)
                else:
                    kh, kwid = wq.shape[2], wq.shape[3]
                    stride = ref._pair(m.stride if not isinstance(m, nn.Conv1d) else (1, m.stride[0]))
                    pad = m.padding
                    if isinstance(pad, str):
                        if pad == "valid":
                            pad = (0, 0)
                        else:
                            pad = ((kh - 1) // 2, (kwid - 1) // 2)
                    pad = ref._pair(pad if not isinstance(m, nn.Conv1d) else (0, pad[0]))
                    if any(d != 1 for d in m.dilation):
                        raise UnsupportedOnBoardError(f"dilated convolution {op.label!r} is not in the firmware")
                    padding = (pad[0], pad[0], pad[1], pad[1])
                    if op.type == "depthwise_conv2d":
                        mult_d = oc // in_hwc[2]
                        spec = LayerSpec("depthwise_conv2d", in_hwc, kernel=(kh, kwid), stride=stride, padding=padding,
                                         depth_multiplier=mult_d, **common, **kw)
                        weights = wq[:, 0].transpose(1, 2, 0).copy()        # (KH, KW, C*M)
                    elif op.type == "pointwise_conv2d" and stride == (1, 1):
                        spec = LayerSpec("pointwise_conv2d", in_hwc, out_channels=oc, **common, **kw)
                        weights = wq.reshape(oc, -1)
                    else:
                        spec = LayerSpec("conv2d", in_hwc, out_channels=oc, kernel=(kh, kwid), stride=stride,
                                         padding=padding, **common, **kw)
                        weights = wq.transpose(0, 2, 3, 1).copy()          # OHWI
            elif op.type in ("max_pool", "avg_pool"):
                k, s, p = _pool_geometry(graph, mods, op, in_hwc, out_hwc)
                spec = LayerSpec(op.type, in_hwc, kernel=k, stride=s, padding=p, **common)
            elif op.type == "global_avg_pool":
                h, w_, c = in_hwc
                mq = tflm_mean_multiplier(qi.scale, qo.scale, h * w_)
                spec = LayerSpec("global_avg_pool", in_hwc, mult=np.full(c, mq[0], np.int32),
                                 shift=np.full(c, mq[1], np.int32), **common)
            elif op.type == "mul":
                q2 = qp[ins[1]]
                m, sh = ref.quantize_multiplier(qi.scale * q2.scale / qo.scale)
                spec = LayerSpec("mul", in_hwc, input2_zp=q2.zero_point, mult=m, shift=sh,
                                 broadcast=shapes[ins[1]] != in_hwc, **common)
                if spec.broadcast and shapes[ins[1]] != (1, 1, in_hwc[2]):
                    raise UnsupportedOnBoardError(f"mul {op.label!r} of {in_hwc} and {shapes[ins[1]]}: the firmware "
                                                  "multiplies same-shape or channel-wise (1, 1, C) operands only")
            else:  # add
                q2 = qp[ins[1]]
                twice = 2 * max(qi.scale, q2.scale)   # TFLite's Add Prepare, in double from float32 scales
                m1, s1 = ref.quantize_multiplier(qi.scale / twice)
                m2, s2 = ref.quantize_multiplier(q2.scale / twice)
                mo, so = ref.quantize_multiplier(twice / ((1 << 20) * qo.scale))
                spec = LayerSpec("add", in_hwc, input2_zp=q2.zero_point, add_params=(20, m1, s1, m2, s2, mo, so),
                                 **common)
            if tuple(spec.output_shape) != tuple(out_hwc):
                raise QuantizationError(f"op {op.label!r}: the firmware's {spec.op} gives {spec.output_shape}, "
                                        f"PyTorch {out_hwc}")
            spec.weights = weights
            ops.append(QOp(op.name, op.type, op.label, list(ins), op.output, spec, weights,
                           weight_scales=sw.astype(np.float32) if op.type in WEIGHTED_OPS else None,
                           activation=op.activation, post=post, pre_qparams=qo if post is not None else None))
        return QuantizedGraph(graph, ops, qp, shapes, graph.inputs[0], graph.outputs[0])
    finally:
        model.train(was)


def bias_limit(wq: np.ndarray, input_zp: int) -> np.ndarray:
    """The largest |int32 bias| per output channel (axis 0 of the int8 weights `wq`): TFLite's converter range
    (+-(2^31 - 1)), less what the channel's products can add, max|x - input_zp| * sum|w|, so that the int32
    accumulator (bias + products) cannot overflow for any input. The firmware refuses a layer whose accumulator
    could (LayerSpec.accumulator_bound); within this limit it never has to, and TFLM's int32 accumulation, the
    firmware's and the host's int64 one agree. Ordinary biases are orders of magnitude below it."""
    d = max(127 - int(input_zp), 128 + int(input_zp))
    per_oc = np.abs(wq.reshape(wq.shape[0], -1).astype(np.int64)).sum(axis=1)
    return np.maximum((2 ** 31 - 1) - d * per_oc, 0)


def tflm_mean_multiplier(in_scale: float, out_scale: float, count: int) -> tuple[int, int]:
    """(multiplier, shift) with which TFLite Micro's int8 MEAN requantises a sum of `count` (zero-point
    corrected) inputs: QuantizeMultiplier(s_in / s_out), then 1/count folded in as its reference
    QuantizedMeanOrSum does (shift clamped to 32 and to 31 + the output shift)."""
    m, s = ref.quantize_multiplier(in_scale / out_scale)
    shift = min(int(count).bit_length() - 1, 32, 31 + s)
    return int((m << shift) // count), s - shift


def _shared_qparams(graph: ResourceGraph, values: dict) -> dict:
    """Buffers that must share one quantisation (a concatenation's inputs and output; max/avg pooling's
    input and output, transitively): one QParams per such set, from the union of their ranges."""
    parent: dict = {}

    def find(a):
        while parent.setdefault(a, a) != a:
            a = parent[a]
        return a
    linked = False
    for op in graph.ops:
        if op.type == "concat":
            linked = True
            for b in op.inputs:
                parent[find(b)] = find(op.output)
    if not linked:
        return {}
    for op in graph.ops:
        if op.type in ("max_pool", "avg_pool"):
            parent[find(op.inputs[0])] = find(op.output)
    sets: dict = {}
    for b in list(parent):
        sets.setdefault(find(b), []).append(b)
    out = {}
    for members in sets.values():
        if len(members) < 2:
            continue
        vals = np.concatenate([values[b].ravel() for b in members])
        q = _qparams_from(vals)
        for b in members:
            out[b] = q
    return out


def _calib_tensor(calib_data) -> torch.Tensor:
    if isinstance(calib_data, torch.Tensor):
        return calib_data.float()
    if isinstance(calib_data, np.ndarray):
        return torch.as_tensor(calib_data, dtype=torch.float32)
    xs = []
    for item in calib_data:
        x = item[0] if isinstance(item, (tuple, list)) else item
        xs.append(torch.as_tensor(x).float())
        if sum(len(v) for v in xs) >= 256:
            break
    if not xs:
        raise QuantizationError("calib_data is empty: give a batch of training inputs")
    return torch.cat(xs)


__all__ = ["quantize", "QuantizedGraph", "QOp", "QParams", "QuantizationError", "UnsupportedOnBoardError",
           "FIRMWARE_OPS", "TFLM_OPS", "RUNTIME_OPS", "firmware_gaps", "runtime_gaps", "to_nhwc", "hwc_shape", "tflm_mean_multiplier"]
