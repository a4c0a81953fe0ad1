"""int8 quantisation for the HIL firmware: `quantize()` (post-training) and the host int8 executor
(`QuantizedGraph.run`) over the reference kernels in `reference` (bit-exact with the firmware)."""
_LAZY = ("quantize", "QuantizedGraph", "QOp", "QParams", "QuantizationError", "UnsupportedOnBoardError", "firmware_gaps", "runtime_gaps")


def __getattr__(name):  # lazy: lightning_mcuprune.hil.layer imports .reference, and .quantize imports hil.layer
    if name in _LAZY:
        import importlib
        _q = importlib.import_module("lightning_mcuprune.quantize.ptq")
        return getattr(_q, name)
    raise AttributeError(name)
