"""The numpy int8 reference kernels: TFLite's requantisation arithmetic, and each vectorised kernel against a
plain scalar transliteration of the TFLite reference loops (the firmware's kernels are checked against the
same numpy code on QEMU, tests/hil/test_hil_kernels.py)."""
import math
import time

import numpy as np
import pytest

from lightning_mcuprune.quantize import reference as R

I32_MIN, I32_MAX = -(2 ** 31), 2 ** 31 - 1


# ---- scalar transliterations of gemmlowp / TFLite ----
def srdhm(a, b):
    if a == b == I32_MIN:
        return I32_MAX
    ab = a * b
    nudge = (1 << 30) if ab >= 0 else (1 - (1 << 30))
    return int((ab + nudge) / (1 << 31)) if abs(ab + nudge) < 2 ** 52 else _trunc_div(ab + nudge, 1 << 31)


def _trunc_div(a, b):
    q = abs(a) // b
    return q if a >= 0 else -q


def rdbpot(x, e):
    mask = (1 << e) - 1
    rem = x & mask
    thr = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> e) + (1 if rem > thr else 0)


def wrap32(v):
    return (v + 2 ** 31) % 2 ** 32 - 2 ** 31


def mbqm(x, m, s):
    left, right = max(s, 0), max(-s, 0)
    return rdbpot(srdhm(wrap32(x << left), m), right)


def test_quantize_multiplier_known_values():
    assert R.quantize_multiplier(0.5) == (1 << 30, 0)
    assert R.quantize_multiplier(1.0) == (1 << 30, 1)
    assert R.quantize_multiplier(0.25) == (1 << 30, -1)
    assert R.quantize_multiplier(0.0) == (0, 0)
    assert R.quantize_multiplier(2.0 ** -40) == (0, 0)
    m, s = R.quantize_multiplier(0.0039215686)          # 1/255
    assert s == -7 and abs(m * 2.0 ** (s - 31) - 0.0039215686) <= 2.0 ** (s - 32)  # half a step
    m, s = R.quantize_multiplier(math.nextafter(1.0, 0))  # rounds up to 2^31 -> halved, shift + 1
    assert (m, s) == (1 << 30, 1)
    with pytest.raises(ValueError, match="must be finite and >= 0"):
        R.quantize_multiplier(-1.0)


def test_requantisation_matches_scalar_gemmlowp():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.integers(I32_MIN, I32_MAX, 3000, endpoint=True),
                        [I32_MIN, I32_MAX, 0, 1, -1, 1 << 30, -(1 << 30)]]).astype(np.int64)
    m = np.concatenate([rng.integers(0, I32_MAX, 3000, endpoint=True), [I32_MIN, I32_MAX, 0, 1 << 30, 1, 2, 3]])
    e = rng.integers(0, 32, x.size)
    got = R.saturating_rounding_doubling_high_mul(x, m)
    assert [int(v) for v in got] == [srdhm(int(a), int(b)) for a, b in zip(x, m)]
    got = R.rounding_divide_by_pot(x, e)
    assert [int(v) for v in got] == [rdbpot(int(a), int(b)) for a, b in zip(x, e)]
    s = rng.integers(-31, 31, x.size)
    xs = rng.integers(-(1 << 20), 1 << 20, x.size)
    got = R.multiply_by_quantized_multiplier(xs, m, s)
    assert [int(v) for v in got] == [mbqm(int(a), int(b), int(c)) for a, b, c in zip(xs, m, s)]


def test_requantisation_approximates_the_real_multiplier():
    rng = np.random.default_rng(1)
    for real in (0.0001, 0.003, 0.07, 0.5, 0.9, 1.7, 6.0):
        m, s = R.quantize_multiplier(real)
        acc = rng.integers(-20000, 20000, 500)
        got = R.multiply_by_quantized_multiplier(acc, m, s)
        assert np.all(np.abs(got - acc * real) <= 1.0)


# ---- scalar kernels (TFLite reference loops) ----
def conv_loop(x, w, bias, izp, ozp, mult, shift, stride, pad, amin, amax, depthwise=False):
    H, W, C = x.shape
    t, b, l, r = R.normalize_padding(pad)
    if depthwise:
        KH, KW, OC = w.shape
    else:
        OC, KH, KW, _ = w.shape
    OH, OW = R.conv_output_size((H, W), (KH, KW), stride, (t, b, l, r))
    M = OC // C
    out = np.zeros((OH, OW, OC), np.int8)
    for oy in range(OH):
        for ox in range(OW):
            for oc in range(OC):
                acc = int(bias[oc])
                for ky in range(KH):
                    for kx in range(KW):
                        y, xx = oy * stride[0] - t + ky, ox * stride[1] - l + kx
                        if not (0 <= y < H and 0 <= xx < W):
                            continue
                        if depthwise:
                            acc += (int(x[y, xx, oc // M]) - izp) * int(w[ky, kx, oc])
                        else:
                            acc += sum((int(x[y, xx, c]) - izp) * int(w[oc, ky, kx, c]) for c in range(C))
                out[oy, ox, oc] = min(max(mbqm(acc, int(mult[oc]), int(shift[oc])) + ozp, amin), amax)
    return out


def pool_loop(x, k, stride, pad, amin, amax, is_max):
    H, W, C = x.shape
    t, b, l, r = R.normalize_padding(pad)
    OH, OW = R.conv_output_size((H, W), k, stride, pad)
    out = np.zeros((OH, OW, C), np.int8)
    for oy in range(OH):
        for ox in range(OW):
            ys, xs = oy * stride[0] - t, ox * stride[1] - l
            win = x[max(ys, 0):min(ys + k[0], H), max(xs, 0):min(xs + k[1], W)].reshape(-1, C).astype(int)
            for c in range(C):
                if is_max:
                    v = int(win[:, c].max())
                else:
                    acc, n = int(win[:, c].sum()), win.shape[0]
                    v = _trunc_div(acc + n // 2, n) if acc > 0 else _trunc_div(acc - n // 2, n)
                out[oy, ox, c] = min(max(v, amin), amax)
    return out


def _rand_case(rng):
    H, W, C = (int(v) for v in rng.integers(1, 7, 3))
    kh, kw = int(rng.integers(1, min(H, 4) + 1)), int(rng.integers(1, min(W, 4) + 1))
    pad = tuple(int(rng.integers(0, k)) for k in (kh, kh, kw, kw))
    stride = (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
    x = rng.integers(-128, 128, (H, W, C)).astype(np.int8)
    izp, ozp = (int(v) for v in rng.integers(-128, 128, 2))
    amin = int(rng.integers(-128, 0))
    return x, (kh, kw), pad, stride, izp, ozp, amin, int(rng.integers(amin, 128))


def test_conv2d_and_depthwise_match_scalar_loops():
    rng = np.random.default_rng(2)
    for _ in range(60):
        x, (kh, kw), pad, stride, izp, ozp, amin, amax = _rand_case(rng)
        C = x.shape[2]
        OC = int(rng.integers(1, 5))
        w = rng.integers(-128, 128, (OC, kh, kw, C)).astype(np.int8)
        bias = rng.integers(-3000, 3000, OC)
        mult = rng.integers(1 << 30, I32_MAX, OC)
        shift = rng.integers(-10, 1, OC)
        got = R.conv2d(x, w, bias, izp, ozp, mult, shift, stride, pad, amin, amax)
        assert np.array_equal(got, conv_loop(x, w, bias, izp, ozp, mult, shift, stride, pad, amin, amax))
        M = int(rng.integers(1, 3))
        wd = rng.integers(-128, 128, (kh, kw, C * M)).astype(np.int8)
        bd = rng.integers(-3000, 3000, C * M)
        md, sd = rng.integers(1 << 30, I32_MAX, C * M), rng.integers(-9, 1, C * M)
        got = R.depthwise_conv2d(x, wd, bd, izp, ozp, md, sd, stride, pad, amin, amax)
        want = conv_loop(x, wd, bd, izp, ozp, md, sd, stride, pad, amin, amax, depthwise=True)
        assert np.array_equal(got, want)


def test_pools_match_scalar_loops():
    rng = np.random.default_rng(3)
    for _ in range(80):
        x, k, pad, stride, _, _, amin, amax = _rand_case(rng)
        assert np.array_equal(R.max_pool(x, k, stride, pad, amin, amax), pool_loop(x, k, stride, pad, amin, amax, True))
        assert np.array_equal(R.avg_pool(x, k, stride, pad, amin, amax), pool_loop(x, k, stride, pad, amin, amax, False))


def test_pointwise_dense_gap_add_match_scalar_arithmetic():
    rng = np.random.default_rng(4)
    for _ in range(40):
        x = rng.integers(-128, 128, (3, 4, 5)).astype(np.int8)
        izp, ozp = (int(v) for v in rng.integers(-128, 128, 2))
        w = rng.integers(-128, 128, (6, 5)).astype(np.int8)
        b, m, s = rng.integers(-999, 999, 6), rng.integers(1 << 30, I32_MAX, 6), rng.integers(-9, 1, 6)
        pw = R.pointwise_conv2d(x, w, b, izp, ozp, m, s, stride=(1, 2))
        assert np.array_equal(pw, conv_loop(x, w[:, None, None, :], b, izp, ozp, m, s, (1, 2), 0, -128, 127))
        wd = rng.integers(-128, 128, (6, 60)).astype(np.int8)
        d = R.dense(x, wd, b, izp, ozp, m, s)
        want = [min(max(mbqm(int(b[o]) + sum((int(v) - izp) * int(wv) for v, wv in zip(x.ravel(), wd[o])),
                             int(m[o]), int(s[o])) + ozp, -128), 127) for o in range(6)]
        assert d.tolist() == want
        g = R.global_avg_pool(x, izp, ozp, m[:5], s[:5])
        want = [min(max(mbqm(int(x[:, :, c].astype(int).sum()) - izp * 12, int(m[c]), int(s[c])) + ozp, -128), 127)
                for c in range(5)]
        assert g.ravel().tolist() == want
        x2 = rng.integers(-128, 128, x.shape).astype(np.int8)
        z2 = int(rng.integers(-128, 128))
        p = [int(v) for v in (rng.integers(1 << 30, I32_MAX), -1, rng.integers(1 << 30, I32_MAX), -2,
                              rng.integers(1 << 30, I32_MAX), -19)]
        a = R.add(x, x2, izp, z2, ozp, *p)
        want = [min(max(mbqm(mbqm((int(u) - izp) << 20, p[0], p[1]) + mbqm((int(v) - z2) << 20, p[2], p[3]),
                             p[4], p[5]) + ozp, -128), 127) for u, v in zip(x.ravel(), x2.ravel())]
        assert a.ravel().tolist() == want


def test_global_avg_pool_rounds_as_tflm_mean():
    """Global average pooling with the multiplier `quantize` gives it on every runtime (tflm_mean_multiplier:
    QuantizeMultiplier(s_in / s_out) with 1/(H*W) folded in as TFLM's QuantizedMeanOrSum folds it) equals TFLite
    Micro's int8 MEAN bit for bit, with different and with equal input/output quantisation (TFLM is the reference;
    the firmware runs the same arithmetic, tests/test_hil_kernels.py). Folding 1/(H*W) into the real multiplier
    first (quantize_multiplier(s_in / (s_out * H * W)), what the firmware path used) is 1 LSB off in some outputs."""
    pytest.importorskip("tflite_micro")
    from tflm_ops import mean_model, run_tflm

    from lightning_mcuprune.quantize.ptq import tflm_mean_multiplier
    rng = np.random.default_rng(11)
    off_before = 0
    for i in range(60):
        h, w, c = (int(v) for v in rng.integers(1, 12, 3))
        s = float(np.float32(rng.uniform(0.005, 0.2)))
        z = int(rng.integers(-128, 128))
        so, zo = (s, z) if i % 4 == 0 else (float(np.float32(s * rng.uniform(0.2, 3))), int(rng.integers(-128, 128)))
        x = rng.integers(-128, 128, (1, h, w, c)).astype(np.int8)
        theirs = run_tflm(mean_model(h, w, c, s, z, so, zo), x).reshape(-1)
        ours = R.global_avg_pool(x, z, zo, *tflm_mean_multiplier(s, so, h * w)).reshape(-1)
        assert np.array_equal(ours, theirs), (h, w, c, s, z, so, zo)
        folded = R.global_avg_pool(x, z, zo, *R.quantize_multiplier(s / (so * h * w))).reshape(-1)
        off_before += int((folded != theirs).sum())
    assert off_before > 0, "the test no longer tells the two roundings apart"


def test_batch_equals_per_sample_and_shapes():
    rng = np.random.default_rng(5)
    xb = rng.integers(-128, 128, (4, 9, 9, 3)).astype(np.int8)
    w = rng.integers(-128, 128, (5, 3, 3, 3)).astype(np.int8)
    args = (np.zeros(5, np.int32), 3, -4, 1 << 30, -8)
    out = R.conv2d(xb, w, *args, stride=2, padding=1)
    assert out.shape == (4, 5, 5, 5)
    for i in range(4):
        assert np.array_equal(out[i], R.conv2d(xb[i], w, *args, stride=2, padding=1))
    assert R.dense(xb, rng.integers(-128, 128, (7, 243)).astype(np.int8), None, 0, 0, 1 << 30, -8).shape == (4, 7)
    with pytest.raises(ValueError, match="expected an int8 tensor"):
        R.conv2d(xb.astype(np.float32), w, *args)
    with pytest.raises(ValueError, match="input channels"):
        R.conv2d(xb, w[:, :, :, :2], *args)


def test_fast_enough_for_whole_datasets():
    """A Fashion-MNIST-sized first layer over 500 images (3x3, 1 -> 16 channels): vectorised, not per pixel
    (about 0.5 s on an idle 2-core machine; the bound leaves room for a loaded CI runner)."""
    rng = np.random.default_rng(6)
    x = rng.integers(-128, 128, (500, 28, 28, 1)).astype(np.int8)
    w = rng.integers(-128, 128, (16, 3, 3, 1)).astype(np.int8)
    t = time.perf_counter()
    y = R.conv2d(x, w, np.zeros(16, np.int32), -128, 0, np.full(16, 1 << 30), np.full(16, -8), 1, 1, 0, 127)
    z = R.max_pool(y, 2)
    assert z.shape == (500, 14, 14, 16)
    assert time.perf_counter() - t < 30.0
