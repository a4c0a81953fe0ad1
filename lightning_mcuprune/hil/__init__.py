"""Host side of hardware-in-the-loop: serial link, protocol, emulated and real boards.

    with EmulatedBoard("mps2-an386") as board:
        board.hello()
        cycles = board.run_layer(LayerSpec("conv2d", (16, 16, 8), out_channels=16, kernel=3, padding=1))
"""
from lightning_mcuprune.hil.board import (
    BadReplyError, Board, BoardError, FirmwareVersionError, HILError, HILTimeoutError, NotResponding, NotRespondingError, PortError,
    RunResult,
)
from lightning_mcuprune.hil.devices import connected_boards, flash
from lightning_mcuprune.hil.emulated import EMULATED_BOARDS, EmulatedBoard, ToolMissingError, build_firmware
from lightning_mcuprune.quantize.layer import LayerSpec

__all__ = [
    "Board", "EmulatedBoard", "LayerSpec", "RunResult", "build_firmware", "connected_boards", "flash",
    "EMULATED_BOARDS", "HILError", "BoardError", "PortError", "NotRespondingError", "NotResponding", "FirmwareVersionError",
    "HILTimeoutError", "ToolMissingError", "BadReplyError",
]
