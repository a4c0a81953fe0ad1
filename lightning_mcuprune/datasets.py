"""Deprecated: moved to lightning_mcuprune.data.datasets (this name is the same module, for one release)."""
import sys

from lightning_mcuprune._compat import moved_module
from lightning_mcuprune.data.datasets import __name__ as _new

moved_module(__name__, _new)
sys.modules[__name__] = sys.modules[_new]
