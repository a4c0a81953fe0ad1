"""The one base of every error this library raises on purpose: ``except MCUPruneError`` catches them all.

Each error also derives from the built-in type it always was (``ValueError`` for bad input, ``RuntimeError``
for a board that fails, ``ImportError`` for a missing optional package), so existing ``except`` clauses hold.
The command line prints an ``MCUPruneError`` as one line and exits with ``USER_ERROR_EXIT_CODE``.
"""
from __future__ import annotations

#: exit code of every `mcuprune` subcommand for a user error (bad arguments, files, models, boards)
USER_ERROR_EXIT_CODE = 2
#: exit code of a measurement that ran but failed its check (output not bit-exact, the board lost mid-run)
CHECK_FAILED_EXIT_CODE = 1


class MCUPruneError(Exception):
    """Base class of the library's errors; the message says what went wrong and what to do."""



class QuantizationError(MCUPruneError, ValueError):
    """The network cannot be quantised for the firmware; the message names the op and why."""


class UnsupportedOnBoardError(QuantizationError):
    """An op (or fused activation) the firmware lacks."""


__all__ = ["MCUPruneError", "USER_ERROR_EXIT_CODE", "QuantizationError", "UnsupportedOnBoardError"]
