"""TFLite Micro's tensor arena for a written model: planned activations (head) + persistent data (tail).

* head: TFLM's GreedyMemoryPlanner, replayed: every activation tensor (and kernel scratch buffer) with its
  lifetime in the flatbuffer's op order, sizes rounded up to 16 bytes, placed largest first at the lowest
  offset that does not overlap a buffer alive at the same time. The same bytes on a host and a Cortex-M.
  A lookup table fused after an op (written as LOGISTIC / HARD_SWISH / TANH after it) adds its intermediate
  int8 tensor "<op>_pre", alive from the op to the table, like any other activation.
* tail: what TFLM keeps for the whole run: a TfLiteEvalTensor per tensor, a node-and-registration struct
  per op, persistent TfLiteTensors (with quantisation) for the input and output, each kernel's op data and
  per-channel output multipliers and shifts (2 x 4 bytes per channel, 16-byte aligned), and the
  allocator's own objects. Two sets of sizes:
    - "host": the 64-bit host build that `tflite-micro` runs (the check); constants measured with its
      RecordingMicroAllocator on single-op and zoo models (residuals within +-9 bytes, hence the margin);
    - "cortex-m": a 32-bit Cortex-M build (what the board needs): the same planned head, the struct sizes
      halved where they are pointers. An ESTIMATE: no 32-bit TFLM build has been measured here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from lightning_mcuprune.deploy.writer import TFLiteModel

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


@dataclass
class ArenaPrediction:
    """Predicted TFLM arena (bytes). `build`: "host" (64-bit, checkable here) or "cortex-m" (32-bit, estimate)."""

    head: int
    tail: int
    build: str

    @property
    def total(self) -> int:
        return self.head + self.tail


def buffers(model: TFLiteModel) -> list:
    """(size, first op, last op) of every planned buffer in op order: activation tensors, then scratch."""
    first, last = {}, {}
    n = len(model.ops)
    for t in model.inputs:
        first[t] = 0
    for i, op in enumerate(model.ops):
        for t in op.inputs:
            if model.tensors[t].data is None:
                first.setdefault(t, i)
                last[t] = i
        for t in op.outputs:
            first.setdefault(t, i)
            last[t] = max(last.get(t, i), i)
    for t in model.outputs:
        last[t] = n - 1
    out = []
    for t in sorted(first):
        size = 1
        for d in model.tensors[t].shape:
            size *= int(d)
        out.append((_align(size), first[t], last.get(t, first[t])))
    for i, op in enumerate(model.ops):   # kernel scratch buffers of TFLM's reference kernels
        out.extend((size, i, i) for size in scratch_sizes(model, op))
    return out


def scratch_sizes(model: TFLiteModel, op) -> list:
    """Scratch buffers (bytes, 16-byte aligned) a TFLM reference kernel requests at Prepare."""
    if op.code == "MEAN":   # int32 sums per output element, then input-rank and axis-count int arrays
        outs = 1
        for d in model.tensors[op.outputs[0]].shape:
            outs *= int(d)
        rank = len(model.tensors[op.inputs[0]].shape)
        axes = len(model.tensors[op.inputs[1]].shape and range(model.tensors[op.inputs[1]].shape[0]))
        return [_align(4 * outs), _align(4 * rank), _align(4 * axes)]
    return []


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


def first_fit_plan(bufs: list, key) -> tuple[list, int]:
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


def offline_plan(model: TFLiteModel) -> Optional[list]:
    """An arena plan for the activation tensors that needs less than TFLM's own greedy plan, as the per-tensor
    offsets of TFLM's OfflineMemoryAllocation metadata (-1: planned online); None if none is better."""
    acts = sorted(model.activation_tensors())
    _, offsets = best_plan(buffers(model), len(acts))
    if offsets is None:
        return None
    plan = [-1] * len(model.tensors)
    for t, off in zip(acts, offsets):
        plan[t] = off
    return plan


def mean_extra(s: dict, n_mean: int) -> int:
    """Tail bytes beyond the per-op figure for every MEAN after the first (squeeze-excitation nets have one per
    block; the per-op figure was fitted on nets with one): measured on the host build, 24-40 B each."""
    return s["extra_mean"] * max(0, n_mean - 1)


def predict_arena(model: TFLiteModel, build: str = "host") -> ArenaPrediction:
    """The arena TFLM needs for `model` (its ops in flatbuffer order), head planned + tail estimated."""
    if build not in SIZES:
        raise ValueError(f"build must be one of {', '.join(SIZES)}, not {build!r}")
    s = SIZES[build]
    bufs = buffers(model)
    fixed = None
    if model.offline_plan is not None:
        acts = sorted(model.activation_tensors())
        fixed = {k: model.offline_plan[t] for k, t in enumerate(acts) if model.offline_plan[t] >= 0}
    _, head = greedy_plan(bufs, fixed)
    # Before the plan exists the head region holds temporaries: each kernel's Prepare (TfLiteTensor structs and
    # per-channel zero-point arrays, ~3 x 8-byte aligned (4 + 4 C) for a conv), then the planner's records
    # (an AllocationInfo per tensor and scratch buffer, a planner entry per planned buffer). For tiny models
    # that, not the plan, sets the arena. Measured on the host build; upper bounds within ~16 bytes.
    n_scratch = len(bufs) - len(model.activation_tensors())
    temp = s["allocation_info"] * (len(model.tensors) + n_scratch) + s["planner_per_buffer"] * len(bufs)
    for op in model.ops:
        c = int(model.tensors[op.outputs[0]].shape[-1])
        zp = (4 + 4 * c + 7) // 8 * 8
        if op.code == "FULLY_CONNECTED":
            temp = max(temp, s["fc_prepare_temp"] + 2 * zp if c > 1 else s["per_tensor_fc_temp"])
        elif op.code in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            temp = max(temp, s["prepare_temp"] + 3 * zp)
        else:
            temp = max(temp, s["prepare_temp"])
    head = max(head, _align(temp))
    tail = s["base"] + s["io_tensors"] + s["eval_tensor"] * len(model.tensors) + s["node"] * len(model.ops)
    tail += mean_extra(s, sum(op.code == "MEAN" for op in model.ops))
    for op in model.ops:
        tail += s["op"].get(op.code, 110)
        if op.code in PER_CHANNEL_OPS:
            c = int(model.tensors[op.outputs[0]].shape[-1])
            if op.code != "FULLY_CONNECTED" or c > 1:
                tail += 2 * _align(4 * c)
    return ArenaPrediction(head, _align(tail + s["margin"]), build)


__all__ = ["predict_arena", "greedy_plan", "buffers", "ArenaPrediction", "SIZES"]
