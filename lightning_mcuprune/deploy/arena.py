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
from typing import TYPE_CHECKING, Optional

from lightning_mcuprune.deploy.writer import TFLiteModel
# TFLM's struct sizes and its planner (pure) live with the resource model that predicts the arena; re-exported
from lightning_mcuprune.resources.tflm_sizes import (  # noqa: F401
    ALIGN, CORTEX_M, HOST, HOST_OP_BYTES, PER_CHANNEL_OPS, SIZES, _align, best_plan, first_fit_plan, greedy_plan,
    mean_extra)

if TYPE_CHECKING:
    from lightning_mcuprune.resources.tflite_layout import TOp


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


def scratch_sizes(model: TFLiteModel, op: TOp) -> list:
    """Scratch buffers (bytes, 16-byte aligned) a TFLM reference kernel requests at Prepare."""
    if op.code == "MEAN":   # int32 sums per output element, then input-rank and axis-count int arrays
        outs = 1
        for d in model.tensors[op.outputs[0]].shape:
            outs *= int(d)
        rank = len(model.tensors[op.inputs[0]].shape)
        axes = len(model.tensors[op.inputs[1]].shape and range(model.tensors[op.inputs[1]].shape[0]))
        return [_align(4 * outs), _align(4 * rank), _align(4 * axes)]
    return []


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
