"""Bad input on the host side: each a clear error (what was wrong, what would be right)."""
import argparse
import os
import subprocess
import threading
import time
from pathlib import Path

import pytest

from hil_fixtures import require_hil_tools
from lightning_mcuprune.hil import (
    Board, BoardError, EmulatedBoard, FirmwareVersionError, HILError, HILTimeoutError, LayerSpec, NotResponding,
    PortError,
    ToolMissingError, build_firmware,
)
from lightning_mcuprune.hil.emulated import firmware_dir


def test_no_such_port():
    with pytest.raises(PortError, match=r"no such port: '/dev/ttyNOSUCH0'.*mcuprune boards"):
        Board("/dev/ttyNOSUCH0")


def test_permission_denied(tmp_path):
    master, slave = os.openpty()
    path = os.ttyname(slave)
    try:
        if os.geteuid() == 0:
            os.chown(path, 0, 0)
            os.chmod(path, 0o600)
            os.seteuid(65534)          # as user 'nobody' for the open, as a normal user would be
            try:
                with pytest.raises(PortError, match="permission denied.*dialout"):
                    Board(path)
            finally:
                os.seteuid(0)
        else:
            os.chmod(path, 0)
            with pytest.raises(PortError, match="permission denied.*dialout"):
                Board(path)
    finally:
        os.close(master)
        os.close(slave)


def test_device_that_does_not_speak_the_protocol():
    """A pty whose other end chatters like an AT modem."""
    master, slave = os.openpty()
    stop = threading.Event()

    def chatter():
        while not stop.is_set():
            try:
                os.write(master, b"\r\nOK\r\nAT+ERROR unknown command\r\n")
            except OSError:
                return
            time.sleep(0.02)
    t = threading.Thread(target=chatter, daemon=True)
    t.start()
    try:
        with pytest.raises(NotResponding, match="no HIL firmware answered.*flashed with the firmware"):
            Board(os.ttyname(slave), timeout=0.2, retries=1)
    finally:
        stop.set()
        t.join()
        os.close(master)
        os.close(slave)


def test_firmware_version_mismatch(tmp_path):
    require_hil_tools()
    r = subprocess.run(["make", "-s", "-C", str(firmware_dir()), f"BUILD={tmp_path}",
                        "EXTRA_CFLAGS=-DPROTO_VERSION=2", "mps2-an386"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    with pytest.raises(FirmwareVersionError, match="protocol version 2.*this host speaks 1.*flash the firmware"):
        with EmulatedBoard("mps2-an386", firmware=tmp_path / "mps2-an386" / "firmware.elf", timeout=0.5, retries=1):
            pass


def test_qemu_missing(tmp_path):
    with pytest.raises(ToolMissingError, match=r"qemu-system-arm not found.*apt-get install qemu-system-arm"):
        with EmulatedBoard("mps2-an386", path=str(tmp_path)):
            pass


def test_toolchain_missing(tmp_path):
    with pytest.raises(ToolMissingError, match=r"arm-none-eabi-gcc not found.*apt-get install gcc-arm-none-eabi"):
        build_firmware("mps2-an386", path=str(tmp_path))


def test_unknown_boards():
    with pytest.raises(HILError, match="cannot be emulated; emulated boards: mps2-an386, mps2-an500"):
        EmulatedBoard("nucleo-f446re")
    with pytest.raises(HILError, match="no firmware target 'esp32'"):
        build_firmware("esp32")
    with pytest.raises(ValueError, match="unknown op 'conv3d'"):
        LayerSpec("conv3d", (4, 4, 4))


def test_qemu_stopped_on_error_and_ctrl_c():
    require_hil_tools()
    for exc in (RuntimeError("boom"), KeyboardInterrupt()):
        emu = EmulatedBoard("mps2-an386")
        with pytest.raises(type(exc)):
            with emu as board:
                pid = board.emulator.proc.pid
                raise exc
        assert emu.proc is None
        time.sleep(0.1)
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()


def test_qemu_exiting_mid_session_is_a_clear_error():
    require_hil_tools()
    emu = EmulatedBoard("mps2-an386")  # default timeouts to connect: a loaded machine can be slow to boot QEMU
    with emu as board:
        board.timeout, board.retries = 0.3, 1
        emu.proc.kill()
        emu.proc.wait()
        with pytest.raises((PortError, HILTimeoutError), match="lost the connection|failed after 2 tries"):
            board.hello()


def test_board_rejections_are_clear():
    require_hil_tools()
    with EmulatedBoard("mps2-an500") as board:
        big = LayerSpec("conv2d", (200, 200, 16), out_channels=16, kernel=3, padding=1)
        with pytest.raises(BoardError, match="CONFIG: layer exceeds the arena"):
            board.configure(big)
        with pytest.raises(BoardError, match="RUN: no layer configured"):
            board.run()
        with pytest.raises(BoardError, match="READ: out of range"):
            board.read(0, board.info["arena_bytes"] - 2, 4)
        assert board.hello()["board"] == "mps2-an500"


def test_cli_boards_lists_emulated(capsys):
    from lightning_mcuprune.hil import cli
    p = argparse.ArgumentParser()
    cli.register(p.add_subparsers(dest="command"))
    args = p.parse_args(["boards"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "connected boards:" in out and "mps2-an386" in out and "mps2-an500" in out


def test_discovery_and_flash_flow(tmp_path):
    """Discovery runs mbed-tools for real (no board attached here: an empty list). The flash flow copies the
    image to the board's drive and waits for HELLO; here the drive is a directory and the board that comes
    back is QEMU, so this checks the host side of flashing, not a real programming cycle."""
    from lightning_mcuprune.hil import connected_boards, flash
    assert isinstance(connected_boards(), list)
    with pytest.raises(HILError, match="USB drive .* is not mounted"):
        flash({"profile": "mps2-an386", "mount_point": str(tmp_path / "nope"), "port": "/dev/null"})
    with pytest.raises(HILError, match="no firmware target for board type 'K64F'"):
        flash({"profile": None, "board_type": "K64F", "mount_point": str(tmp_path), "port": "/dev/null"})
    require_hil_tools()
    with EmulatedBoard("mps2-an386") as emu:
        emu.close()                          # free the pty for the "flashed" board
        board = flash({"profile": "mps2-an386", "mount_point": str(tmp_path), "port": emu.port}, timeout=20)
        assert (tmp_path / "firmware.bin").stat().st_size > 1000
        assert board.info["board"] == "mps2-an386"
        board.close()
