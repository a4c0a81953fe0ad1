"""int32 accumulators (issue 13, item 8): a layer whose accumulator could overflow is refused by the host AND by
the firmware (the same bound on both sides), and every layer that is accepted runs bit-exact against the host's
int64 reference, also with extreme biases, zero points, multipliers and shifts (requantised value + output zero
point, and add's int32 sum, saturate identically on both sides). Random extreme layers on QEMU; the larger
count is in benchmarks/hil_overflow_fuzz.py."""
import numpy as np
import pytest

from hil_fixtures import emulated_board
from lightning_mcuprune.hil import BoardError, LayerSpec
from lightning_mcuprune.quantize.layer import INT32_MAX

N_FUZZ = 48      # layers per run in the suite (the benchmark runs thousands)
OPS = ("conv2d", "depthwise_conv2d", "pointwise_conv2d", "dense", "global_avg_pool", "avg_pool", "add")


def _extreme(rng, shape):
    return rng.choice(np.array([-128, 127, -127, 126], dtype=np.int8), shape)


def extreme_layer(rng: np.random.Generator, op: str) -> tuple[LayerSpec, dict]:
    """A layer with inputs and weights at the int8 extremes, zero points at their ends, the bias of one channel
    within a few units of the int32 limit (so that about half the layers are refused), and sometimes large
    positive shifts and multipliers (the requantised value saturates at the int32 limit)."""
    in_zp, out_zp = (int(rng.choice([-128, 127, int(rng.integers(-128, 128))])) for _ in range(2))
    common = dict(input_zp=in_zp, output_zp=out_zp, act_min=-128, act_max=127)
    if op == "conv2d":
        k = int(rng.choice([1, 3]))
        spec = LayerSpec(op, (3, 3, int(rng.integers(1, 40))), out_channels=int(rng.integers(1, 5)), kernel=k,
                         stride=2 if k == 1 else 1, padding=k // 2, **common)
    elif op == "depthwise_conv2d":
        spec = LayerSpec(op, (3, 3, int(rng.integers(1, 5))), kernel=3, padding=1, **common)
    elif op == "pointwise_conv2d":
        spec = LayerSpec(op, (2, 2, int(rng.integers(1, 300))), out_channels=int(rng.integers(1, 5)), **common)
    elif op == "dense":
        spec = LayerSpec(op, (1, 1, int(rng.integers(1, 1200))), out_channels=int(rng.integers(1, 5)), **common)
    elif op == "global_avg_pool":   # would need 255 * H * W > 2^31 - 1: more input than any arena holds
        spec = LayerSpec(op, (int(rng.integers(1, 40)), int(rng.integers(1, 40)), int(rng.integers(1, 4))), **common)
    elif op == "avg_pool":          # refused when 128 * KH * KW > 2^31 - 1 (a huge padded window)
        k = int(rng.choice([3, 5000]))
        spec = LayerSpec(op, (1, 1, 2), kernel=k, stride=k, padding=k - 1, **common)
    else:
        spec = LayerSpec(op, (2, 3, 4), input2_zp=int(rng.choice([-128, 127])), **common)
    oc = spec.output_shape[2]
    data = {}
    if spec.weights_shape:
        spec.weights = _extreme(rng, spec.weights_shape)
        d = max(127 - in_zp, 128 + in_zp)
        w = np.abs(spec.weights.astype(np.int64))
        per_oc = w.sum(axis=(0, 1)) if op == "depthwise_conv2d" else w.reshape(oc, -1).sum(axis=1)
        room = INT32_MAX - d * per_oc                              # the largest |bias| that is accepted
        bias = rng.integers(-2 ** 20, 2 ** 20, oc)
        c = int(rng.integers(oc))
        bias[c] = int(rng.choice([-1, 1])) * (int(room[c]) + int(rng.integers(-3, 4)))
        spec.bias = np.clip(bias, -INT32_MAX, INT32_MAX).astype(np.int32)
        if rng.random() < 0.5:   # inputs and channel c's weights aligned with its bias: the bound is reached
            x_ext = 127 if in_zp <= 0 else -128
            sign = int(np.sign(spec.bias[c]) or 1) * (1 if x_ext - in_zp > 0 else -1)
            wc = np.int8(127) if sign > 0 else np.int8(-128)
            if op == "depthwise_conv2d":
                spec.weights[:, :, c] = wc
            else:
                spec.weights[c] = wc
            data["x"] = np.full(spec.input_shape, x_ext, np.int8)
            per_oc_c = int(np.abs(spec.weights.astype(np.int64)).reshape(-1, oc).sum(axis=0)[c]) \
                if op == "depthwise_conv2d" else int(np.abs(spec.weights[c].astype(np.int64)).sum())
            room_c = INT32_MAX - d * per_oc_c
            spec.bias[c] = int(np.sign(spec.bias[c]) or 1) * min(INT32_MAX, max(0, room_c + int(rng.integers(-3, 4))))
        spec.mult = rng.choice([1 << 30, (1 << 31) - 1, int(rng.integers(1 << 30, 1 << 31))], oc).astype(np.int32)
        spec.shift = rng.choice([-31, -20, -8, 0, 1, 20, 30], oc).astype(np.int32)
    elif op == "global_avg_pool":
        spec.mult = np.full(oc, (1 << 31) - 1, np.int32)
        spec.shift = rng.choice([-31, -8, 0, 30], oc).astype(np.int32)
    elif op == "add":
        m = [int(rng.choice([1 << 30, (1 << 31) - 1])) for _ in range(3)]
        spec.add_params = (int(rng.choice([0, 20, 24])), m[0], int(rng.choice([0, -1, 30])), m[1],
                           int(rng.choice([0, -1, 30])), m[2], int(rng.choice([0, -20, 30])))
        data["x2"] = _extreme(rng, spec.input_shape)
    if "x" not in data and spec.input_bytes <= 4096:
        data["x"] = _extreme(rng, spec.input_shape)
    return spec, data


def fuzz_one(board, rng, op, seed) -> str:
    """'refused' (by host and firmware alike) or 'exact' (board output == host reference); AssertionError else."""
    spec, data = extreme_layer(rng, op)
    host_refuses = False
    try:
        spec.check_accumulator()
    except ValueError as e:
        assert "int32 accumulator could reach" in str(e)
        host_refuses = True
    if host_refuses:
        with pytest.raises(ValueError, match="accumulator"):
            board.load_layer(spec, x=data.get("x"), x2=data.get("x2"), seed=seed)   # nothing sent
        with pytest.raises(BoardError, match="int32 accumulator could overflow"):
            board.load_layer(spec, x=data.get("x"), x2=data.get("x2"), seed=seed, check_overflow=False)
            board.run(1)
        return "refused"
    inp = board.load_layer(spec, x=data.get("x"), x2=data.get("x2"), seed=seed)
    board.run(1)
    got = board.read_output(spec)
    want = spec.reference(inp["x"], inp["x2"], weights=inp["weights"]).reshape(spec.output_shape)
    assert np.array_equal(got, want), (spec, np.argwhere(got != want)[:3])
    return "exact"


@pytest.fixture(scope="module")
def board():
    yield from emulated_board("mps2-an386")


def test_overflowing_layers_refused_on_both_sides_others_bit_exact(board):
    rng = np.random.default_rng(2026)
    counts = {"refused": 0, "exact": 0}
    for i in range(N_FUZZ):
        counts[fuzz_one(board, rng, OPS[i % len(OPS)], seed=i)] += 1
    print(f"\noverflow fuzz: {counts}")
    assert counts["refused"] >= N_FUZZ // 5 and counts["exact"] >= N_FUZZ // 5   # both sides of the bound


def test_refusal_says_what_and_why():
    spec = LayerSpec("dense", (1, 1, 4), out_channels=1, bias=np.array([INT32_MAX - 100], np.int32),
                     weights=np.full((1, 4), 127, np.int8))
    with pytest.raises(ValueError, match=r"dense layer .* int32 accumulator could reach 2,147,548,571 .*bias"):
        spec.reference(np.zeros((1, 1, 4), np.int8))
