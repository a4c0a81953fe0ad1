"""Differentiable MCU resource models over per-group channel counts n (a float tensor, one entry per
channel group of a ResourceGraph).

Every quantity is a polynomial of degree <= 2 in n, evaluated with a few small matrix products:
per op, the per-filter input channels Lin = A_in @ n + b_in and the output channels Lout = A_out @ n + b_out;
then MACs = k*HW_out*Lin*Lout, weights = k*Lin*Lout, etc. For integer n the results are exact integers.

- MACs, parameters (PyTorch parameters: weights, biases, BN affine).
- Flash (bytes): int8 weights + int32 bias + per-output-channel requantisation (int32 multiplier and
  shift) per weighted op, a per-op overhead, and the runtime's fixed flash (board profile).
- Peak SRAM (bytes): int8 activations; at each op the working set is every buffer already produced and
  still needed, plus the op's output and its scratch buffer; peak = max over ops in the execution order.
  The max is differentiated by subgradient: the gradient flows through the bottleneck op only.
- Latency (cycles; ms via the board clock): per op a linear model in LATENCY_FEATURES with per-op-type
  coefficients from the board profile. An op with a fused activation other than ReLU/ReLU6 (a clamp) also
  pays an "activation" op (a lookup table run in place) over its output elements.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, Union

import torch

from lightning_mcuprune.boards import BoardProfile, load_board
from lightning_mcuprune.boards.profile import SCRATCH_FEATURES
from lightning_mcuprune.graph import ResourceGraph
from lightning_mcuprune.graph.ops import LATENCY_FEATURES, WEIGHTED_OPS
from lightning_mcuprune.graph.trace import CLAMP_ACTIVATIONS

#: Channel counts, one per channel group (graph group order): a float tensor or a sequence of numbers.
Counts = Union[torch.Tensor, Sequence[float]]

WEIGHTED = WEIGHTED_OPS  # deprecated name
#: flash bytes per output channel of a weighted op: int32 bias + int32 multiplier + int32 shift
REQUANT_BYTES_PER_CHANNEL = 12
#: flash bytes of an int8 lookup-table activation (256 entries) and of a multiply's requantisation (int32 x 2)
LUT_BYTES, MUL_PARAM_BYTES = 256, 8


@dataclass
class Resources:
    """All resources at one point n. Tensors (differentiable); per-op vectors in execution-agnostic op order."""

    macs: torch.Tensor
    params: torch.Tensor
    flash_bytes: torch.Tensor
    peak_sram_bytes: torch.Tensor
    latency_cycles: torch.Tensor
    latency_ms: torch.Tensor
    op_macs: torch.Tensor
    op_params: torch.Tensor
    op_flash: torch.Tensor
    op_cycles: torch.Tensor
    working_set: torch.Tensor   # bytes, per op, in graph op order
    bottleneck: int             # op index at peak SRAM


#: where the network runs: our HIL firmware (the default), or TensorFlow Lite Micro (see resources.tflm)
RUNTIMES = ("mcuprune-firmware", "tflm")


class ResourceModel:
    """Resource models of one traced graph on one board and runtime. `order`: "traced", "optimal", or op indices.

    `runtime`: "mcuprune-firmware" (our firmware: its scratch rules and fixed flash from the board profile) or
    "tflm" (TFLite Micro: peak SRAM = its arena (host 64-bit sizes), flash = the .tflite bytes + TFLM's code
    (estimate); see lightning_mcuprune.resources.tflm)."""

    def __init__(self, graph: ResourceGraph, board="mps2-an386", order="traced", runtime: str = "mcuprune-firmware"):
        if runtime not in RUNTIMES:
            raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}, not {runtime!r}")
        self.runtime = runtime
        self.graph = graph
        self.board: BoardProfile = load_board(board)
        ops, groups = graph.ops, graph.groups
        O, G = len(ops), len(groups)
        self.buffer_names = list(graph.buffers)
        bidx = {b: i for i, b in enumerate(self.buffer_names)}
        B = len(self.buffer_names)
        f64 = torch.float64

        # sparse (row, group, coefficient) entries of the [ops x groups] and [buffers x groups] matrices,
        # filled in one pass: time and Python work linear in the graph size
        entries = {k: ([], [], []) for k in ("A_in", "A_out", "A_cin", "A_inel", "A_buf")}

        def put(key, row, segs, scale=1.0):
            rows, cols, vals = entries[key]
            for g, c in segs:
                rows.append(row); cols.append(g); vals.append(c * scale)

        def dense(key, n_rows):
            rows, cols, vals = entries[key]
            m = torch.zeros(n_rows, G, dtype=f64)
            if rows:
                m.index_put_((torch.tensor(rows), torch.tensor(cols)), torch.tensor(vals, dtype=f64), accumulate=True)
            return m

        b_in = []
        mcoef, wcoef, pcoef, qcoef, vmcoef, vtcoef, kpcoef, krcoef, rtcoef, vrcoef = (torch.zeros(O, dtype=f64) for _ in range(10))
        const_feats = []  # output_pixels, output_rows, const
        for i, op in enumerate(ops):
            put("A_in", i, op.in_channels)
            b_in.append(op.in_const)
            put("A_out", i, op.out_channels)
            # total input channels of the (first) input, for scratch rules
            put("A_cin", i, graph.buffers[op.inputs[0]].channels)
            for name in op.inputs:
                buf = graph.buffers[name]
                put("A_inel", i, buf.channels, buf.spatial)
            if op.type in WEIGHTED_OPS:
                mcoef[i] = op.kernel_elems * op.out_spatial
                wcoef[i] = op.kernel_elems
                qcoef[i] = REQUANT_BYTES_PER_CHANNEL
                vmcoef[i] = op.valid_taps
            vtcoef[i] = op.valid_taps
            kpcoef[i] = op.window * op.out_spatial
            krcoef[i] = op.kernel_h * op.out_spatial
            rtcoef[i] = op.row_taps
            vrcoef[i] = op.valid_rows
            if op.type == "mul" and op.bn_params:  # an unfolded BN: per-channel scale and offset
                qcoef[i] = REQUANT_BYTES_PER_CHANNEL
            pcoef[i] = (1 if op.has_bias else 0) + op.bn_params
            const_feats.append((op.out_spatial, op.out_rows, 1.0))
        self._const_feats = torch.tensor(const_feats, dtype=f64).reshape(O, 3)
        for name, buf in graph.buffers.items():
            put("A_buf", bidx[name], buf.channels, buf.spatial)
        A_buf = dense("A_buf", B)
        # latency coefficients per op, features in LATENCY_FEATURES order
        coefs = self.board.latency_coefficients
        C = torch.tensor([[coefs[op.type].get(f, 0.0) + self._fused_activation_coef(op, f) for f in LATENCY_FEATURES]
                          for op in ops], dtype=f64).reshape(O, len(LATENCY_FEATURES))
        rules = self.board.scratch_rules
        S = torch.tensor([[rules.get(op.type, {}).get(f, 0.0) for f in SCRATCH_FEATURES] for op in ops], dtype=f64).reshape(O, len(SCRATCH_FEATURES))
        kern = torch.tensor([float(op.kernel_elems) for op in ops], dtype=f64)
        zeros = torch.zeros(O, dtype=f64)
        self._tflm = None
        table_bytes = torch.tensor([float(self._table_bytes(op)) for op in ops], dtype=f64)
        op_const = float(self.board.per_op_flash_bytes) + table_bytes
        runtime_flash = float(self.board.runtime_flash_bytes)
        if runtime == "tflm":
            from lightning_mcuprune.resources.tflm import TFLITE_BYTES_PER_CHANNEL, tflm_terms
            self._tflm = t = tflm_terms(graph)
            S = t["scratch"]
            qcoef = torch.where(qcoef > 0, torch.full_like(qcoef, float(TFLITE_BYTES_PER_CHANNEL)), qcoef)
            op_const = t["op_flash"]
            runtime_flash = t["runtime_flash"] + t["model_fixed_flash"]
        self._mats64 = dict(
            A_in=dense("A_in", O), b_in=torch.tensor(b_in, dtype=f64).reshape(O), A_out=dense("A_out", O), b_out=zeros,
            A_inel=dense("A_inel", O), b_inel=zeros, A_cin=dense("A_cin", O),
            mcoef=mcoef, wcoef=wcoef, pcoef=pcoef, vmcoef=vmcoef, vtcoef=vtcoef, kpcoef=kpcoef,
            krcoef=krcoef, rtcoef=rtcoef, vrcoef=vrcoef, qcoef=qcoef, A_buf=A_buf, C=C, S=S, kern=kern,
            const_feats=self._const_feats, out_spatial=self._const_feats[:, 0].clone(),
        )
        self._cache: dict = {}
        self._producer = [bidx[op.output] for op in ops]
        self.dense_counts = graph.dense_counts
        self._op_flash_const = op_const
        self._runtime_flash = runtime_flash
        self.flash_fixed = float(runtime_flash + op_const.sum())
        self.order = list(range(O))  # the traced order first: the optimal-order search evaluates buffer sizes
        self._liveness = self.liveness(self.order)
        if order != "traced":
            self.set_order(order)

    @staticmethod
    def _table_bytes(op) -> int:
        """Constant flash of an op beyond weights and per-channel parameters: the 256-byte int8 lookup table of an
        activation other than ReLU/ReLU6 (standalone or fused), the int32 multiplier and shift of a multiply."""
        lut = op.activation is not None and (op.type == "activation" or op.activation not in CLAMP_ACTIVATIONS)
        return (LUT_BYTES if lut else 0) + (MUL_PARAM_BYTES if op.type == "mul" and not op.bn_params else 0)

    _ELEMENTWISE_FEATURES = {"output_elements": ("output_elements", "input_elements"), "output_pixels": ("output_pixels",),
                             "output_rows": ("output_rows",), "const": ("const",)}

    def _fused_activation_coef(self, op, feature: str) -> float:
        """Coefficient of `feature` added to op's latency row by a fused lookup-table activation: the profile's
        "activation" coefficients on the op's output (its input elements are the op's output elements)."""
        if op.type == "activation" or op.activation is None or op.activation in CLAMP_ACTIVATIONS:
            return 0.0
        act = self.board.latency_coefficients["activation"]
        return sum(act.get(f, 0.0) for f in self._ELEMENTWISE_FEATURES.get(feature, ()))

    # ---- execution order -------------------------------------------------------------------
    def set_order(self, order: Union[str, Sequence[int]] = "traced", counts: Counts | None = None) -> list[int]:
        """Use an execution order: "traced", "optimal" (minimises peak SRAM at `counts`), or op indices."""
        if isinstance(order, str):
            if order == "traced":
                order = list(range(len(self.graph.ops)))
            elif order == "optimal":
                from lightning_mcuprune.resources.order import optimal_order
                order = optimal_order(self, self.dense_counts if counts is None else counts)
            else:
                raise ValueError(f"order must be 'traced', 'optimal' or a list of op indices, not {order!r}")
        self.order = list(order)
        self._check_order(self.order)
        self._liveness = self.liveness(self.order)
        self._cache.clear()
        return self.order

    def _check_order(self, order):
        ops = self.graph.ops
        if sorted(order) != list(range(len(ops))):
            raise ValueError("an execution order must name every op exactly once")
        pos = {o: i for i, o in enumerate(order)}
        prod = {op.output: i for i, op in enumerate(ops)}
        for i, op in enumerate(ops):
            for b in op.inputs:
                if b in prod and pos[prod[b]] > pos[i]:
                    raise ValueError(f"order runs {op.name!r} before the op that produces its input {b!r}")

    def liveness(self, order: Sequence[int]) -> torch.Tensor:
        """0/1 matrix [ops x buffers]: buffer b is in op i's working set (produced and still needed)."""
        O, B = len(self.graph.ops), len(self.buffer_names)
        life = self.graph.buffer_lifetimes(order)
        L = torch.zeros(O, B, dtype=torch.float64)
        for j, name in enumerate(self.buffer_names):
            start, end = life[name]
            for t in range(start, end + 1):
                L[order[t], j] = 1.0
        return L

    # ---- evaluation ------------------------------------------------------------------------
    def _mats(self, dtype):
        if dtype not in self._cache:
            m = {k: v.to(dtype) for k, v in self._mats64.items()}
            m["L"] = self._liveness.to(dtype)
            self._cache[dtype] = m
        return self._cache[dtype]

    def _check(self, n) -> torch.Tensor:
        if not isinstance(n, torch.Tensor):
            n = torch.as_tensor(n, dtype=torch.float64)
        if not n.is_floating_point():
            n = n.to(torch.float64)
        if n.shape != (len(self.graph.groups),):
            raise ValueError(f"channel counts must have shape ({len(self.graph.groups)},) (one per group), got {tuple(n.shape)}")
        return n

    def _linear(self, n):
        m = self._mats(n.dtype)
        lin = m["A_in"] @ n + m["b_in"]
        lout = m["A_out"] @ n + m["b_out"]
        return m, lin, lout

    def op_macs(self, n: Counts) -> torch.Tensor:
        """Multiply-accumulates of each op at channel counts n (graph op order)."""
        m, lin, lout = self._linear(self._check(n))
        return m["mcoef"] * lin * lout

    def macs(self, n: Counts) -> torch.Tensor:
        """Multiply-accumulates of one inference (conv and dense layers)."""
        return self.op_macs(n).sum()

    def params(self, n: Counts) -> torch.Tensor:
        """PyTorch parameters: weights, biases and BN affine parameters."""
        m, lin, lout = self._linear(self._check(n))
        return (m["wcoef"] * lin * lout + m["pcoef"] * lout).sum()

    def flash_bytes(self, n: Counts) -> torch.Tensor:
        """Bytes of flash: int8 weights, int32 bias and requantisation per channel, per-op and runtime overhead."""
        m, lin, lout = self._linear(self._check(n))
        return (m["wcoef"] * lin * lout + m["qcoef"] * lout).sum() + self.flash_fixed

    def exported_flash_bytes(self, n: Counts) -> float:
        """Bytes of flash of the exported network at integer counts n, exactly where the artefact is laid out here:
        under TFLM the .tflite file as the writer writes it plus TFLM's code (an estimate); otherwise `flash_bytes`.
        No gradient: for the budget checks at integer counts (hardening), where the linear model's few tenths of a
        percent (alignment padding, per-tensor tables) would decide."""
        n = self._check(n)
        if self._tflm is None:
            return float(self.flash_bytes(n))
        from lightning_mcuprune.resources.tflm import model_flash_bytes
        return float(model_flash_bytes(self, n, self.order) + self._tflm["runtime_flash"])

    def buffer_bytes(self, n: Counts) -> torch.Tensor:
        """Bytes of every int8 activation buffer (graph buffer order)."""
        n = self._check(n)
        return self._mats(n.dtype)["A_buf"] @ n

    def scratch_bytes(self, n: Counts) -> torch.Tensor:
        """Bytes of kernel scratch of each op at channel counts n (graph op order; the board's scratch model)."""
        n = self._check(n)
        m, lin, lout = self._linear(n)
        cin = m["A_cin"] @ n
        feats = torch.stack([m["kern"] * cin, cin, lout, torch.ones_like(lout)], dim=1)
        return (m["S"] * feats).sum(1)

    def working_set(self, n: Counts) -> torch.Tensor:
        """Bytes of SRAM in use while each op runs (graph op order), for the current execution order
        (runtime="tflm": including TFLM's persistent arena tail, which is in use throughout)."""
        n = self._check(n)
        m = self._mats(n.dtype)
        ws = m["L"] @ (m["A_buf"] @ n) + self.scratch_bytes(n)
        if self._tflm is not None:   # buffers rounded up to 16 bytes; Prepare's temporaries; the arena's tail
            ws = ws + self._tflm["align_slack"] * m["L"].sum(1)
            ws = torch.clamp(ws, min=self._tflm["temp_floor"]) + self.runtime_sram_bytes(n)
        return ws

    @property
    def working_set_is_affine(self) -> bool:
        """Whether `working_set(n)` is an affine function of the counts n (our firmware; TFLM's clamp is not)."""
        return self._tflm is None

    def runtime_sram_bytes(self, n: Counts) -> torch.Tensor:
        """SRAM the runtime keeps beside the planned activations: TFLM's persistent arena tail (host sizes);
        0 for our firmware (its arena holds activations only)."""
        n = self._check(n)
        if self._tflm is None:
            return torch.zeros((), dtype=n.dtype)
        m, _, lout = self._linear(n)
        return self._tflm["tail_const"] + (self._tflm["tail_lout"].to(n.dtype) * lout).sum()

    def _peak(self, ws, n, exact: bool = False) -> torch.Tensor:
        approx = ws.max()
        if self._tflm is None or not exact:
            return approx
        # the value is TFLM's planned arena (greedy planner replayed); the gradient the working-set model's
        return approx + (self.tflm_arena_bytes(n) - approx.detach())

    def tflm_arena_bytes(self, n: Counts) -> float:
        """runtime="tflm": the arena TFLM plans for the exported network at counts n (its greedy planner over
        the same buffers and lifetimes; host 64-bit sizes). peak_sram_bytes is the smooth model of it that
        pruning optimises (working set + tail: equal on chains, below it where the planner fragments);
        evaluate() and reports give this exact value."""
        if self._tflm is None:
            raise ValueError("tflm_arena_bytes is for ResourceModel(..., runtime='tflm')")
        return self._tflm_arena().predict(self._check(n).detach())

    def _tflm_arena(self):
        if getattr(self, "_arena_order", None) != self.order:
            from lightning_mcuprune.resources.tflm import TFLMArena
            self._arena, self._arena_order = TFLMArena(self, self.order), list(self.order)
        return self._arena

    def peak_sram_bytes(self, n: Counts) -> torch.Tensor:
        """Peak SRAM (bytes) of the activation arena (TFLM: the whole tensor arena); subgradient through the
        bottleneck op (split evenly among ops that tie at the peak)."""
        return self._peak(self.working_set(n), n)

    def smooth_peak_sram_bytes(self, n: Counts, temperature: float = 256.0) -> torch.Tensor:
        """A smooth upper bound of the peak (log-sum-exp, `temperature` in bytes); gradient on all near-peak ops."""
        ws = self.working_set(n)
        return temperature * torch.logsumexp(ws / temperature, 0)

    def op_cycles(self, n: Counts) -> torch.Tensor:
        """Estimated cycles of each op at channel counts n (graph op order; the board's latency fit)."""
        n = self._check(n)
        m, lin, lout = self._linear(n)
        return (m["C"] * self._latency_features(n, m, lin, lout)).sum(1)

    def _latency_features(self, n, m, lin, lout) -> torch.Tensor:
        """[ops x LATENCY_FEATURES] feature matrix (the same for op_cycles and evaluate)."""
        ll = lin * lout
        const = m["const_feats"]
        named = {
            "macs": m["mcoef"] * ll, "input_elements": m["A_inel"] @ n, "output_elements": m["out_spatial"] * lout,
            "weight_elements": m["wcoef"] * ll, "output_channels": lout, "valid_macs": m["vmcoef"] * ll,
            "valid_taps": m["vtcoef"] * lout, "kernel_positions": m["kpcoef"] * lout, "kernel_rows": m["krcoef"] * lout,
            "row_taps": m["rtcoef"] * lout, "valid_rows": m["vrcoef"] * lout,
            "output_pixels": const[:, 0], "output_rows": const[:, 1], "const": const[:, 2],
        }
        return torch.stack([named[f] for f in LATENCY_FEATURES], dim=1)

    def latency_features(self, n: Counts | None = None) -> torch.Tensor:
        """Latency features per op at channel counts n (default: the dense network), columns LATENCY_FEATURES."""
        n = self._check(self.dense_counts if n is None else n)
        m, lin, lout = self._linear(n)
        return self._latency_features(n, m, lin, lout)

    def latency_cycles(self, n: Counts) -> torch.Tensor:
        """Cycles of one inference (board clock cycles; on emulated boards instruction-count based)."""
        return self.op_cycles(n).sum()

    def latency_ms(self, n: Counts) -> torch.Tensor:
        """Estimated milliseconds of one inference at channel counts n (cycles at the board's clock)."""
        return self.board.cycles_to_ms(self.latency_cycles(n))

    def evaluate(self, n: Counts) -> Resources:
        """All resources at n, sharing the intermediate products."""
        n = self._check(n)
        m, lin, lout = self._linear(n)
        weights = m["wcoef"] * lin * lout
        op_macs = m["mcoef"] * lin * lout
        op_params = weights + m["pcoef"] * lout
        op_flash = weights + m["qcoef"] * lout + self._op_flash_const.to(n.dtype)
        ws = self.working_set(n)
        feats = self._latency_features(n, m, lin, lout)
        cycles = (m["C"] * feats).sum(1)
        peak = self._peak(ws, n, exact=True)
        total_cycles = cycles.sum()
        flash = op_flash.sum() + self._runtime_flash
        if self._tflm is not None:   # the value: the .tflite bytes as written (+ TFLM code); the gradient: the model's
            from lightning_mcuprune.resources.tflm import model_flash_bytes
            exact = model_flash_bytes(self, n, self.order) + self._tflm["runtime_flash"]
            flash = flash + (exact - flash.detach())
        return Resources(
            macs=op_macs.sum(), params=op_params.sum(),
            flash_bytes=flash, peak_sram_bytes=peak,
            latency_cycles=total_cycles, latency_ms=self.board.cycles_to_ms(total_cycles),
            op_macs=op_macs, op_params=op_params, op_flash=op_flash, op_cycles=cycles, working_set=ws,
            bottleneck=int(ws.detach().argmax()),
        )

    def resource(self, key: str, n: Counts) -> torch.Tensor:
        """One resource by budget key: "sram" (bytes), "flash" (bytes), "latency_ms", "macs", "params"."""
        fns = {"sram": self.peak_sram_bytes, "flash": self.flash_bytes, "latency_ms": self.latency_ms,
               "macs": self.macs, "params": self.params}
        if key not in fns:
            raise ValueError(f"unknown resource {key!r}; known: {', '.join(fns)}")
        return fns[key](n)
