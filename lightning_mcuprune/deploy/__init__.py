"""Deployment where embedded engineers deploy: int8 `.tflite` (TFLite Micro, STM32Cube.AI, Edge Impulse),
C arrays for firmware projects, and the check with TFLite Micro's own interpreter (`deploy.tflm`)."""
from lightning_mcuprune.deploy.arena import ArenaPrediction, predict_arena
from lightning_mcuprune.deploy.export import TFLiteExport, export_tflite
from lightning_mcuprune.deploy.writer import TFLiteExportError, to_model, to_tflite

__all__ = ["export_tflite", "TFLiteExport", "to_tflite", "to_model", "TFLiteExportError", "predict_arena",
           "ArenaPrediction"]
