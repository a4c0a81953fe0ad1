"""Memory-optimal execution order for branching graphs (exact search, as in µNAS / Liberis & Lane).

Dynamic programming over the sets of ops already executed (every such set is closed under
predecessors): best[S] = the least peak working set with which S can be executed; running op v next
costs the bytes of every buffer produced by S and still needed, plus v's output and scratch.
Chains give few states; an Inception block with k branches of length l gives about (l+1)^k.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from lightning_mcuprune.errors import MCUPruneError

if TYPE_CHECKING:
    from lightning_mcuprune.resources.model import ResourceModel

MAX_STATES = 200_000


class OrderSearchTooLargeError(MCUPruneError, RuntimeError):
    """The graph has too many partial executions for the exact search."""


OrderSearchTooLarge = OrderSearchTooLargeError   # deprecated name


def _tables(model, counts):
    """Per op: predecessor bitmask; per buffer: size, producer bit, consumers mask, is_output."""
    graph = model.graph
    ops = graph.ops
    idx = {op.name: i for i, op in enumerate(ops)}
    with torch.no_grad():
        sizes = model.buffer_bytes(torch.as_tensor(counts, dtype=torch.float64)).tolist()
        scratch = model.scratch_bytes(torch.as_tensor(counts, dtype=torch.float64)).tolist()
    bufs = []
    for j, name in enumerate(model.buffer_names):
        b = graph.buffers[name]
        prod = (1 << idx[b.producer]) if b.producer else 0
        cons = 0
        for c in b.consumers:
            cons |= 1 << idx[c]
        bufs.append((sizes[j], prod, cons, b.is_output))
    preds = []
    out_size = []
    for i, op in enumerate(ops):
        p = 0
        for name in op.inputs:
            producer = graph.buffers[name].producer
            if producer:
                p |= 1 << idx[producer]
        preds.append(p)
        out_size.append(sizes[model.buffer_names.index(op.output)])
    return preds, bufs, out_size, scratch


def _working_set(S: int, v: int, bufs, out_size, scratch) -> float:
    total = out_size[v] + scratch[v]
    for size, prod, cons, is_out in bufs:
        if prod and not (S & prod):
            continue  # not produced yet (v's own output counted above)
        if is_out or (cons & ~S):
            total += size
    return total


def optimal_order(model: "ResourceModel", counts: "torch.Tensor") -> list[int]:
    """Op indices in an order that minimises peak SRAM at channel counts `counts` (exact)."""
    preds, bufs, out_size, scratch = _tables(model, counts)
    n = len(preds)
    full = (1 << n) - 1
    best = {0: (0.0, None, None)}
    frontier = [0]
    for _ in range(n):
        nxt = {}
        for S in frontier:
            peak = best[S][0]
            for v in range(n):
                bit = 1 << v
                if S & bit or (preds[v] & ~S):
                    continue
                cost = max(peak, _working_set(S, v, bufs, out_size, scratch))
                T = S | bit
                if T not in nxt or cost < nxt[T][0]:
                    nxt[T] = (cost, S, v)
        if len(best) + len(nxt) > MAX_STATES:
            raise OrderSearchTooLargeError(
                f"the exact order search exceeds {MAX_STATES} partial executions on this graph; use order='traced'")
        best.update(nxt)
        frontier = list(nxt)
    order, S = [], full
    while S:
        _, prev, v = best[S]
        order.append(v)
        S = prev
    return order[::-1]


def peak_of_order(model: "ResourceModel", counts: "torch.Tensor", order: "list[int]") -> float:
    """Peak working set (bytes) of a given order at integer counts; for checks and brute force."""
    preds, bufs, out_size, scratch = _tables(model, counts)
    S, peak = 0, 0.0
    for v in order:
        peak = max(peak, _working_set(S, v, bufs, out_size, scratch))
        S |= 1 << v
    return peak


def all_topological_orders(model: "ResourceModel") -> "list[list[int]]":
    """Every execution order of the graph's ops (exponential: for tests on small graphs)."""
    preds, *_ = _tables(model, model.dense_counts)
    n = len(preds)

    def rec(S, prefix):
        if len(prefix) == n:
            yield list(prefix)
            return
        for v in range(n):
            if not (S >> v) & 1 and not (preds[v] & ~S):
                prefix.append(v)
                yield from rec(S | (1 << v), prefix)
                prefix.pop()
    yield from rec(0, [])


__all__ = ["optimal_order", "peak_of_order", "all_topological_orders", "OrderSearchTooLargeError", "OrderSearchTooLarge"]
