"""The op vocabulary: every op name of the resource graph, the firmware and the latency model, defined once.

The graph layer owns it; boards, resources, quantize, pruning and hil import it. An ``OpType`` member is
a ``str`` and compares equal to its name, so code may use either.
"""
from __future__ import annotations

from enum import Enum


class OpType(str, Enum):
    """Op types of the resource graph (``Op.type``). Latency coefficients and scratch rules are per op type.

    >>> OpType.CONV2D == "conv2d" and OpType("dense") is OpType.DENSE
    True
    >>> [op for op in OP_TYPES if op in WEIGHTED_OPS and op not in CHANNEL_MIXING_OPS]
    ['depthwise_conv2d']
    """

    CONV2D = "conv2d"
    DEPTHWISE_CONV2D = "depthwise_conv2d"
    POINTWISE_CONV2D = "pointwise_conv2d"
    DENSE = "dense"
    MAX_POOL = "max_pool"
    AVG_POOL = "avg_pool"
    GLOBAL_AVG_POOL = "global_avg_pool"
    ADD = "add"
    MUL = "mul"
    CONCAT = "concat"
    ACTIVATION = "activation"

    def __str__(self) -> str:
        return self.value


#: op types of the resource graph, in the order board profiles list them
OP_TYPES: tuple[str, ...] = tuple(o.value for o in OpType)
#: ops that hold a weight tensor (int8 weights, per-output-channel scales, int32 bias)
WEIGHTED_OPS: tuple[str, ...] = ("conv2d", "depthwise_conv2d", "pointwise_conv2d", "dense")
#: weighted ops whose every output channel reads every input channel (groups == 1): pruning a producer's
#: output channel removes the matching input slice of these ops
CHANNEL_MIXING_OPS: tuple[str, ...] = ("conv2d", "pointwise_conv2d", "dense")

#: firmware op codes by op name (hil/ firmware and the host reference kernels); appended, never renumbered.
#: ``lut`` is the firmware's table-lookup kernel that runs a resource-graph ``activation`` op.
FIRMWARE_OP_CODES: dict[str, int] = {
    "conv2d": 1, "depthwise_conv2d": 2, "pointwise_conv2d": 3, "dense": 4,
    "max_pool": 5, "avg_pool": 6, "global_avg_pool": 7, "add": 8,
    "mul": 9, "lut": 10,
}
#: op names of the firmware's kernels (and of the bit-exact host reference, quantize.reference)
KERNEL_OPS: tuple[str, ...] = tuple(FIRMWARE_OP_CODES)
#: resource-graph op types the firmware runs (an "activation" runs as its ``lut`` kernel)
FIRMWARE_OPS: tuple[str, ...] = tuple(o for o in KERNEL_OPS if o != "lut") + ("activation",)
#: resource-graph op types the TFLite writer exports
TFLM_OPS: tuple[str, ...] = FIRMWARE_OPS + ("concat",)

#: Features of the per-op latency model: cycles = sum(coef[f] * feature[f]). Per op (batch 1):
#: macs (nominal multiply-accumulates), input/output/weight elements, output channels; valid_macs = MACs
#: over kernel taps that lie inside the input (padding skipped, as direct-loop kernels do); valid_taps =
#: in-input kernel/window taps summed over output elements; kernel_positions = output elements x window
#: size (padding included); kernel_rows = output elements x kernel rows (padding included); row_taps = taps
#: of the kernel rows that lie inside the input (padded columns included) summed over output elements;
#: valid_rows = kernel/window rows that lie inside the input, summed over output elements (the row loop of
#: a window clipped to the input: pooling, 1-d layers); output pixels (H*W), output rows (H); const = 1.
#: All are exact functions of the channel counts.
LATENCY_FEATURES: tuple[str, ...] = (
    "macs", "input_elements", "output_elements", "weight_elements", "output_channels",
    "valid_macs", "valid_taps", "kernel_positions", "kernel_rows", "row_taps", "valid_rows",
    "output_pixels", "output_rows", "const",
)

__all__ = ["OpType", "OP_TYPES", "WEIGHTED_OPS", "CHANNEL_MIXING_OPS", "FIRMWARE_OP_CODES", "KERNEL_OPS",
           "FIRMWARE_OPS", "TFLM_OPS", "LATENCY_FEATURES"]
