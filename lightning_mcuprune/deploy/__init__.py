"""Deployment where embedded engineers deploy: int8 `.tflite` (TFLite Micro, STM32Cube.AI, Edge Impulse),
C arrays for firmware projects, and the check with TFLite Micro's own interpreter."""
from lightning_mcuprune.deploy.writer import TFLiteExportError, to_model, to_tflite

__all__ = ["to_tflite", "to_model", "TFLiteExportError"]
