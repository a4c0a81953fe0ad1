"""HIL serial protocol, version 1 (mirrors hil/src/proto.h; the spec is in docs/hil.md).

Frame: ``A5 5A | ver u8 | type u8 | seq u8 | len u16 LE | payload | crc32 LE`` where the CRC-32
(zlib.crc32) covers ver..payload and len <= MAX_PAYLOAD (4096 bytes). The answer to request type T is
``T | 0x80`` or an ERROR frame (0xFF: u8 code, u8 request type, u16 detail, ASCII message).
"""
from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

import numpy as np

from lightning_mcuprune.graph.ops import FIRMWARE_OP_CODES
from lightning_mcuprune.quantize.layer import WINDOW_OPS, LayerSpec
from lightning_mcuprune.errors import MCUPruneError

PROTO_VERSION = 1
SYNC = b"\xa5\x5a"
HEADER_BYTES = 7
CRC_BYTES = 4
MAX_PAYLOAD = 4096

T_HELLO, T_WRITE, T_READ, T_CONFIG, T_RUN, T_STATS, T_RESET, T_FILL = 1, 2, 3, 4, 5, 6, 7, 8
T_ERROR = 0xFF
REQUEST_NAMES = {T_HELLO: "HELLO", T_WRITE: "WRITE", T_READ: "READ", T_CONFIG: "CONFIG", T_RUN: "RUN",
                 T_STATS: "STATS", T_RESET: "RESET", T_FILL: "FILL"}

REGION_ARENA, REGION_WEIGHTS = 0, 1

ERRORS = {
    1: "bad CRC", 2: "frame too long", 3: "unknown frame type", 4: "bad payload length",
    5: "truncated frame", 6: "noise skipped", 7: "protocol version mismatch", 8: "out of range",
    9: "bad layer config", 10: "no layer configured", 11: "layer exceeds the arena",
    12: "layer exceeds the weights store", 13: "bad quantisation parameters", 14: "run cancelled by a new frame",
}
#: link-level errors: the request did not arrive intact, so it is safe to send it again (this host never
#: sends a frame longer than MAX_PAYLOAD, so "too long" means a damaged length field)
TRANSIENT_ERRORS = {1, 2, 5, 6}
E_CRC, E_TOO_LONG, E_UNKNOWN_TYPE, E_BAD_LENGTH, E_TRUNCATED, E_NOISE, E_VERSION = 1, 2, 3, 4, 5, 6, 7
#: E_NOISE's request-type byte when the line went idle after the noise (0: noise before a frame, which follows)
NOISE_LINE_IDLE = 0xFF
E_RANGE, E_BAD_CONFIG, E_NO_LAYER, E_ARENA, E_WEIGHTS, E_BAD_PARAMS, E_ABORTED = 8, 9, 10, 11, 12, 13, 14

#: op codes of the firmware, by resource-model op name
OP_CODES = FIRMWARE_OP_CODES   # defined in graph.ops; appended, never renumbered
CONFIG_BYTES = 64
COUNTER_KINDS = {1: "dwt", 2: "systick"}


def pack_config(spec: "LayerSpec") -> bytes:
    """The CONFIG payload (CONFIG_BYTES bytes) of a layer: op code, shapes, window, zero points, offsets."""
    s = spec.placed()
    h, w, c = s.input_shape
    oh, ow, oc = s.output_shape
    kh, kw = s.kernel if s.op in WINDOW_OPS or s.op == "pointwise_conv2d" else (1, 1)
    sh, sw = s.stride if s.op in WINDOW_OPS or s.op == "pointwise_conv2d" else (1, 1)
    t, _, l, _ = s.padding
    flags = 1 if s.op == "mul" and s.broadcast else 0
    b = struct.pack("<BB6H6H5h5IH", OP_CODES[s.op], flags, h, w, c, oh, ow, oc, kh, kw, sh, sw, t, l,
                    s.input_zp, s.input2_zp, s.output_zp, s.act_min, s.act_max,
                    s.input_offset, s.input2_offset or 0, s.output_offset, s.weights_offset, s.params_offset,
                    s.depth_multiplier if s.op == "depthwise_conv2d" else 0)
    return b.ljust(CONFIG_BYTES, b"\0")


def crc32(data: bytes) -> int:
    return zlib.crc32(data) & 0xFFFFFFFF


def encode_frame(ftype: int, seq: int, payload: bytes = b"", version: int = PROTO_VERSION) -> bytes:
    """One frame, ready to write. Raises ValueError if the payload is longer than MAX_PAYLOAD bytes."""
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"payload of {len(payload)} bytes exceeds the protocol maximum of {MAX_PAYLOAD} bytes")
    body = struct.pack("<BBBH", version, ftype, seq, len(payload)) + bytes(payload)
    return SYNC + body + struct.pack("<I", crc32(body))


@dataclass(frozen=True)
class Frame:
    type: int
    seq: int
    payload: bytes
    version: int = PROTO_VERSION

    @property
    def is_error(self) -> bool:
        return self.type == T_ERROR

    def error(self) -> tuple[int, int, int, str]:
        """(code, request type, detail, message) of an ERROR frame; MalformedReplyError if it is shorter than 4 bytes."""
        if len(self.payload) < 4:
            raise MalformedReplyError(f"ERROR frame of {len(self.payload)} bytes (at least 4: code, request type, detail)")
        code, req, detail = struct.unpack_from("<BBH", self.payload)
        return code, req, detail, self.payload[4:].decode("ascii", "replace")


class FrameParser:
    """Incremental parser: feed bytes, get the intact frames. Corrupt frames are dropped and counted."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.dropped_bytes = 0
        self.bad_frames = 0

    def feed(self, data: bytes) -> list[Frame]:
        self.buf += data
        out = []
        while True:
            i = self.buf.find(SYNC)
            if i < 0:
                keep = 1 if self.buf.endswith(SYNC[:1]) else 0
                self.dropped_bytes += len(self.buf) - keep
                del self.buf[: len(self.buf) - keep]
                return out
            if i:
                self.dropped_bytes += i
                del self.buf[:i]
            if len(self.buf) < HEADER_BYTES:
                return out
            ver, ftype, seq, n = struct.unpack_from("<BBBH", self.buf, 2)
            if n > MAX_PAYLOAD:
                self.bad_frames += 1
                del self.buf[:2]
                continue
            end = HEADER_BYTES + n + CRC_BYTES
            if len(self.buf) < end:
                return out
            (crc,) = struct.unpack_from("<I", self.buf, HEADER_BYTES + n)
            if crc != crc32(bytes(self.buf[2: HEADER_BYTES + n])):
                self.bad_frames += 1
                del self.buf[:2]  # resynchronise on the next sync pattern
                continue
            out.append(Frame(ftype, seq, bytes(self.buf[HEADER_BYTES: HEADER_BYTES + n]), ver))
            del self.buf[:end]


def fill_bytes(seed: int, n: int) -> np.ndarray:
    """The bytes the firmware's FILL command writes (int8): low byte of lowbias32(seed ^ (i * 0x9E3779B1))."""
    with np.errstate(over="ignore"):
        x = np.arange(n, dtype=np.uint32) * np.uint32(0x9E3779B1)
        x ^= np.uint32(seed & 0xFFFFFFFF)
        x ^= x >> np.uint32(16)
        x *= np.uint32(0x7FEB352D)
        x ^= x >> np.uint32(15)
        x *= np.uint32(0x846CA68B)
        x ^= x >> np.uint32(16)
    return (x & np.uint32(0xFF)).astype(np.uint8).view(np.int8)


class MalformedReplyError(MCUPruneError, ValueError):
    """An answer with a valid CRC whose contents are impossible (wrong length or fields). Board turns it into
    its HIL error type (board.BadReplyError)."""


BadReply = MalformedReplyError   # deprecated name


def _need(name: str, payload: bytes, n: int, exact: bool = True) -> None:
    if len(payload) < n or (exact and len(payload) != n):
        raise MalformedReplyError(f"{name} answer of {len(payload)} bytes, expected {'' if exact else 'at least '}{n}")


def parse_hello(payload: bytes) -> dict:
    """HELLO answer -> dict (sizes in bytes, clock in Hz). MalformedReplyError if its length or fields are impossible."""
    _need("HELLO", payload, 30, exact=False)
    proto, major, minor, patch, counter = struct.unpack_from("<5B", payload)
    clock, arena, wstore, max_payload, stack = struct.unpack_from("<5I", payload, 8)
    names = payload[28:].split(b"\0")
    if not names[0]:
        raise MalformedReplyError("HELLO answer without a board name")
    if counter not in COUNTER_KINDS:
        raise MalformedReplyError(f"HELLO answer with unknown cycle counter kind {counter}")
    if clock == 0 or arena == 0 or wstore == 0:
        raise MalformedReplyError(f"HELLO answer with clock {clock} Hz, arena {arena} B, weights store {wstore} B (all must be > 0)")
    if not 16 < max_payload <= MAX_PAYLOAD:
        raise MalformedReplyError(f"HELLO answer with max payload {max_payload} B (17..{MAX_PAYLOAD})")
    return {
        "protocol_version": proto,
        "firmware_version": f"{major}.{minor}.{patch}",
        "board": names[0].decode("ascii", "replace"),
        "core": names[1].decode("ascii", "replace") if len(names) > 1 else "",
        "clock_hz": clock,
        "arena_bytes": arena,
        "weights_bytes": wstore,
        "max_payload": max_payload,
        "stack_bytes": stack,
        "counter": COUNTER_KINDS[counter],
    }


def parse_stats(payload: bytes) -> dict:
    """STATS answer -> dict (bytes and frame counts). MalformedReplyError unless it is 32 bytes with consistent fields."""
    _need("STATS", payload, 32)
    keys = ("arena_bytes", "arena_high_water", "weights_bytes", "weights_high_water", "stack_bytes",
            "stack_used", "frames_ok", "frames_error")
    d = dict(zip(keys, struct.unpack_from("<8I", payload)))
    if d["arena_high_water"] > d["arena_bytes"] or d["weights_high_water"] > d["weights_bytes"] or \
            d["stack_used"] > d["stack_bytes"]:
        raise MalformedReplyError(f"STATS answer with a high-water mark above its region's size: {d}")
    return d


def parse_u32(name: str, payload: bytes, expect: int | None = None, at_most: int | None = None) -> int:
    """The u32 answer of WRITE, FILL (bytes) or CONFIG (arena end, bytes), checked against what it must be."""
    _need(name, payload, 4)
    (v,) = struct.unpack("<I", payload)
    if expect is not None and v != expect:
        raise MalformedReplyError(f"{name} answer says {v}, expected {expect}")
    if at_most is not None and v > at_most:
        raise MalformedReplyError(f"{name} answer says {v}, more than {at_most}")
    return v


def parse_run(payload: bytes, repeats: int) -> tuple[int, int, int, int]:
    """RUN answer -> (n, min, max, total) cycles. MalformedReplyError unless it is 32 bytes, n equals the repeats asked
    for, and min <= max, n*min <= total <= n*max."""
    _need("RUN", payload, 32)
    n, pad, mn, mx, total = struct.unpack("<IIQQQ", payload)
    if n != repeats or pad != 0:
        raise MalformedReplyError(f"RUN answer for {n} repeats (reserved word {pad}), asked for {repeats}")
    if not (mn <= mx and n * mn <= total <= n * mx):
        raise MalformedReplyError(f"RUN answer with inconsistent cycles: min {mn}, max {mx}, total {total} over {n} runs")
    return n, mn, mx, total
