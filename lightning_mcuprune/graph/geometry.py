"""Geometry of convolution and pooling windows: kernel taps inside the input, window sizes, rows.

Pure integer arithmetic on shapes, shared by the tracer (latency features of traced ops) and the
calibration design (features of firmware layers).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

    import torch

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
    if n == 1:  # 1-d: the firmware runs (C, L) as H=1, W=L with a 1xK kernel (quantize.ptq.hwc_shape)
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


__all__ = ["axis_taps", "conv_geometry", "pool_geometry", "module_pool_params", "function_pool_params"]
