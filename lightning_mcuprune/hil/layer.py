"""Deprecated: LayerSpec moved to lightning_mcuprune.quantize.layer (its wire form: hil.protocol.pack_config)."""
import warnings

from lightning_mcuprune.quantize.layer import INT32_MAX, WINDOW_OPS, LayerSpec  # noqa: F401

warnings.warn("lightning_mcuprune.hil.layer is deprecated; import LayerSpec from lightning_mcuprune.quantize.layer "
              "(or lightning_mcuprune.hil)", DeprecationWarning, stacklevel=2)
