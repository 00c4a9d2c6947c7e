"""Precision policy of the CV scoring GEMMs, emulated on CPU exactly as tensor cores compute."""

import numpy as np
import pytest
import torch

from fastridge import FastRidgeCV, ridge_cv
from fastridge._cv import ScoringGemm, _round_to_bf16, _round_to_tf32


def test_tf32_rounding_keeps_ten_mantissa_bits():
    x = torch.randn(10000, dtype=torch.float32) * 1e3
    r = _round_to_tf32(x)
    assert bool(((r.view(torch.int32) & 0x1FFF) == 0).all())
    assert float(((r - x).abs() / x.abs()).max()) <= 2.0**-11
    # round to nearest: never worse than truncation
    trunc = (x.view(torch.int32) & ~0x1FFF).view(torch.float32)
    assert bool(((r - x).abs() <= (trunc - x).abs()).all())


@pytest.mark.parametrize("precision, bits", [("high", 21), ("medium", 16)])
def test_split_gemm_error_is_near_float32(precision, bits):
    g = torch.Generator().manual_seed(0)
    U = torch.randn(300, 200, generator=g)
    S = torch.randn(200, 50, generator=g)
    exact = U.double() @ S.double()
    got = ScoringGemm(U, precision)(S, torch.empty(300, 50))
    single = (_round_to_tf32(U) if precision == "high" else _round_to_bf16(U)) @ (
        _round_to_tf32(S) if precision == "high" else _round_to_bf16(S)
    )
    scale = exact.abs().max()
    err = float((got.double() - exact).abs().max() / scale)
    err_single = float((single.double() - exact).abs().max() / scale)
    # float32's own rounding sets the floor: on an Intel Xeon (MKL) the plain float32
    # product was already 4.9e-7 off here, just above 2**-21
    err_float32 = float(((U @ S).double() - exact).abs().max() / scale)
    assert err < max(2.0**-bits, 1.5 * err_float32), (err, err_float32)
    assert err < err_single / 20, (err, err_single)  # the split is what buys the accuracy


def test_reduced_precision_needs_float32():
    X = np.random.default_rng(0).standard_normal((10, 4))
    with pytest.raises(ValueError, match="lowers float32 GEMMs"):
        FastRidgeCV(precision="medium").fit(X, X[:, 0])
    with pytest.raises(ValueError, match="'precision' parameter"):
        FastRidgeCV(precision="low", dtype="float32").fit(X, X[:, 0])
    with pytest.raises(ValueError, match="precision must be one of"):
        ridge_cv(X.astype(np.float32), X[:, 0], precision="low")


@pytest.mark.parametrize("precision", ["high", "medium"])
def test_headline_like_alphas_unchanged(precision):
    """Standardized X, alphas {1e4, 2e4, 4e4}, strong and weak targets (float32)."""
    rng = np.random.default_rng(0)
    n, p, t = 300, 900, 4000
    X = rng.standard_normal((n, p)).astype(np.float32)
    X = (X - X.mean(0)) / X.std(0)
    W = rng.standard_normal((p, t)) * np.logspace(-1, -3.5, t)[None, :]
    Y = (X @ W + rng.standard_normal((n, t))).astype(np.float32)
    alphas = (1e4, 2e4, 4e4)
    ref = ridge_cv(X, Y, alphas, alpha_per_target=True)
    assert len(np.unique(ref.alpha_index)) == 3
    got = ridge_cv(X, Y, alphas, alpha_per_target=True, precision=precision)
    differ = int((got.alpha_index != ref.alpha_index).sum())
    assert differ <= t // 1000, f"{precision}: {differ} of {t} alphas differ"
    np.testing.assert_allclose(got.best_score, ref.best_score, rtol=1e-4)
