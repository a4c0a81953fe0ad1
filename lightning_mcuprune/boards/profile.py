"""Load and validate board profiles (JSON).

A profile holds the board's name, core, clock (Hz), SRAM and flash sizes (bytes), the runtime's own
overheads (fixed flash and SRAM, flash per op, scratch-buffer rules per op type), and per op type the
coefficients of a linear latency model in cycles, with where they came from ("estimate" or
"calibrated", never passed off as measured).
"""
from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass, field
from importlib import resources as _res
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from lightning_mcuprune.graph.ops import LATENCY_FEATURES, OP_TYPES  # noqa: F401  (re-exported)
from lightning_mcuprune.units import parse_size
from lightning_mcuprune.errors import MCUPruneError

if TYPE_CHECKING:
    import torch

#: Features a scratch-buffer rule may use: scratch bytes = sum(coef[f] * feature[f]).
SCRATCH_FEATURES = ("patch_elements", "input_channels", "output_channels", "const")

_REQUIRED = ("name", "core", "clock_hz", "sram_bytes", "flash_bytes", "runtime", "latency")
_KNOWN_TOP = set(_REQUIRED) | {"schema_version", "description", "emulated", "scratch", "firmware_target", "datasheet"}


class BoardProfileError(MCUPruneError, ValueError):
    """A board profile that cannot be used; the message names the file and field."""


@dataclass(frozen=True)
class BoardProfile:
    """A validated board profile. Sizes in bytes, clock in Hz, latency coefficients in cycles per feature unit."""

    name: str
    core: str
    clock_hz: int
    sram_bytes: int
    flash_bytes: int
    runtime_flash_bytes: int
    runtime_sram_bytes: int
    per_op_flash_bytes: int
    latency_source: str
    latency_coefficients: Mapping[str, Mapping[str, float]]
    #: op types whose coefficients are estimates (all of them when latency_source is "estimate")
    estimated_ops: tuple = ()
    scratch_rules: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    emulated: bool = False
    description: str = ""
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def sram_available(self) -> int:
        """Bytes of SRAM left for the activation arena after the runtime's own use."""
        return self.sram_bytes - self.runtime_sram_bytes

    @property
    def flash_available(self) -> int:
        """Bytes of flash the model may use in all (the flash resource model includes the runtime)."""
        return self.flash_bytes

    def cycles_to_ms(self, cycles: "float | torch.Tensor") -> "float | torch.Tensor":
        """Milliseconds of `cycles` board clock cycles (a number or a tensor, kept differentiable).

        >>> round(load_board("mps2-an386").cycles_to_ms(25_000_000), 9)   # 25 MHz
        1000.0
        """
        return cycles * (1e3 / self.clock_hz)

    def to_dict(self) -> dict:
        return copy.deepcopy(dict(self.raw))


def builtin_boards() -> list[str]:
    """Names of the board profiles shipped with the package."""
    folder = _res.files("lightning_mcuprune.boards") / "profiles"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".json"))


def _looks_like_path(board: "str | Path") -> bool:
    """A Path object, or text with a folder separator, a leading "." or "~", or a .json suffix."""
    if isinstance(board, Path):
        return True
    text = str(board)
    seps = {"/", "\\", *(s for s in (os.sep, os.altsep) if s)}
    return any(s in text for s in seps) or text.startswith((".", "~")) or text.lower().endswith(".json")


def load_board(board: "str | Path | Mapping | BoardProfile") -> BoardProfile:
    """Load a board profile by built-in name, JSON path, dict, or pass a loaded profile through.

    Built-in names are case-insensitive ("NUCLEO-F446RE" is nucleo-f446re) and come first: a string is
    read as a file only when it looks like a path (a Path object, a folder separator, a leading "." or
    "~", or a .json suffix) or is an existing file that is not a built-in name, so a folder called like a
    board in the working directory does not shadow the built-in profile."""
    if isinstance(board, BoardProfile):
        return board
    if isinstance(board, Mapping):
        return _validate(dict(board), "<dict>")
    if not isinstance(board, (str, Path)):
        raise BoardProfileError(f"board must be a built-in name, a JSON path, a dict or a BoardProfile, not {type(board).__name__}")
    text_path = str(board)
    path = Path(text_path).expanduser()
    is_builtin = not _looks_like_path(board) and text_path.lower() in builtin_boards()
    if not is_builtin and (_looks_like_path(board) or path.is_file()):
        if path.is_dir():
            raise BoardProfileError(f"board {text_path!r} is a folder; give a profile JSON file or a built-in board: "
                                    f"{', '.join(builtin_boards())}")
        if not path.is_file():
            raise BoardProfileError(f"board profile file {path} does not exist")
        source = str(path)
        text = path.read_text()
    else:
        names = builtin_boards()
        key = text_path.lower()
        if key not in names:
            raise BoardProfileError(f"unknown board {text_path!r}; built-in boards: {', '.join(names)} (or give a path to a profile JSON)")
        source = f"built-in profile {key}"
        text = (_res.files("lightning_mcuprune.boards") / "profiles" / f"{key}.json").read_text()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise BoardProfileError(f"{source}: not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise BoardProfileError(f"{source}: the top level must be a JSON object")
    return _validate(data, source)


def _num(data: Mapping, key: str, source: str, where: str, *, positive: bool = False, integer: bool = False) -> float:
    if key not in data:
        raise BoardProfileError(f"{source}: field {where}{key!r} is missing")
    v = data[key]
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise BoardProfileError(f"{source}: field {where}{key!r} must be a number, got {v!r}")
    if v < 0 or (positive and v == 0):
        raise BoardProfileError(f"{source}: field {where}{key!r} must be {'positive' if positive else 'non-negative'}, got {v!r}")
    if integer and int(v) != v:
        raise BoardProfileError(f"{source}: field {where}{key!r} must be a whole number, got {v!r}")
    return v


def _size(data: Mapping, key: str, source: str, where: str = "", allow_zero: bool = False) -> int:
    if key not in data:
        raise BoardProfileError(f"{source}: field {where}{key!r} is missing")
    if allow_zero and data[key] == 0:
        return 0
    try:
        return parse_size(data[key], what=f"{where}{key}")
    except ValueError as e:
        raise BoardProfileError(f"{source}: field {where}{key!r}: {e}") from None


def _coef_table(table: Any, source: str, where: str, features: tuple[str, ...]) -> dict[str, dict[str, float]]:
    if not isinstance(table, dict):
        raise BoardProfileError(f"{source}: field {where!r} must be an object mapping op types to coefficients")
    out = {}
    for op, coefs in table.items():
        if op not in OP_TYPES:
            raise BoardProfileError(f"{source}: field {where}.{op}: unknown op type; known: {', '.join(OP_TYPES)}")
        if not isinstance(coefs, dict):
            raise BoardProfileError(f"{source}: field {where}.{op} must be an object of feature: coefficient")
        row = {}
        for f, v in coefs.items():
            if f not in features:
                raise BoardProfileError(f"{source}: field {where}.{op}.{f}: unknown feature; known: {', '.join(features)}")
            row[f] = float(_num(coefs, f, source, f"{where}.{op}."))
        out[op] = row
    return out


_ERROR_KEYS = ("samples", "median_ape_pct", "p95_ape_pct", "share_within_5pct", "share_within_10pct")


def _check_errors(block: Any, source: str, where: str) -> None:
    if not isinstance(block, dict):
        raise BoardProfileError(f"{source}: field {where} must be an object with {', '.join(_ERROR_KEYS)}")
    _num(block, "samples", source, f"{where}.", positive=True, integer=True)
    for key in _ERROR_KEYS[1:]:
        v = _num(block, key, source, f"{where}.")
        if key.startswith("share") and v > 1:
            raise BoardProfileError(f"{source}: field {where}.{key} is a share (0..1), got {v!r}")


def _check_calibration(latency: dict, source: str) -> None:
    """latency.calibration: required (and consistent) when source is "calibrated", absent for "estimate"."""
    cal = latency.get("calibration")
    if latency["source"] == "estimate":
        if cal is not None:
            raise BoardProfileError(f"{source}: field latency.calibration is given but latency.source is \"estimate\"")
        return
    if not isinstance(cal, dict):
        raise BoardProfileError(f"{source}: latency.source is \"calibrated\" but field latency.calibration (date, "
                                "firmware_version, per_op figures) is missing")
    for key in ("date", "firmware_version", "board"):
        if not isinstance(cal.get(key), str) or not cal.get(key):
            raise BoardProfileError(f"{source}: field latency.calibration.{key} must be a non-empty string")
    per_op = cal.get("per_op")
    if not isinstance(per_op, dict) or set(per_op) != set(OP_TYPES):
        raise BoardProfileError(f"{source}: field latency.calibration.per_op must have one entry per op type ({', '.join(OP_TYPES)})")
    estimated = cal.get("estimated_ops", [])
    if not isinstance(estimated, list):
        raise BoardProfileError(f"{source}: field latency.calibration.estimated_ops must be a list of op types")
    measured = 0
    for op, p in per_op.items():
        where = f"latency.calibration.per_op.{op}"
        src = p.get("source") if isinstance(p, dict) else None
        if src not in ("calibrated", "estimate"):
            raise BoardProfileError(f"{source}: field {where}.source must be \"calibrated\" or \"estimate\", got {src!r}")
        if (src == "estimate") != (op in estimated):
            raise BoardProfileError(f"{source}: op type {op} is {src} in {where} but "
                                    f"{'not ' if src == 'estimate' else ''}listed in latency.calibration.estimated_ops")
        if src == "calibrated":
            measured += 1
            feats = p.get("features")
            if not isinstance(feats, list) or any(f not in LATENCY_FEATURES for f in feats):
                raise BoardProfileError(f"{source}: field {where}.features must list latency features ({', '.join(LATENCY_FEATURES)})")
            extra = set(latency["ops"][op]) - set(feats)
            if extra:
                raise BoardProfileError(f"{source}: latency.ops.{op} has coefficients for {', '.join(sorted(extra))}, "
                                        f"which {where}.features does not list")
            _num(p, "samples", source, f"{where}.", positive=True, integer=True)
            _check_errors(p.get("cv"), source, f"{where}.cv")
            _check_errors(p.get("held_out"), source, f"{where}.held_out")
            if "held_out_1d" in p:  # the held-out 1-d layers (Conv1d, 1-d pooling) of this op type
                _check_errors(p["held_out_1d"], source, f"{where}.held_out_1d")
    if "held_out_overall" in cal:
        _check_errors(cal["held_out_overall"], source, "latency.calibration.held_out_overall")
    if "held_out_1d_overall" in cal:
        _check_errors(cal["held_out_1d_overall"], source, "latency.calibration.held_out_1d_overall")
    if not measured:
        raise BoardProfileError(f"{source}: latency.source is \"calibrated\" but no op type in latency.calibration.per_op was measured")


def _validate(data: dict, source: str) -> BoardProfile:
    for key in _REQUIRED:
        if key not in data:
            raise BoardProfileError(f"{source}: field {key!r} is missing (required: {', '.join(_REQUIRED)})")
    unknown = set(data) - _KNOWN_TOP
    if unknown:
        raise BoardProfileError(f"{source}: unknown field(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(_KNOWN_TOP))}")
    if not isinstance(data["name"], str) or not data["name"]:
        raise BoardProfileError(f"{source}: field 'name' must be a non-empty string")
    runtime = data["runtime"]
    if not isinstance(runtime, dict):
        raise BoardProfileError(f"{source}: field 'runtime' must be an object")
    latency = data["latency"]
    if not isinstance(latency, dict):
        raise BoardProfileError(f"{source}: field 'latency' must be an object with 'source' and 'ops'")
    src = latency.get("source")
    if src not in ("estimate", "calibrated"):
        raise BoardProfileError(f"{source}: field latency.source must be \"estimate\" or \"calibrated\", got {src!r}")
    if "ops" not in latency:
        raise BoardProfileError(f"{source}: field latency.ops is missing")
    coefs = _coef_table(latency["ops"], source, "latency.ops", LATENCY_FEATURES)
    missing = [op for op in OP_TYPES if op not in coefs]
    if missing:
        raise BoardProfileError(f"{source}: field latency.ops lacks coefficients for op type(s) {', '.join(missing)}")
    unknown_lat = set(latency) - {"source", "note", "ops", "calibration"}
    if unknown_lat:
        raise BoardProfileError(f"{source}: unknown field(s) latency.{', latency.'.join(sorted(unknown_lat))}; "
                                "known: source, note, ops, calibration")
    _check_calibration(latency, source)
    scratch = _coef_table(data.get("scratch", {}), source, "scratch", SCRATCH_FEATURES)
    prof = BoardProfile(
        name=data["name"],
        core=str(data["core"]),
        clock_hz=int(_num(data, "clock_hz", source, "", positive=True, integer=True)),
        sram_bytes=_size(data, "sram_bytes", source),
        flash_bytes=_size(data, "flash_bytes", source),
        runtime_flash_bytes=_size(runtime, "flash_bytes", source, "runtime.", allow_zero=True),
        runtime_sram_bytes=_size(runtime, "sram_bytes", source, "runtime.", allow_zero=True),
        per_op_flash_bytes=int(_num(runtime, "per_op_flash_bytes", source, "runtime.", integer=True)),
        latency_source=src,
        latency_coefficients=coefs,
        estimated_ops=tuple(OP_TYPES) if src == "estimate" else tuple(latency["calibration"].get("estimated_ops", [])),
        scratch_rules=scratch,
        emulated=bool(data.get("emulated", False)),
        description=str(data.get("description", "")),
        raw=copy.deepcopy(data),
    )
    if prof.runtime_sram_bytes >= prof.sram_bytes:
        raise BoardProfileError(f"{source}: field runtime.sram_bytes ({prof.runtime_sram_bytes}) leaves no SRAM of sram_bytes ({prof.sram_bytes})")
    if prof.runtime_flash_bytes >= prof.flash_bytes:
        raise BoardProfileError(f"{source}: field runtime.flash_bytes ({prof.runtime_flash_bytes}) leaves no flash of flash_bytes ({prof.flash_bytes})")
    return prof
