"""Ill-conditioned X: what the Gram or covariance matrix cannot resolve (its
eigenvalues are each within ~eps lambda_max), the SVD of X does; leave-one-out's
1 - h is exact where it is tiny. Against refits by scikit-learn's SVD solver."""

import warnings

import numpy as np
import pytest
import torch
from conftest import make_problem
from numpy.testing import assert_allclose
from sklearn.linear_model import Ridge
from sklearn.metrics import mean_squared_error
from sklearn.model_selection import KFold
from test_core import brute_force_loo
from test_folds import brute_force_fold_scores

from fastridge import FastRidgeCV, _cv
from fastridge._decompose import decompose


def scaled_columns(n_samples, n_features, offset, seed):
    """X (n_samples, n_features) of columns scaled 1e-3 to 1e3 around `offset`, and
    y (n_samples,): without an intercept, its Gram's or covariance's condition
    number passes 1 / eps64."""
    rng = np.random.default_rng(seed)
    scales = 10.0 ** rng.uniform(-3, 3, size=n_features)
    X = (rng.normal(size=(n_samples, n_features)) + offset) * scales
    y = X @ rng.normal(size=n_features) / 1e3 + rng.normal(size=n_samples)
    return X, y


def loo_scores(X, y, alphas, fit_intercept=False, sample_weight=None):
    """Minus the mean (weighted) squared leave-one-out error of each alpha, by refits."""
    return np.array(
        [
            -np.mean(brute_force_loo(X, y[:, None], a, fit_intercept, sample_weight) ** 2)
            for a in alphas
        ]
    )


def gcv_scores(X, y, alphas, fit_intercept, sample_weight=None):
    """Generalized cross-validation of each alpha from the SVD of the weighted design,
    shrinkage written alpha / (s^2 + alpha) (no cancellation): -||(I - H) y||^2 / n
    / ((n - tr H) / n)^2, tr H = intercept + sum s^2 / (s^2 + alpha). Samples of
    weight 0 are left out of the SVD (their weighted rows and targets are 0) and the
    intercept's direction is split off by a Householder reflection."""
    n = X.shape[0]
    sw = np.ones(n) if sample_weight is None else sample_weight
    kept = sw > 0
    Z, t = np.sqrt(sw[kept])[:, None] * X[kept], np.sqrt(sw[kept]) * y[kept]
    if fit_intercept:
        q = np.sqrt(sw[kept]) / np.linalg.norm(np.sqrt(sw[kept]))
        Z, t = Z - np.outer(q, q @ Z), t - q * (q @ t)
        v = q.copy()
        v[0] += 1.0 if q[0] >= 0 else -1.0
        H = np.eye(len(q)) - 2 * np.outer(v, v) / (v @ v)
        Z, t = (H @ Z)[1:], (H @ t)[1:]
    U, s, _ = np.linalg.svd(Z, full_matrices=True)
    out = []
    for a in alphas:
        shrink = np.ones(U.shape[0])
        shrink[: len(s)] = a / (s**2 + a)
        outside = n - int(fit_intercept) - len(s) + shrink[: len(s)].sum()  # n - tr(H)
        out.append(-np.sum((shrink * (U.T @ t)) ** 2) / n / (outside / n) ** 2)
    return np.array(out)


def test_covariance_form_keeps_the_direction_eigh_cannot_resolve(blas):
    # covariance eigenvalues 6.4e11 down to 4.5e-3, below eigh's rank tolerance
    # (5.6e-3): dropped, leave-one-out chose alpha 1 (coefficients 0.99 off)
    X, y = scaled_columns(40, 10, 100.0, seed=0)
    alphas = [1e-2, 1.0]
    got = FastRidgeCV(alphas=alphas, fit_intercept=False).fit(X, y)
    assert got.alpha_ == 1e-2
    assert_allclose(got.alpha_scores_, loo_scores(X, y, alphas), rtol=1e-9)
    ref = Ridge(alpha=1e-2, fit_intercept=False, solver="svd").fit(X, y)
    assert_allclose(got.coef_, ref.coef_, rtol=1e-9, atol=1e-12 * np.abs(ref.coef_).max())


def test_gram_form_dual_route_leaves_an_inverse_it_cannot_make_accurately(blas):
    # Gram condition number ~1e12: the Cholesky inverse of Gram + alpha I had put
    # the leave-one-out scores ~1e-6 off; the route is left for the SVD
    X, y = scaled_columns(19, 35, 100.0, seed=9)
    top = np.linalg.norm(X, 2) ** 2
    alphas = top * np.array([1e-14, 1e-11])
    got = FastRidgeCV(alphas=alphas, fit_intercept=False).fit(X, y)
    assert_allclose(got.alpha_scores_, loo_scores(X, y, alphas), rtol=1e-9)


@pytest.mark.parametrize("seed", range(4))
def test_leave_one_out_without_a_remainder_at_an_alpha_near_rounding(seed):
    # n_samples < n_features, full row rank: 1 - h_i ~ alpha / eigval ~ 1e-13, and
    # the leverage outside the kept span is 0; a rounding of it (3e-16) had put
    # a leave-one-out score 4e-2 off
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(11, 45)) * 10.0 ** rng.uniform(-1, 1, size=45)
    y = X @ rng.normal(size=45) / 30 + rng.normal(size=11)
    alphas = np.linalg.norm(X, 2) ** 2 * np.array([3e-16, 1e-12])
    got = FastRidgeCV(alphas=alphas, fit_intercept=False).fit(X, y)
    assert_allclose(got.alpha_scores_, loo_scores(X, y, alphas), rtol=1e-7)


def test_well_conditioned_x_keeps_eigh():
    # the SVD costs 3.5-6x the Gram and eigh: only where eigh falls short
    for n_samples, n_features in [(60, 20), (20, 60)]:
        X, _ = make_problem(n_samples, n_features, seed=1)
        for fit_intercept in (True, False):
            decomp = decompose(torch.tensor(X), fit_intercept=fit_intercept, alpha_min=1e-2)
            assert not decomp.by_svd
        X_bad, _ = scaled_columns(n_samples, n_features, 100.0, seed=0)
        decomp = decompose(torch.tensor(X_bad), fit_intercept=False, alpha_min=1e-2)
        assert decomp.by_svd


def test_x_of_a_scale_beyond_float32_is_refused_not_zeroed():
    # eigenvalues ~1e42 overflow float32: the coefficients had come out all 0
    X, Y = make_problem(30, 5, seed=2)
    X = X * 1e20
    with pytest.raises(ValueError, match="X's scale is beyond float32.*rescale X"):
        FastRidgeCV(alphas=[1.0, 10.0], dtype="float32").fit(X, Y)
    got = FastRidgeCV(alphas=[1.0, 10.0]).fit(X, Y)  # float64
    ref = Ridge(alpha=got.alpha_, solver="svd").fit(X, Y)
    assert_allclose(got.coef_, ref.coef_, rtol=1e-9)


@pytest.mark.parametrize("fit_intercept", [True, False])
def test_leave_one_out_with_weights_of_zero_at_alphas_near_rounding(fit_intercept):
    # the weighted rows of full rank: the remainder (I - qq^T - UU^T) y is 0, its
    # computed value rounding (~eps |y|) that had swamped residuals ~alpha / eigval
    # |y| (1.0 off at 1e-15 lambda_max); with the first sample's weight 0 and an
    # intercept, q stays among the Gram's rows, a null direction that the dual
    # route's inverse had met (5.4e-4 off at 1e-14)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((20, 48))
    y = X @ rng.standard_normal(48) + rng.standard_normal(20)
    w = rng.uniform(0.5, 2, 20)
    w[:3] = 0.0
    Xc = X - (w @ X / w.sum() if fit_intercept else 0.0)
    top = np.linalg.norm(np.sqrt(w)[:, None] * Xc, 2) ** 2
    for rel in (1e-15, 1e-14, 1e-12):
        alphas = [rel * top]
        got = FastRidgeCV(alphas=alphas, fit_intercept=fit_intercept).fit(X, y, sample_weight=w)
        ref = loo_scores(X, y, alphas, fit_intercept, w)
        assert_allclose(got.alpha_scores_, ref, rtol=1e-9)


@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_gcv_where_x_spans_the_weighted_samples(fit_intercept, dtype):
    # 1 - tr(H) / n cancels where X spans every sample (7.5e-2 off at 1e-15
    # lambda_max), and with weights of 0 the remainder is rounding alone (float32
    # 1e9 off at 1e-12, its rounding squared against ~(alpha / eigval)^2)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((12, 63))
    y = X @ rng.standard_normal(63) + rng.standard_normal(12)
    X, y = X.astype(dtype), y.astype(dtype)
    X64, y64 = X.astype(np.float64), y.astype(np.float64)  # (the data as given)
    top = np.linalg.norm(X64, 2) ** 2
    alphas = top * np.array([1e-15, 1e-12, 1e-9])
    for w in (None, np.r_[0.0, 0.0, rng.uniform(0.5, 2, 10)].astype(dtype)):
        got = FastRidgeCV(alphas=alphas, fit_intercept=fit_intercept, cv="gcv")
        got.fit(X, y, sample_weight=w)
        w64 = None if w is None else w.astype(np.float64)
        ref = gcv_scores(X64, y64, alphas, fit_intercept, w64)
        assert_allclose(got.alpha_scores_, ref, rtol=1e-9 if dtype == np.float64 else 1e-5)


def test_folds_of_training_sets_below_the_rank_at_alphas_near_rounding():
    # 54 x 48, 5 folds: each training set (43-44 samples) leaves directions to the
    # penalty alone, where (I - H_bb)^-1 amplified the remainder's rounding (0.23
    # off at 1e-15 lambda_max, 1.7e-5 at 1e-11): refit in the shared basis instead
    rng = np.random.default_rng(0)
    X = rng.standard_normal((54, 48))
    y = X @ rng.standard_normal(48) + rng.standard_normal(54)
    alphas = np.linalg.norm(X, 2) ** 2 * np.array([1e-15, 1e-11, 1e-7])
    cv = KFold(5)
    got = FastRidgeCV(alphas=alphas, fit_intercept=False, cv=cv, scoring="neg_mean_squared_error")
    got.fit(X, y)
    mse = lambda t, p, w: [-mean_squared_error(t, p)]  # noqa: E731
    ref = brute_force_fold_scores(X, y[:, None], alphas, list(cv.split(X)), False, score=mse)
    assert_allclose(got.alpha_scores_, ref.mean(axis=0)[0], rtol=1e-9)
    assert got.alpha_ == alphas[np.argmax(ref.mean(axis=0)[0])]


@pytest.mark.parametrize("weighted_intercept", [False, True])
def test_fold_refits_take_the_svd_of_ill_conditioned_training_rows(monkeypatch, weighted_intercept):
    # a fold's training covariance, a downdate of X's, is within ~eps lambda_max
    # only: the SVD of its training rows where that cannot resolve the fit (scores
    # 2.4e-3 off by the downdate's eigh, 1.9e-12 by the SVD, measured)
    from fastridge import solve

    monkeypatch.setattr(solve, "_fold_refits_pay", lambda *args, **kwargs: True)
    calls = []
    spectrum = _cv.svd_spectrum
    monkeypatch.setattr(
        _cv, "svd_spectrum", lambda D, form: calls.append(D.shape) or spectrum(D, form)
    )
    X, y = scaled_columns(60, 12, 100.0, seed=0)
    w = np.random.default_rng(0).uniform(0.5, 2, 60) if weighted_intercept else None
    Xs = X if w is None else np.sqrt(w)[:, None] * (X - w @ X / w.sum())
    alphas = np.linalg.norm(Xs, 2) ** 2 * np.array([1e-14, 1e-10])
    cv = KFold(4)
    got = FastRidgeCV(
        alphas=alphas, fit_intercept=weighted_intercept, cv=cv, scoring="neg_mean_squared_error"
    ).fit(X, y, sample_weight=w)
    assert len(calls) == 4  # (one per fold)
    mse = lambda t, p, sw: [-mean_squared_error(t, p, sample_weight=sw)]  # noqa: E731
    splits = list(cv.split(X))
    ref = brute_force_fold_scores(X, y[:, None], alphas, splits, weighted_intercept, w, mse)
    assert_allclose(got.alpha_scores_, ref.mean(axis=0)[0], rtol=1e-9)


def test_leave_one_out_in_covariance_form_of_weighted_rows_spanned():
    # 48 x 46 with 8 weights of 0: the covariance form, whose leverage outside the
    # kept span, 1 - ||U_i||^2, had been its rounding for the weighted samples (0
    # exactly): a score 2.6e-4 off at 2e-14 lambda_max (a differential fuzz found it)
    rng = np.random.default_rng(3)
    X = rng.standard_normal((48, 46))
    y = X @ rng.standard_normal(46) + rng.standard_normal(48)
    w = rng.uniform(0.5, 2, 48)
    w[rng.choice(48, 8, replace=False)] = 0.0
    top = np.linalg.norm(np.sqrt(w)[:, None] * X, 2) ** 2
    alphas = top * np.array([2e-14, 1e-10])
    got = FastRidgeCV(alphas=alphas, fit_intercept=False).fit(X, y, sample_weight=w)
    assert_allclose(got.alpha_scores_, loo_scores(X, y, alphas, False, w), rtol=1e-9)


def test_float32_near_duplicate_columns_keep_the_direction_eigh_drops():
    # float32 X with two columns equal up to ~1e-8: their difference's direction (s
    # ~1e-8 s_max) is below what eigh resolves (~1e-7 s_max), yet at alpha 2e-7
    # lambda_max it carries a few % of the coefficients (2.3e-2 off, dropped)
    rng = np.random.default_rng(5)
    X = rng.standard_normal((63, 10))
    X[:, 9] = X[:, 8] + 1e-8 * rng.standard_normal(63)
    y = X @ rng.standard_normal(10) + 0.1 * rng.standard_normal(63)
    X32, y32 = X.astype(np.float32), y.astype(np.float32)
    X64 = X32.astype(np.float64)  # (the data as given)
    alpha = 2e-7 * np.linalg.norm(X64, 2) ** 2
    got = FastRidgeCV(alphas=[alpha], fit_intercept=False).fit(X32, y32)
    ref = Ridge(alpha=alpha, fit_intercept=False, solver="svd").fit(X64, y32.astype(np.float64))
    assert_allclose(got.coef_, ref.coef_, rtol=0, atol=1e-5 * np.abs(ref.coef_).max())


def test_float32_primal_coefficients_warn_when_they_cannot_carry_the_fit():
    # rank-20 X of 52 columns around 100, in float32: its rounding adds directions
    # ~1e-6 s_max, which alpha 1e-14 lambda_max fits with coefficients large enough
    # that predictions lose their digits (0.57 off float64 refits of the same data,
    # measured): a PrecisionWarning says so, as for dual fits; at 1e-8 lambda_max
    # the fit keeps its digits and says nothing
    from fastridge import PrecisionWarning

    rng = np.random.default_rng(0)
    X = rng.standard_normal((68, 20)) @ rng.standard_normal((20, 52)) + 100
    y = (X - 100) @ rng.standard_normal(52) / 10 + rng.standard_normal(68)
    X32, y32 = X.astype(np.float32), y.astype(np.float32)
    X64, y64 = X32.astype(np.float64), y32.astype(np.float64)  # (the data as given)
    top = np.linalg.norm(X64 - X64.mean(0), 2) ** 2
    for rel, warns in ((1e-14, True), (1e-8, False)):
        alpha = rel * top
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            got = FastRidgeCV(alphas=[alpha]).fit(X32, y32)
        warned = [w for w in caught if issubclass(w.category, PrecisionWarning)]
        assert bool(warned) == warns
        ref = Ridge(alpha=alpha, solver="svd").fit(X64, y64)
        off = np.abs(got.predict(X32) - ref.predict(X64)).max() / np.abs(y64).max()
        assert (off > 1e-2) if warns else (off < 1e-4)
        if warns:
            assert "fit in float64" in str(warned[0].message)


def test_covariance_form_scores_of_ill_conditioned_x_equal_refits():
    """The covariance form's U = Xs V / s is orthonormal only to ~eps lambda_max over
    eigh's eigenvalue gaps in its small columns, and the leverages and GCV's trace
    read it at any alpha: float64 leave-one-out scores of X = one factor + noise 1e-4,
    with samples of weight 0, were 4.5e-5 relative off brute-force refits at 1e-2 to
    3 lambda_max, and GCV scores of X = 14 factors + noise 7.7e-6 4.6e-6 off the exact
    formula (the Gram form was exact; a differential fuzz found both). U is now
    orthonormalised there as for dual fits."""
    rng = np.random.default_rng(3)
    n, p = 37, 31
    X = np.outer(rng.standard_normal(n), rng.standard_normal(p))
    X += 1e-4 * rng.standard_normal((n, p))
    y = rng.standard_normal(n)
    w = rng.uniform(0.1, 3, size=n)
    w[rng.choice(n, 5, replace=False)] = 0.0
    Xc = X - np.average(X, axis=0, weights=w)
    alphas = np.linalg.eigvalsh((Xc * w[:, None]).T @ Xc)[-1] * np.array([1e-2, 1.0, 3.0])
    want = np.zeros(len(alphas))
    for i in range(n):
        keep = np.arange(n) != i
        for a, alpha in enumerate(alphas):
            fit = Ridge(alpha=alpha, solver="svd").fit(X[keep], y[keep], sample_weight=w[keep])
            want[a] -= w[i] * (y[i] - fit.predict(X[i : i + 1])[0]) ** 2 / n
    got = FastRidgeCV(alphas=alphas).fit(X, y, sample_weight=w).alpha_scores_
    assert_allclose(got, want, rtol=1e-9)

    rng = np.random.default_rng(1)
    n, p = 45, 16
    X = rng.standard_normal((n, 14)) @ rng.standard_normal((14, p))
    X += 7.7e-6 * rng.standard_normal((n, p))
    y = X @ rng.standard_normal(p) + 0.1 * rng.standard_normal(n)
    U, s, _ = np.linalg.svd(X - X.mean(0), full_matrices=False)
    yc = y - y.mean()
    alphas = s[0] ** 2 * np.array([5e-5, 3e-4])
    want = []
    for alpha in alphas:  # -(1/n) sum (r_i / (1 - tr(H) / n))^2, H with the intercept
        f = s**2 / (s**2 + alpha)
        r = yc - U @ (f * (U.T @ yc))
        want.append(-np.mean((r / (1 - (1 + f.sum()) / n)) ** 2))
    got = FastRidgeCV(alphas=alphas, cv="gcv").fit(X, y).alpha_scores_
    assert_allclose(got, want, rtol=1e-9)
