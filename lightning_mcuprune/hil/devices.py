"""Real boards: discovery with mbed-tools and flashing by copying the .bin to the board's USB drive.

The firmware targets nucleo-f767zi and nucleo-f446re are built in CI but UNTESTED ON HARDWARE.
"""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Optional

from lightning_mcuprune.hil.board import Board, HILError
from lightning_mcuprune.hil.emulated import build_firmware

#: mbed board types -> board profiles with a firmware target
MBED_BOARD_TYPES = {"NUCLEO_F767ZI": "nucleo-f767zi", "NUCLEO_F446RE": "nucleo-f446re"}


def connected_boards() -> list[dict]:
    """Boards on USB: [{"port", "mount_point", "board_type", "profile", "serial_number"}] (profile None if unknown)."""
    try:
        from mbed_tools.devices import get_connected_devices
    except ImportError as e:  # pragma: no cover - mbed-tools is a dependency
        raise HILError(f"mbed-tools is needed to find boards (pip install mbed-tools): {e}") from e
    found = get_connected_devices()
    out = []
    for d in list(found.identified_devices) + list(found.unidentified_devices):
        board_type = getattr(d.mbed_board, "board_type", "") or "unknown"
        out.append({
            "port": d.serial_port,
            "mount_point": str(d.mount_points[0]) if d.mount_points else None,
            "board_type": board_type,
            "profile": MBED_BOARD_TYPES.get(board_type.upper()),
            "serial_number": d.serial_number,
        })
    return out


def flash(device: dict, firmware: Optional[Path] = None, timeout: float = 60.0, baudrate: int = 115200) -> Board:
    """Copy the firmware .bin onto the board's drive, wait for it to come back, return a connected Board."""
    profile, mount, port = device.get("profile"), device.get("mount_point"), device.get("port")
    if firmware is None:
        if not profile:
            raise HILError(f"no firmware target for board type {device.get('board_type')!r}; "
                           f"supported: {', '.join(MBED_BOARD_TYPES)}")
        firmware = build_firmware(profile).with_suffix(".bin")
    if not mount or not Path(mount).is_dir():
        raise HILError(f"the board's USB drive {mount!r} is not mounted; mount it, or flash {firmware} another way.")
    if not port:
        raise HILError("the board shows no serial port (ST-Link virtual COM port); check its USB connection.")
    shutil.copyfile(firmware, Path(mount) / Path(firmware).name)
    os.sync()
    deadline = time.monotonic() + timeout
    time.sleep(2.0)  # the interface chip programs the target and resets it
    last: Exception = HILError("timed out")
    while time.monotonic() < deadline:
        try:
            return Board(port, baudrate=baudrate, timeout=1.0, retries=1)
        except HILError as e:
            last = e
            time.sleep(1.0)
    raise HILError(f"the board on {port} did not answer HELLO within {timeout:g} s after flashing {firmware}: {last}")
