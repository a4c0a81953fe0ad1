"""lightning-mcuprune: prune a CNN while it trains so that it fits a microcontroller."""
from lightning_mcuprune.analysis import Report, analyze
from lightning_mcuprune.boards import BoardProfile, load_board
from lightning_mcuprune.errors import MCUPruneError
from lightning_mcuprune.callback import MCUPruneCallback
from lightning_mcuprune.deploy import export_tflite
from lightning_mcuprune.export import export_onnx, load_pruned
from lightning_mcuprune.retrain import reinitialized
from lightning_mcuprune.graph import trace_graph
from lightning_mcuprune.resources import ResourceModel
from lightning_mcuprune.units import parse_size

__version__ = "0.1.0"
__all__ = ["MCUPruneCallback", "load_pruned", "reinitialized", "export_onnx", "export_tflite", "analyze", "Report", "load_board", "BoardProfile", "trace_graph", "ResourceModel", "parse_size", "MCUPruneError", "__version__"]
