"""The check with TensorFlow Lite Micro's own interpreter (the `tflite-micro` package, a host build of TFLM's
reference kernels): run a .tflite, compare with the host int8 executor bit for bit, and measure the arena.

`tflite-micro` is an optional extra (Linux x86-64 wheels): ``pip install "lightning-mcuprune[tflm]"``.
The host interpreter is 64-bit: its arena holds 64-bit structs (TfLiteEvalTensor, node structs, kernel
op data) that are smaller on a 32-bit Cortex-M; the planned activation buffers are the same on both.
"""
from __future__ import annotations

import contextlib
import os
import re
import tempfile
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Union

import numpy as np
from lightning_mcuprune.errors import MCUPruneError

if TYPE_CHECKING:
    import torch

    from lightning_mcuprune.quantize.ptq import QuantizedGraph

INSTALL_HINT = 'pip install "lightning-mcuprune[tflm]"  (or: pip install tflite-micro; Linux x86-64 wheels)'


class TFLMNotInstalledError(MCUPruneError, ImportError):
    """tflite-micro is missing; the message says how to install it."""


TFLMNotInstalled = TFLMNotInstalledError   # deprecated name


def _runtime():
    try:
        from tflite_micro.python.tflite_micro import runtime
    except ImportError as e:
        raise TFLMNotInstalledError(f"checking with TensorFlow Lite Micro needs the tflite-micro package ({e}); install it "
                               f"with: {INSTALL_HINT}") from None
    return runtime


@contextlib.contextmanager
def _quiet(capture: list | None = None):
    """Silence (or capture) what TFLM's C++ prints to stdout/stderr."""
    import sys
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with tempfile.TemporaryFile(mode="w+b") as f:
        try:
            os.dup2(f.fileno(), 1)
            os.dup2(f.fileno(), 2)
            yield
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            if capture is not None:
                f.seek(0)
                capture.append(f.read().decode(errors="replace"))


def interpreter(data: bytes, arena_size: int) -> Any:
    """A TFLM interpreter (tflite-micro's `runtime.Interpreter`) over `data` with a `arena_size`-byte arena (tensors
    allocated)."""
    rt = _runtime()
    with _quiet():
        return rt.Interpreter.from_bytes(bytes(data), arena_size=int(arena_size))


def _fits(data: bytes, arena_size: int, rt) -> bool:
    """Whether TFLM allocates and invokes with this arena. Probed in a forked child: some kernels' Prepare
    crashes the host interpreter (instead of returning an error) when an allocation fails."""
    pid = os.fork()
    if pid == 0:  # child: never returns
        code = 1
        try:
            with _quiet():
                it = rt.Interpreter.from_bytes(bytes(data), arena_size=int(arena_size))
                det = it.get_input_details(0)
                it.set_input(np.zeros(det["shape"], dtype=det["dtype"]), 0)
                it.invoke()
            code = 0
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


def measure_arena(data: bytes, hi: int | None = None) -> int:
    """The smallest arena_size (bytes) with which TFLM allocates the model's tensors and invokes it
    (bisection; the host, 64-bit build). Measured, not estimated."""
    rt = _runtime()
    hi = int(hi or max(1 << 16, 16 * len(data)))
    while not _fits(data, hi, rt):
        hi *= 2
        if hi > 1 << 31:
            raise RuntimeError("TFLM does not run this model with any arena up to 2 GiB")
    lo = 0
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _fits(data, mid, rt):
            hi = mid
        else:
            lo = mid
    return hi


def allocations(data: bytes, arena_size: int) -> dict:
    """TFLM's RecordingMicroAllocator report after one invoke: {'total', 'head', 'tail', <kind>: bytes used}."""
    rt = _runtime()
    out: list = []
    with _quiet(out):
        it = rt.Interpreter.from_bytes(bytes(data), arena_size=int(arena_size))
        det = it.get_input_details(0)
        it.set_input(np.zeros(det["shape"], dtype=det["dtype"]), 0)
        it.invoke()
        it.print_allocations()
    text = out[0]
    rep = {}
    for key in ("total", "head", "tail"):
        m = re.search(rf"Arena allocation {key} (\d+) bytes", text)
        if m:
            rep[key] = int(m.group(1))
    for m in re.finditer(r"'([^']+)' used (\d+) bytes with alignment overhead \(requested (\d+) bytes for (\d+)", text):
        rep[m.group(1)] = int(m.group(2))
        rep[m.group(1) + " count"] = int(m.group(4))
    return rep


def run(data: bytes, xq: np.ndarray, arena_size: int | None = None) -> np.ndarray:
    """TFLM's int8 outputs (N, features) for a batch of int8 NHWC inputs (one invoke per sample)."""
    it = interpreter(data, arena_size or max(1 << 20, 16 * len(data)))
    det = it.get_input_details(0)
    outs = []
    for x in np.asarray(xq, dtype=np.int8):
        it.set_input(x.reshape(det["shape"]), 0)
        it.invoke()
        outs.append(np.array(it.get_output(0)).reshape(-1))
    return np.stack(outs)


@dataclass
class CheckResult:
    """TFLM against the host int8 executor on N inputs, and the measured arena (host build)."""

    samples: int
    mismatched_samples: int
    max_abs_diff: int
    measured_arena_bytes: int

    @property
    def bit_exact(self) -> bool:
        return self.mismatched_samples == 0


def check(qgraph: QuantizedGraph, data: bytes, inputs: Union[torch.Tensor, np.ndarray],
          measure: bool = True) -> CheckResult:
    """Run `data` (the .tflite of `qgraph`) in TFLM on float NCHW `inputs`; compare with `qgraph.run`."""
    xq = qgraph.quantize_input(inputs)
    ours = qgraph.run(xq).reshape(len(xq), -1)
    theirs = run(data, xq)
    diff = np.abs(ours.astype(np.int32) - theirs.astype(np.int32))
    bad = int((diff.max(axis=1) > 0).sum()) if diff.size else 0
    return CheckResult(len(xq), bad, int(diff.max()) if diff.size else 0, measure_arena(data) if measure else 0)


__all__ = ["measure_arena", "allocations", "run", "check", "CheckResult", "TFLMNotInstalledError", "TFLMNotInstalled", "INSTALL_HINT",
           "interpreter"]
