"""HIL subcommands: `mcuprune boards`."""
from __future__ import annotations

from typing import TYPE_CHECKING

import json
import shutil

from lightning_mcuprune.boards import builtin_boards, load_board

if TYPE_CHECKING:
    import argparse


def list_boards() -> dict:
    """{"connected": [...], "emulated": [...]} (connected via mbed-tools; emulated from the built-in profiles)."""
    from lightning_mcuprune.hil.devices import connected_boards
    from lightning_mcuprune.hil.emulated import EMULATED_BOARDS, firmware_dir
    try:
        connected, error = connected_boards(), None
    except Exception as e:  # discovery must not hide the emulated boards
        connected, error = [], str(e)
    qemu = shutil.which("qemu-system-arm")
    emulated = []
    for name in builtin_boards():
        if name not in EMULATED_BOARDS:
            continue
        prof = load_board(name)
        try:
            built = (firmware_dir() / "build" / name / "firmware.elf").is_file()
        except Exception:
            built = False
        emulated.append({"name": name, "core": prof.core, "clock_hz": prof.clock_hz, "sram_bytes": prof.sram_bytes,
                         "flash_bytes": prof.flash_bytes, "qemu": bool(qemu), "firmware_built": built})
    return {"connected": connected, "emulated": emulated, "discovery_error": error}


def _cmd_boards(args) -> int:
    info = list_boards()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print("connected boards:")
    if info["discovery_error"]:
        print(f"  (discovery failed: {info['discovery_error']})")
    elif not info["connected"]:
        print("  none found")
    for d in info["connected"]:
        print(f"  {d['board_type']:<16} port {d['port']}  drive {d['mount_point']}  profile {d['profile'] or '-'}")
    print("emulated boards (QEMU):")
    for e in info["emulated"]:
        state = "ready" if e["qemu"] else "qemu-system-arm missing (apt-get install qemu-system-arm)"
        print(f"  {e['name']:<16} {e['core']} {e['clock_hz'] / 1e6:g} MHz, SRAM {e['sram_bytes'] // 1024} KiB, "
              f"flash {e['flash_bytes'] // 1024} KiB  [{state}; firmware {'built' if e['firmware_built'] else 'built on first use'}]")
    return 0


def register(subparsers: "argparse._SubParsersAction") -> None:
    p = subparsers.add_parser("boards", help="list connected (USB) and emulated (QEMU) boards")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_boards)
