"""Every firmware kernel bit-exact against the Python int8 reference, on both emulated boards (QEMU)."""
import zlib

import numpy as np
import pytest

from hil_fixtures import big_bias_conv, check_layer, emulated_board, random_layer
from lightning_mcuprune.quantize.reference import OPS

N_CONFIGS = 200


@pytest.fixture(scope="module", params=["mps2-an386", "mps2-an500"])
def board(request):
    yield from emulated_board(request.param)


@pytest.mark.parametrize("op", OPS)
def test_kernel_bit_exact(board, op):
    rng = np.random.default_rng(zlib.crc32(f"{board.info['board']}:{op}".encode()))
    mismatches = []
    for i in range(N_CONFIGS):
        spec, data = random_layer(op, rng, upload=(i % 8 == 0))  # the rest: filled on the board (FILL)
        got, want = check_layer(board, spec, data, seed=i)
        if not np.array_equal(got, want):
            mismatches.append((i, spec, int((got != want).sum())))
    assert not mismatches, f"{len(mismatches)}/{N_CONFIGS} {op} configs differ on {board.info['board']}: {mismatches[:3]}"


def test_output_stays_in_place(board):
    """A layer writes exactly its output tensor: the bytes around it in the arena are untouched."""
    rng = np.random.default_rng(7)
    for i, op in enumerate(OPS):
        spec, data = random_layer(op, rng)
        s = spec.placed()
        s.output_offset += 64
        guard_lo = board.fill(0, s.output_offset - 16, 16, 1000 + i)
        guard_hi = board.fill(0, s.output_offset + s.output_bytes, 16, 2000 + i)
        board.run_layer(s, seed=i)
        around = np.frombuffer(board.read(0, s.output_offset - 16, s.output_bytes + 32), dtype=np.int8)
        assert np.array_equal(around[:16], guard_lo), op
        assert np.array_equal(around[-16:], guard_hi), op


def test_arena_high_water_and_stack(board):
    board.reset()
    spec, _ = random_layer("conv2d", np.random.default_rng(3))
    spec.input_offset, spec.output_offset = 1000, 5000
    board.run_layer(spec)
    st = board.get_stats()
    assert st["arena_high_water"] == 5000 + spec.output_bytes
    assert st["arena_high_water"] == spec.arena_end
    assert 0 < st["stack_used"] < st["stack_bytes"]
    assert st["arena_bytes"] == board.info["arena_bytes"]


def test_ptq_bias_at_the_accumulator_limit_bit_exact(board):
    """A PTQ bias clipped where the int32 accumulator could overflow (quantize.ptq.bias_limit): the board takes the
    layer and, on the input that drives the accumulator furthest towards 2^31-1, equals the host reference."""
    import torch

    from lightning_mcuprune.quantize.layer import INT32_MAX
    from lightning_mcuprune.quantize import quantize
    net = big_bias_conv(size=3)
    calib = torch.randn(32, 1, 3, 3)
    spec = quantize(net, calib[:1], calib).ops[0].spec   # conv 3x3 on 3x3: one output pixel, 2 channels
    assert abs(int(spec.bias[1])) > 2 ** 30 and spec.accumulator_bound() == INT32_MAX
    w = np.asarray(spec.weights, dtype=np.int64)[1]        # (KH, KW, 1), as the input (H, W, C)
    same = np.sign(w) == np.sign(int(spec.bias[1]))
    x = np.where(same, 127, -128).astype(np.int8)         # every product adds to the bias
    got, want = check_layer(board, spec, {"x": x}, seed=0)
    acc = int(spec.bias[1]) + int(((x.astype(np.int64) - spec.input_zp) * w).sum())
    assert abs(acc) > 2 ** 31 - 2 ** 20                     # near the int32 limit
    assert np.array_equal(got, want)
