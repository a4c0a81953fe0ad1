"""Budgets: parsing the user's `budgets` dict, and the target that shrinks toward each budget."""
from __future__ import annotations

from lightning_mcuprune.boards import BoardProfile
from lightning_mcuprune.units import format_size, parse_size

#: budget key -> (resource key of ResourceModel.resource, unit for messages)
BUDGET_KEYS = {"sram": "bytes", "flash": "bytes", "latency_ms": "ms", "macs": "MACs"}


def parse_budgets(budgets: "dict | None", board: BoardProfile) -> dict[str, float]:
    """Validate `budgets` ({"sram": "64KiB", "flash": 262144, "latency_ms": 50, "macs": 2e6}).

    SRAM and flash not given default to what the board has: SRAM after the runtime's reserve, and
    its flash (the flash model includes the runtime's own flash).
    """
    if budgets is None:
        budgets = {}
    if not isinstance(budgets, dict):
        raise ValueError(f"budgets must be a dict such as {{'sram': '64KiB', 'latency_ms': 50}}, got {type(budgets).__name__}")
    unknown = set(budgets) - set(BUDGET_KEYS)
    if unknown:
        raise ValueError(f"unknown budget key(s) {', '.join(sorted(map(repr, unknown)))}; known: {', '.join(BUDGET_KEYS)}")
    out: dict[str, float] = {}
    for key, value in budgets.items():
        if key in ("sram", "flash"):
            out[key] = float(parse_size(value, what=f"{key} budget"))
        else:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"bad {key} budget {value!r}: give a positive number "
                                 f"({'milliseconds' if key == 'latency_ms' else 'multiply-accumulates'}), e.g. "
                                 f"{{'{key}': {50 if key == 'latency_ms' else 2_000_000}}}")
            out[key] = float(value)
    out.setdefault("sram", float(board.sram_available))
    out.setdefault("flash", float(board.flash_available))
    if out["sram"] > board.sram_available:
        raise ValueError(f"sram budget {format_size(out['sram'])} exceeds what {board.name} has for activations "
                         f"({format_size(board.sram_available)} = {format_size(board.sram_bytes)} minus the runtime's "
                         f"{format_size(board.runtime_sram_bytes)})")
    if out["flash"] > board.flash_bytes:
        raise ValueError(f"flash budget {format_size(out['flash'])} exceeds {board.name}'s flash ({format_size(board.flash_bytes)})")
    return out


def format_value(key: str, value: float) -> str:
    if key in ("sram", "flash"):
        return format_size(value)
    if key == "latency_ms":
        return f"{value:.2f} ms"
    return f"{value:,.0f} MACs"


def target(dense: float, budget: float, progress: float) -> float:
    """The budget at `progress` (0..1) through the pruning phase: cubic from the dense value to the budget."""
    if dense <= budget:
        return budget
    p = min(max(progress, 0.0), 1.0)
    return budget + (dense - budget) * (1.0 - p) ** 3
