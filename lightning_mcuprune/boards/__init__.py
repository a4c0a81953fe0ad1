"""Board profiles: what a microcontroller has (SRAM, flash, clock) and what running a network costs on it."""
from lightning_mcuprune.boards.profile import (
    LATENCY_FEATURES,
    OP_TYPES,
    BoardProfile,
    BoardProfileError,
    builtin_boards,
    load_board,
)

__all__ = ["BoardProfile", "BoardProfileError", "load_board", "builtin_boards", "OP_TYPES", "LATENCY_FEATURES"]
