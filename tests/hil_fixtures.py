"""Shared helpers for the HIL tests: tool checks (skip locally, fail under CI=true), emulated-board fixtures,
random layer configurations."""
from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from lightning_mcuprune.quantize.layer import LayerSpec
from lightning_mcuprune.quantize.reference import quantize_multiplier

CI = os.environ.get("CI", "").lower() == "true"
TOOLS = {"qemu-system-arm": "qemu-system-arm", "arm-none-eabi-gcc": "gcc-arm-none-eabi", "make": "make"}


def require_hil_tools() -> None:
    """Skip (locally) or fail (CI=true) when QEMU or the Arm toolchain is missing."""
    missing = [f"{tool} (Debian package {pkg})" for tool, pkg in TOOLS.items() if not shutil.which(tool)]
    if missing:
        msg = "HIL tests need " + ", ".join(missing)
        if CI:
            pytest.fail(msg + " -- under CI=true these must be installed")
        pytest.skip(msg)


def emulated_board(name: str, **kw):
    """Generator for a module-scoped fixture: one QEMU per board per test module."""
    require_hil_tools()
    from lightning_mcuprune.hil.emulated import EmulatedBoard
    with EmulatedBoard(name, **kw) as board:
        yield board


# ---- random layer configurations ----
def _act_range(rng, out_zp):
    r = rng.integers(4)
    if r == 0:
        return -128, 127
    if r == 1:
        return int(out_zp), 127                          # ReLU
    if r == 2:
        return int(out_zp), int(min(127, out_zp + rng.integers(40, 160)))  # ReLU6-like
    a = int(rng.integers(-128, 0))
    return a, int(rng.integers(a + 60, 128)) if a + 60 < 128 else 127


def _window(rng, size_max, k_max, s_max):
    """(in, k, stride, pad_a, pad_b) along one axis with at least one output."""
    while True:
        n = int(rng.integers(1, size_max + 1))
        k = int(rng.integers(1, k_max + 1))
        s = int(rng.integers(1, s_max + 1))
        pa, pb = (int(rng.integers(0, k)) for _ in range(2))
        if n + pa + pb >= k:
            return n, k, s, pa, pb


def _requant_params(rng, oc, acc_scale):
    """Per-channel multipliers/shifts mapping accumulators of spread ~acc_scale onto int8 (std ~40), plus extremes."""
    mult = np.zeros(oc, dtype=np.int32)
    shift = np.zeros(oc, dtype=np.int32)
    for c in range(oc):
        mult[c], shift[c] = quantize_multiplier(40.0 / max(acc_scale, 1.0) * 2.0 ** rng.uniform(-1.5, 1.5))
    if rng.random() < 0.1:
        shift[rng.integers(oc)] = rng.choice([-31, 1, 2])
    if rng.random() < 0.1:
        mult[rng.integers(oc)] = rng.choice([0, (1 << 31) - 1])
    return mult, shift


def random_layer(op: str, rng: np.random.Generator, upload: bool = False) -> tuple[LayerSpec, dict]:
    """A random valid layer of op type `op` (small shapes, random offsets, zero points, activations).

    Returns (spec, data) where data holds explicit inputs to upload (x, x2) when upload=True; otherwise
    the board fills weights and inputs from a seed.
    """
    in_zp, out_zp = (int(v) for v in rng.integers(-128, 128, 2))
    act_min, act_max = _act_range(rng, out_zp)
    common = dict(input_zp=in_zp, output_zp=out_zp, act_min=act_min, act_max=act_max,
                  input_offset=int(rng.integers(0, 512)), weights_offset=int(rng.integers(0, 256)))
    kw: dict = {}
    if op in ("conv2d", "depthwise_conv2d", "max_pool", "avg_pool"):
        h, kh, sh, pt, pb = _window(rng, 10, 5, 3)
        w, kw_, sw, pl, pr = _window(rng, 10, 5, 3)
        c = int(rng.integers(1, 9))
        kw = dict(input_shape=(h, w, c), kernel=(kh, kw_), stride=(sh, sw), padding=(pt, pb, pl, pr))
        if op == "conv2d":
            kw["out_channels"] = int(rng.integers(1, 9))
            acc = np.sqrt(kh * kw_ * c) * 74 * np.hypot(74, in_zp)
        elif op == "depthwise_conv2d":
            kw["depth_multiplier"] = int(rng.integers(1, 4))
            acc = np.sqrt(kh * kw_) * 74 * np.hypot(74, in_zp)
    elif op == "pointwise_conv2d":
        kw = dict(input_shape=(int(rng.integers(1, 9)), int(rng.integers(1, 9)), int(rng.integers(1, 17))),
                  out_channels=int(rng.integers(1, 17)), stride=(int(rng.integers(1, 3)), int(rng.integers(1, 3))))
        acc = np.sqrt(kw["input_shape"][2]) * 74 * np.hypot(74, in_zp)
    elif op == "dense":
        kw = dict(input_shape=(int(rng.integers(1, 3)), int(rng.integers(1, 3)), int(rng.integers(1, 33))),
                  out_channels=int(rng.integers(1, 17)))
        acc = np.sqrt(np.prod(kw["input_shape"])) * 74 * np.hypot(74, in_zp)
    elif op == "global_avg_pool":
        kw = dict(input_shape=(int(rng.integers(1, 11)), int(rng.integers(1, 11)), int(rng.integers(1, 17))))
        hw = np.prod(kw["input_shape"][:2])
        acc = hw * abs(in_zp) + np.sqrt(hw) * 74
    elif op == "add":
        kw = dict(input_shape=(int(rng.integers(1, 9)), int(rng.integers(1, 9)), int(rng.integers(1, 9))),
                  input2_zp=int(rng.integers(-128, 128)))
    elif op == "mul":
        kw = dict(input_shape=(int(rng.integers(1, 9)), int(rng.integers(1, 9)), int(rng.integers(1, 17))),
                  input2_zp=int(rng.integers(-128, 128)), broadcast=bool(rng.random() < 0.5))
    elif op == "lut":
        kw = dict(input_shape=(int(rng.integers(1, 9)), int(rng.integers(1, 9)), int(rng.integers(1, 17))),
                  function="random")
        if rng.random() < 0.3:   # in place, as the int8 executor runs a fused activation
            common["output_offset"] = common["input_offset"]
    spec = LayerSpec(op, **kw, **common)
    oc = spec.output_shape[2]
    if op in ("conv2d", "depthwise_conv2d", "pointwise_conv2d", "dense"):
        spec.mult, spec.shift = _requant_params(rng, oc, acc)
        spec.bias = rng.integers(-4096, 4097, oc).astype(np.int32)
    elif op == "global_avg_pool":
        spec.mult, spec.shift = _requant_params(rng, oc, acc)
    elif op == "add":
        m = rng.integers(1 << 30, 1 << 31, 3)
        spec.add_params = (20, int(m[0]), int(rng.integers(-3, 0)), int(m[1]), int(rng.integers(-3, 0)),
                           int(m[2]), int(rng.integers(-20, -17)))
    elif op == "mul":   # products of up to 256 x 255 onto int8, and extremes
        spec.mult, spec.shift = quantize_multiplier(40.0 / (74 * 74) * 2.0 ** rng.uniform(-3, 3))
        if rng.random() < 0.1:
            spec.shift = int(rng.choice([-31, 1]))
    data: dict = {}
    if upload:
        def tensor(shape):
            v = rng.integers(-128, 128, shape)
            extreme = rng.random(shape) < 0.2
            v[extreme] = rng.choice([-128, 127], int(extreme.sum()))
            return v.astype(np.int8)
        data["x"] = tensor(spec.input_shape)
        if op in ("add", "mul"):
            data["x2"] = tensor(spec.input2_shape)
        if spec.weights_shape:
            spec.weights = tensor(spec.weights_shape)
    return spec, data


def check_layer(board, spec: LayerSpec, data: dict, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Run spec on the board and return (board output, host reference output)."""
    board.run_layer(spec, x=data.get("x"), x2=data.get("x2"), seed=seed)
    got = board.read_output(spec)
    inp = board.last_inputs
    want = spec.reference(inp["x"], inp["x2"], weights=inp["weights"])
    return got, want.reshape(spec.output_shape)


def big_bias_conv(size: int = 6):
    """A conv (then a linear) whose channel 1 has tiny weights and a large bias: at scale s_in * s_w its int32
    bias is ~2e9, beyond what the accumulator can hold with the products (what near-dead channels do)."""
    import torch
    import torch.nn as nn
    torch.manual_seed(0)
    o = size - 2
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(2 * o * o, 3)).eval()
    with torch.no_grad():
        net[0].weight[1].uniform_(-1e-4, 1e-4)
        net[0].bias[1] = 50.0
    return net
