"""Deprecated spellings, kept for one release: renamed keyword arguments and moved modules."""
from __future__ import annotations

import warnings
from typing import Any


def renamed_keyword(func: str, old_name: str, old: Any, new_name: str, new: Any) -> Any:
    """The value of a keyword argument given under its new name, or (with a DeprecationWarning) its old one."""
    if old is None:
        return new
    warnings.warn(f"{func}({old_name}=...) is deprecated: use {new_name}=", DeprecationWarning, stacklevel=3)
    if new is not None:
        raise TypeError(f"{func}() got both {old_name}= and {new_name}=")
    return old


def moved_module(old: str, new: str) -> None:
    """Warn that module `old` moved to `new` (call from the shim left at the old path)."""
    warnings.warn(f"{old} is deprecated: import from {new}", DeprecationWarning, stacklevel=3)
