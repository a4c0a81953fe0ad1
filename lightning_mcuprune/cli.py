"""Command line: `mcuprune analyze|boards|calibrate|benchmark|demo ...` and the `calibrate` entry point.

Each subcommand lives in the module that owns the concept; this file only wires them to argparse.
"""
from __future__ import annotations

import argparse
import os
import sys

from lightning_mcuprune.console import console  # noqa: F401  (cli.console() stays importable)
from lightning_mcuprune.errors import USER_ERROR_EXIT_CODE, MCUPruneError


def _build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mcuprune", description="Prune CNNs to fit microcontrollers, and measure boards.")
    sub = p.add_subparsers(dest="command", required=True)
    from lightning_mcuprune.commands import register_all
    register_all(sub)
    return p


def _working_directory_importable() -> None:
    """PKG.MODULE:CALLABLE resolves against the working directory first, as with `python -m`."""
    cwd = os.getcwd()
    if "" not in sys.path and cwd not in sys.path:
        sys.path.insert(0, cwd)


def main(argv: list[str] | None = None) -> int:
    _working_directory_importable()
    parser = _build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (MCUPruneError, ValueError, FileNotFoundError, ImportError) as e:
        print(f"mcuprune {args.command}: error: {e}", file=sys.stderr)
        return USER_ERROR_EXIT_CODE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def calibrate_main(argv: list[str] | None = None) -> int:
    """`calibrate ...` is `mcuprune calibrate ...`."""
    return main(["calibrate", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
