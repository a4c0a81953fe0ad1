"""The TFLite Micro runtime's terms of the resource models (runtime="tflm"), as functions of the graph.

A network deployed with TFLM (`lightning_mcuprune.deploy`) needs, beyond the planned activations:
* SRAM: the arena's persistent tail (a TfLiteEvalTensor per tensor, a node struct per op, kernel op data,
  2 x int32 per output channel of a conv/dense for the requantisation), each planned buffer rounded up to
  16 bytes, PAD ops' padded copies where PyTorch's padding is not TFLite's SAME, MEAN's int32 scratch, the
  intermediate int8 tensor (op output size) of a lookup table fused after an op and its op's node and data; the
  host 64-bit sizes (what the tflite-micro check measures, an upper bound for a 32-bit Cortex-M);
* flash: the .tflite bytes, exactly: `model_flash_bytes` lays the model out with the writer's own emitter
  (`resources.tflite_layout.layout`: `deploy.writer.to_model` is this layout with its numbers filled in, so the
  same tensors, names, shapes, quantisation vectors, ops, options and arena-plan metadata, in the same order) and
  serialises it with the writer's serialiser (`TFLiteModel.to_bytes`), weights and biases as zeros, at the
  channel counts asked; plus TFLM's code (an ESTIMATE: 40 KiB + 3 KiB per distinct kernel). The gradient in the
  channel counts: int8 weights, and per output channel of a conv/dense an int32 bias and the float32 scale and
  int64 zero point of weights and bias (28 B); the per-op constants are the op's own bytes of the file at the
  dense counts (its tables, tensors, names, buffers and their 16-byte alignment, `op_flash_split`).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional, Sequence

import torch

from lightning_mcuprune.resources.tflite_layout import LUT_BUILTINS, _padding_mode, layout, window_geometry
from lightning_mcuprune.resources.tflm_sizes import (SIZES, _align, best_plan, greedy_plan, mean_extra,
                                                     runtime_flash_bytes)

if TYPE_CHECKING:
    from lightning_mcuprune.graph.types import Op, ResourceGraph
    from lightning_mcuprune.resources.model import Counts, ResourceModel

#: .tflite bytes per output channel of a weighted op: int32 bias + weight and bias scales (float32) and
#: zero points (int64)
TFLITE_BYTES_PER_CHANNEL = 28
_CODES = {"conv2d": "CONV_2D", "pointwise_conv2d": "CONV_2D", "depthwise_conv2d": "DEPTHWISE_CONV_2D",
          "dense": "FULLY_CONNECTED", "max_pool": "MAX_POOL_2D", "avg_pool": "AVERAGE_POOL_2D",
          "global_avg_pool": "MEAN", "add": "ADD", "concat": "CONCATENATION", "mul": "MUL"}


def fused_table_code(op: Op) -> Optional[str]:
    """The TFLite builtin written after `op` for its fused lookup-table activation (LOGISTIC, HARD_SWISH, TANH),
    with an intermediate int8 tensor of the op's output size; None if it has none."""
    if op.type == "activation":
        return None
    return LUT_BUILTINS.get(op.activation)


def op_code(op: Op) -> str:
    """The TFLite builtin the writer writes for a resource-model op (a standalone table: its activation's)."""
    if op.type == "activation":
        return LUT_BUILTINS.get(op.activation, "LOGISTIC")
    return _CODES.get(op.type, op.type)


def pad_geometry(graph: ResourceGraph, op: Op, mods: Optional[dict] = None) -> Optional[tuple[int, int]]:
    """(padded H, padded W) if TFLite needs a PAD op before `op` (PyTorch padding that is not SAME/VALID), else None."""
    geo = window_geometry(graph, op, mods)
    if geo is None:
        return None
    in_hw, out_hw, k, st, pads = geo
    if _padding_mode(in_hw, out_hw, k, st, pads) is not None:
        return None
    t, b, l, r = pads
    return in_hw[0] + t + b, in_hw[1] + l + r


def _weighted_counts(rm, n):
    """(output channels, int8 weight bytes) per op at integer counts n (rounded), for the writer's layout."""
    with torch.no_grad():
        n = torch.as_tensor(n, dtype=torch.float64)
        m, lin, lout = rm._linear(n)
        weights = (m["wcoef"] * lin * lout).round().long().tolist()
        lout = lout.round().long().tolist()
    return lout, weights


def model_flash_bytes(rm: ResourceModel, n: Counts, order: Sequence[int]) -> float:
    """The .tflite bytes of the exported network at integer counts n, ops in `order`, exactly: the writer's
    layout at these counts (with the embedded arena plan, export_tflite's default), serialised."""
    lout, weights = _weighted_counts(rm, n)
    key = (tuple(order), tuple(lout), tuple(weights))
    cache = rm.__dict__.setdefault("_tflite_bytes_cache", {})
    if key not in cache:
        if len(cache) > 256:
            cache.clear()
        cache[key] = len(layout(rm.graph, order, lout, weights).to_bytes())
    return float(cache[key])


def op_flash_split(graph: ResourceGraph, order: Optional[Sequence[int]] = None) -> tuple[int, list, list]:
    """(file bytes, bytes per graph op, the channel-linear part of them) of the written model at the graph's
    counts: each op's share is what writing it adds (its operator tables, the tensors it adds with their names,
    shapes, quantisation, buffers, alignment, and their entries in the tensor, buffer, operator and arena-plan
    vectors); the rest is the file's fixed part."""
    model = layout(graph, order)
    spans: dict = {}
    total = len(model.to_bytes(spans))
    per_op, linear = [0] * len(graph.ops), [0] * len(graph.ops)
    k = 0
    for t, (tensor, owner) in enumerate(zip(model.tensors, model.op_of_tensor)):
        size = spans["tensors"][t] + 8                  # + its tensors-vector and arena-plan entries
        if tensor.data is not None:
            size += spans["buffers"][k] + 4             # + its buffers-vector entry
            k += 1
            if tensor.role[:1] == ("weights",) and owner >= 0:   # int8 weights + 28 B per output channel
                linear[owner] += tensor.data + TFLITE_BYTES_PER_CHANNEL * len(tensor.scale)
        if owner >= 0:
            per_op[owner] += size
    for j, owner in enumerate(model.op_of_op):
        per_op[owner] += spans["ops"][j] + 4            # + its operators-vector entry
    return total, per_op, linear


def kernel_codes(graph: ResourceGraph) -> set:
    """The TFLite builtins the written model uses (PAD for a pad before a conv, PADV2 before a max pool, ...)."""
    return set(layout(graph, offline_plan=False).op_codes)


def tflm_terms(graph: ResourceGraph, build: str = "host") -> dict:
    """Constants and per-op vectors of the TFLM terms (see module docstring). Tensors float64."""
    s = SIZES[build]
    ops = graph.ops
    O = len(ops)
    scratch = torch.zeros(O, 4, dtype=torch.float64)   # per SCRATCH_FEATURES: patch, cin, cout, const
    tail_lout = torch.zeros(O, dtype=torch.float64)
    n_tensors, n_ops, tail = len(graph.buffers), O, float(s["base"] + s["io_tensors"] + s["margin"])
    total, per_op, linear = op_flash_split(graph)   # the file at the dense counts, split by op
    op_flash = torch.tensor([float(p - q) for p, q in zip(per_op, linear)], dtype=torch.float64).reshape(O)
    fixed_flash = float(total - sum(per_op))
    for i, op in enumerate(ops):
        code = op_code(op)
        tail += s["op"].get(code, 110)
        post = fused_table_code(op)
        if post is not None:                     # the intermediate tensor lives while the op and the table run
            n_tensors += 1
            n_ops += 1
            tail += s["op"][post]
        if op.type in ("conv2d", "pointwise_conv2d", "depthwise_conv2d", "dense"):
            n_tensors += 2
            tail_lout[i] = 8.0
            tail += 2 * 15                       # two 16-byte aligned arrays
        if op.type == "global_avg_pool":         # axis tensor; int32 sums + two small int arrays
            n_tensors += 1
            scratch[i, 2] += 4.0
            scratch[i, 3] += 32.0 + 15
        geo = pad_geometry(graph, op)
        if geo is not None:                      # the padded copy lives while the pad and the op run
            n_tensors += 3 if op.type == "max_pool" else 2
            n_ops += 1
            tail += s["op"]["PAD"]
            scratch[i, 1] += geo[0] * geo[1]
        if post is not None:                     # the intermediate: output channels x output H x W bytes
            shape = graph.buffers[op.output].shape
            scratch[i, 2] += float(shape[2] * shape[3]) if len(shape) == 4 else 1.0
    tail += s["eval_tensor"] * n_tensors + s["node"] * n_ops
    tail += mean_extra(s, sum(op.type == "global_avg_pool" for op in ops))
    return dict(scratch=scratch, tail_const=tail, tail_lout=tail_lout, op_flash=op_flash,
                model_fixed_flash=fixed_flash, runtime_flash=float(runtime_flash_bytes(kernel_codes(graph))),
                temp_floor=float(s["prepare_temp"] + 3 * 16), align_slack=15.0)


__all__ = ["tflm_terms", "pad_geometry", "TFLITE_BYTES_PER_CHANNEL"]


def greedy_plan_head(bufs: list) -> int:
    """The arena head (bytes) TFLM's greedy planner gives `bufs` ((size, first step, last step) each)."""
    return greedy_plan(bufs)[1]


class TFLMArena:
    """TFLM's arena at any channel counts, planned exactly as TFLM plans the exported model (the same buffers,
    lifetimes and greedy planner as `deploy.arena.predict_arena`), from the graph and an execution order."""

    def __init__(self, rm: ResourceModel, order: Sequence[int], build: str = "host", offline: bool = True) -> None:
        self.offline = offline   # export_tflite embeds our plan where it beats TFLM's greedy one (offline_plan="auto")
        graph = rm.graph
        self.s = SIZES[build]
        self.rm = rm
        bidx = {b: i for i, b in enumerate(rm.buffer_names)}
        self.items = []          # (kind, key): ("buf", buffer index) | ("pad", op index, padded hw)
        first, last = {}, {}
        t = 0
        start = {}
        self.items.append(("buf", bidx[graph.inputs[0]], 0))
        first[0] = 0
        self.mean_ops = []
        for i in order:
            op = graph.ops[i]
            geo = pad_geometry(graph, op)
            start[i] = t
            if geo is not None:
                self.items.append(("pad", i, geo[0] * geo[1]))
                k = len(self.items) - 1
                first[k], last[k] = t, t + 1
                t += 1
            self.items.append(("buf", bidx[op.output], 0))
            k = len(self.items) - 1
            if fused_table_code(op) is not None:   # the op writes "<op>_pre" (a tensor after the output, as the
                self.items.append(("pre", bidx[op.output], 0))   # writer adds it), the table reads it a step later
                first[k + 1], last[k + 1] = t, t + 1
                t += 1
            first[k] = t
            if op.type == "global_avg_pool":
                self.mean_ops.append((i, t))
            t += 1
        self.steps = t
        pos = {it[1]: k for k, it in enumerate(self.items) if it[0] == "buf"}
        idx = {op.name: j for j, op in enumerate(graph.ops)}
        for name, b in graph.buffers.items():
            k = pos.get(bidx[name])
            if k is None:
                continue
            ends = [start[idx[c]] + (0 if pad_geometry(graph, graph.ops[idx[c]]) is None else 0) for c in b.consumers]
            last[k] = max([first[k]] + ends)
            if b.is_output:
                last[k] = t - 1
        self.first, self.last = first, last
        self.pads = {i: pad_geometry(graph, graph.ops[i]) for i in order}

    def predict(self, n: Counts) -> float:
        """The arena (bytes) at channel counts n: planned head (or Prepare/planner temporaries) + tail."""
        rm, s = self.rm, self.s
        with torch.no_grad():
            n = torch.as_tensor(n, dtype=torch.float64)
            sizes = rm.buffer_bytes(n).tolist()
            m, lin, lout = rm._linear(n)
            cin = (m["A_cin"] @ n).tolist()
            lout = lout.tolist()
        bufs = []
        for k, it in enumerate(self.items):
            size = sizes[it[1]] if it[0] in ("buf", "pre") else cin[it[1]] * it[2]
            bufs.append((_align(round(size)), self.first[k], self.last.get(k, self.first[k])))
        n_act = len(bufs)
        for i, t in self.mean_ops:
            bufs += [(_align(4 * round(lout[i])), t, t), (16, t, t), (16, t, t)]
        head, _ = best_plan(bufs, n_act) if self.offline else (greedy_plan_head(bufs), None)
        graph = rm.graph
        n_tensors, n_ops = n_act, self.steps
        tail = s["base"] + s["io_tensors"]
        temp = 0
        tail += mean_extra(s, sum(op.type == "global_avg_pool" for op in graph.ops))
        for i, op in enumerate(graph.ops):
            tail += s["op"].get(op_code(op), 110)
            if fused_table_code(op) is not None:
                tail += s["op"][fused_table_code(op)]
            c = round(lout[i])
            zp = (4 + 4 * c + 7) // 8 * 8
            if op.type in ("conv2d", "pointwise_conv2d", "depthwise_conv2d", "dense"):
                n_tensors += 2
                if op.type != "dense" or c > 1:
                    tail += 2 * _align(4 * c)
                temp = max(temp, (s["fc_prepare_temp"] + 2 * zp if c > 1 else s["per_tensor_fc_temp"])
                           if op.type == "dense" else s["prepare_temp"] + 3 * zp)
            else:
                temp = max(temp, s["prepare_temp"])
            if op.type == "global_avg_pool":
                n_tensors += 1
            if self.pads.get(i) is not None:
                n_tensors += 2
                tail += s["op"]["PAD"]
                if op.type == "max_pool":
                    n_tensors += 1
        tail += s["eval_tensor"] * n_tensors + s["node"] * n_ops
        temp = max(temp, s["allocation_info"] * (n_tensors + len(bufs) - n_act) + s["planner_per_buffer"] * len(bufs))
        return float(max(head, _align(temp)) + _align(tail + s["margin"]))
