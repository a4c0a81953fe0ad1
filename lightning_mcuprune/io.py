"""Atomic file writes: a file is either the old one or the whole new one, never half-written."""
from __future__ import annotations

from typing import TYPE_CHECKING

import contextlib
import json
import os
import tempfile
from pathlib import Path

if TYPE_CHECKING:
    from collections.abc import Iterator

    import matplotlib.figure


def _default_mode(path: Path) -> int:
    """The mode a new file gets from open(): 0o666 minus the umask; an existing file keeps its own."""
    try:
        return path.stat().st_mode & 0o7777
    except FileNotFoundError:
        return 0o666 & ~_umask()


def _umask() -> int:
    try:  # Linux: read it without changing it (os.umask would change it for every thread for a moment)
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return  # e.g. a platform without directory handles: the rename is still atomic
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: "str | Path") -> "Iterator[Path]":
    """Yield a temporary path beside `path`; on success its contents are flushed to disk (fsync), it gets
    the mode a plain open() would give (umask; an existing file's own mode) and it replaces `path`
    atomically, so `path` is either the old file or the whole new one, also after a power loss."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDWR)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.chmod(tmp, _default_mode(path))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def write_text_atomic(path: "str | Path", text: str) -> Path:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)
    return Path(path)


def write_json_atomic(path: "str | Path", data: object) -> Path:
    return write_text_atomic(path, json.dumps(data, indent=2, default=str) + "\n")


def save_figure(fig: "matplotlib.figure.Figure", path: "str | Path", dpi: int = 110) -> Path:
    """Write a matplotlib figure as PNG atomically (parent folders created) and close it."""
    import matplotlib.pyplot as plt
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    plt.close(fig)
    return Path(path)
