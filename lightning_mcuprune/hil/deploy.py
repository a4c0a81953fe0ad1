"""Deploy a quantised network to a HIL board: an arena plan for the activations and a weights-store image.

Arena plan: every int8 buffer gets an offset such that the buffers live at the same op (the liveness of
`ResourceModel.liveness` for the execution order) never overlap. The predicted activation peak (max over
ops of the working set) is a lower bound of any plan's arena end; `plan_arena` searches for a plan that
reaches it (depth-first over candidate offsets: 0, the top of the peak, and the edges of conflicting
buffers), and falls back to first-fit (reporting the gap) only if the search fails within its budget.

Streaming: all weights and parameter blocks are written into the weights store once, the input into the
arena; then per op CONFIG + RUN (cycles per op), optionally reading each op's output back right after it ran
(per-layer bit-exact check); finally STATS (arena high-water mark, stack use).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Optional

import numpy as np

from lightning_mcuprune.hil import protocol as P
from lightning_mcuprune.errors import MCUPruneError

if TYPE_CHECKING:
    from lightning_mcuprune.hil.board import Board
    from lightning_mcuprune.quantize.ptq import QuantizedGraph


class DeployError(MCUPruneError, ValueError):
    """The network cannot be put on the board (does not fit); the message says by how much."""


def _align4(n: int) -> int:
    return (n + 3) & ~3


@dataclass
class ArenaPlan:
    offsets: dict          # buffer -> offset (bytes)
    sizes: dict            # buffer -> bytes
    arena_bytes: int       # highest end
    peak_bytes: int        # predicted activation peak (lower bound)
    method: str

    @property
    def gap(self) -> int:
        return self.arena_bytes - self.peak_bytes


def plan_arena(qgraph: "QuantizedGraph", order: "list[int] | None" = None, budget: int = 200_000) -> ArenaPlan:
    """Offsets for every buffer of `qgraph` with no two buffers live at one op overlapping."""
    g = qgraph.graph
    order = list(range(len(g.ops))) if order is None else list(order)
    sizes = {b: int(np.prod(qgraph.shapes[b])) for b in g.buffers}
    life = qgraph.graph.buffer_lifetimes(order)
    names = list(g.buffers)
    live_at = [[b for b in names if life[b][0] <= t <= life[b][1]] for t in range(len(order))]
    peak = max(sum(sizes[b] for b in bs) for bs in live_at)
    conflicts = {b: set() for b in names}
    for bs in live_at:
        for a in bs:
            conflicts[a].update(x for x in bs if x != a)

    def search(seq, limit):
        placed: dict = {}
        nodes = [0]

        def ok(b, off):
            e = off + sizes[b]
            return all(off >= placed[c] + sizes[c] or e <= placed[c] for c in conflicts[b] if c in placed)

        def rec(i):
            if i == len(seq):
                return True
            nodes[0] += 1
            if nodes[0] > budget:
                return False
            b = seq[i]
            cands = {0, limit - sizes[b]}
            for c in conflicts[b]:
                if c in placed:
                    cands.add(placed[c] + sizes[c])
                    cands.add(placed[c] - sizes[b])
            for off in sorted(o for o in cands if 0 <= o <= limit - sizes[b]):
                if ok(b, off):
                    placed[b] = off
                    if rec(i + 1):
                        return True
                    del placed[b]
            return False
        return placed if rec(0) else None

    orders = {"by start": sorted(names, key=lambda b: (life[b][0], -sizes[b])),
              "by size": sorted(names, key=lambda b: (-sizes[b], life[b][0]))}
    for how, seq in orders.items():
        placed = search(seq, peak)
        if placed is not None:
            return ArenaPlan(placed, sizes, max(placed[b] + sizes[b] for b in names), peak, f"exact ({how})")
    # first fit, largest first (may exceed the peak)
    placed = {}
    for b in orders["by size"]:
        off = 0
        for c in sorted((c for c in conflicts[b] if c in placed), key=lambda c: placed[c]):
            if off + sizes[b] <= placed[c] or off >= placed[c] + sizes[c]:
                if off + sizes[b] <= placed[c]:
                    break
                continue
            off = placed[c] + sizes[c]
        while any(not (off >= placed[c] + sizes[c] or off + sizes[b] <= placed[c]) for c in conflicts[b] if c in placed):
            off = min(placed[c] + sizes[c] for c in conflicts[b] if c in placed and placed[c] + sizes[c] > off)
        placed[b] = off
    return ArenaPlan(placed, sizes, max(placed[b] + sizes[b] for b in names), peak, "first-fit")


@dataclass
class Deployment:
    """What is sent to the board: placed layer specs, the weights-store image, the arena plan."""

    qgraph: object
    specs: list                          # LayerSpec per op (execution order), placed
    weights_image: bytes = field(repr=False)
    plan: ArenaPlan = None
    order: list = None
    #: per spec: the fused lookup-table activation run in place on its output right after it (or None)
    posts: list = None

    @property
    def weights_bytes(self) -> int:
        return len(self.weights_image)

    @property
    def arena_bytes(self) -> int:
        return self.plan.arena_bytes

    def check_fits(self, arena_bytes: int, weights_bytes: int, board: str = "the board") -> None:
        """DeployError (saying by how many bytes) if the plan or the weights do not fit."""
        msgs = []
        if self.arena_bytes > arena_bytes:
            msgs.append(f"activations need an arena of {self.arena_bytes} B but {board} has {arena_bytes} B "
                        f"({self.arena_bytes - arena_bytes} B too many)")
        if self.weights_bytes > weights_bytes:
            msgs.append(f"weights and parameters need {self.weights_bytes} B but the weights store of {board} has "
                        f"{weights_bytes} B ({self.weights_bytes - weights_bytes} B too many)")
        if msgs:
            raise DeployError("the model does not fit: " + "; ".join(msgs) + ". Prune it harder (MCUPruneCallback "
                              "budgets) or pick a larger board; nothing was sent to the board.")


def build_deployment(qgraph: "QuantizedGraph", order: "list[int] | None" = None) -> Deployment:
    order = list(range(len(qgraph.ops))) if order is None else list(order)
    plan = plan_arena(qgraph, order)
    blob = bytearray()
    specs, posts = [], []

    def store(s, weights):
        w_off = len(blob)
        if s.weights_bytes:
            blob.extend(np.asarray(weights, dtype=np.int8).reshape(s.weights_shape).tobytes())
        p_off = _align4(len(blob))
        blob.extend(b"\0" * (p_off - len(blob)))
        blob.extend(s.params_array().astype("<i4").tobytes())
        blob.extend(b"\0" * (_align4(len(blob)) - len(blob)))
        return dict(weights_offset=w_off, params_offset=p_off)

    for i in order:
        op = qgraph.ops[i]
        s = op.spec
        kw = dict(input_offset=plan.offsets[op.inputs[0]], output_offset=plan.offsets[op.output], **store(s, op.weights))
        if s.op in ("add", "mul"):
            kw["input2_offset"] = plan.offsets[op.inputs[1]]
        specs.append(replace(s, **kw))
        post = getattr(op, "post", None)
        posts.append(None if post is None else replace(
            post, input_offset=plan.offsets[op.output], output_offset=plan.offsets[op.output], **store(post, post.weights)))
    return Deployment(qgraph, specs, bytes(blob), plan, order, posts)


@dataclass
class BoardRun:
    cycles: list = field(default_factory=list)         # per op run so far (execution order)
    outputs: list = field(default_factory=list)        # per op int8 output read back (or None)
    output: Optional[np.ndarray] = None
    stats: Optional[dict] = None
    upload_s: float = 0.0


def write_robust(board: "Board", region: int, offset: int, data: "bytes | np.ndarray", chunk: int = 1024) -> None:
    """Write in frames of `chunk` bytes; a frame the board keeps seeing truncated (a loaded host can stall
    QEMU's UART beyond the firmware's byte timeout) is retried in smaller frames before giving up."""
    from lightning_mcuprune.hil.board import HILTimeoutError
    data = np.ascontiguousarray(data).view(np.uint8).tobytes() if isinstance(data, np.ndarray) else bytes(data)
    i = 0
    while i < len(data):
        for size in (chunk, 256, 64):
            part = data[i:i + size]
            try:
                board.write(region, offset + i, part)
                break
            except HILTimeoutError:
                if size == 64:
                    raise
        i += len(part)


def upload(board: "Board", dep: Deployment) -> float:
    """Write the weights store image; returns seconds taken."""
    import time
    t = time.monotonic()
    board.reset()
    if dep.weights_image:
        write_robust(board, P.REGION_WEIGHTS, 0, dep.weights_image)
    return time.monotonic() - t


def run_on_board(board: "Board", dep: Deployment, xq: np.ndarray, read_layers: bool = True, repeats: int = 1,
                 result: Optional[BoardRun] = None) -> BoardRun:
    """Run one int8 input (H, W, C) through the deployed network, op by op; fills `result` as it goes."""
    res = result if result is not None else BoardRun()
    q = dep.qgraph
    write_robust(board, P.REGION_ARENA, dep.plan.offsets[q.input], np.asarray(xq, dtype=np.int8).reshape(q.shapes[q.input]))
    for spec, post in zip(dep.specs, dep.posts or [None] * len(dep.specs)):
        cycles = 0
        for s in (spec, post) if post is not None else (spec,):   # a fused lookup-table activation runs in place
            board.configure(s)
            cycles += int(board.run(repeats, macs=s.macs).min)
        res.cycles.append(cycles)
        res.outputs.append(board.read_output(spec) if read_layers else None)
    last = dep.specs[-1]
    res.output = res.outputs[-1] if read_layers else board.read_output(last)
    return res


def firmware_bytes(board_name: str) -> Optional[int]:
    from lightning_mcuprune.hil.emulated import firmware_dir
    p = Path(firmware_dir()) / "build" / board_name / "firmware.bin"
    return p.stat().st_size if p.is_file() else None
