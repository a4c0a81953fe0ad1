"""Subcommand registry for the CLI.

Each module listed in MODULES defines `register(subparsers)`, which adds its subcommand(s) and sets
`func` on them. Adding a subcommand = one line here plus the module that owns the concept.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import importlib

if TYPE_CHECKING:
    import argparse

MODULES = [
    "lightning_mcuprune.analysis_cli",  # mcuprune analyze
    "lightning_mcuprune.examples.demo",        # mcuprune demo
    "lightning_mcuprune.hil.cli",     # mcuprune boards
    "lightning_mcuprune.hil.calibrate",  # mcuprune calibrate (and the calibrate console script)
    "lightning_mcuprune.hil.benchmark",         # mcuprune benchmark
    "lightning_mcuprune.deploy.cli",  # mcuprune export
]


def register_all(subparsers: "argparse._SubParsersAction") -> None:
    for name in MODULES:
        importlib.import_module(name).register(subparsers)
