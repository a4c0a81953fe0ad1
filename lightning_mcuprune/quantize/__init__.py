"""int8 quantisation for the HIL firmware and TFLite: `quantize()` (post-training), the host int8 executor
(`QuantizedGraph.run`) over the reference kernels in `reference` (bit-exact with the firmware), and the
firmware layer description `LayerSpec` (`layer`)."""
from lightning_mcuprune.quantize.layer import LayerSpec
from lightning_mcuprune.quantize.ptq import (
    QOp,
    QParams,
    QuantizationError,
    QuantizedGraph,
    UnsupportedOnBoardError,
    firmware_gaps,
    quantize,
    runtime_gaps,
)

__all__ = ["quantize", "QuantizedGraph", "QOp", "QParams", "QuantizationError", "UnsupportedOnBoardError",
           "firmware_gaps", "runtime_gaps", "LayerSpec"]
