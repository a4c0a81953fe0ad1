"""TFLite Micro's sizes and memory planner, pure: the struct and op-data sizes of its arena tail (host 64-bit
build, measured; 32-bit Cortex-M, an ESTIMATE), its GreedyMemoryPlanner replayed, our candidate offline plans,
and the flash of its runtime code (an ESTIMATE). Shared by `lightning_mcuprune.deploy.arena` (the arena of a
written model) and `lightning_mcuprune.resources.tflm` (the arena and flash at any channel counts); see
`deploy.arena`'s docstring for what head and tail are.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Optional

ALIGN = 16
#: per-op-type op data in the tail (bytes, host 64-bit build), fitted on measurements (see module doc)
HOST_OP_BYTES = {"CONV_2D": 110, "DEPTHWISE_CONV_2D": 109, "FULLY_CONNECTED": 113, "MAX_POOL_2D": 74,
                 "AVERAGE_POOL_2D": 74, "MEAN": 67, "ADD": 73, "CONCATENATION": 82, "PAD": 54, "PADV2": 54,
                 "RESHAPE": 40, "MUL": 41, "LOGISTIC": 16, "HARD_SWISH": 32, "TANH": 16}
HOST = dict(base=529, eval_tensor=24, node=64, io_tensors=192, margin=16, op=HOST_OP_BYTES,
            allocation_info=32, planner_per_buffer=40, extra_mean=16, prepare_temp=616, fc_prepare_temp=320, per_tensor_fc_temp=352)
#: 32-bit Cortex-M (estimate): TfLiteEvalTensor 12 B, node+registration ~40 B, pointer-sized fields halved
CORTEX_M = dict(base=300, eval_tensor=12, node=40, io_tensors=112, margin=16,
                op={k: (v + 1) // 2 + 16 for k, v in HOST_OP_BYTES.items()}, allocation_info=24, planner_per_buffer=40, extra_mean=8,
                prepare_temp=400, fc_prepare_temp=220, per_tensor_fc_temp=240)
SIZES = {"host": HOST, "cortex-m": CORTEX_M}
PER_CHANNEL_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")


def _align(n: int) -> int:
    return (int(n) + ALIGN - 1) // ALIGN * ALIGN


def greedy_plan(bufs: list, fixed: Optional[dict] = None) -> tuple[list, int]:
    """TFLM's GreedyMemoryPlanner: offsets (in `bufs` order) and the planned size (bytes). `fixed`: buffer index
    -> offset of offline-planned buffers (placed first, as given; the others fill the gaps greedily)."""
    fixed = fixed or {}
    online = [i for i in range(len(bufs)) if i not in fixed]
    # TFLM fills its sort array from the back, then bubble-sorts by size (stable): ties in reverse order
    order = [i for i in range(len(bufs)) if i in fixed] + sorted(reversed(online), key=lambda i: -bufs[i][0])
    placed: list = []   # (offset, size, first, last)
    offsets = [0] * len(bufs)
    for i in order:
        size, f, l = bufs[i]
        cand = 0
        for off, sz, pf, pl in placed if i not in fixed else ():  # offset order, a new entry after equal offsets
            if pl < f or pf > l:
                continue
            if off >= cand + size:
                break
            cand = max(cand, off + sz)
        cand = fixed.get(i, cand)
        offsets[i] = cand
        at = next((k for k, p in enumerate(placed) if p[0] > cand), len(placed))
        placed.insert(at, (cand, size, f, l))
    return offsets, max((o + b[0] for o, b in zip(offsets, bufs)), default=0)


def first_fit_plan(bufs: list, key: Callable[[int], Any]) -> tuple[list, int]:
    """Place buffers one by one (in the order of `key`) at the lowest offset free over their lifetime."""
    offsets = [0] * len(bufs)
    placed: list = []
    for i in sorted(range(len(bufs)), key=key):
        size, f, l = bufs[i]
        cand = 0
        for off, sz, pf, pl in sorted(placed):
            if pl < f or pf > l:
                continue
            if off >= cand + size:
                break
            cand = max(cand, off + sz)
        offsets[i] = cand
        placed.append((cand, size, f, l))
    return offsets, max((o + b[0] for o, b in zip(offsets, bufs)), default=0)


def best_plan(bufs: list, n_act: int) -> tuple[int, Optional[list]]:
    """The least planned head over TFLM's greedy plan and our candidate plans of the first `n_act` buffers (the
    activations; the rest, kernel scratch, stay online): (head bytes, our offsets or None if TFLM's is best).
    Candidates: first fit by decreasing size x lifetime, by decreasing lifetime, and in order of first use."""
    _, best = greedy_plan(bufs)
    best_offsets = None
    keys = (lambda i: (-bufs[i][0] * (bufs[i][2] - bufs[i][1] + 1), i), lambda i: (-(bufs[i][2] - bufs[i][1]), -bufs[i][0]),
            lambda i: (bufs[i][1], -bufs[i][0]))
    for key in keys:
        offsets, _ = first_fit_plan(bufs[:n_act], key)
        _, total = greedy_plan(bufs, dict(enumerate(offsets)))
        if total < best:
            best, best_offsets = total, offsets
    return best, best_offsets


def mean_extra(s: dict, n_mean: int) -> int:
    """Tail bytes beyond the per-op figure for every MEAN after the first (squeeze-excitation nets have one per
    block; the per-op figure was fitted on nets with one): measured on the host build, 24-40 B each."""
    return s["extra_mean"] * max(0, n_mean - 1)


#: flash of the TFLM runtime code (interpreter, allocator, resolver) without kernels, Cortex-M, -Os: ESTIMATE
TFLM_RUNTIME_FLASH_BYTES = 40 * 1024
#: flash per distinct kernel (reference kernels; CMSIS-NN ones are larger): ESTIMATE
TFLM_KERNEL_FLASH_BYTES = 3 * 1024


def runtime_flash_bytes(op_codes: Iterable[str]) -> int:
    """TFLM code flash (estimate): the runtime plus one reference kernel per distinct op."""
    return TFLM_RUNTIME_FLASH_BYTES + TFLM_KERNEL_FLASH_BYTES * len(set(op_codes))


__all__ = ["SIZES", "HOST", "CORTEX_M", "greedy_plan", "first_fit_plan", "best_plan", "mean_extra",
           "runtime_flash_bytes"]
