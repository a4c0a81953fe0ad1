"""Emulated boards: the HIL firmware under qemu-system-arm with -icount, its UART on a pty.

``with EmulatedBoard("mps2-an386") as board: board.hello()`` builds the firmware if needed, starts QEMU,
opens the pty with pyserial and yields a connected Board. QEMU is stopped on exit, on errors and on Ctrl-C
(and dies with this process: PR_SET_PDEATHSIG).

Cycles on QEMU are SysTick ticks of a virtual 25 MHz clock; with ``-icount shift=N`` each guest instruction
takes 2^N ns of virtual time, so cycles = instructions * 2^N / 40 (N = 5: 0.8 cycles per instruction).
They are instruction-count based and deterministic, not a model of the pipeline.
"""
from __future__ import annotations

import ctypes
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Optional

from lightning_mcuprune.hil.board import Board, HILError

#: boards QEMU can run, with their QEMU machine names
EMULATED_BOARDS = {"mps2-an386": "mps2-an386", "mps2-an500": "mps2-an500"}
#: boards the firmware Makefile builds
FIRMWARE_TARGETS = ("mps2-an386", "mps2-an500", "nucleo-f767zi", "nucleo-f446re")
DEFAULT_ICOUNT_SHIFT = 5
#: base RUN timeout (s) on QEMU: a short RUN got no answer within the 2 s link timeout at load ~10
RUN_BASE_TIMEOUT = 20.0
#: write timeout (s) on QEMU's pty: a starved QEMU on a loaded host can leave the pty unread for longer than the
#: 2 s a real board gets (a calibration failed with "Write timeout" at load ~10); if QEMU exits, writes fail at once
WRITE_TIMEOUT = 60.0


class ToolMissingError(HILError):
    """A program the HIL needs is not installed; the message names the Debian package."""


def firmware_dir() -> Path:
    """The firmware sources (hil/ beside the package, or $MCUPRUNE_HIL_DIR)."""
    env = os.environ.get("MCUPRUNE_HIL_DIR")
    d = Path(env) if env else Path(__file__).resolve().parents[2] / "hil"
    if not (d / "Makefile").is_file():
        raise HILError(f"firmware sources not found at {d} (expected hil/Makefile); set MCUPRUNE_HIL_DIR to the "
                       f"hil/ directory of a lightning-mcuprune checkout.")
    return d


def require_tool(name: str, debian_package: str, path: Optional[str] = None) -> str:
    """Full path of program `name`, or ToolMissingError naming the Debian package that installs it."""
    found = shutil.which(name, path=path)
    if not found:
        raise ToolMissingError(f"{name} not found on PATH: install the Debian package {debian_package} "
                               f"(sudo apt-get install {debian_package}).")
    return found


def build_firmware(board: str, path: Optional[str] = None) -> Path:
    """Build (if out of date) the firmware for `board` with make; returns the ELF path."""
    if board not in FIRMWARE_TARGETS:
        raise HILError(f"no firmware target {board!r}; targets: {', '.join(FIRMWARE_TARGETS)}")
    require_tool("arm-none-eabi-gcc", "gcc-arm-none-eabi", path)
    require_tool("make", "make", path)
    d = firmware_dir()
    env = dict(os.environ)
    if path is not None:
        env["PATH"] = path
    r = subprocess.run(["make", "-s", "-C", str(d), board], capture_output=True, text=True, env=env)
    if r.returncode != 0:
        raise HILError(f"firmware build for {board} failed:\n{r.stdout}{r.stderr}")
    elf = d / "build" / board / "firmware.elf"
    if not elf.is_file():
        raise HILError(f"firmware build for {board} produced no {elf}")
    return elf


try:  # loaded here, not in the forked child (dlopen after fork is unsafe in a threaded process)
    _PRCTL = ctypes.CDLL("libc.so.6", use_errno=True).prctl
except (OSError, AttributeError):  # not glibc Linux
    _PRCTL = None


def _die_with_parent() -> None:  # runs in the child before exec
    if _PRCTL is not None:
        _PRCTL(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG: QEMU ends when this process does


class EmulatedBoard:
    """Context manager: QEMU running the HIL firmware for `board`, yielding a connected Board.

    ``icount_shift`` (N): one guest instruction = 2^N ns of virtual time. ``path`` overrides PATH when
    looking for qemu-system-arm and the toolchain (used by tests).
    """

    def __init__(self, board: str = "mps2-an386", icount_shift: int = DEFAULT_ICOUNT_SHIFT, build: bool = True,
                 firmware: Optional[Path] = None, timeout: float = 2.0, retries: int = 4,
                 path: Optional[str] = None, start_timeout: float = 15.0):
        if board not in EMULATED_BOARDS:
            raise HILError(f"{board!r} cannot be emulated; emulated boards: {', '.join(EMULATED_BOARDS)}")
        self.board_name = board
        self.icount_shift = int(icount_shift)
        self.build = build
        self.firmware = Path(firmware) if firmware else None
        self.timeout, self.retries, self.path, self.start_timeout = timeout, retries, path, start_timeout
        self.proc: Optional[subprocess.Popen] = None
        self.board: Optional[Board] = None
        self.pty: Optional[str] = None
        self.output: list = []          # QEMU's own messages (not the guest's UART)

    def command(self, firmware: Path, qemu: str = "qemu-system-arm") -> list[str]:
        return [qemu, "-M", EMULATED_BOARDS[self.board_name], "-nographic", "-monitor", "none",
                "-serial", "pty", "-icount", f"shift={self.icount_shift}", "-kernel", str(firmware)]

    def __enter__(self) -> Board:
        qemu = require_tool("qemu-system-arm", "qemu-system-arm", self.path)
        fw = self.firmware or (build_firmware(self.board_name, self.path) if self.build else
                               firmware_dir() / "build" / self.board_name / "firmware.elf")
        if not Path(fw).is_file():
            raise HILError(f"firmware image {fw} not found: build it with `make -C hil {self.board_name}`.")
        try:
            self.proc = subprocess.Popen(self.command(fw, qemu), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                         stderr=subprocess.STDOUT, text=True, preexec_fn=_die_with_parent)
            self.pty = self._find_pty()
            self.board = Board(self.pty, timeout=self.timeout, retries=self.retries)
            self.board.serial.write_timeout = WRITE_TIMEOUT
            self.board.run_base_timeout = RUN_BASE_TIMEOUT
            self.board.emulator = self
            self.board.info["icount_shift"] = self.icount_shift
            return self.board
        except BaseException:
            self.close()
            raise

    def _find_pty(self) -> str:
        assert self.proc is not None and self.proc.stdout is not None
        deadline = time.monotonic() + self.start_timeout
        seen = []
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            seen.append(line)
            m = re.search(r"char device redirected to (/dev/pts/\d+)", line)
            if m:
                # keep draining QEMU's output so that it never blocks on a full pipe
                self.output = seen
                threading.Thread(target=self._drain, args=(self.proc.stdout, seen), daemon=True).start()
                return m.group(1)
        self.proc.poll()
        raise HILError(f"QEMU did not report its pty (exit code {self.proc.returncode}); output:\n{''.join(seen)}")

    @staticmethod
    def _drain(stream, lines: list) -> None:
        try:
            for line in stream:
                if len(lines) < 1000:
                    lines.append(line)
        except (OSError, ValueError):
            pass

    def close(self) -> None:
        if self.board is not None:
            self.board.close()
            self.board = None
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(5)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            if self.proc.stdout:
                self.proc.stdout.close()
            self.proc = None

    def __exit__(self, *exc) -> None:
        self.close()

    def cycles_to_instructions(self, cycles: float) -> float:
        """Guest instructions behind `cycles` SysTick ticks (virtual 25 MHz clock, 2^shift ns per instruction)."""
        clock = (self.board.info or {}).get("clock_hz", 25_000_000) if self.board else 25_000_000
        return cycles * 1e9 / clock / (1 << self.icount_shift)
