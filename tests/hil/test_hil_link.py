"""The host link against peers that speak the protocol badly (a real pty with a scripted board on its other
end), and against the firmware under QEMU: reply validation, exclusive ports, sequence-0 error frames, RUN
timeouts and cancellation (issue 13, items 6, 7, 9, 14)."""
import os
import struct
import threading

import numpy as np
import pytest

from hil_fixtures import emulated_board
from lightning_mcuprune.hil import (
    BadReplyError, Board, BoardError, FirmwareVersionError, HILError, HILTimeoutError, LayerSpec, PortError,
)
from lightning_mcuprune.hil import protocol as P


def hello_payload(proto=P.PROTO_VERSION, clock=25_000_000, max_payload=P.MAX_PAYLOAD) -> bytes:
    return (struct.pack("<5B3x5I", proto, 1, 0, 0, 2, clock, 240 * 1024, 896 * 1024, max_payload, 16384)
            + b"fake-board\0cortex-m4")


class ScriptedBoard:
    """The board end of a pty: parses the host's frames and answers with what `answer(frame)` returns (a list
    of raw bytes to write). Records every request frame it got."""

    def __init__(self, answer):
        self.master, self.slave = os.openpty()
        self.port = os.ttyname(self.slave)
        self.answer = answer
        self.frames: list = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        import select
        parser = P.FrameParser()
        while not self.stop.is_set():
            r, _, _ = select.select([self.master], [], [], 0.02)
            if not r:
                continue
            try:
                data = os.read(self.master, 4096)
            except OSError:
                return
            for f in parser.feed(data):
                self.frames.append(f)
                for raw in self.answer(f):
                    os.write(self.master, raw)

    def close(self):
        self.stop.set()
        self.thread.join()
        os.close(self.master)
        os.close(self.slave)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def good(f: P.Frame) -> list:
    """Answers like the firmware would for HELLO; others per the tests."""
    if f.type == P.T_HELLO:
        return [P.encode_frame(P.T_HELLO | 0x80, f.seq, hello_payload())]
    return []


def run_reply(n=1, pad=0, mn=100, mx=100, total=None):
    total = n * mn if total is None else total
    return struct.pack("<IIQQQ", n, pad, mn, mx, total)


# ---- item 7: a valid CRC does not make a reply right ------------------------------------------------------
@pytest.mark.parametrize("payload, match", [
    (run_reply()[:20], "RUN answer of 20 bytes, expected 32"),               # short: was struct.error
    (run_reply(n=0, mn=2 ** 64 - 1, mx=0, total=0), "RUN answer for 0 repeats"),   # was min 2^64-1, mean 0/0
    (run_reply(n=1, mn=200, mx=100, total=150), "inconsistent cycles"),
    (run_reply(n=1, pad=7), "reserved word 7"),
])
def test_impossible_run_replies_raise_the_hil_error(payload, match):
    def answer(f):
        if f.type == P.T_RUN:
            return [P.encode_frame(P.T_RUN | 0x80, f.seq, payload)]
        return good(f)
    with ScriptedBoard(answer) as peer, Board(peer.port, timeout=0.5, retries=1) as board:
        with pytest.raises(BadReplyError, match=match) as e:
            board.run(1)
        assert isinstance(e.value, HILError) and "HIL firmware" in str(e.value)


@pytest.mark.parametrize("reply, error, match", [
    (lambda f: P.encode_frame(P.T_HELLO | 0x80, f.seq, hello_payload(), version=2), FirmwareVersionError,
     "answered HELLO in HIL protocol version 2"),
    (lambda f: P.encode_frame(P.T_HELLO | 0x80, f.seq, hello_payload()[:12]), BadReplyError, "at least 30"),
    (lambda f: P.encode_frame(P.T_HELLO | 0x80, f.seq, hello_payload(max_payload=0)), BadReplyError, "max payload 0"),
    (lambda f: P.encode_frame(P.T_STATS | 0x80, f.seq, b""), BadReplyError, "answer of type 0x86 to request type 0x01"),
    (lambda f: P.encode_frame(P.T_ERROR, f.seq, b"\x08"), BadReplyError, "ERROR frame of 1 bytes"),
])
def test_impossible_hello_replies(reply, error, match):
    with ScriptedBoard(lambda f: [reply(f)]) as peer:
        with pytest.raises(error, match=match):
            Board(peer.port, timeout=0.5, retries=1)


def test_other_replies_are_checked_against_the_request():
    def answer(f):
        if f.type == P.T_WRITE:   # claims fewer bytes than were sent
            return [P.encode_frame(P.T_WRITE | 0x80, f.seq, struct.pack("<I", len(f.payload) - 9))]
        if f.type == P.T_CONFIG:  # an arena end that is not the layer's
            return [P.encode_frame(P.T_CONFIG | 0x80, f.seq, struct.pack("<I", 3))]
        if f.type == P.T_STATS:
            return [P.encode_frame(P.T_STATS | 0x80, f.seq, struct.pack("<8I", 10, 11, 10, 0, 8, 0, 1, 0))]
        return good(f)
    with ScriptedBoard(answer) as peer, Board(peer.port, timeout=0.5, retries=1) as board:
        with pytest.raises(BadReplyError, match="WRITE answer says 1, expected 2"):
            board.write(0, 0, b"ab")
        with pytest.raises(BadReplyError, match=r"CONFIG answer says 3, expected 48"):
            board.configure(LayerSpec("add", (2, 2, 4)))
        assert board.configured is None
        with pytest.raises(BadReplyError, match="high-water mark above"):
            board.get_stats()


# ---- item 14: error frames of sequence 0 ---------------------------------------------------------------
def test_sequence_0_error_frames_act_at_once():
    """A board that reports every frame as cut short before its sequence number: the host must not wait out its
    20 s timeout per try (it used to ignore such frames and fail with 'no answer' after 2 x 20 s)."""
    truncated = P.encode_frame(P.T_ERROR, 0, struct.pack("<BBH", P.E_TRUNCATED, 0, 3) + b"truncated header")
    with ScriptedBoard(lambda f: [truncated]) as peer:
        with pytest.raises(HILError, match="no HIL firmware answered") as e:
            Board(peer.port, timeout=20, retries=1)
        assert "failed after 2 tries (board saw a damaged frame (truncated frame, seq 0) x2" in str(e.value.__cause__)
        assert len(peer.frames) == 2


def test_sequence_0_error_then_the_answer():
    noise_idle = P.encode_frame(P.T_ERROR, 0, struct.pack("<BBH", P.E_NOISE, P.NOISE_LINE_IDLE, 9) + b"noise")
    noise_before = P.encode_frame(P.T_ERROR, 0, struct.pack("<BBH", P.E_NOISE, 0, 9) + b"noise")

    def answer(f):
        if len(peer.frames) == 1:
            return [noise_idle]                       # the first HELLO was lost in noise
        if len(peer.frames) == 2:
            return [noise_before] + good(f)           # noise before this frame: its answer follows
        return good(f)
    with ScriptedBoard(answer) as peer:
        board = Board(peer.port, timeout=20, retries=3)
        assert board.info["board"] == "fake-board" and board.stats["retries"] == 1
        board.hello()
        assert board.stats["retries"] == 1 and len(peer.frames) == 3
        board.close()


# ---- item 9: RUN is not sent again on a plain timeout ---------------------------------------------------
def test_run_is_not_resent_on_a_plain_timeout():
    with ScriptedBoard(good) as peer, Board(peer.port, timeout=0.3, retries=4) as board:
        with pytest.raises(HILTimeoutError, match="RUN .* is not sent again.*run\\(timeout=...\\)"):
            board.run(1, timeout=0.3)
        assert [f.type for f in peer.frames].count(P.T_RUN) == 1


# ---- item 6: exclusive access ------------------------------------------------------------------------------
def test_second_host_on_a_pty_is_refused():
    with ScriptedBoard(good) as peer, Board(peer.port, timeout=0.5) as first:
        with pytest.raises(PortError, match="is busy: another program.*close that one first"):
            Board(peer.port, timeout=0.5)
        assert first.hello()["board"] == "fake-board"


@pytest.fixture(scope="module")
def board():
    yield from emulated_board("mps2-an386")


def test_second_host_on_the_qemu_pty_is_refused(board):
    with pytest.raises(PortError, match="is busy"):
        Board(board.port)
    assert board.hello()["board"] == "mps2-an386"


# ---- item 9 on QEMU: timeouts sized from the layer; a long RUN is cancelled by the next frame ---------------
BIG = LayerSpec("conv2d", (32, 32, 32), out_channels=32, kernel=3, padding=1)   # ~9.4M MACs, ~0.2 s on QEMU


def test_run_timeout_is_sized_from_the_configured_layer(board):
    board.load_layer(BIG, seed=1)
    link = board.timeout
    try:
        board.timeout = 0.02      # far below the layer's run time; RUN must not use it alone
        r = board.run(2)
    finally:
        board.timeout = link
    assert r.repeats == 2 and r.min > 10 ** 7


def test_long_run_is_cancelled_by_the_next_frame(board):
    board.load_layer(BIG, seed=1)
    before = board.get_stats()["frames_ok"]
    with pytest.raises(HILTimeoutError, match="not sent again"):
        board.run(10_000, timeout=0.5)      # 10,000 repeats would keep the board busy for half an hour
    retries = board.stats["retries"]
    assert board.hello()["board"] == "mps2-an386"    # the firmware cancelled the run at this HELLO
    hello_tries = 1 + board.stats["retries"] - retries  # (a loaded host may need a second HELLO)
    assert board.get_stats()["frames_ok"] == before + 1 + hello_tries + 1   # one RUN, the HELLOs, this STATS
    assert board.run(1).repeats == 1                     # the layer is still configured


def test_firmware_rejects_what_the_host_would_not_send(board):
    """The host's checks are not the only ones: RUN with repeats 0 is refused by the firmware too."""
    with pytest.raises(BoardError, match="RUN: out of range"):
        P.parse_run(board.request(P.T_RUN, struct.pack("<I", 0)), 0)
    assert np.isfinite(board.run(1).mean)
