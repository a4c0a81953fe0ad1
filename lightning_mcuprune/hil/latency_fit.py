"""Fit per-op-type latency models (cycles) from measurements: non-negative least squares, k-fold CV, error figures.

The model of an op type is cycles = sum_f coef[f] * feature[f] over the features of that op type
(OP_FEATURES, a subset of boards.LATENCY_FEATURES), coef >= 0. Rows are weighted by 1/measured cycles, so
the fit minimises relative (percentage) errors, which is what the accuracy report measures.

No SIMD-remainder features (channels mod the SIMD width): the firmware's kernels are plain C loops
without SIMD paths, so remainders carry no cost of their own.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.optimize import nnls

from lightning_mcuprune.graph.ops import LATENCY_FEATURES

#: Features fitted per op type (measured op types only). See boards.profile.LATENCY_FEATURES.
OP_FEATURES = {
    "conv2d": ("valid_macs", "valid_taps", "row_taps", "kernel_rows", "valid_rows", "output_elements", "output_pixels",
               "output_rows", "const"),
    "depthwise_conv2d": ("valid_macs", "row_taps", "kernel_rows", "valid_rows", "output_elements", "output_pixels",
                         "output_rows", "const"),
    "pointwise_conv2d": ("macs", "output_elements", "output_pixels", "output_rows", "const"),
    "dense": ("macs", "input_elements", "output_channels", "const"),
    "max_pool": ("valid_taps", "valid_rows", "output_elements", "output_pixels", "output_rows", "const"),
    "avg_pool": ("valid_taps", "valid_rows", "output_elements", "output_pixels", "output_rows", "const"),
    "global_avg_pool": ("input_elements", "output_elements", "const"),
    "add": ("output_elements", "output_pixels", "output_rows", "const"),
}
assert all(f in LATENCY_FEATURES for fs in OP_FEATURES.values() for f in fs)


def fit_nnls(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Non-negative coefficients minimising sum(((X @ c - y) / y)^2). X: [samples x features], y: cycles (> 0)."""
    X, y = np.asarray(X, float), np.asarray(y, float)
    if len(y) == 0:
        raise ValueError("no samples to fit")
    if (y <= 0).any():
        raise ValueError("measured cycles must be positive")
    A = X / y[:, None]
    scale = np.linalg.norm(A, axis=0)
    scale[scale == 0] = 1.0
    c, _ = nnls(A / scale, np.ones_like(y), maxiter=50 * X.shape[1])
    return c / scale


def errors(pred: "np.ndarray", meas: "np.ndarray") -> dict:
    """Error figures of predictions against measurements: median and p95 absolute percentage error (%), the
    share (0..1) within +-5% and +-10%, and the sample count."""
    pred, meas = np.asarray(pred, float), np.asarray(meas, float)
    ape = np.abs(pred - meas) / meas * 100
    if len(ape) == 0:
        return {"samples": 0, "median_ape_pct": None, "p95_ape_pct": None, "share_within_5pct": None, "share_within_10pct": None}
    return {"samples": int(len(ape)), "median_ape_pct": round(float(np.median(ape)), 4),
            "p95_ape_pct": round(float(np.percentile(ape, 95)), 4),
            "share_within_5pct": round(float((ape <= 5).mean()), 4),
            "share_within_10pct": round(float((ape <= 10).mean()), 4)}


def cross_validate(X: np.ndarray, y: np.ndarray, folds: int = 5, seed: int = 0) -> tuple[dict, np.ndarray]:
    """k-fold CV (deterministic shuffle): error figures and the out-of-fold prediction of every sample."""
    n = len(y)
    k = max(2, min(folds, n))
    idx = np.random.default_rng(seed).permutation(n)
    pred = np.zeros(n)
    for f in range(k):
        test = idx[f::k]
        train = np.setdiff1d(idx, test)
        pred[test] = X[test] @ fit_nnls(X[train], y[train])
    out = errors(pred, y)
    out["folds"] = k
    return out, pred


def fit_op(fit: pd.DataFrame, held_out: pd.DataFrame, features: "tuple[str, ...]", folds: int = 5) -> dict:
    """Fit one op type. Frames have one column per feature and `cycles`. Returns coefficients (feature ->
    cycles per unit, zeros dropped), the features, CV and held-out figures, and held-out predictions."""
    features = list(features)
    X, y = fit[features].to_numpy(float), fit["cycles"].to_numpy(float)
    coef = fit_nnls(X, y)
    cv, cv_pred = cross_validate(X, y, folds)
    Xh = held_out[features].to_numpy(float)
    pred_h = Xh @ coef
    return {
        "coefficients": {f: float(c) for f, c in zip(features, coef) if c > 0},
        "features": features,
        "cv": cv,
        "held_out": errors(pred_h, held_out["cycles"].to_numpy(float)),
        "held_out_pred": pred_h,
        "cv_pred": cv_pred,
    }
