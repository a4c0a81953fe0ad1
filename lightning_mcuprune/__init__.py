"""lightning-mcuprune: prune a CNN while it trains so that it fits a microcontroller."""
from lightning_mcuprune.units import parse_size

__version__ = "0.1.0"
__all__ = ["parse_size", "__version__"]
