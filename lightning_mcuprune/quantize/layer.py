"""LayerSpec: one int8 layer as the firmware (and the host int8 executor) runs it (shapes, quantisation, placement in arena and weights store).

Shapes are NHWC at batch 1, ``input_shape = (H, W, C)``. Offsets are bytes into the arena (activations) or
the weights store (weights, then int32 parameters). Data left as None is filled on the board from a seed
(FILL) when the layer is loaded, which is how timing runs avoid the slow upload.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Optional

import numpy as np

from lightning_mcuprune.graph.ops import KERNEL_OPS, WEIGHTED_OPS
from lightning_mcuprune.quantize import reference as ref

WINDOW_OPS = ("conv2d", "depthwise_conv2d", "max_pool", "avg_pool")
INT32_MAX = 2 ** 31 - 1


def _align4(n: int) -> int:
    return (n + 3) & ~3


@dataclass
class LayerSpec:
    """One layer. ``op`` is a firmware kernel name (``graph.ops.KERNEL_OPS``). Its wire form: ``hil.protocol.pack_config``."""

    op: str
    input_shape: tuple
    out_channels: Optional[int] = None          # conv2d, pointwise_conv2d, dense
    kernel: tuple = (1, 1)
    stride: tuple = (1, 1)
    padding: tuple = (0, 0, 0, 0)               # (top, bottom, left, right), or int / (ph, pw)
    depth_multiplier: int = 1
    input_zp: int = 0
    input2_zp: int = 0
    output_zp: int = 0
    act_min: int = -128
    act_max: int = 127
    # placement (bytes); None = packed after the previous tensor
    input_offset: int = 0
    input2_offset: Optional[int] = None
    output_offset: Optional[int] = None
    weights_offset: int = 0
    params_offset: Optional[int] = None
    # data; None = filled on the board (weights) or defaults (mult 2^30, shift -8, bias 0)
    weights: Optional[np.ndarray] = field(default=None, repr=False)
    bias: Optional[np.ndarray] = field(default=None, repr=False)
    mult: Optional[np.ndarray] = field(default=None, repr=False)
    shift: Optional[np.ndarray] = field(default=None, repr=False)
    add_params: tuple = (20, 1 << 30, -1, 1 << 30, -1, 1 << 30, -8)  # left_shift, m1, s1, m2, s2, mo, so
    #: mul: the second input is channel-wise, (1, 1, C), broadcast over H and W (config flags bit 0)
    broadcast: bool = False
    #: lut: the elementwise function the 256-entry table holds (e.g. "sigmoid", "hardswish"); not sent to the board
    function: str = ""

    def __post_init__(self) -> None:
        if self.op not in KERNEL_OPS:
            raise ValueError(f"unknown op {self.op!r}; the firmware runs {', '.join(KERNEL_OPS)}")
        self.input_shape = tuple(int(v) for v in self.input_shape)
        if len(self.input_shape) != 3 or min(self.input_shape) < 1:
            raise ValueError(f"input_shape must be (H, W, C) with positive sizes, got {self.input_shape}")
        self.kernel = ref._pair(self.kernel)
        self.stride = ref._pair(self.stride)
        self.padding = ref.normalize_padding(self.padding)
        if self.op == "pointwise_conv2d" and (self.kernel != (1, 1) or any(self.padding)):
            raise ValueError("pointwise_conv2d is 1x1 without padding")
        if self.op in ("conv2d", "pointwise_conv2d", "dense") and not self.out_channels:
            raise ValueError(f"{self.op} needs out_channels")
        if self.op in WINDOW_OPS:
            t, b, l, r = self.padding
            if t >= self.kernel[0] or l >= self.kernel[1] or b >= self.kernel[0] or r >= self.kernel[1]:
                raise ValueError(f"padding {self.padding} must be smaller than the kernel {self.kernel}")
        self.output_shape  # validates the window

    # ---- shapes and counts ----
    @property
    def output_shape(self) -> tuple:
        h, w, c = self.input_shape
        if self.op in ("conv2d", "depthwise_conv2d", "max_pool", "avg_pool", "pointwise_conv2d"):
            oh, ow = ref.conv_output_size((h, w), self.kernel, self.stride, self.padding)
            oc = {"conv2d": self.out_channels, "pointwise_conv2d": self.out_channels,
                  "depthwise_conv2d": c * self.depth_multiplier}.get(self.op, c)
            return oh, ow, oc
        if self.op == "dense":
            return 1, 1, self.out_channels
        if self.op == "global_avg_pool":
            return 1, 1, c
        return h, w, c  # add, mul, lut

    @property
    def input2_shape(self) -> tuple:
        """Shape of the second input (add, mul): the input's, or (1, 1, C) for a channel-wise mul."""
        return (1, 1, self.input_shape[2]) if self.op == "mul" and self.broadcast else self.input_shape

    @property
    def input2_bytes(self) -> int:
        return int(np.prod(self.input2_shape))

    @property
    def input_bytes(self) -> int:
        return int(np.prod(self.input_shape))

    @property
    def output_bytes(self) -> int:
        return int(np.prod(self.output_shape))

    @property
    def macs(self) -> int:
        """Multiply-accumulates (the resource model's count; pooling/add count output elements)."""
        h, w, c = self.input_shape
        oh, ow, oc = self.output_shape
        kh, kw = self.kernel
        return {
            "conv2d": oh * ow * oc * kh * kw * c,
            "depthwise_conv2d": oh * ow * oc * kh * kw,
            "pointwise_conv2d": oh * ow * oc * c,
            "dense": oc * h * w * c,
            "max_pool": oh * ow * oc * kh * kw,
            "avg_pool": oh * ow * oc * kh * kw,
            "global_avg_pool": h * w * c,
            "add": h * w * c,
            "mul": h * w * c,
            "lut": h * w * c,
        }[self.op]

    @property
    def weights_shape(self) -> Optional[tuple]:
        h, w, c = self.input_shape
        oc = self.output_shape[2]
        kh, kw = self.kernel
        return {"conv2d": (oc, kh, kw, c), "depthwise_conv2d": (kh, kw, oc),
                "pointwise_conv2d": (oc, c), "dense": (oc, h * w * c), "lut": (256,)}.get(self.op)

    @property
    def weights_bytes(self) -> int:
        s = self.weights_shape
        return int(np.prod(s)) if s else 0

    @property
    def params_bytes(self) -> int:
        oc = self.output_shape[2]
        if self.op in WEIGHTED_OPS:
            return 12 * oc
        return {"global_avg_pool": 8 * oc, "add": 28, "mul": 8}.get(self.op, 0)

    # ---- int32 accumulator ----
    def accumulator_bound(self, weights: Optional[np.ndarray] = None) -> Optional[int]:
        """The largest |int32 accumulator| the firmware's kernel can reach for any input, or None if it depends
        on weights that are not known (then the firmware checks it at RUN, when they are on the board).

        conv/depthwise/pointwise/dense: max over output channels of |bias| + d * sum|w| over the channel's
        weights, with d = max |x - input_zp| = max(127 - input_zp, 128 + input_zp); global_avg_pool:
        d * H * W; avg_pool: 128 * KH * KW; max_pool and add: 0 (add saturates its int32 sum on both sides).
        The firmware (hil/src/main.c, acc_bound) computes the same figure.
        """
        d = max(127 - self.input_zp, 128 + self.input_zp)
        if self.op == "global_avg_pool":
            return d * self.input_shape[0] * self.input_shape[1]
        if self.op == "avg_pool":
            return 128 * self.kernel[0] * self.kernel[1]
        if self.op not in WEIGHTED_OPS:
            return 0
        w = self.weights if weights is None else weights
        if w is None:
            return None
        oc = self.output_shape[2]
        w = np.abs(np.asarray(w, dtype=np.int64).reshape(self.weights_shape))
        per_oc = w.sum(axis=(0, 1)) if self.op == "depthwise_conv2d" else w.reshape(oc, -1).sum(axis=1)
        bias = np.abs(self.params_array()[:oc].astype(np.int64))
        return int((bias + d * per_oc).max())

    def check_accumulator(self, weights: Optional[np.ndarray] = None) -> None:
        """ValueError if the int32 accumulator could overflow (see accumulator_bound): such a layer is refused
        on the host and by the firmware alike, so that the board and the host reference (int64) never differ."""
        b = self.accumulator_bound(weights)
        if b is None or b <= INT32_MAX:
            return
        why = {"global_avg_pool": f"{self.input_shape[0]}x{self.input_shape[1]} inputs per channel",
               "avg_pool": f"a {self.kernel[0]}x{self.kernel[1]} window"}.get(
            self.op, "|bias| plus max|x - input_zp| times the sum of |weights| of an output channel")
        raise ValueError(f"{self.op} layer {self.input_shape}->{self.output_shape}: its int32 accumulator could reach "
                         f"{b:,} (> 2^31-1 = {INT32_MAX:,}) from {why}; the firmware refuses it. Use smaller "
                         "biases or weights, or split the layer (fewer inputs per output).")

    # ---- placement ----
    def placed(self) -> "LayerSpec":
        """A copy with every None offset resolved (inputs, then output; weights, then params; 4-byte aligned)."""
        s = replace(self)
        end = s.input_offset + s.input_bytes
        if s.op in ("add", "mul") and s.input2_offset is None:
            s.input2_offset = _align4(end)
        if s.op in ("add", "mul"):
            end = max(end, s.input2_offset + s.input2_bytes)
        if s.output_offset is None:
            s.output_offset = _align4(end)
        if s.params_offset is None:
            s.params_offset = _align4(s.weights_offset + s.weights_bytes)
        return s

    @property
    def arena_end(self) -> int:
        """Highest arena byte (exclusive) the layer touches."""
        s = self.placed()
        ends = [s.input_offset + s.input_bytes, s.output_offset + s.output_bytes]
        if s.op in ("add", "mul"):
            ends.append(s.input2_offset + s.input2_bytes)
        return max(ends)

    def params_array(self) -> np.ndarray:
        """The int32 parameter block: bias, mult, shift (per output channel); gap: mult, shift; add: 7 values;
        mul: one mult, one shift; lut: none (the table is its weights)."""
        oc = self.output_shape[2]
        if self.op == "add":
            return np.asarray(self.add_params, dtype=np.int32)
        if self.op == "mul":
            return np.array([1 << 30 if self.mult is None else int(np.asarray(self.mult).reshape(-1)[0]),
                             -8 if self.shift is None else int(np.asarray(self.shift).reshape(-1)[0])], dtype=np.int32)

        def vec(v, default):
            return np.broadcast_to(np.asarray(default if v is None else v, dtype=np.int32), (oc,))
        mult, shift = vec(self.mult, 1 << 30), vec(self.shift, -8)
        if self.op == "global_avg_pool":
            return np.concatenate([mult, shift])
        if self.op in WEIGHTED_OPS:
            return np.concatenate([vec(self.bias, 0), mult, shift])
        return np.zeros(0, dtype=np.int32)

    # ---- host reference ----
    def reference(self, x: np.ndarray, x2: Optional[np.ndarray] = None, weights: Optional[np.ndarray] = None
                  ) -> np.ndarray:
        """What the board must output for input x (HWC int8, or a batch NHWC), via lightning_mcuprune.quantize.reference."""
        w = self.weights if weights is None else weights
        self.check_accumulator(w)
        x = np.asarray(x, dtype=np.int8)
        lead = x.shape[:1] if x.ndim == 4 else ()  # a batch (the host executor) or one input (the board)
        x = x.reshape(*lead, *self.input_shape)
        p = self.params_array()
        oc = self.output_shape[2]
        q = dict(act_min=self.act_min, act_max=self.act_max)
        if self.op in WEIGHTED_OPS:
            w = np.asarray(w, dtype=np.int8).reshape(self.weights_shape)
            bias, mult, shift = p[:oc], p[oc:2 * oc], p[2 * oc:]
            args = (bias, self.input_zp, self.output_zp, mult, shift)
            if self.op == "conv2d":
                return ref.conv2d(x, w, *args, stride=self.stride, padding=self.padding, **q)
            if self.op == "depthwise_conv2d":
                return ref.depthwise_conv2d(x, w, *args, stride=self.stride, padding=self.padding, **q)
            if self.op == "pointwise_conv2d":
                return ref.pointwise_conv2d(x, w, *args, stride=self.stride, **q)
            return ref.dense(x, w, *args, **q).reshape(*lead, *self.output_shape)
        if self.op == "max_pool":
            return ref.max_pool(x, self.kernel, self.stride, self.padding, **q)
        if self.op == "avg_pool":
            return ref.avg_pool(x, self.kernel, self.stride, self.padding, **q)
        if self.op == "global_avg_pool":
            return ref.global_avg_pool(x, self.input_zp, self.output_zp, p[:oc], p[oc:], **q)
        if self.op == "lut":
            return ref.lut(x, w)
        x2 = np.asarray(x2, dtype=np.int8).reshape(*lead, *self.input2_shape)
        if self.op == "mul":
            return ref.mul(x, x2, self.input_zp, self.input2_zp, self.output_zp, int(p[0]), int(p[1]), **q)
        ls, m1, s1, m2, s2, mo, so = (int(v) for v in p)
        return ref.add(x, x2, self.input_zp, self.input2_zp, self.output_zp, m1, s1, m2, s2, mo, so, ls, **q)
