"""Parsing and formatting of byte sizes: ints are bytes; strings like "64KiB", "1.5MiB", "256KB"."""
from __future__ import annotations

import math
import re

_UNITS = {
    "": 1, "B": 1,
    "KB": 1000, "MB": 1000**2, "GB": 1000**3,
    "KIB": 1024, "MIB": 1024**2, "GIB": 1024**3,
    "K": 1024, "M": 1024**2,
}
_SIZE_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([A-Za-z]*)\s*$")
_HELP = 'give bytes as an int, or a string such as "64KiB", "1.5MiB", "256KB" (KB = 1000 bytes, KiB = 1024)'


def parse_size(value: "int | float | str", what: str = "size") -> int:
    """Return a size in bytes from an int/float or a string such as "64KiB" (KiB=1024, KB=1000)."""
    if isinstance(value, bool):
        raise ValueError(f"bad {what} {value!r}: {_HELP}")
    if isinstance(value, int):
        n = value
    elif isinstance(value, float):
        if not math.isfinite(value) or value != int(value):
            raise ValueError(f"bad {what} {value!r}: a size in bytes must be a whole number; {_HELP}")
        n = int(value)
    elif isinstance(value, str):
        m = _SIZE_RE.match(value)
        unit = m.group(2).upper() if m else None
        if not m or unit not in _UNITS:
            raise ValueError(f"bad {what} {value!r}: {_HELP}")
        n = float(m.group(1)) * _UNITS[unit]
        if not math.isfinite(n):
            raise ValueError(f"bad {what} {value!r}: too large; {_HELP}")
        if n != int(n):
            raise ValueError(f"bad {what} {value!r}: {n} is not a whole number of bytes")
        n = int(n)
    else:
        raise ValueError(f"bad {what} {value!r} (type {type(value).__name__}): {_HELP}")
    if n <= 0:
        raise ValueError(f"bad {what} {value!r}: must be positive; {_HELP}")
    return n


def format_size(n: float) -> str:
    """Human-readable bytes, binary units: 65536 -> '64.0 KiB'."""
    n = float(n)
    for unit, div in (("MiB", 1024**2), ("KiB", 1024)):
        if abs(n) >= div:
            return f"{n / div:.1f} {unit}"
    return f"{n:.0f} B"
