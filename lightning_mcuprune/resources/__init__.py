"""Differentiable MCU resource models: MACs, parameters, flash, peak SRAM, latency."""
from lightning_mcuprune.resources.model import Resources, ResourceModel
from lightning_mcuprune.resources.order import OrderSearchTooLarge, OrderSearchTooLargeError, optimal_order, peak_of_order

__all__ = ["ResourceModel", "Resources", "optimal_order", "peak_of_order", "OrderSearchTooLargeError", "OrderSearchTooLarge"]
