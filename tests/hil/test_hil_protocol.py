"""Host-side protocol codec and LayerSpec (no QEMU needed)."""
import struct
import zlib

import numpy as np
import pytest

from lightning_mcuprune.hil import protocol as P
from lightning_mcuprune.quantize.layer import LayerSpec


def test_frame_layout_and_crc():
    f = P.encode_frame(P.T_READ, 7, b"\x01\x02")
    assert f[:2] == b"\xa5\x5a" and f[2:7] == bytes([1, 3, 7, 2, 0]) and f[7:9] == b"\x01\x02"
    assert struct.unpack("<I", f[9:])[0] == zlib.crc32(f[2:9])
    with pytest.raises(ValueError, match="exceeds the protocol maximum of 4096 bytes"):
        P.encode_frame(P.T_WRITE, 1, bytes(4097))


def test_parser_resynchronises_and_drops_corrupt_frames():
    a, b = P.encode_frame(0x81, 1, b"hello"), P.encode_frame(0x82, 2, bytes(300))
    bad = bytearray(P.encode_frame(0x83, 3, b"xyz"))
    bad[8] ^= 0x10
    stream = b"garbage\xa5" + a + bytes(bad) + b"\xa5\x5a\x01\x01\x01\xff\xff" + b + b"\xa5"
    p = P.FrameParser()
    frames = []
    for i in range(0, len(stream), 5):             # arrives in small pieces
        frames += p.feed(stream[i:i + 5])
    assert [(f.type, f.seq, f.payload) for f in frames] == [(0x81, 1, b"hello"), (0x82, 2, bytes(300))]
    assert p.bad_frames == 2 and p.dropped_bytes > 0


def test_error_frame_decoding():
    f = P.Frame(P.T_ERROR, 4, bytes([P.E_ARENA, P.T_CONFIG]) + struct.pack("<H", 9) + b"tensors exceed the arena")
    assert f.is_error and f.error() == (P.E_ARENA, P.T_CONFIG, 9, "tensors exceed the arena")


def test_fill_bytes_is_the_documented_hash():
    def lowbias32(x):
        x ^= x >> 16
        x = (x * 0x7FEB352D) & 0xFFFFFFFF
        x ^= x >> 15
        x = (x * 0x846CA68B) & 0xFFFFFFFF
        return x ^ (x >> 16)
    seed = 0xDEADBEEF
    want = [np.int8(np.uint8(lowbias32(seed ^ ((i * 0x9E3779B1) & 0xFFFFFFFF)) & 0xFF)) for i in range(300)]
    assert P.fill_bytes(seed, 300).tolist() == want


def test_layer_spec_shapes_macs_and_config():
    s = LayerSpec("conv2d", (28, 28, 1), out_channels=8, kernel=3, stride=2, padding=1)
    assert s.output_shape == (14, 14, 8) and s.macs == 14 * 14 * 8 * 9 and s.weights_shape == (8, 3, 3, 1)
    p = s.placed()
    assert p.output_offset == 784 and p.params_offset == 72 and p.arena_end == 784 + 14 * 14 * 8
    cfg = P.pack_config(s)
    assert len(cfg) == P.CONFIG_BYTES and cfg[0] == P.OP_CODES["conv2d"]
    assert struct.unpack_from("<6H", cfg, 2) == (28, 28, 1, 14, 14, 8)
    assert LayerSpec("depthwise_conv2d", (8, 8, 4), kernel=3, depth_multiplier=2).output_shape == (6, 6, 8)
    assert LayerSpec("dense", (2, 2, 4), out_channels=3).weights_shape == (3, 16)
    assert LayerSpec("global_avg_pool", (5, 5, 6)).output_shape == (1, 1, 6)
    a = LayerSpec("add", (4, 4, 3)).placed()
    assert a.input2_offset == 48 and a.output_offset == 96
    with pytest.raises(ValueError, match="padding .* must be smaller than the kernel"):
        LayerSpec("max_pool", (8, 8, 1), kernel=2, padding=2)
    with pytest.raises(ValueError, match="conv2d needs out_channels"):
        LayerSpec("conv2d", (8, 8, 1), kernel=3)
    with pytest.raises(ValueError, match="does not fit input"):
        LayerSpec("conv2d", (2, 2, 1), out_channels=1, kernel=5)
