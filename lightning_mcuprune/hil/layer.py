"""Deprecated: LayerSpec moved to lightning_mcuprune.quantize.layer (its wire form: hil.protocol.pack_config)."""
from lightning_mcuprune._compat import moved_module
from lightning_mcuprune.quantize.layer import INT32_MAX, WINDOW_OPS, LayerSpec  # noqa: F401

moved_module(__name__, "lightning_mcuprune.quantize.layer (LayerSpec also from lightning_mcuprune.hil)")
