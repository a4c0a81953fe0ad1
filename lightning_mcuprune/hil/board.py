"""Board: the host end of the HIL link, over any pyserial URL (/dev/ttyACM0, /dev/pts/N, socket://host:port).

The port is opened exclusively (a second host on the same board gets PortError "busy", not mixed-up answers).
Every request carries a sequence number; answers are CRC-checked, matched by it, and their length and fields
validated (an impossible answer raises BadReplyError). A request whose frame the board reports as damaged
(bad CRC, truncated, noise) is sent again after a short back-off; one that gets no intact answer in time is
sent again after its timeout, or after SEQ0_GRACE if the board reported a lost frame in an error frame of
sequence 0 (sent when it could not read the sequence number). All requests are idempotent; after ``retries``
more tries a HILTimeoutError lists why each try failed. RUN is the exception: it is not sent again when nothing
at all came back (the layer may simply be slower than the timeout, and resending would multiply the work);
its timeout is sized from the configured layer, and the firmware cancels a run when a new frame arrives
between repeats. Data is never returned unless its frame's CRC was right and its contents are possible.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import errno
import struct
import time
from dataclasses import dataclass
from typing import Optional

import numpy as np
import serial

from lightning_mcuprune.hil import protocol as P
from lightning_mcuprune.quantize.layer import LayerSpec
from lightning_mcuprune.errors import MCUPruneError

if TYPE_CHECKING:
    from collections.abc import Callable


try:  # flushing a pty whose other end is gone (QEMU exited) raises termios.error, not an OSError
    import termios
    _TERMIOS_ERRORS: tuple = (termios.error,)
except ImportError:  # not POSIX
    _TERMIOS_ERRORS = ()


class HILError(MCUPruneError, RuntimeError):
    """Base class of HIL errors; the message says what went wrong and what would be right."""


class PortError(HILError):
    """The serial port cannot be opened (missing, no permission, busy)."""


class NotRespondingError(HILError):
    """Nothing on the port answers the HIL protocol."""


NotResponding = NotRespondingError   # deprecated name


class FirmwareVersionError(HILError):
    """The board runs a firmware whose protocol version this host does not speak."""


class HILTimeoutError(HILError):
    """A request got no intact answer after all retries."""


class BadReplyError(HILError):
    """The board answered with a valid CRC but impossible contents (wrong length, version or fields)."""


class BoardError(HILError):
    """The board refused a request (its ERROR frame). ``code`` is the firmware error code."""

    def __init__(self, code: int, request: int, detail: int, message: str):
        self.code, self.request, self.detail = code, request, detail
        name = P.REQUEST_NAMES.get(request, f"type 0x{request:02x}")
        super().__init__(f"board rejected {name}: {P.ERRORS.get(code, 'error')} ({message}; detail {detail})")


#: after an error frame of seq 0 reporting a lost frame, wait this long (s) for an answer, then send again
SEQ0_GRACE = 0.3
#: RUN timeout per MAC (s): generous for QEMU on a loaded host (measured ~0.01-0.05 us per MAC) and for
#: silicon (~10 cycles per MAC at >= 16 MHz is < 1 us)
RUN_SECONDS_PER_MAC = 2e-6


@dataclass(frozen=True)
class RunResult:
    """Cycles of ``repeats`` runs of the configured layer (cycles of the board's counter, see hello()['counter'])."""

    repeats: int
    min: int
    max: int
    total: int

    @property
    def mean(self) -> float:
        return self.total / self.repeats


def _open_serial(port: str, baudrate: int, timeout: float) -> serial.SerialBase:
    """Open `port` exclusively (flock; pyserial's exclusive=True), with clear PortErrors."""
    try:
        return serial.serial_for_url(port, baudrate=baudrate, timeout=timeout, write_timeout=max(timeout, 2.0),
                                     exclusive=True)
    except serial.SerialException as e:
        err = getattr(e, "errno", None)
        text = str(e)
        if err == errno.ENOENT or "No such file" in text or "could not open port" in text and "[Errno 2]" in text:
            raise PortError(f"no such port: {port!r}. Connected boards: `mcuprune boards`; an emulated board: "
                            f"--emulate mps2-an386 on the command line, EmulatedBoard('mps2-an386') in Python.") from e
        if err == errno.EACCES or "Permission denied" in text or "[Errno 13]" in text:
            raise PortError(f"permission denied opening {port!r}: add your user to the 'dialout' group "
                            f"(sudo usermod -aG dialout $USER, then log in again) or fix the device's permissions.") from e
        if err in (errno.EBUSY, errno.EAGAIN) or "[Errno 16]" in text or "[Errno 11]" in text or "busy" in text.lower() \
                or "exclusively lock" in text:
            raise PortError(f"port {port!r} is busy: another program (another calibrate, benchmark or Board) holds "
                            f"it open; close that one first, two hosts on one board would mix up their answers.") from e
        raise PortError(f"cannot open {port!r}: {text}") from e


class Board:
    """A board running the HIL firmware, reached over pyserial.

    ``Board(port, baudrate=115200, timeout=1.0, retries=4)`` opens the port and sends HELLO (unless
    ``hello=False``); a firmware speaking another protocol version raises FirmwareVersionError, a device
    that does not speak the protocol at all raises NotRespondingError. ``board.serial`` is the pyserial object.
    """

    #: least base time (s) a RUN waits before its per-MAC allowance: 0 on real boards (the link timeout);
    #: EmulatedBoard raises it, since a starved QEMU on a loaded host answers a short RUN seconds late
    run_base_timeout: float = 0.0

    def __init__(self, port: str, baudrate: int = 115200, timeout: float = 1.0, retries: int = 4,
                 hello: bool = True, chunk: int = P.MAX_PAYLOAD):
        self.port = port
        self.chunk = int(chunk)
        self.timeout = float(timeout)
        self.retries = int(retries)
        self.serial = _open_serial(port, baudrate, min(self.timeout, 0.05))
        self.info: Optional[dict] = None
        self.last_run: Optional[RunResult] = None
        self.stats = {"requests": 0, "retries": 0, "dropped_frames": 0}
        self._seq = 0
        self._parser = P.FrameParser()
        self._pending: list = []
        self.last_inputs: dict = {}
        self.configured: Optional[LayerSpec] = None   # the layer of the last CONFIG (sizes RUN's timeout)
        if hello:
            try:
                self.hello()
            except HILTimeoutError as e:
                self.close()
                raise NotRespondingError(
                    f"no HIL firmware answered on {port!r} (tried {self.retries + 1} times, {self.timeout:g} s each): "
                    f"is the board flashed with the firmware from hil/ (make -C hil <board>) and the baud rate "
                    f"{baudrate} right?") from e
            except HILError:
                self.close()
                raise

    # ---- link ----
    def close(self) -> None:
        try:
            self.serial.close()
        except Exception:
            pass

    def __enter__(self) -> "Board":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _next_seq(self) -> int:
        self._seq = self._seq % 255 + 1  # 1..255; the firmware uses 0 for unsolicited errors
        return self._seq

    def _read_frame(self, deadline: float) -> Optional[P.Frame]:
        while True:
            if self._pending:
                return self._pending.pop(0)
            if time.monotonic() > deadline:
                return None
            data = self.serial.read(max(1, self.serial.in_waiting))
            if data:
                before = self._parser.bad_frames
                self._pending.extend(self._parser.feed(data))
                self.stats["dropped_frames"] += self._parser.bad_frames - before

    def request(self, ftype: int, payload: bytes = b"", timeout: Optional[float] = None,
                parse: "Callable[[bytes], object] | None" = None) -> object:
        """Send one request and return the answer's payload, or parse(payload) (a protocol.parse_* check that
        raises protocol.MalformedReplyError); retries on loss or damage, raises HILError (BadReplyError for a bad answer)."""
        try:
            answer = self._request(ftype, payload, timeout)
            return parse(answer) if parse else answer
        except (serial.SerialException, OSError, *_TERMIOS_ERRORS) as e:
            raise PortError(f"lost the connection to {self.port!r} ({e}): was the board unplugged or reset, "
                            f"or did QEMU exit?") from e
        except P.MalformedReplyError as e:
            raise BadReplyError(f"{P.REQUEST_NAMES.get(ftype, hex(ftype))} to {self.port!r}: {e}; the device does "
                                f"not answer like the HIL firmware of this package (flash hil/ again)") from e

    def _request(self, ftype: int, payload: bytes, timeout: Optional[float]) -> bytes:
        timeout = self.timeout if timeout is None else timeout
        name = P.REQUEST_NAMES.get(ftype, hex(ftype))
        self.stats["requests"] += 1
        # whatever arrived before this request cannot answer it (a late report of noise would look like our
        # request was lost): start from an empty line
        self.serial.reset_input_buffer()
        self._parser = P.FrameParser()
        self._pending = []
        last = "no answer"
        reasons: list = []   # why each try failed, for the error message
        seqs: list = []      # every try gets its own sequence number; an answer to any of them will do
        timed_out = False
        for attempt in range(self.retries + 1):
            if attempt:
                reasons.append(last)
                self.stats["retries"] += 1
                # after a damage report, back off a little (doubling): on a loaded host QEMU's UART stalls come
                # in bursts, and a request resent at once falls into the same burst; a timeout has waited already
                time.sleep(0.005 * attempt if timed_out else min(timeout, 0.02 * 2 ** attempt))
                if timed_out:  # start clean: the parser may wait for the rest of a frame with a damaged length
                    self.serial.reset_input_buffer()
                    self._parser = P.FrameParser()
                    self._pending = []
            seq = self._next_seq()
            seqs.append(seq)
            self.serial.write(P.encode_frame(ftype, seq, payload))
            self.serial.flush()
            deadline = time.monotonic() + timeout
            damage0 = (self._parser.bad_frames, self._parser.dropped_bytes)
            reported = False    # the board reported a lost frame in an error frame of seq 0
            while True:
                f = self._read_frame(deadline)
                timed_out = f is None
                if f is None:
                    damaged = reported or (self._parser.bad_frames, self._parser.dropped_bytes) != damage0
                    if ftype == P.T_RUN and not damaged:
                        raise HILTimeoutError(
                            f"RUN on {self.port!r} got no answer in {timeout:g} s and is not sent again (that would "
                            f"run the layer again): the layer may take longer than that; give run(timeout=...) in "
                            f"seconds. The board cancels the run at the next frame it receives.")
                    if not reported:
                        last = "a damaged answer" if damaged else "no answer"
                    break
                if f.version != P.PROTO_VERSION:
                    raise FirmwareVersionError(
                        f"the board on {self.port!r} answered {name} in HIL protocol version {f.version}, this host "
                        f"speaks {P.PROTO_VERSION}: flash the firmware from this package's hil/ directory.")
                if f.is_error:
                    code, req, detail, msg = f.error()
                    if f.seq == 0:
                        # the board could not read a sequence number: a header cut short, or noise and then an
                        # idle line, mean our request was lost (noise before a frame is not: that frame follows)
                        # (it may also be the tail of an earlier try: wait SEQ0_GRACE for an answer, not the timeout)
                        if code == P.E_TRUNCATED or (code == P.E_NOISE and req == P.NOISE_LINE_IDLE):
                            last = f"board saw a damaged frame ({P.ERRORS[code]}, seq 0)"
                            reported = True
                            deadline = min(deadline, time.monotonic() + SEQ0_GRACE)
                        continue
                    if f.seq not in seqs:
                        continue  # about an earlier request
                    if code == P.E_ABORTED:
                        if f.seq != seq:
                            continue  # an earlier try of this RUN, cancelled by the current one
                        last = "the run was cancelled by noise on the line"
                        break
                    if code in P.TRANSIENT_ERRORS:
                        if f.seq != seq:
                            continue  # an earlier try was damaged; the current one is under way
                        last = f"board saw a damaged frame ({P.ERRORS[code]})"
                        break
                    if req != ftype:
                        continue  # about some other (garbled) frame that happened to carry our seq
                    if code == P.E_VERSION:
                        raise FirmwareVersionError(
                            f"the board on {self.port!r} speaks HIL protocol version {detail}, this host speaks "
                            f"{P.PROTO_VERSION}: flash the firmware from this package's hil/ directory.")
                    raise BoardError(code, req, detail, msg)
                if f.seq not in seqs:
                    continue  # stale answer to an earlier request
                if f.type != (ftype | 0x80):
                    raise P.MalformedReplyError(f"answer of type 0x{f.type:02x} to request type 0x{ftype:02x}")
                return f.payload
        reasons.append(last)
        why = "; ".join(f"{r}{f' x{reasons.count(r)}' if reasons.count(r) > 1 else ''}" for r in dict.fromkeys(reasons))
        raise HILTimeoutError(f"{name} to {self.port!r} failed after {self.retries + 1} tries ({why}; "
                              f"{timeout:g} s timeout each)")

    # ---- typed API ----
    def hello(self) -> dict:
        """HELLO: firmware version, board, core, clock (Hz), arena and weights store (bytes), cycle counter."""
        info = self.request(P.T_HELLO, parse=P.parse_hello)
        if info["protocol_version"] != P.PROTO_VERSION:
            raise FirmwareVersionError(
                f"the board on {self.port!r} runs firmware {info['firmware_version']} with protocol version "
                f"{info['protocol_version']}; this host speaks {P.PROTO_VERSION}: flash the firmware from hil/.")
        info["cycles_note"] = ("DWT cycle counter (core clock cycles)" if info["counter"] == "dwt" else
                               "SysTick at the core clock; on QEMU -icount it is instruction-count based")
        self.info = info
        return info

    def _max_payload(self) -> int:
        return min(self.chunk, (self.info or {}).get("max_payload", P.MAX_PAYLOAD))

    def write(self, region: int, offset: int, data: "bytes | np.ndarray") -> None:
        """Write bytes into the arena (region 0) or weights store (region 1) at offset (bytes)."""
        data = bytes(np.ascontiguousarray(data).view(np.uint8).tobytes() if isinstance(data, np.ndarray) else data)
        step = self._max_payload() - 8
        for i in range(0, len(data), step) or [0]:
            self._write_part(region, offset + i, data[i: i + step])

    def _write_part(self, region: int, offset: int, part: bytes) -> None:
        """One WRITE; if the board keeps seeing it damaged (a loaded host can stall QEMU's UART beyond the
        firmware's byte timeout, which cuts long frames), the bytes go again in frames of 1/4 the size."""
        try:
            self.request(P.T_WRITE, struct.pack("<B3xI", region, offset) + part,
                         parse=lambda a, n=len(part): P.parse_u32("WRITE", a, n))
        except HILTimeoutError:
            if len(part) <= 64:
                raise
            step = max(64, len(part) // 4)
            for i in range(0, len(part), step):
                self._write_part(region, offset + i, part[i: i + step])

    def read(self, region: int, offset: int, n: int) -> bytes:
        """Read n bytes from the arena (0) or weights store (1)."""
        out = bytearray()
        step = self._max_payload()
        while len(out) < n:
            k = min(step, n - len(out))
            part = self.request(P.T_READ, struct.pack("<B3xII", region, offset + len(out), k))
            if len(part) != k:
                raise BadReplyError(f"READ answered {len(part)} bytes, asked for {k}")
            out += part
        return bytes(out)

    def fill(self, region: int, offset: int, n: int, seed: int) -> np.ndarray:
        """Fill n bytes on the board with pseudo-random int8 from seed (fast; no upload); returns the same bytes."""
        self.request(P.T_FILL, struct.pack("<B3xIII", region, offset, n, seed & 0xFFFFFFFF),
                     parse=lambda a: P.parse_u32("FILL", a, n))
        return P.fill_bytes(seed, n)

    def configure(self, spec: LayerSpec, check_overflow: bool = True) -> int:
        """CONFIG: set the layer; returns the arena end (bytes) of its tensors.

        A layer whose int32 accumulator could overflow (LayerSpec.check_accumulator, with spec.weights if given)
        is refused here with a ValueError; the firmware refuses it too (CONFIG or RUN). check_overflow=False
        skips the host check (only to test the firmware's own)."""
        if check_overflow:
            spec.check_accumulator()
        self.configured = None
        end = self.request(P.T_CONFIG, P.pack_config(spec), parse=lambda a: P.parse_u32("CONFIG", a, spec.arena_end))
        self.configured = spec
        return end

    def load_layer(self, spec: LayerSpec, x: "np.ndarray | None" = None, x2: "np.ndarray | None" = None, seed: int = 0,
                   check_overflow: bool = True) -> dict:
        """Configure spec and put its weights, parameters and inputs on the board.

        Data given (spec.weights, x, x2) is uploaded; missing data is filled from seed. Returns the int8
        arrays now on the board: {"x", "x2", "weights"} (for the host reference). A layer whose int32
        accumulator could overflow with these weights is refused (ValueError) before anything is sent.
        """
        s = spec.placed()
        w = None
        if s.weights_bytes:
            w = (np.asarray(s.weights, dtype=np.int8) if s.weights is not None else
                 P.fill_bytes(seed * 3 + 1, s.weights_bytes)).reshape(s.weights_shape)
            if check_overflow:
                s.check_accumulator(w)
        self.configure(s, check_overflow=check_overflow and not s.weights_bytes)
        out = {"x": None, "x2": None, "weights": w}
        if s.weights_bytes:
            if s.weights is not None:
                self.write(P.REGION_WEIGHTS, s.weights_offset, w)
            else:
                self.fill(P.REGION_WEIGHTS, s.weights_offset, s.weights_bytes, seed * 3 + 1)
        prm = s.params_array()
        if prm.size:
            self.write(P.REGION_WEIGHTS, s.params_offset, prm.astype("<i4"))
        for key, data, off, sd in (("x", x, s.input_offset, seed * 3 + 2), ("x2", x2, s.input2_offset, seed * 3 + 3)):
            if key == "x2" and s.op not in ("add", "mul"):
                continue
            shape = s.input2_shape if key == "x2" else s.input_shape
            if data is not None:
                arr = np.asarray(data, dtype=np.int8).reshape(shape)
                self.write(P.REGION_ARENA, off, arr)
            else:
                arr = self.fill(P.REGION_ARENA, off, int(np.prod(shape)), sd).reshape(shape)
            out[key] = arr
        return out

    def run(self, repeats: int = 1, timeout: Optional[float] = None, macs: Optional[int] = None) -> RunResult:
        """RUN the configured layer `repeats` times (1..10000); cycles per run (min, max) and in total.

        timeout (s) defaults to the link timeout (at least `run_base_timeout`) plus RUN_SECONDS_PER_MAC per MAC and repeat, with the MACs
        (plus input and output elements) of the layer of the last configure(), or `macs` if given. A RUN that
        gets no answer at all in that time raises HILTimeoutError without being sent again.
        """
        if timeout is None:
            if macs is None:
                s = self.configured
                macs = (s.macs + s.input_bytes + s.output_bytes) if s is not None else 0
            timeout = max(self.timeout, self.run_base_timeout) + RUN_SECONDS_PER_MAC * macs * repeats
        n, mn, mx, total = self.request(P.T_RUN, struct.pack("<I", repeats), timeout=timeout,
                                        parse=lambda a: P.parse_run(a, repeats))
        self.last_run = RunResult(n, mn, mx, total)
        return self.last_run

    def run_layer(self, spec: LayerSpec, repeats: int = 1, x: "np.ndarray | None" = None,
                  x2: "np.ndarray | None" = None, seed: int = 0,
                  timeout: Optional[float] = None) -> int:
        """Load spec (see load_layer) and run it `repeats` times; returns cycles of one run (the minimum).

        ``board.last_run`` keeps min/max/total, ``board.last_inputs`` the data the layer ran on.
        """
        self.last_inputs = self.load_layer(spec, x, x2, seed)
        return self.run(repeats, timeout).min

    def read_output(self, spec: LayerSpec) -> np.ndarray:
        """The layer's output (int8, spec.output_shape) read back from the arena."""
        s = spec.placed()
        return np.frombuffer(self.read(P.REGION_ARENA, s.output_offset, s.output_bytes), dtype=np.int8
                             ).reshape(s.output_shape).copy()

    def get_stats(self) -> dict:
        """STATS: arena and weights-store high-water marks (bytes), stack size and use (bytes), frame counts."""
        return self.request(P.T_STATS, parse=P.parse_stats)

    def reset(self, hard: bool = False) -> None:
        """RESET: clear the layer and the high-water marks; hard=True also resets the core (then HELLO again)."""
        if self.request(P.T_RESET, bytes([1 if hard else 0])):
            raise BadReplyError(f"RESET to {self.port!r} answered with a payload (it has none)")
        self.configured = None
        if hard:
            deadline = time.monotonic() + 10
            while True:
                try:
                    self.hello()
                    return
                except HILTimeoutError:
                    if time.monotonic() > deadline:
                        raise
