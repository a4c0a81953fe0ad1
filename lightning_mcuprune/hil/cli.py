"""HIL subcommands (placeholder until the HIL issue lands)."""


def register(subparsers) -> None:
    pass
