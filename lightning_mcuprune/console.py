"""The rich Console every table and report is printed with (CLI, callback summary, benchmark, demo, calibrate)."""
from __future__ import annotations

from typing import TYPE_CHECKING

import os

if TYPE_CHECKING:
    import rich.console


def console() -> "rich.console.Console":
    """A rich Console for command output. Piped or redirected output gets 200 columns (rich would use 80 and
    cut the tables) unless COLUMNS says otherwise."""
    from rich.console import Console
    c = Console()
    if not c.is_terminal and not c.is_jupyter and "COLUMNS" not in os.environ:
        c = Console(width=200)
    return c
