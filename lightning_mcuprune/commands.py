"""Subcommand registry for the CLI. Each entry adds one subparser and sets `func`."""
from __future__ import annotations

REGISTRY: list = []


def command(fn):
    """Decorator: register a function `fn(subparsers)` that adds a subcommand."""
    REGISTRY.append(fn)
    return fn
