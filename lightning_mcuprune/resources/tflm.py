"""The TFLite Micro runtime's terms of the resource models (runtime="tflm"), as functions of the graph.

A network deployed with TFLM (`lightning_mcuprune.deploy`) needs, beyond the planned activations:
* SRAM: the arena's persistent tail (a TfLiteEvalTensor per tensor, a node struct per op, kernel op data,
  2 x int32 per output channel of a conv/dense for the requantisation), each planned buffer rounded up to
  16 bytes, PAD ops' padded copies where PyTorch's padding is not TFLite's SAME, MEAN's int32 scratch, the
  intermediate int8 tensor (op output size) of a lookup table fused after an op and its op's node and data; the
  host 64-bit sizes (what the tflite-micro check measures, an upper bound for a 32-bit Cortex-M);
* flash: the .tflite bytes (int8 weights, int32 bias, per-channel scale and zero point of weights and bias
  (4 + 8 bytes each), and a flatbuffer overhead per op fitted on 77 written models, zoo nets at several widths
  (odd channel counts, whose buffers need alignment padding) and single-op models: within 0.3 % of the file
  for every model above 5 KB, within 2.4 % for single-op models of ~1 KB), plus TFLM's code (an ESTIMATE: 40 KiB + 3 KiB per distinct kernel).
"""
from __future__ import annotations

import torch

#: .tflite bytes per output channel of a weighted op: int32 bias + weight and bias scales (float32) and
#: zero points (int64)
TFLITE_BYTES_PER_CHANNEL = 28
#: .tflite flatbuffer bytes per op (tables, tensors, shapes, names, buffer alignment), fitted on measurements
TFLITE_OP_BYTES = {"conv2d": 357, "pointwise_conv2d": 358, "depthwise_conv2d": 405, "dense": 322, "max_pool": 202,
                   "avg_pool": 221, "global_avg_pool": 298, "add": 197, "concat": 213, "mul": 200,
                   "activation": 150}
TFLITE_FIXED_BYTES = 364
TFLITE_PAD_OP_BYTES = 309
#: the OfflineMemoryAllocation metadata beyond its 4 bytes per tensor (header, metadata table, name), measured
OFFLINE_PLAN_BYTES = 116
#: for the exact figure at integer counts (`model_flash_bytes`): flatbuffer bytes per op and fixed outside the
#: buffer section (which is computed exactly), fitted on 87 written models (max error 107 B)
TFLITE_OP_TABLE_BYTES = {"conv2d": 269, "pointwise_conv2d": 262, "depthwise_conv2d": 322, "dense": 249,
                         "max_pool": 194, "avg_pool": 211, "global_avg_pool": 256, "add": 156, "concat": 205, "mul": 160,
                         "activation": 110}
TFLITE_TABLE_FIXED_BYTES = 445
TFLITE_PAD_TABLE_BYTES = 218
QUANT_BYTES_PER_CHANNEL = 24   # weight and bias scales (float32) and zero points (int64)
_CODES = {"conv2d": "CONV_2D", "pointwise_conv2d": "CONV_2D", "depthwise_conv2d": "DEPTHWISE_CONV_2D",
          "dense": "FULLY_CONNECTED", "max_pool": "MAX_POOL_2D", "avg_pool": "AVERAGE_POOL_2D",
          "global_avg_pool": "MEAN", "add": "ADD", "concat": "CONCATENATION", "mul": "MUL"}


def fused_table_code(op):
    """The TFLite builtin written after `op` for its fused lookup-table activation (LOGISTIC, HARD_SWISH, TANH),
    with an intermediate int8 tensor of the op's output size; None if it has none."""
    from lightning_mcuprune.deploy.writer import LUT_BUILTINS
    if op.type == "activation":
        return None
    return LUT_BUILTINS.get(op.activation)


def op_code(op) -> str:
    """The TFLite builtin the writer writes for a resource-model op (a standalone table: its activation's)."""
    from lightning_mcuprune.deploy.writer import LUT_BUILTINS
    if op.type == "activation":
        return LUT_BUILTINS.get(op.activation, "LOGISTIC")
    return _CODES.get(op.type, op.type)


def pad_geometry(graph, op):
    """(padded H, padded W) if TFLite needs a PAD op before `op` (PyTorch padding that is not SAME/VALID), else None."""
    from lightning_mcuprune.deploy.writer import _padding_mode
    from lightning_mcuprune.quantize import reference as ref
    from lightning_mcuprune.quantize.ptq import _pool_geometry, hwc_shape
    if op.type not in ("conv2d", "depthwise_conv2d", "max_pool", "avg_pool"):
        return None
    mods = dict(graph.gm.named_modules())
    in_hwc, out_hwc = hwc_shape(graph.buffers[op.inputs[0]].shape), hwc_shape(graph.buffers[op.output].shape)
    if op.type in ("max_pool", "avg_pool"):
        k, s, pads = _pool_geometry(graph, mods, op, in_hwc, out_hwc)
    else:
        m = mods[op.module]
        k, s, p = m.kernel_size, m.stride, m.padding
        if isinstance(p, str):
            return None
        if len(k) == 1:
            k, s, p = (1, k[0]), (1, s[0]), (0, p[0])
        k, s, p = ref._pair(k), ref._pair(s), ref._pair(p)
        pads = (p[0], p[0], p[1], p[1])
    if _padding_mode(in_hwc[:2], out_hwc[:2], k, s, pads) is not None:
        return None
    t, b, l, r = pads
    return in_hwc[0] + t + b, in_hwc[1] + l + r


def model_flash_bytes(rm, n, order) -> float:
    """The .tflite bytes of the exported network at integer counts n, ops in `order`: the buffer section
    exactly (data, 16-byte alignment, tables, as the writer writes it) + quantisation vectors + per-op tables."""
    from lightning_mcuprune.deploy.writer import buffer_section_bytes
    graph = rm.graph
    with torch.no_grad():
        n = torch.as_tensor(n, dtype=torch.float64)
        m, lin, lout = rm._linear(n)
        weights = (m["wcoef"] * lin * lout).tolist()
        lout = lout.tolist()
    lengths, total, n_tensors = [], float(TFLITE_TABLE_FIXED_BYTES), len(graph.buffers)
    names = list(graph.buffers)               # the writer names tensors after the graph's buffers and ops

    def string(name):                         # a flatbuffer string: length, bytes, NUL, 4-byte aligned
        return (len(name.encode()) + 1 + 4 + 3) // 4 * 4
    for i in order:
        op = graph.ops[i]
        total += TFLITE_OP_TABLE_BYTES.get(op.type, 250)
        if fused_table_code(op) is not None:
            n_tensors += 1
            names.append(f"{op.name}_pre")
            total += TFLITE_OP_TABLE_BYTES["activation"]
        if pad_geometry(graph, op) is not None:
            lengths.append(32)
            n_tensors += 2
            names += [f"{op.name}_pad", f"{op.name}_paddings"]
            total += TFLITE_PAD_TABLE_BYTES
            if op.type == "max_pool":
                lengths.append(1)
                n_tensors += 1
                names.append(f"{op.name}_pad_value")
        if op.type in ("conv2d", "pointwise_conv2d", "depthwise_conv2d", "dense"):
            c = round(lout[i])
            lengths += [round(weights[i]), 4 * c]
            total += QUANT_BYTES_PER_CHANNEL * c
            n_tensors += 2
            names += [f"{op.name}_weights", f"{op.name}_bias"]
        if op.type == "global_avg_pool":
            lengths.append(8)
            n_tensors += 1
            names.append(f"{op.name}_axis")
    total += sum(string(nm) for nm in names)
    lengths.append(4 * (3 + n_tensors))      # the embedded arena plan
    return total + buffer_section_bytes(lengths)


def kernel_codes(graph) -> set:
    codes = {op_code(op) for op in graph.ops} | {fused_table_code(op) for op in graph.ops} - {None}
    if any(pad_geometry(graph, op) for op in graph.ops):
        codes.add("PAD")
    return codes


def tflm_terms(graph, build: str = "host") -> dict:
    """Constants and per-op vectors of the TFLM terms (see module docstring). Tensors float64."""
    from lightning_mcuprune.deploy.arena import SIZES, mean_extra
    from lightning_mcuprune.deploy.export import runtime_flash_bytes
    s = SIZES[build]
    ops = graph.ops
    O = len(ops)
    scratch = torch.zeros(O, 4, dtype=torch.float64)   # per SCRATCH_FEATURES: patch, cin, cout, const
    tail_lout = torch.zeros(O, dtype=torch.float64)
    op_flash = torch.zeros(O, dtype=torch.float64)
    n_tensors, n_ops, tail = len(graph.buffers), O, float(s["base"] + s["io_tensors"] + s["margin"])
    fixed_flash = float(TFLITE_FIXED_BYTES)
    for i, op in enumerate(ops):
        op_flash[i] = TFLITE_OP_BYTES.get(op.type, 250)
        code = op_code(op)
        tail += s["op"].get(code, 110)
        post = fused_table_code(op)
        if post is not None:                     # the intermediate tensor lives while the op and the table run
            n_tensors += 1
            n_ops += 1
            tail += s["op"][post]
            op_flash[i] += TFLITE_OP_BYTES["activation"]
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
            fixed_flash += TFLITE_PAD_OP_BYTES
        if post is not None:                     # the intermediate: output channels x output H x W bytes
            shape = graph.buffers[op.output].shape
            scratch[i, 2] += float(shape[2] * shape[3]) if len(shape) == 4 else 1.0
    tail += s["eval_tensor"] * n_tensors + s["node"] * n_ops
    tail += mean_extra(s, sum(op.type == "global_avg_pool" for op in ops))
    fixed_flash += OFFLINE_PLAN_BYTES + 4 * n_tensors     # the embedded arena plan (export_tflite's default)
    return dict(scratch=scratch, tail_const=tail, tail_lout=tail_lout, op_flash=op_flash,
                model_fixed_flash=fixed_flash, runtime_flash=float(runtime_flash_bytes(kernel_codes(graph))),
                temp_floor=float(s["prepare_temp"] + 3 * 16), align_slack=15.0)


__all__ = ["tflm_terms", "pad_geometry", "TFLITE_BYTES_PER_CHANNEL"]


def greedy_plan_head(bufs) -> int:
    from lightning_mcuprune.deploy.arena import greedy_plan
    return greedy_plan(bufs)[1]


class TFLMArena:
    """TFLM's arena at any channel counts, planned exactly as TFLM plans the exported model (the same buffers,
    lifetimes and greedy planner as `deploy.arena.predict_arena`), from the graph and an execution order."""

    def __init__(self, rm, order, build: str = "host", offline: bool = True):
        from lightning_mcuprune.deploy.arena import SIZES
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

    def predict(self, n) -> float:
        """The arena (bytes) at channel counts n: planned head (or Prepare/planner temporaries) + tail."""
        from lightning_mcuprune.deploy.arena import _align, best_plan, mean_extra
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
