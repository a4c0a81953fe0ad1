"""Geometry of convolution and pooling windows: kernel taps inside the input, window sizes, rows.

Pure integer arithmetic on shapes, shared by the tracer (latency features of traced ops) and the
calibration design (features of firmware layers).
"""
from __future__ import annotations

import numbers
from typing import TYPE_CHECKING

from lightning_mcuprune.errors import QuantizationError, UnsupportedOnBoardError

if TYPE_CHECKING:
    from collections.abc import Callable

    import torch

    from lightning_mcuprune.graph.types import Op, ResourceGraph


def _tuple(v, n: int) -> tuple:
    return tuple(v) if isinstance(v, (tuple, list)) else (v,) * n


def axis_taps(n_in: int, n_out: int, k: int, s: int, p: int, d: int = 1) -> int:
    """Kernel taps inside the input along one axis, summed over the n_out output positions."""
    return sum(sum(1 for j in range(k) if 0 <= o * s - p + j * d < n_in) for o in range(n_out))


def conv_geometry(in_shape: tuple, out_shape: tuple, kernel: "int | tuple", stride: "int | tuple",
                  padding: "int | tuple | str", dilation: "int | tuple") -> dict:
    """window (kernel elements) and valid_taps (taps inside the input over all output positions) of a conv."""
    sp_in, sp_out = tuple(in_shape[2:]), tuple(out_shape[2:])
    n = len(sp_in)
    kernel, stride, dilation = _tuple(kernel, n), _tuple(stride, n), _tuple(dilation, n)
    if isinstance(padding, str):  # "valid" or "same" (PyTorch puts the odd pixel after)
        padding = tuple(0 if padding == "valid" else d * (k - 1) // 2 for k, d in zip(kernel, dilation))
    padding = _tuple(padding, n)
    if n == 1:  # 1-d: the firmware runs (C, L) as H=1, W=L with a 1xK kernel (hwc_shape below)
        sp_in, sp_out = (1, *sp_in), (1, *sp_out)
        kernel, stride, padding, dilation, n = (1, *kernel), (1, *stride), (0, *padding), (1, *dilation), 2
    window, taps, row_taps, valid_rows = 1, 1, 1, 1
    for i in range(n):
        window *= kernel[i]
        t = axis_taps(sp_in[i], sp_out[i], kernel[i], stride[i], padding[i], dilation[i])
        taps *= t
        row_taps *= t if i == 0 else sp_out[i] * kernel[i]
        valid_rows *= t if i == 0 else sp_out[i]
    return {"window": window, "valid_taps": taps, "kernel_h": kernel[0] if n else 1, "row_taps": row_taps,
            "valid_rows": valid_rows}


def module_pool_params(m: "torch.nn.Module") -> dict:
    """Kernel, stride, padding and dilation of a pooling module ({"adaptive": True} for adaptive pools)."""
    if "Adaptive" in type(m).__name__:
        return {"adaptive": True}
    return {"kernel": m.kernel_size, "stride": m.stride if m.stride is not None else m.kernel_size,
            "padding": m.padding, "dilation": getattr(m, "dilation", 1)}


def function_pool_params(fn: "Callable", args: tuple, kwargs: dict) -> dict:
    """Kernel, stride, padding and dilation of a functional pooling call (F.max_pool2d(...) etc.)."""
    if "adaptive" in getattr(fn, "__name__", ""):
        return {"adaptive": True}
    names = ("input", "kernel_size", "stride", "padding", "dilation") if "max" in fn.__name__ else \
        ("input", "kernel_size", "stride", "padding")
    a = dict(zip(names, args))
    a.update({k: v for k, v in kwargs.items() if k in names})
    k = a.get("kernel_size")
    stride = a.get("stride") or k
    return {"kernel": k, "stride": stride, "padding": a.get("padding", 0), "dilation": a.get("dilation", 1)}


def pool_geometry(in_shape: tuple, out_shape: tuple, params: dict) -> dict:
    """window and valid_taps of a pool (padding excluded: the window is clipped to the input)."""
    sp_in, sp_out = tuple(in_shape[2:]), tuple(out_shape[2:]) if len(out_shape) > 2 else ()
    n = len(sp_in)
    if not sp_in:
        return {"window": 1, "valid_taps": 1, "kernel_h": 1, "row_taps": 1, "valid_rows": 1}
    if params.get("kernel") is not None:
        g = conv_geometry(in_shape, out_shape, params["kernel"], params["stride"], params["padding"],
                           params.get("dilation", 1))
        return g
    if len(sp_out) != n:  # mean over dims without keepdim, or global pooling to a vector
        sp_out = (1,) * n if "mean_dims" not in params else \
            tuple(1 if i + 2 in params["mean_dims"] else sp_in[i] for i in range(n))
    if n == 1:  # 1-d: H=1, W=L on the firmware (as in conv_geometry)
        sp_in, sp_out, n = (1, *sp_in), (1, *sp_out), 2
    window, taps, row_taps, kernel_h, valid_rows = 1, 1, 1, 1, 1
    for i in range(n):  # adaptive (and mean) windows: [floor(o*in/out), ceil((o+1)*in/out))
        a, b = sp_in[i], sp_out[i]
        sizes = [-((-(o + 1) * a) // b) - (o * a) // b for o in range(b)]
        window *= max(sizes)
        taps *= sum(sizes)
        row_taps *= sum(sizes) if i == 0 else b * max(sizes)
        valid_rows *= sum(sizes) if i == 0 else b
        kernel_h = max(sizes) if i == 0 else kernel_h
    return {"window": window, "valid_taps": taps, "kernel_h": kernel_h, "row_taps": row_taps, "valid_rows": valid_rows}


def hwc_shape(shape: tuple) -> tuple:
    """A batch-1 PyTorch shape (1, C[, H[, W]]) -> the firmware's (H, W, C)."""
    shape = tuple(int(v) for v in shape[1:])
    if len(shape) == 1:
        return 1, 1, shape[0]
    if len(shape) == 2:
        return 1, shape[1], shape[0]
    if len(shape) == 3:
        return shape[1], shape[2], shape[0]
    raise QuantizationError(f"tensor of shape {shape} has more than 2 spatial dims")


def _pair(v) -> tuple[int, int]:
    if isinstance(v, numbers.Integral):   # int or a numpy integer (as quantize.reference._pair)
        return int(v), int(v)
    a, b = v
    return int(a), int(b)


def _pool_geometry(graph: ResourceGraph, gm_modules: dict, op: Op, in_hwc: tuple, out_hwc: tuple) -> tuple:
    """(kernel, stride, pads (t, b, l, r)) of a traced pooling op, as the quantiser writes its LayerSpec."""
    import torch.nn as nn
    node = next(n for n in graph.gm.graph.nodes if n.name == op.nodes[0])
    if node.op == "call_module":
        m = gm_modules[node.target]
        if isinstance(m, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.AdaptiveAvgPool1d, nn.AdaptiveMaxPool1d)):
            k = s = None
        else:
            k, s, p = m.kernel_size, m.stride, m.padding
            if isinstance(m, (nn.AvgPool2d, nn.AvgPool1d)) and p and getattr(m, "count_include_pad", True):
                pass  # the firmware clips windows (count_include_pad=False); the difference is at the borders
            if getattr(m, "ceil_mode", False):
                raise UnsupportedOnBoardError(f"pooling {op.label!r} with ceil_mode=True is not supported on the board")
            if getattr(m, "dilation", 1) not in (1, (1, 1)):
                raise UnsupportedOnBoardError(f"pooling {op.label!r} with dilation is not supported on the board")
    else:
        args = list(node.args[1:]) + [None] * 3
        kw = node.kwargs
        k = kw.get("kernel_size", args[0])
        if "adaptive" in getattr(node.target, "__name__", ""):
            k = s = None
        else:
            s = kw.get("stride", args[1]) or k
            p = kw.get("padding", args[2] if args[2] is not None else 0)
    if k is None:  # adaptive: uniform windows only
        (h, w, _), (oh, ow, _) = in_hwc, out_hwc
        if h % oh or w % ow:
            raise UnsupportedOnBoardError(f"adaptive pooling {op.label!r} from {h}x{w} to {oh}x{ow} has uneven windows")
        k, s, p = (h // oh, w // ow), (h // oh, w // ow), 0
    k, s, p = ((v[0] if isinstance(v, (tuple, list)) and len(v) == 1 else v) for v in (k, s, p))  # AvgPool1d: (k,)
    kk, ss = _pair(k), _pair(s if s is not None else k)
    pp = _pair(p) if not isinstance(p, str) else (0, 0)
    if len(graph.buffers[op.inputs[0]].shape) == 3:  # 1-d: (1, L) windows
        kk, ss, pp = (1, kk[0]), (1, ss[0]), (0, pp[0])
    return kk, ss, (pp[0], pp[0], pp[1], pp[1])


__all__ = ["axis_taps", "conv_geometry", "pool_geometry", "module_pool_params", "function_pool_params", "hwc_shape"]
