"""Trace a network into a resource graph: ops, int8 activation buffers, channel groups."""
from lightning_mcuprune.graph.trace import (
    Buffer,
    Group,
    GraphError,
    Op,
    ResourceGraph,
    UnsupportedOpError,
    check_train_eval_structure,
    trace_graph,
)

__all__ = ["trace_graph", "ResourceGraph", "Op", "Buffer", "Group", "GraphError", "UnsupportedOpError",
           "check_train_eval_structure"]
