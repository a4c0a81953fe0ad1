"""Host int8 reference kernels (numpy, vectorised), bit-exact with the HIL firmware (hil/src/kernels.c).

Layout NHWC (a 3-D ``(H, W, C)`` input is accepted and returns 3-D). Requantisation is TFLite's:
``MultiplyByQuantizedMultiplier`` = ``RoundingDivideByPOT(SaturatingRoundingDoublingHighMul(x << left, m), right)``
with a per-output-channel int32 multiplier ``m`` and shift (positive = left). Weights are symmetric
(zero point 0); activations carry zero points; ``act_min``/``act_max`` clamp (fused ReLU/ReLU6).

Weight layouts: conv2d OHWI ``(O, KH, KW, I)``; depthwise ``(KH, KW, C*M)`` (TFLite's ``(1, KH, KW, C*M)``
is accepted too); pointwise ``(O, I)`` or ``(O, 1, 1, I)``; dense ``(O, I)`` with the input flattened in
HWC order. Padding is an int, ``(ph, pw)`` (PyTorch-style, both sides) or ``(top, bottom, left, right)``.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Callable, Sequence, Union

import numpy as np

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

from lightning_mcuprune.graph.ops import KERNEL_OPS

Padding = Union[int, Sequence[int]]

__all__ = [
    "quantize_multiplier", "multiply_by_quantized_multiplier", "saturating_rounding_doubling_high_mul",
    "rounding_divide_by_pot", "conv2d", "depthwise_conv2d", "pointwise_conv2d", "dense", "max_pool",
    "avg_pool", "global_avg_pool", "add", "mul", "lut", "lut_table", "conv_output_size", "normalize_padding", "OPS",
]

#: Op types implemented here and in the firmware (names as in the resource model).
OPS = KERNEL_OPS

_I32_MIN, _I32_MAX = -(2 ** 31), 2 ** 31 - 1


def quantize_multiplier(real_multiplier: float) -> tuple[int, int]:
    """TFLite QuantizeMultiplier: a positive real multiplier -> (int32 multiplier in [2^30, 2^31), shift).

    ``real ~= multiplier * 2^(shift - 31)``; shift > 0 is a left shift. 0 gives (0, 0).
    """
    if real_multiplier < 0 or not math.isfinite(real_multiplier):
        raise ValueError(f"real multiplier must be finite and >= 0, got {real_multiplier}")
    if real_multiplier == 0.0:
        return 0, 0
    q, shift = math.frexp(real_multiplier)
    q_fixed = int(math.floor(q * (1 << 31) + 0.5))  # std::round, q > 0
    if q_fixed == (1 << 31):
        q_fixed //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    if shift > 30:
        raise ValueError(f"real multiplier {real_multiplier} too large (shift {shift} > 30)")
    return q_fixed, shift


def saturating_rounding_doubling_high_mul(a: ArrayLike, b: ArrayLike) -> np.ndarray:
    """gemmlowp SaturatingRoundingDoublingHighMul on int32 arrays (broadcasting)."""
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    s = a * b
    neg = s < 0
    s += 1 << 30
    s -= neg * np.int64((1 << 31) - 1)        # nudge: +2^30 if ab >= 0 else 1 - 2^30
    # divide by 2^31 truncating toward zero (as C does): floor, plus 1 for negatives with a remainder
    q = s >> 31
    q += (s < 0) & ((s & ((1 << 31) - 1)) != 0)
    if np.any(b == _I32_MIN) and np.any(a == _I32_MIN):
        q = np.where((a == _I32_MIN) & (b == _I32_MIN), np.int64(_I32_MAX), q)
    return q.astype(np.int32)


def rounding_divide_by_pot(x: ArrayLike, exponent: ArrayLike) -> np.ndarray:
    """gemmlowp RoundingDivideByPOT: x / 2^exponent rounded half away from zero (int32)."""
    x = np.asarray(x, dtype=np.int64)
    e = np.asarray(exponent, dtype=np.int64)
    mask = (np.int64(1) << e) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    return ((x >> e) + (remainder > threshold)).astype(np.int32)


def multiply_by_quantized_multiplier(x: ArrayLike, multiplier: ArrayLike, shift: ArrayLike) -> np.ndarray:
    """TFLite MultiplyByQuantizedMultiplier, per element (multiplier/shift broadcast over the last axis).

    The left shift wraps like int32 arithmetic (as the firmware does).
    """
    x = np.asarray(x, dtype=np.int64)
    shift = np.asarray(shift, dtype=np.int64)
    left = np.maximum(shift, 0)
    right = np.maximum(-shift, 0)
    xs = _wrap32(x << left) if np.any(left) else x
    return rounding_divide_by_pot(saturating_rounding_doubling_high_mul(xs, multiplier), right)


def _wrap32(x: np.ndarray) -> np.ndarray:
    """int64 -> int32 with two's-complement wrap-around (as the firmware's uint32 shifts)."""
    return (np.asarray(x, dtype=np.int64) & 0xFFFFFFFF).astype(np.uint32).view(np.int32)


def _requant(acc, multiplier, shift, output_zp, act_min, act_max) -> np.ndarray:
    out = multiply_by_quantized_multiplier(acc, multiplier, shift).astype(np.int64) + int(output_zp)
    return np.clip(out, act_min, act_max).astype(np.int8)


def normalize_padding(padding: Padding) -> tuple[int, int, int, int]:
    """-> (top, bottom, left, right)."""
    if isinstance(padding, (int, np.integer)):
        p = int(padding)
        return p, p, p, p
    padding = tuple(int(p) for p in padding)
    if len(padding) == 2:
        return padding[0], padding[0], padding[1], padding[1]
    if len(padding) == 4:
        return padding  # type: ignore[return-value]
    raise ValueError(f"padding must be an int, (ph, pw) or (top, bottom, left, right); got {padding}")


def _pair(v) -> tuple[int, int]:
    if isinstance(v, (int, np.integer)):
        return int(v), int(v)
    a, b = v
    return int(a), int(b)


def conv_output_size(in_hw: Sequence[int], kernel: int | Sequence[int], stride: int | Sequence[int],
                     padding: Padding) -> tuple[int, int]:
    """Output (H, W) of a window op: floor((in + pads - k) / stride) + 1."""
    t, b, l, r = normalize_padding(padding)
    kh, kw = _pair(kernel)
    sh, sw = _pair(stride)
    oh = (in_hw[0] + t + b - kh) // sh + 1
    ow = (in_hw[1] + l + r - kw) // sw + 1
    if oh < 1 or ow < 1:
        raise ValueError(f"window {kh}x{kw} does not fit input {in_hw[0]}x{in_hw[1]} with padding {padding}")
    return oh, ow


def _as4d(x) -> tuple[np.ndarray, bool]:
    x = np.asarray(x)
    if x.dtype != np.int8:
        raise ValueError(f"expected an int8 tensor, got {x.dtype}")
    if x.ndim == 3:
        return x[None], True
    if x.ndim != 4:
        raise ValueError(f"expected NHWC (4-D) or HWC (3-D), got shape {x.shape}")
    return x, False


def _windows(x: np.ndarray, kh, kw, sh, sw, padding, fill) -> tuple[np.ndarray, int, int]:
    """Pad NHWC x with `fill` and return strided windows (N, OH, OW, C, KH, KW)."""
    t, b, l, r = normalize_padding(padding)
    oh, ow = conv_output_size(x.shape[1:3], (kh, kw), (sh, sw), (t, b, l, r))
    xp = np.pad(x, ((0, 0), (t, b), (l, r), (0, 0)), constant_values=fill) if (t or b or l or r) else x
    win = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(1, 2))
    return win[:, : (oh - 1) * sh + 1 : sh, : (ow - 1) * sw + 1 : sw], oh, ow


def _vec(v, n) -> np.ndarray:
    v = np.asarray(v, dtype=np.int64)
    return np.broadcast_to(v, (n,)) if v.ndim == 0 else v


def conv2d(x: ArrayLike, w: ArrayLike, bias: ArrayLike, input_zp: int, output_zp: int, mult: ArrayLike,
           shift: ArrayLike, stride: int | Sequence[int] = 1, padding: Padding = 0, act_min: int = -128,
           act_max: int = 127) -> np.ndarray:
    """int8 conv2d. x NHWC int8, w OHWI int8, bias int32 (O,), mult/shift int32 (O,) or scalars."""
    x4, squeeze = _as4d(x)
    w = np.asarray(w, dtype=np.int8)
    o, kh, kw, ci = w.shape
    if ci != x4.shape[3]:
        raise ValueError(f"weights expect {ci} input channels, input has {x4.shape[3]}")
    sh, sw = _pair(stride)
    win, oh, ow = _windows(x4, kh, kw, sh, sw, padding, input_zp)   # (N, OH, OW, C, KH, KW)
    xs = win.transpose(0, 1, 2, 4, 5, 3).reshape(x4.shape[0] * oh * ow, kh * kw * ci).astype(np.float64)
    xs -= float(input_zp)
    # float64 matmul is exact here: |acc| < 2^53 for any realistic layer
    acc = xs @ w.reshape(o, -1).astype(np.float64).T
    acc = acc.astype(np.int64) + _vec(bias if bias is not None else 0, o)
    out = _requant(acc, _vec(mult, o), _vec(shift, o), output_zp, act_min, act_max).reshape(x4.shape[0], oh, ow, o)
    return out[0] if squeeze else out


def depthwise_conv2d(x: ArrayLike, w: ArrayLike, bias: ArrayLike, input_zp: int, output_zp: int, mult: ArrayLike,
                     shift: ArrayLike, stride: int | Sequence[int] = 1, padding: Padding = 0, act_min: int = -128,
                     act_max: int = 127, depth_multiplier: int | None = None) -> np.ndarray:
    """int8 depthwise conv. w (KH, KW, C*M) (or (1, KH, KW, C*M)); output channel c*M + m reads input c."""
    x4, squeeze = _as4d(x)
    w = np.asarray(w, dtype=np.int8)
    if w.ndim == 4:
        w = w[0]
    kh, kw, oc = w.shape
    c = x4.shape[3]
    if oc % c:
        raise ValueError(f"depthwise output channels {oc} are not a multiple of input channels {c}")
    m = oc // c
    if depth_multiplier is not None and depth_multiplier != m:
        raise ValueError(f"depth_multiplier {depth_multiplier} but weights give {m}")
    sh, sw = _pair(stride)
    win, oh, ow = _windows(x4, kh, kw, sh, sw, padding, input_zp)   # (N, OH, OW, C, KH, KW)
    xs = win.astype(np.int64) - int(input_zp)
    if m > 1:
        xs = np.repeat(xs, m, axis=3)
    acc = np.einsum("nhwckl,klc->nhwc", xs, w.astype(np.int64))
    acc = acc + _vec(bias if bias is not None else 0, oc)
    out = _requant(acc, _vec(mult, oc), _vec(shift, oc), output_zp, act_min, act_max)
    return out[0] if squeeze else out


def pointwise_conv2d(x: ArrayLike, w: ArrayLike, bias: ArrayLike, input_zp: int, output_zp: int, mult: ArrayLike,
                     shift: ArrayLike, stride: int | Sequence[int] = 1, act_min: int = -128,
                     act_max: int = 127) -> np.ndarray:
    """int8 1x1 convolution (no padding). w (O, I) or (O, 1, 1, I)."""
    w = np.asarray(w, dtype=np.int8)
    if w.ndim == 2:
        w = w[:, None, None, :]
    if w.shape[1:3] != (1, 1):
        raise ValueError(f"pointwise weights must be 1x1, got {w.shape}")
    return conv2d(x, w, bias, input_zp, output_zp, mult, shift, stride, 0, act_min, act_max)


def dense(x: ArrayLike, w: ArrayLike, bias: ArrayLike, input_zp: int, output_zp: int, mult: ArrayLike, shift: ArrayLike,
          act_min: int = -128, act_max: int = 127) -> np.ndarray:
    """int8 fully connected; w (O, I). x is one sample, (I,) or (H, W, C), -> (O,); or a batch, (N, I) or
    (N, H, W, C), -> (N, O). Samples are flattened in HWC order."""
    x = np.asarray(x)
    if x.dtype != np.int8:
        raise ValueError(f"expected an int8 tensor, got {x.dtype}")
    w = np.asarray(w, dtype=np.int8)
    o, i = w.shape
    if x.ndim not in (1, 2, 3, 4):
        raise ValueError(f"dense input must be (I,), (H, W, C), (N, I) or (N, H, W, C); got shape {x.shape}")
    single = x.ndim in (1, 3)
    xf = x.reshape(1 if single else x.shape[0], -1)
    if xf.shape[1] != i:
        raise ValueError(f"dense weights expect {i} inputs per sample, got {xf.shape[1]}")
    acc = (xf.astype(np.float64) - float(input_zp)) @ w.astype(np.float64).T
    acc = acc.astype(np.int64) + _vec(bias if bias is not None else 0, o)
    out = _requant(acc, _vec(mult, o), _vec(shift, o), output_zp, act_min, act_max)
    return out[0] if single else out


def max_pool(x: ArrayLike, kernel: int | Sequence[int], stride: int | Sequence[int] | None = None, padding: Padding = 0,
             act_min: int = -128, act_max: int = 127) -> np.ndarray:
    """int8 max pooling over the valid (unpadded) part of each window."""
    x4, squeeze = _as4d(x)
    kh, kw = _pair(kernel)
    sh, sw = _pair(stride if stride is not None else kernel)
    win, _, _ = _windows(x4, kh, kw, sh, sw, padding, -128)
    out = np.clip(win.max(axis=(4, 5)), act_min, act_max).astype(np.int8)
    return out[0] if squeeze else out


def avg_pool(x: ArrayLike, kernel: int | Sequence[int], stride: int | Sequence[int] | None = None, padding: Padding = 0,
             act_min: int = -128, act_max: int = 127) -> np.ndarray:
    """int8 average pooling (TFLite): sum over the valid part of each window / its count, rounded half away
    from zero; input and output share scale and zero point."""
    x4, squeeze = _as4d(x)
    kh, kw = _pair(kernel)
    sh, sw = _pair(stride if stride is not None else kernel)
    win, oh, ow = _windows(x4, kh, kw, sh, sw, padding, 0)
    acc = win.astype(np.int64).sum(axis=(4, 5))
    ones = np.ones((1, x4.shape[1], x4.shape[2], 1), dtype=np.int8)
    count = _windows(ones, kh, kw, sh, sw, padding, 0)[0].astype(np.int64).sum(axis=(4, 5))
    half = count // 2
    q = np.where(acc > 0, acc + half, acc - half)
    avg = np.sign(q) * (np.abs(q) // count)           # C division truncates toward zero
    out = np.clip(avg, act_min, act_max).astype(np.int8)
    return out[0] if squeeze else out


def global_avg_pool(x: ArrayLike, input_zp: int, output_zp: int, mult: ArrayLike, shift: ArrayLike,
                    act_min: int = -128, act_max: int = 127) -> np.ndarray:
    """int8 global average pooling with requantisation: out = out_zp + MBQM(sum(x - in_zp), mult, shift).

    ``quantize`` gives it ``ptq.tflm_mean_multiplier(s_in, s_out, H * W)``: QuantizeMultiplier(s_in / s_out) with
    1/(H*W) folded in as TFLite Micro's int8 MEAN folds it, so that the result equals TFLM's bit for bit
    (``quantize_multiplier(s_in / (s_out * H * W))`` is 1 LSB off in some outputs).
    Returns (N, 1, 1, C) (or (1, 1, C)).
    """
    x4, squeeze = _as4d(x)
    c = x4.shape[3]
    acc = x4.astype(np.int64).sum(axis=(1, 2), keepdims=True) - int(input_zp) * x4.shape[1] * x4.shape[2]
    out = _requant(acc, _vec(mult, c), _vec(shift, c), output_zp, act_min, act_max)
    return out[0] if squeeze else out


def add(x1: ArrayLike, x2: ArrayLike, input1_zp: int, input2_zp: int, output_zp: int, input1_mult: ArrayLike,
        input1_shift: ArrayLike, input2_mult: ArrayLike, input2_shift: ArrayLike, output_mult: int, output_shift: int,
        left_shift: int = 20, act_min: int = -128, act_max: int = 127) -> np.ndarray:
    """int8 elementwise add with requantisation (TFLite reference Add, left_shift 20 for int8)."""
    a = np.asarray(x1)
    b = np.asarray(x2)
    if a.dtype != np.int8 or b.dtype != np.int8 or a.shape != b.shape:
        raise ValueError(f"add needs two int8 tensors of one shape, got {a.dtype}{a.shape} and {b.dtype}{b.shape}")
    sa = _wrap32((a.astype(np.int64) - int(input1_zp)) << int(left_shift))
    sb = _wrap32((b.astype(np.int64) - int(input2_zp)) << int(left_shift))
    s = multiply_by_quantized_multiplier(sa, input1_mult, input1_shift).astype(np.int64) + \
        multiply_by_quantized_multiplier(sb, input2_mult, input2_shift)
    s = np.clip(s, _I32_MIN, _I32_MAX)   # the int32 sum saturates (as the firmware's add does)
    return _requant(s, output_mult, output_shift, output_zp, act_min, act_max)


def mul(x1: ArrayLike, x2: ArrayLike, input1_zp: int, input2_zp: int, output_zp: int, mult: int, shift: int,
        act_min: int = -128, act_max: int = 127) -> np.ndarray:
    """int8 elementwise multiply (TFLite reference int8 Mul):
    ``out = clamp(out_zp + MBQM((x1 - zp1) * (x2 - zp2), mult, shift))`` with
    ``(mult, shift) = quantize_multiplier(s1 * s2 / s_out)``.

    x2 has x1's shape, or is channel-wise: one value per channel and sample, shape (..., 1, 1, C) (or (C,) for
    one HWC sample), broadcast over H and W (TFLite's broadcasting Mul does the same per element).
    """
    a = np.asarray(x1)
    b = np.asarray(x2)
    if a.dtype != np.int8 or b.dtype != np.int8:
        raise ValueError(f"mul needs two int8 tensors, got {a.dtype} and {b.dtype}")
    if b.shape != a.shape:
        if b.size * a.shape[-3] * a.shape[-2] != a.size or b.shape[-1] != a.shape[-1]:
            raise ValueError(f"mul: x2 of shape {b.shape} is neither x1's shape {a.shape} nor channel-wise (1, 1, C)")
        b = b.reshape(*a.shape[:-3], 1, 1, a.shape[-1])
    prod = (a.astype(np.int64) - int(input1_zp)) * (b.astype(np.int64) - int(input2_zp))
    return _requant(prod, mult, shift, output_zp, act_min, act_max)


def lut(x: ArrayLike, table: ArrayLike) -> np.ndarray:
    """int8 lookup: ``out = table[x + 128]`` elementwise (`table`: 256 int8, entry i for input i - 128)."""
    x = np.asarray(x)
    t = np.asarray(table, dtype=np.int8).reshape(256)
    if x.dtype != np.int8:
        raise ValueError(f"expected an int8 tensor, got {x.dtype}")
    return t[x.astype(np.int16) + 128]


def lut_table(fn: Callable[[np.ndarray], np.ndarray], input_scale: float, input_zp: int, output_scale: float,
              output_zp: int) -> np.ndarray:
    """The 256-entry int8 table of an elementwise function: entry i = quantised fn(dequantised i - 128).

    `fn` maps a float64 numpy array to a float64 array. Rounding is half away from zero (as TFLite's).
    """
    q = np.arange(-128, 128, dtype=np.float64)
    y = np.asarray(fn(input_scale * (q - input_zp)), dtype=np.float64)
    v = y / output_scale
    r = np.sign(v) * np.floor(np.abs(v) + 0.5) + output_zp
    return np.clip(np.nan_to_num(r, nan=output_zp), -128, 127).astype(np.int8)


# ---- TFLite's int8 HARD_SWISH (tensorflow/lite/kernels/internal/reference/hard_swish.h), per scalar --------
def _trunc_div(a: int, b: int) -> int:
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def _srdhm16(a: int, b: int) -> int:
    if a == b == -32768:
        return 32767
    ab = a * b
    return _trunc_div(ab + ((1 << 14) if ab >= 0 else 1 - (1 << 14)), 1 << 15)


def _sdhm16(a: int, b: int) -> int:
    if a == b == -32768:
        return 32767
    return _trunc_div(a * b, 1 << 15)


def _rdbpot(x: int, e: int) -> int:
    mask = (1 << e) - 1
    return (x >> e) + ((x & mask) > (mask >> 1) + (x < 0))


def _sat_left16(v: int, amount: int) -> int:
    return max(-32768, min(32767, v * (1 << amount)))


def _int16_multiplier(real: float) -> tuple[int, int]:
    """TFLite QuantizeMultiplier, then DownScaleInt32ToInt16Multiplier: (int16 multiplier, exponent)."""
    q, e = math.frexp(real)
    m = int(math.floor(q * (1 << 31) + 0.5)) if real else 0
    if m == 1 << 31:
        m, e = m // 2, e + 1
    if e < -31:
        m, e = 0, 0
    if m >= _I32_MAX - (1 << 15):
        return 32767, e
    return (m + (1 << 15)) >> 16, e


def hardswish_table_tflite(input_scale: float, input_zp: int, output_scale: float, output_zp: int) -> np.ndarray:
    """The 256-entry int8 table of TFLite's int8 HARD_SWISH arithmetic (what TFLite Micro's reference kernel
    outputs for every int8 input; scales are taken as float32, as a .tflite stores them)."""
    f32 = np.float32
    hires = f32(1.0 / 128.0) * f32(input_scale)
    out_m, out_e = _int16_multiplier(float(hires / f32(output_scale)))
    rel_m, rel_e = _int16_multiplier(float(hires / f32(3.0 / 32768.0)))
    if out_e > 0:
        raise ValueError(f"HARD_SWISH needs output_scale >= input_scale / 128 (TFLite), got {output_scale} < {input_scale}/128")
    table = np.empty(256, dtype=np.int8)
    for i, q in enumerate(range(-128, 128)):
        x = q - int(input_zp)
        hi = x * 128
        pre_out = _srdhm16(hi, out_m)
        r = hi
        if rel_e > 0:
            r = _sat_left16(r, rel_e - 1)
        r = _srdhm16(r, rel_m)
        if rel_e > 0:
            r = _sat_left16(r, 1)
        if rel_e < 0:
            r = _rdbpot(r, -rel_e)
        r = (r + (1 << 15)) >> 1
        out = _rdbpot(_sdhm16(r, pre_out), -out_e) + int(output_zp)
        table[i] = max(-128, min(127, out))
    return table
