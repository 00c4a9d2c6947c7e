"""Numerical tests of the core solver against scikit-learn and brute-force refits (float64)."""

import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from conftest import DEVICES, DTYPES, TOL, make_problem
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.linear_model import Ridge, RidgeCV
from sklearn.model_selection import ShuffleSplit

from fastridge import FastRidgeCV, PrecisionWarning, ridge_cv

ALPHAS = np.logspace(-2, 3, 6)

# (n_samples, n_features, rank): N<P, N>P, N=P, rank-deficient both ways
SHAPES = [(20, 35, None), (45, 12, None), (25, 25, None), (30, 40, 8), (50, 20, 6)]


def refit_loo_predictions(X, y, alpha, fit_intercept, sample_weight=None):
    """Leave-one-out predictions, shaped as y, by refitting scikit-learn Ridge without
    each sample."""
    n = X.shape[0]
    sw = np.ones(n) if sample_weight is None else sample_weight
    out = np.empty_like(y)
    for i in range(n):
        keep = np.arange(n) != i
        model = Ridge(alpha=alpha, fit_intercept=fit_intercept, solver="svd")
        out[i] = model.fit(X[keep], y[keep], sample_weight=sw[keep]).predict(X[i : i + 1])[0]
    return out


def brute_force_loo(X, y, alpha, fit_intercept, sample_weight=None):
    """Leave-one-out residuals by refitting scikit-learn Ridge without each sample.

    Returns the weighted residuals sqrt(w_i) (y_i - prediction_i), shape (n_samples, n_targets)
    (what scikit-learn's RidgeCV squares and averages).
    """
    sw = np.ones(X.shape[0]) if sample_weight is None else sample_weight
    pred = refit_loo_predictions(X, y, alpha, fit_intercept, sample_weight)
    return np.sqrt(sw).reshape(-1, *[1] * (y.ndim - 1)) * (y - pred)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("alpha_per_target", [True, False])
def test_matches_sklearn_ridgecv(shape, fit_intercept, alpha_per_target):
    n, p, rank = shape
    X, Y = make_problem(n, p, 4, rank=rank, seed=n + p)
    ref = RidgeCV(alphas=ALPHAS, fit_intercept=fit_intercept, alpha_per_target=alpha_per_target)
    ref.fit(X, Y)
    got = FastRidgeCV(
        alphas=ALPHAS, fit_intercept=fit_intercept, alpha_per_target=alpha_per_target
    ).fit(X, Y)
    assert_array_equal(got.alpha_, ref.alpha_)
    assert_allclose(got.coef_, ref.coef_, rtol=1e-8, atol=1e-10)
    assert_allclose(got.intercept_, ref.intercept_, rtol=1e-8, atol=1e-10)
    assert_allclose(got.best_score_, ref.best_score_, rtol=1e-8)
    assert np.shape(got.best_score_) == np.shape(ref.best_score_)
    assert type(got.alpha_) is type(ref.alpha_) or np.shape(got.alpha_) == np.shape(ref.alpha_)
    # every alpha's score: minus the mean over samples of scikit-learn's squared LOO errors
    stored = RidgeCV(alphas=ALPHAS, fit_intercept=fit_intercept, store_cv_results=True).fit(X, Y)
    assert_allclose(got.alpha_scores_, -stored.cv_results_.mean(axis=0), rtol=1e-8, atol=1e-12)
    if alpha_per_target:
        index = np.searchsorted(ALPHAS, got.alpha_)
        assert_array_equal(
            np.take_along_axis(got.alpha_scores_, index[:, None], 1)[:, 0], got.best_score_
        )
    else:
        assert got.alpha_ == ALPHAS[got.alpha_scores_.mean(axis=0).argmax()]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("fit_intercept", [True, False])
def test_loo_errors_equal_brute_force_refits(shape, fit_intercept):
    n, p, rank = shape
    X, Y = make_problem(n, p, 2, rank=rank, seed=7 * n + p)
    alphas = [0.3, 30.0]
    m = FastRidgeCV(
        alphas=alphas, fit_intercept=fit_intercept, store_cv_results=True, alpha_per_target=True
    ).fit(X, Y)
    for a, alpha in enumerate(alphas):
        ref = brute_force_loo(X, Y, alpha, fit_intercept)
        assert_allclose(m.cv_results_[:, :, a], ref**2, rtol=1e-7, atol=1e-10)


def test_weighted_loo_equals_weighted_refits():
    X, Y = make_problem(18, 30, 2, seed=3)
    sw = np.random.default_rng(1).uniform(0.2, 3.0, X.shape[0])
    m = FastRidgeCV(alphas=[2.0], store_cv_results=True).fit(X, Y, sample_weight=sw)
    ref = brute_force_loo(X, Y, 2.0, True, sample_weight=sw)
    assert_allclose(m.cv_results_[:, :, 0], ref**2, rtol=1e-7, atol=1e-10)


@pytest.mark.parametrize("shape", [(20, 35), (45, 12)])
@pytest.mark.parametrize("alpha_per_target", [True, False])
def test_sample_weight_matches_sklearn(shape, alpha_per_target):
    X, Y = make_problem(*shape, 3, seed=11)
    sw = np.random.default_rng(2).uniform(0.1, 4.0, shape[0])
    ref = RidgeCV(alphas=ALPHAS, alpha_per_target=alpha_per_target).fit(X, Y, sample_weight=sw)
    got = FastRidgeCV(alphas=ALPHAS, alpha_per_target=alpha_per_target).fit(X, Y, sample_weight=sw)
    assert_array_equal(got.alpha_, ref.alpha_)
    assert_allclose(got.coef_, ref.coef_, rtol=1e-8, atol=1e-10)
    assert_allclose(got.intercept_, ref.intercept_, rtol=1e-8, atol=1e-10)
    assert_allclose(got.best_score_, ref.best_score_, rtol=1e-8)


@pytest.mark.parametrize(
    "scoring",
    [
        "r2",
        "neg_mean_absolute_error",
        "explained_variance",
        "neg_mean_squared_error",
        "neg_root_mean_squared_error",
        "neg_max_error",
        "neg_median_absolute_error",
    ],
)
@pytest.mark.parametrize("alpha_per_target", [True, False])
def test_scoring_matches_sklearn(scoring, alpha_per_target):
    X, Y = make_problem(25, 15, 3, seed=5)
    if scoring == "neg_max_error" and not alpha_per_target:
        # max_error has no multi-output form: both refuse the same way
        for est in (RidgeCV, FastRidgeCV):
            with pytest.raises(ValueError, match="Multioutput not supported"):
                est(alphas=ALPHAS, scoring=scoring).fit(X, Y)
        Y = Y[:, 0]
    ref = RidgeCV(alphas=ALPHAS, scoring=scoring, alpha_per_target=alpha_per_target).fit(X, Y)
    got = FastRidgeCV(alphas=ALPHAS, scoring=scoring, alpha_per_target=alpha_per_target).fit(X, Y)
    assert_array_equal(got.alpha_, ref.alpha_)
    assert_allclose(got.best_score_, ref.best_score_, rtol=1e-8, atol=1e-12)
    assert_allclose(got.coef_, ref.coef_, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("scoring", ["r2", "neg_mean_absolute_error", "explained_variance"])
def test_weighted_scoring_matches_sklearn(scoring):
    X, Y = make_problem(22, 14, 3, seed=6)
    sw = np.random.default_rng(4).uniform(0.5, 2.0, 22)
    ref = RidgeCV(alphas=ALPHAS, scoring=scoring, alpha_per_target=True).fit(X, Y, sample_weight=sw)
    got = FastRidgeCV(alphas=ALPHAS, scoring=scoring, alpha_per_target=True).fit(
        X, Y, sample_weight=sw
    )
    assert_array_equal(got.alpha_, ref.alpha_)
    assert_allclose(got.best_score_, ref.best_score_, rtol=1e-8, atol=1e-12)


def test_correlation_score_is_pearson_of_loo_predictions():
    X, Y = make_problem(30, 20, 3, seed=8)
    m = FastRidgeCV(
        alphas=[1.0, 100.0], scoring="correlation", alpha_per_target=True, store_cv_results=True
    ).fit(X, Y)
    preds = m.cv_results_  # (n_samples, n_targets, n_alphas) held-out predictions
    r = np.array([[np.corrcoef(preds[:, t, a], Y[:, t])[0, 1] for t in range(3)] for a in range(2)])
    assert_array_equal(m.alpha_, np.array([1.0, 100.0])[r.argmax(0)])
    assert_allclose(m.best_score_, r.max(0), rtol=1e-10)


def _weighted_correlation(p, y, w):
    pc, yc = p - w @ p / w.sum(), y - w @ y / w.sum()
    return (w @ (pc * yc)) / np.sqrt((w @ (pc * pc)) * (w @ (yc * yc)))


@pytest.mark.parametrize("shape", [(40, 9, None), (24, 30, None), (40, 16, 5)])
@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("weights", [None, "positive", "zeros"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_loo_correlation_equals_refits_at_every_shrinkage(shape, fit_intercept, weights, dtype):
    """Leave-one-out correlations (and stored predictions) off the dual route, at alphas
    from 1e-6 to 1e6 lambda_max, against refits. Formed as y - resid, float32 had been
    up to 0.67 off at the largest alphas, and chose them where the smallest was best
    (a differential fuzz found it); the predictions are now formed directly
    (`_cv.LeaveOneOut`, `predictions`)."""
    n, p, rank = shape
    X, Y = make_problem(n, p, 3, rank=rank, seed=n + p)
    X = X + 5.0  # offset features: without an intercept, one direction dominates
    rng = np.random.default_rng(n)
    sw = None if weights is None else rng.uniform(0.5, 2.0, n)
    if weights == "zeros":
        sw[[1, 6]] = 0.0
    alphas = np.linalg.svd(X, compute_uv=False)[0] ** 2 * np.logspace(-6, 6, 5)
    # (store_cv_results keeps leave-one-out off the dual route also for n < p)
    m = FastRidgeCV(
        alphas=alphas, scoring="correlation", fit_intercept=fit_intercept, dtype=dtype,
        store_cv_results=True, alpha_per_target=True,
    ).fit(X.astype(dtype), Y.astype(dtype), sample_weight=sw)  # fmt: skip
    w = np.ones(n) if sw is None else sw
    tol = 2e-4 if dtype == "float32" else 1e-7
    for a, alpha in enumerate(alphas):
        pred = refit_loo_predictions(X, Y, alpha, fit_intercept, sw)
        want = [_weighted_correlation(pred[:, t], Y[:, t], w) for t in range(3)]
        assert_allclose(m.alpha_scores_[:, a], want, atol=tol)
        # (a sample of weight 0: the fit on all samples predicts it, left out or not;
        # it had stored its own target, and scikit-learn divides by its weight 0)
        assert_allclose(m.cv_results_[:, :, a], pred, atol=tol * np.abs(pred).max())


@pytest.mark.parametrize("scoring", ["r2", "correlation"])
@pytest.mark.parametrize("cv", [None, "gcv"])
@pytest.mark.parametrize("shape", [(30, 50), (40, 8)], ids=["n<p", "n>p"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_stored_prediction_of_a_sample_of_weight_0_is_the_fits(scoring, cv, shape, dtype):
    """In cv_results_, a sample of weight 0 stores the prediction of the fit on all
    samples at each alpha (left out, the fit is the same: leave-one-out refits give
    it too), residual and prediction routes alike, with and without an
    intercept in the Gram and covariance forms; it had stored its own target."""
    rng = np.random.default_rng(shape[0])
    X = rng.standard_normal(shape) + 3.0
    Y = X @ rng.standard_normal((shape[1], 3)) + rng.standard_normal((shape[0], 3))
    sw = rng.uniform(0.5, 2.0, shape[0])
    zero = [2, 7, 11]
    sw[zero] = 0.0
    alphas = np.array([1e-2, 1.0, 1e2]) * np.linalg.norm(X, 2) ** 2
    for fit_intercept in (True, False):
        m = FastRidgeCV(
            alphas=alphas, cv=cv, scoring=scoring, store_cv_results=True,
            alpha_per_target=True, fit_intercept=fit_intercept, dtype=dtype,
        ).fit(X.astype(dtype), Y.astype(dtype), sample_weight=sw)  # fmt: skip
        for a, alpha in enumerate(alphas):
            ridge = Ridge(alpha=alpha, fit_intercept=fit_intercept, solver="svd")
            want = ridge.fit(X, Y, sample_weight=sw).predict(X[zero])
            tol = 1e-5 if dtype == "float32" else 1e-10
            assert_allclose(m.cv_results_[zero, :, a], want, atol=tol * np.abs(want).max())
            if cv is None:
                loo = refit_loo_predictions(X, Y, alpha, fit_intercept, sw)[zero]
                assert_allclose(loo, want, rtol=1e-10, atol=1e-10)


def test_loo_predictions_without_room_for_their_bases(monkeypatch):
    """Leave-one-out predictions built per chunk when the per-alpha bases do not fit
    (`_cv.LeaveOneOut._prediction_basis` into a reused buffer) equal those from the
    kept bases, chunk by chunk, with weights and 3-D targets."""
    import fastridge._cv as cv_module

    rng = np.random.default_rng(3)
    X = rng.standard_normal((40, 12)) + 3.0
    Y = rng.standard_normal((40, 4, 3))
    sw = rng.uniform(0.5, 2.0, 40)
    sw[4] = 0.0
    kw = dict(alphas=np.logspace(-2, 6, 5), scoring="correlation", store_cv_results=True,
              alpha_per_target=True, target_chunk=5)  # fmt: skip
    kept = FastRidgeCV(**kw).fit(X, Y, sample_weight=sw)
    monkeypatch.setattr(cv_module, "_bases_fit", lambda *a, **k: False)
    built = FastRidgeCV(**kw).fit(X, Y, sample_weight=sw)
    assert_array_equal(built.alpha_scores_, kept.alpha_scores_)
    assert_array_equal(built.cv_results_, kept.cv_results_)
    assert kept.cv_results_.shape == (40, 4, 3, 5)


@pytest.mark.parametrize("scoring", [None, "r2"])
def test_store_cv_results_matches_sklearn(scoring):
    X, Y = make_problem(20, 30, 2, seed=9)
    for y in (Y, Y[:, 0]):
        ref = RidgeCV(alphas=ALPHAS, scoring=scoring, store_cv_results=True).fit(X, y)
        got = FastRidgeCV(alphas=ALPHAS, scoring=scoring, store_cv_results=True).fit(X, y)
        assert got.cv_results_.shape == ref.cv_results_.shape
        assert_allclose(got.cv_results_, ref.cv_results_, rtol=1e-8, atol=1e-10)
        if scoring is None:  # (with a score, cv_results_ holds predictions)
            assert got.alpha_scores_.shape == ref.cv_results_.shape[1:]
            assert_allclose(got.alpha_scores_, -ref.cv_results_.mean(axis=0), rtol=1e-8)


def test_one_d_target_and_single_alpha_forms():
    X, Y = make_problem(20, 10, 1, seed=12)
    y = Y[:, 0]
    ref = RidgeCV(alphas=[3.0]).fit(X, y)
    for alphas in (3.0, [3.0], (3.0,), np.array([3.0]), np.float32(3.0), 3):
        got = FastRidgeCV(alphas=alphas).fit(X, y)
        assert got.alpha_ == 3.0 and isinstance(got.alpha_, float)
        assert got.alpha_scores_.shape == (1,) and got.alpha_scores_[0] == got.best_score_
        assert got.coef_.shape == (10,)
        assert isinstance(got.intercept_, float)
        assert_allclose(got.coef_, ref.coef_, rtol=1e-10)
        assert_allclose(got.intercept_, ref.intercept_, rtol=1e-10)
        assert_allclose(got.predict(X), ref.predict(X), rtol=1e-10)


def test_three_d_targets_equal_flattened_fit():
    rng = np.random.default_rng(0)
    X, _ = make_problem(24, 30, 1, seed=1)
    Y = rng.standard_normal((24, 3, 5)) + X[:, :1, None] * rng.standard_normal((1, 3, 5))
    m3 = FastRidgeCV(alphas=ALPHAS, alpha_per_target=True, store_cv_results=True).fit(X, Y)
    m2 = FastRidgeCV(alphas=ALPHAS, alpha_per_target=True, store_cv_results=True).fit(
        X, Y.reshape(24, 15)
    )
    assert m3.alpha_.shape == (3, 5) and m3.best_score_.shape == (3, 5)
    assert m3.coef_.shape == (3, 5, 30) and m3.intercept_.shape == (3, 5)
    assert m3.cv_results_.shape == (24, 3, 5, len(ALPHAS))
    assert m3.alpha_scores_.shape == (3, 5, len(ALPHAS))
    assert_array_equal(m3.alpha_scores_.reshape(15, -1), m2.alpha_scores_)
    assert_array_equal(m3.alpha_.ravel(), m2.alpha_)
    assert_allclose(m3.coef_.reshape(15, 30), m2.coef_, rtol=1e-12)
    Xt = rng.standard_normal((7, 30))
    assert m3.predict(Xt).shape == (7, 3, 5)
    assert_allclose(m3.predict(Xt).reshape(7, 15), m2.predict(Xt), rtol=1e-12)
    assert np.isfinite(m3.score(Xt, m3.predict(Xt)))
    assert m3.score(Xt, m3.predict(Xt)) == pytest.approx(1.0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("alpha_per_target", [True, False])
def test_chunked_equals_unchunked(dtype, alpha_per_target):
    X, Y = make_problem(30, 40, 23, seed=13, dtype=dtype)
    results = []
    for chunk in (1, 7, 23, "auto"):
        m = FastRidgeCV(alphas=ALPHAS, alpha_per_target=alpha_per_target, target_chunk=chunk)
        results.append(m.fit(X, Y))
    tol = dict(rtol=1e-12, atol=1e-13) if dtype == np.float64 else dict(rtol=1e-5, atol=1e-6)
    for m in results[1:]:
        assert_array_equal(m.alpha_, results[0].alpha_)
        assert_allclose(m.coef_, results[0].coef_, **tol)
        assert_allclose(m.intercept_, results[0].intercept_, **tol)
        assert_allclose(m.best_score_, results[0].best_score_, **tol)
        assert_allclose(m.alpha_scores_, results[0].alpha_scores_, **tol)


@pytest.mark.parametrize("order", ["C", "F"])
def test_memmap_targets_read_in_chunks(tmp_path, order):
    X, Y = make_problem(26, 18, 12, seed=14)
    Y3 = np.asarray(Y.reshape(26, 3, 4), order=order)
    path = tmp_path / "Y.npy"
    mm = np.lib.format.open_memmap(
        path, mode="w+", dtype=np.float32, shape=Y3.shape, fortran_order=(order == "F")
    )
    mm[:] = Y3
    mm.flush()
    del mm
    Ymm = np.load(path, mmap_mode="r")
    got = FastRidgeCV(alphas=ALPHAS, alpha_per_target=True, target_chunk=5).fit(X, Ymm)
    ref = FastRidgeCV(alphas=ALPHAS, alpha_per_target=True).fit(X, Y3.astype(np.float32))
    assert_array_equal(got.alpha_, ref.alpha_)
    assert_allclose(got.coef_, ref.coef_, rtol=1e-12)


def test_solver_reads_memmap_chunks_not_whole(tmp_path, monkeypatch):
    """The reader asks the memmap (or its file, row by row) for column slices no
    wider than the chunk, each once."""
    from fastridge import _chunks

    X, Y = make_problem(20, 10, 30, seed=15)
    path = tmp_path / "Y.npy"
    np.save(path, Y)
    widths = []
    original = _chunks.TargetReader._host_block
    original_rows = _chunks.RowReader.read_into

    def spy(self, sl, copy=True):
        block = original(self, sl, copy)
        widths.append(block.shape[1])
        return block

    def spy_rows(self, sl, out):
        widths.append(out.shape[1])
        return original_rows(self, sl, out)

    monkeypatch.setattr(_chunks.TargetReader, "_host_block", spy)
    monkeypatch.setattr(_chunks.RowReader, "read_into", spy_rows)
    res = ridge_cv(X, np.load(path, mmap_mode="r"), ALPHAS, alpha_per_target=True, target_chunk=8)
    assert max(widths) == 8 and sum(widths) == 30
    assert res.coef.shape == (30, 10)
    # a memmap in Fortran order: through the mapping
    np.save(path, np.asfortranarray(Y))
    widths.clear()
    ridge_cv(X, np.load(path, mmap_mode="r"), ALPHAS, alpha_per_target=True, target_chunk=8)
    assert max(widths) == 8 and sum(widths) == 30


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
def test_torch_in_torch_out(device, dtype):
    X, Y = make_problem(20, 30, 3, seed=16)
    Xt = torch.tensor(X, dtype=dtype, device=device)
    Yt = torch.tensor(Y, dtype=dtype, device=device)
    m = FastRidgeCV(alphas=ALPHAS, alpha_per_target=True).fit(Xt, Yt)
    assert isinstance(m.coef_, torch.Tensor) and m.coef_.device.type == device
    assert m.coef_.dtype == dtype
    pred = m.predict(Xt)
    assert isinstance(pred, torch.Tensor) and pred.device.type == device
    ref = RidgeCV(alphas=ALPHAS, alpha_per_target=True).fit(X, Y)
    tol = TOL[np.float64 if dtype == torch.float64 else np.float32]
    assert_allclose(m.coef_.cpu().numpy(), ref.coef_, **tol)
    # The caller's tensors are untouched (the solver never works in place on inputs).
    assert_array_equal(Yt.cpu().numpy(), Y.astype(Yt.cpu().numpy().dtype))


@pytest.mark.parametrize("shape", [(40, 120), (120, 40)])
def test_float32_keeps_float32_and_agrees(shape):
    X, Y = make_problem(*shape, 20, seed=17, standardize=True)
    ref = RidgeCV(alphas=ALPHAS, alpha_per_target=True, store_cv_results=True).fit(X, Y)
    m = FastRidgeCV(alphas=ALPHAS, alpha_per_target=True).fit(
        X.astype(np.float32), Y.astype(np.float32)
    )
    assert m.coef_.dtype == np.float32
    # Alphas may only differ where scikit-learn's own float64 scores nearly tie.
    scores = -ref.cv_results_.mean(axis=0)  # (n_targets, n_alphas)
    differ = m.alpha_ != ref.alpha_
    for t in np.flatnonzero(differ):
        a_got = list(ALPHAS).index(m.alpha_[t])
        gap = scores[t].max() - scores[t, a_got]
        assert gap <= 1e-4 * abs(scores[t].max()), (t, gap)
    same = ~differ
    assert_allclose(m.coef_[same], ref.coef_[same], **TOL[np.float32])


def test_headline_alpha_scale_identical_alphas():
    """Standardized X, alphas {1e4, 2e4, 4e4}: the headline setup, in float64."""
    X, Y = make_problem(120, 400, 40, seed=18, standardize=True, noise=3.0)
    alphas = (1e4, 2e4, 4e4)
    ref = RidgeCV(alphas=alphas, alpha_per_target=True).fit(X, Y)
    got = FastRidgeCV(alphas=alphas, alpha_per_target=True, target_chunk=16).fit(X, Y)
    assert len(np.unique(ref.alpha_)) > 1, "problem should make targets prefer different alphas"
    assert_array_equal(got.alpha_, ref.alpha_)
    assert_allclose(got.coef_, ref.coef_, rtol=1e-8, atol=1e-12)


def test_ties_go_to_the_first_listed_alpha():
    X, Y = make_problem(15, 8, 2, seed=19)
    # Duplicate alphas tie exactly; scikit-learn keeps the first.
    for alphas in ([5.0, 5.0, 1.0], [1.0, 5.0, 5.0]):
        got = FastRidgeCV(alphas=alphas, alpha_per_target=True).fit(X, Y)
        ref = RidgeCV(alphas=alphas, alpha_per_target=True).fit(X, Y)
        assert_array_equal(got.alpha_, ref.alpha_)
    # A constant target scores 0 for every alpha: the first alpha wins.
    Yc = np.column_stack([Y[:, 0], np.full(15, 2.5)])
    got = FastRidgeCV(alphas=[7.0, 1.0, 3.0], alpha_per_target=True).fit(X, Yc)
    assert got.alpha_[1] == 7.0
    assert_allclose(got.coef_[1], 0.0, atol=1e-12)
    assert got.intercept_[1] == pytest.approx(2.5)


def test_degenerate_but_valid_data():
    rng = np.random.default_rng(20)
    y = rng.standard_normal(12)
    # Constant X: coefficients 0, intercept = mean(y).
    m = FastRidgeCV().fit(np.ones((12, 4)), y)
    assert_allclose(m.coef_, 0.0, atol=1e-14)
    assert m.intercept_ == pytest.approx(y.mean())
    # One feature, more targets than samples.
    X1 = rng.standard_normal((12, 1))
    Y = rng.standard_normal((12, 50))
    got = FastRidgeCV(alphas=ALPHAS, alpha_per_target=True).fit(X1, Y)
    ref = RidgeCV(alphas=ALPHAS, alpha_per_target=True).fit(X1, Y)
    assert_array_equal(got.alpha_, ref.alpha_)
    assert_allclose(got.coef_, ref.coef_, rtol=1e-8, atol=1e-12)


def brute_force_gcv(X, y, alpha, fit_intercept):
    """GCV squared-error mean from the explicit hat matrix (shape (n_targets,))."""
    n = X.shape[0]
    Xc = X - X.mean(0) if fit_intercept else X
    H = Xc @ np.linalg.solve(Xc.T @ Xc + alpha * np.eye(X.shape[1]), Xc.T)
    if fit_intercept:
        H = H + np.ones((n, n)) / n
    resid = y - H @ y
    return ((resid / (1 - np.trace(H) / n)) ** 2).mean(axis=0)


@pytest.mark.parametrize("shape", [(20, 30), (40, 10)])
@pytest.mark.parametrize("fit_intercept", [True, False])
def test_gcv_matches_explicit_hat_matrix(shape, fit_intercept):
    X, Y = make_problem(*shape, 3, seed=21)
    alphas = [0.1, 3.0, 100.0]
    ref = np.array([brute_force_gcv(X, Y, a, fit_intercept) for a in alphas])  # (3, n_targets)
    m = FastRidgeCV(
        alphas=alphas, cv="gcv", fit_intercept=fit_intercept, alpha_per_target=True
    ).fit(X, Y)
    assert_array_equal(m.alpha_, np.array(alphas)[ref.argmin(0)])
    assert_allclose(-m.best_score_, ref.min(0), rtol=1e-8)
    assert_allclose(-m.alpha_scores_, ref.T, rtol=1e-8)
    shared = FastRidgeCV(alphas=alphas, cv="gcv", fit_intercept=fit_intercept).fit(X, Y)
    assert shared.alpha_ == alphas[int(ref.mean(1).argmin())]
    assert_allclose(-shared.alpha_scores_, ref.T, rtol=1e-8)
    # The stored (GEMM) path gives the same GCV errors as the O(rank) formula.
    st = FastRidgeCV(
        alphas=alphas, cv="gcv", fit_intercept=fit_intercept, store_cv_results=True
    ).fit(X, Y)
    assert_allclose(st.cv_results_.mean(axis=0).T, ref, rtol=1e-8)


def test_bad_input_errors():
    X, Y = make_problem(10, 5, 2)
    Ybad = Y.copy()
    Ybad[3, 1] = np.nan
    with pytest.raises(ValueError, match="y contains NaN"):
        FastRidgeCV().fit(X, Ybad)
    Ybad[3, 1] = np.inf
    with pytest.raises(ValueError, match="y contains infinity"):
        FastRidgeCV(target_chunk=1).fit(X, Ybad)
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        FastRidgeCV().fit(X, Y[:9])
    for alphas, msg in [
        ((1.0, -1.0), r"alphas\[1\] == -1.0, must be > 0.0"),
        (0.0, "'alphas' parameter"),
        ((1.0, np.nan), "must be finite"),
        ((np.inf,), "must be finite"),
        ((), "alphas is empty"),
        ([[1.0, 2.0], [3.0, 4.0]], r"1-D sequence, got shape \(2, 2\)"),  # (was flattened)
    ]:
        with pytest.raises(ValueError, match=msg):
            FastRidgeCV(alphas=alphas).fit(X, Y)
    with pytest.raises(ValueError, match="at least 2 samples"):
        FastRidgeCV().fit(X[:1], Y[:1])
    with pytest.raises(ValueError, match="'cv' parameter"):
        FastRidgeCV(cv="bogus").fit(X, Y)
    with pytest.raises(ValueError, match="alphas == 0.0, must be > 0.0"):
        ridge_cv(X, Y, 0.0)


@pytest.mark.parametrize(
    "budget, message",
    [("lots", "a size such as '2GB'"), ("0", "at least 1 byte"), ("-1GB", "at least 1 byte"),
     ("nan", "finite size"), (0, "at least 1 byte")],
)  # fmt: skip
def test_bad_memory_budget_is_refused_before_any_work(monkeypatch, budget, message):
    """A memory budget that is not a size is refused naming the parameter, before
    the decomposition ('lots' had failed after it, with float()'s own message)."""
    import fastridge.solve as solve_module

    def no_decomposition(*a, **k):
        raise AssertionError("decomposed before the budget was checked")

    monkeypatch.setattr(solve_module, "decompose", no_decomposition)
    X, Y = make_problem(10, 5, 2)
    with pytest.raises(ValueError, match=f"memory_budget must be .*{message}"):
        ridge_cv(X, Y, [1.0], memory_budget=budget)


@pytest.mark.parametrize(
    "dtype", [np.float16, np.int64, int, "int8", torch.float16, torch.bfloat16, torch.int32]
)
def test_compute_dtype_other_than_float32_or_float64_is_refused(dtype):
    """dtype= is float32 or float64 (numpy, torch or a string): float16 had been computed
    in silently, and int64 or bfloat16 had raised a bare KeyError / torch TypeError (a
    differential fuzz found them)."""
    X, Y = make_problem(10, 5, 2)
    # (a string other than "float32" / "float64" is refused by the parameter check)
    with pytest.raises(ValueError, match="dtype"):
        FastRidgeCV(dtype=dtype).fit(X, Y)
    with pytest.raises(ValueError, match="dtype must be float32 or float64, got"):
        ridge_cv(X, Y, (1.0,), dtype=dtype)
    for good, want in [("float32", np.float32), (np.float32, np.float32),
                       (np.dtype("float64"), np.float64), (torch.float64, np.float64)]:  # fmt: skip
        assert FastRidgeCV(alphas=(1.0,), dtype=good).fit(X, Y).coef_.dtype == want


def test_import_does_not_load_cupy_or_cuda():
    code = (
        "import sys, fastridge, torch; "
        "assert 'cupy' not in sys.modules; "
        "assert not torch.cuda.is_initialized(); print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_nan_error_names_sample_and_target():
    X, _ = make_problem(10, 5, 1)
    Y = np.zeros((10, 3, 4))
    Y[6, 2, 1] = np.nan
    with pytest.raises(ValueError, match=r"contains NaN \(first at sample 6, target \(2, 1\)\)"):
        FastRidgeCV(target_chunk=5).fit(X, Y)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_finite_check_screen(dtype):
    """The column-sum screen never hides a non-finite value, and a sum that
    overflows on finite values does not raise."""
    from fastridge._validation import check_finite_chunk

    big = torch.finfo(dtype).max / 2
    t = torch.full((4, 3), big, dtype=dtype)  # column sums overflow to inf
    check_finite_chunk(t, "y", 0)
    for bad, kind in [(np.nan, "NaN"), (np.inf, "infinity"), (-np.inf, "infinity")]:
        u = t.clone()
        u[2, 1] = bad
        with pytest.raises(ValueError, match=rf"y contains {kind} \(first at sample 2, target 1\)"):
            check_finite_chunk(u, "y", 0)
    u = torch.zeros((5, 2), dtype=dtype)
    u[0, 0], u[1, 0] = np.inf, -np.inf  # sum is NaN: still named as infinity
    with pytest.raises(ValueError, match=r"y contains infinity \(first at sample 0, target 0\)"):
        check_finite_chunk(u, "y", 0)
    check_finite_chunk(torch.zeros((0, 3), dtype=dtype), "y", 0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cv", [None, 4], ids=["loo", "kfold"])
def test_per_alpha_bases_equal_the_scaling_path(monkeypatch, dtype, cv):
    """The per-alpha bases (residuals as one GEMM from U^T Y) and the path without
    them (scaling passes; taken when the bases would not fit in memory) agree."""
    import fastridge._cv as cv_module

    X, Y = make_problem(30, 50, 40, seed=12)
    X, Y = X.astype(dtype), Y.astype(dtype)
    alphas = np.logspace(-1, 3, 5)
    kw = dict(alphas=alphas, cv=cv, alpha_per_target=True, store_cv_results=True)
    seen = []
    real_fit = cv_module._bases_fit
    monkeypatch.setattr(cv_module, "_bases_fit", lambda *a: seen.append(real_fit(*a)) or seen[-1])
    with_bases = FastRidgeCV(**kw).fit(X, Y)
    assert seen == [True]
    monkeypatch.setattr(cv_module, "_bases_fit", lambda *a: False)
    without = FastRidgeCV(**kw).fit(X, Y)
    rtol = 1e-12 if dtype == np.float64 else 2e-5
    assert_allclose(with_bases.cv_results_, without.cv_results_, rtol=rtol, atol=rtol)
    assert np.mean(with_bases.alpha_ == without.alpha_) >= 0.95
    same = with_bases.alpha_ == without.alpha_
    assert_allclose(with_bases.coef_[same], without.coef_[same], rtol=rtol, atol=rtol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("solution", ["primal", "dual"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("makers", ["cholesky", "eigen"])
def test_dual_route_equals_the_projection_route(
    monkeypatch, dtype, solution, weighted, fit_intercept, makers
):
    """Leave-one-out from residual makers (by Cholesky, no eigendecomposition; or
    from the eigh) and kept dual coefficients (no U^T Y, no M) against the
    projection route on the same data: same alphas, scores, coefficients and
    intercepts, chunked with an uneven last chunk."""
    import fastridge._cv as cv_module
    import fastridge.solve as solve_module

    monkeypatch.setattr(solve_module, "CHOLESKY_MAX_ALPHAS", 10 if makers == "cholesky" else 0)
    X, Y = make_problem(30, 50, 41, seed=13)
    X, Y = X.astype(dtype), Y.astype(dtype) + 3.0
    sw = np.random.default_rng(1).uniform(0.2, 2.0, 30) if weighted else None
    alphas = np.logspace(-1, 3, 5)
    kw = dict(fit_intercept=fit_intercept, alpha_per_target=True, solution=solution)
    calls = []  # per call: whether `kept` and `scratch` traded places
    real_score = cv_module.DualRoute.score

    def score(self, chunk, a, kept, scratch, *rest):
        result = real_score(self, chunk, a, kept, scratch, *rest)
        calls.append((a, result[1] is not kept))
        return result

    monkeypatch.setattr(cv_module.DualRoute, "score", score)
    got = ridge_cv(X, Y, alphas, sample_weight=sw, target_chunk=16, **kw)
    assert len(calls) == 3 * len(alphas)  # 3 chunks, every alpha through the route
    # both ways of keeping each target's best residuals ran: copying the improved
    # rows, and (most targets improved) copying the others and trading buffers
    traded = [t for a, t in calls if a > 0]
    assert any(traded) and not all(traded)
    monkeypatch.setattr(solve_module, "_use_dual_route", lambda *a, **k: None)
    ref = ridge_cv(X, Y, alphas, sample_weight=sw, target_chunk=16, **kw)
    assert len(calls) == 3 * len(alphas)
    assert got.rank == ref.rank
    rtol = 1e-10 if dtype == np.float64 else 2e-5
    assert_array_equal(got.alpha_index, ref.alpha_index)
    assert_allclose(got.best_score, ref.best_score, rtol=rtol)
    scale = np.abs(ref.coef).max()
    assert_allclose(got.coef, ref.coef, rtol=rtol, atol=rtol * scale)
    assert_allclose(got.intercept, ref.intercept, rtol=rtol, atol=rtol * 3)


@pytest.mark.parametrize("makers", ["cholesky", "eigen", "default"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("solution", ["primal", "dual"])
def test_shared_alpha_on_the_dual_route_equals_scikit_learn(
    monkeypatch, makers, weighted, solution
):
    """One alpha for all targets (scikit-learn's default) on the dual route, its
    makers by Cholesky or from an eigh ("default": 9 alphas, more than
    CHOLESKY_MAX_ALPHAS; the eigh's makers once crashed in the second pass, which
    forms the chosen alpha's residuals): scikit-learn's alpha, score, coefficients,
    intercepts and predictions, in target chunks."""
    import fastridge._cv as cv_module
    import fastridge.solve as solve_module

    if makers != "default":
        monkeypatch.setattr(solve_module, "CHOLESKY_MAX_ALPHAS", 10 if makers == "cholesky" else 0)
    routes = []  # whether each DualRoute made its makers from an eigh
    real_init = cv_module.DualRoute.__init__

    def init(self, decomp, *args, **kwargs):
        routes.append(decomp.U is not None)
        real_init(self, decomp, *args, **kwargs)

    monkeypatch.setattr(cv_module.DualRoute, "__init__", init)
    X, Y = make_problem(30, 50, 7, seed=17)
    X_test, _ = make_problem(8, 50, 1, seed=18)
    sw = np.random.default_rng(2).uniform(0.2, 2.0, 30) if weighted else None
    alphas = np.logspace(-1, 3, 9)
    got = FastRidgeCV(alphas=alphas, solution=solution, target_chunk=3).fit(X, Y, sample_weight=sw)
    assert routes == [makers != "cholesky"]
    ref = RidgeCV(alphas=alphas).fit(X, Y, sample_weight=sw)
    assert got.alpha_ == ref.alpha_
    assert_allclose(got.best_score_, ref.best_score_, rtol=1e-9)
    assert_allclose(got.predict(X_test), ref.predict(X_test), rtol=1e-8, atol=1e-9)
    assert_allclose(got.intercept_, ref.intercept_, rtol=1e-8, atol=1e-9)
    if solution == "primal":
        assert_allclose(got.coef_, ref.coef_, rtol=1e-8, atol=1e-9)


def test_dual_route_where_it_applies(monkeypatch):
    """Rank-deficient X takes the dual route too (its makers are exact on null
    directions), and so do a built-in score and a shared alpha; the covariance
    form, a generic scorer, stored CV values and too little memory take the
    eigendecomposition route; a failed Cholesky falls back to it. All agree with
    scikit-learn."""
    import fastridge._cv as cv_module
    import fastridge.solve as solve_module

    built = []
    real_init = cv_module.DualRoute.__init__
    monkeypatch.setattr(
        cv_module.DualRoute,
        "__init__",
        lambda self, *a, **k: built.append(1) or real_init(self, *a, **k),
    )
    monkeypatch.setattr(solve_module, "CHOLESKY_MAX_ALPHAS", 10)
    alphas = np.logspace(-1, 3, 5)
    X, Y = make_problem(30, 50, 6, seed=14)
    Xr, Yr = make_problem(30, 50, 6, rank=10, seed=15)
    Xt, Yt = make_problem(50, 20, 6, seed=16)

    def check(Xc, Yc, **kw):
        got = FastRidgeCV(alphas=alphas, **kw).fit(Xc, Yc)
        ref = RidgeCV(alphas=alphas, **kw).fit(Xc, Yc)
        assert_array_equal(got.alpha_, ref.alpha_)
        assert_allclose(got.coef_, ref.coef_, rtol=1e-7, atol=1e-9)
        assert_allclose(got.intercept_, ref.intercept_, rtol=1e-7, atol=1e-9)
        return got

    check(X, Y, alpha_per_target=True)
    assert len(built) == 1
    deficient = check(Xr, Yr, alpha_per_target=True)
    assert len(built) == 2
    assert deficient.rank_ == 10 == check(Xr, Yr).rank_  # (a shared alpha)
    assert len(built) == 3
    check(X, Y, alpha_per_target=True, scoring="r2")
    assert len(built) == 4
    check(Xt, Yt, alpha_per_target=True)
    check(X, Y, alpha_per_target=True, scoring="neg_median_absolute_error")
    assert len(built) == 4
    check(X, Y)  # a shared alpha
    assert len(built) == 5
    check(X, Y, alpha_per_target=True, store_cv_results=True)
    assert len(built) == 5
    monkeypatch.setattr(solve_module, "available_memory", lambda device: 1000)
    check(X, Y, alpha_per_target=True)
    assert len(built) == 5
    monkeypatch.undo()
    # a failed Cholesky, and an eigendecomposition with a remainder: projection route
    monkeypatch.setattr(solve_module, "CHOLESKY_MAX_ALPHAS", 10)
    monkeypatch.setattr(cv_module, "cholesky_inverse", lambda A: None)
    check(X, Y, alpha_per_target=True)
    check(X, Y, alpha_per_target=True, scoring="explained_variance")
    monkeypatch.setattr(solve_module, "CHOLESKY_MAX_ALPHAS", 0)
    assert check(Xr, Yr, alpha_per_target=True).rank_ == 10
    # an alpha below eps * trace(Gram): the accurate eigendecomposition route
    monkeypatch.undo()
    monkeypatch.setattr(solve_module, "CHOLESKY_MAX_ALPHAS", 10)
    built.clear()
    monkeypatch.setattr(
        cv_module.DualRoute,
        "__init__",
        lambda self, *a, **k: built.append(1) or real_init(self, *a, **k),
    )
    tiny = FastRidgeCV(alphas=[1e-16, 1.0], alpha_per_target=True).fit(X, Y)
    assert len(built) == 1  # tried, refused
    monkeypatch.setattr(solve_module, "_use_dual_route", lambda *a, **k: None)
    ref = FastRidgeCV(alphas=[1e-16, 1.0], alpha_per_target=True).fit(X, Y)
    assert_array_equal(tiny.alpha_, ref.alpha_)
    assert_allclose(tiny.coef_, ref.coef_, rtol=1e-12, atol=1e-12)


def test_integer_memmap_targets_are_converted_per_chunk(tmp_path):
    X, Y = make_problem(16, 6, 9, seed=22)
    Yi = np.round(Y * 10).astype(np.int32)
    np.save(tmp_path / "Y.npy", Yi)
    Ymm = np.load(tmp_path / "Y.npy", mmap_mode="r")
    got = FastRidgeCV(alphas=ALPHAS, alpha_per_target=True, target_chunk=4).fit(X, Ymm)
    ref = RidgeCV(alphas=ALPHAS, alpha_per_target=True).fit(X, Yi.astype(np.float64))
    assert_array_equal(got.alpha_, ref.alpha_)
    assert_allclose(got.coef_, ref.coef_, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("kind", ["numpy", "torch"])
@pytest.mark.parametrize("cv", [None, "gcv", 3, "refit"])
@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("weighted", [False, True])
def test_private_copy_of_x_centred_in_place(monkeypatch, kind, cv, fit_intercept, weighted):
    """A float32 X decomposed in float64 is a private copy, centred (and weighted,
    reflected) in place for leave-one-out, GCV and folds that partition the
    samples; not when the folds refit (a ShuffleSplit whose train and test sets
    leave samples out needs X again); a float64 X is the caller's and is left
    alone. Results are bit for bit those without the in-place centring, and the
    caller's X never changes."""
    import fastridge.solve as solve_module

    in_place = cv != "refit"
    if cv == "refit":
        cv = ShuffleSplit(n_splits=2, train_size=0.5, test_size=0.3, random_state=0)

    X, Y = make_problem(30, 45, 7, seed=21)
    X = X.astype(np.float32) + 1.0  # (an offset: centring matters; at +5 without an
    # intercept, lambda_max / (lambda_min + 0.5) ~ 2.5e4 sends float32 off the dual route)
    sw = np.random.default_rng(2).uniform(0.5, 2.0, 30) if weighted else None
    kw = dict(alphas=(0.5, 5.0, 50.0), fit_intercept=fit_intercept, cv=cv, alpha_per_target=True)
    Xin = torch.from_numpy(X.copy()) if kind == "torch" else X.copy()
    seen = []
    real = solve_module.decompose
    monkeypatch.setattr(
        solve_module, "decompose", lambda *a, **k: seen.append(k["overwrite_x"]) or real(*a, **k)
    )
    got = FastRidgeCV(**kw).fit(Xin, Y, sample_weight=sw)
    assert seen == [in_place]  # refits per fold need X: it is kept
    assert_array_equal(np.asarray(Xin), X)
    monkeypatch.setattr(solve_module, "shares_memory", lambda *a: True)
    ref = FastRidgeCV(**kw).fit(Xin, Y, sample_weight=sw)
    assert_array_equal(got.alpha_, ref.alpha_)
    assert_array_equal(np.asarray(got.coef_), np.asarray(ref.coef_))
    assert_array_equal(np.asarray(got.intercept_), np.asarray(ref.intercept_))
    # the caller's float64 X is shared, never overwritten
    monkeypatch.undo()
    monkeypatch.setattr(
        solve_module, "decompose", lambda *a, **k: seen.append(k["overwrite_x"]) or real(*a, **k)
    )
    seen.clear()
    X64 = X.astype(np.float64)
    X64in = torch.from_numpy(X64.copy()) if kind == "torch" else X64.copy()
    FastRidgeCV(**kw).fit(X64in, Y, sample_weight=sw)
    assert seen == [False]
    assert_array_equal(np.asarray(X64in), X64)


def test_private_copy_of_x_survives_the_dual_route_fallback(monkeypatch):
    """An alpha below the dual route's floor falls back to the eigendecomposition,
    which needs X again after the first decomposition centred its copy in place."""
    import fastridge.solve as solve_module

    X, Y = make_problem(25, 40, 5, seed=22)
    X = X.astype(np.float32) + 2.0
    kw = dict(alphas=(1e-9, 1.0, 10.0), alpha_per_target=True)
    calls = []
    real = solve_module.decompose
    monkeypatch.setattr(
        solve_module,
        "decompose",
        lambda *a, **k: calls.append((k["eigen"], k["overwrite_x"])) or real(*a, **k),
    )
    got = ridge_cv(X, Y, **kw)
    assert calls == [(False, True), (True, True)]  # the dual route, then the fallback
    monkeypatch.setattr(solve_module, "shares_memory", lambda *a: True)
    ref = ridge_cv(X, Y, **kw)
    assert_array_equal(got.alpha_index, ref.alpha_index)
    assert_array_equal(got.coef, ref.coef)
    skl = RidgeCV(alphas=kw["alphas"], alpha_per_target=True).fit(X.astype(np.float64), Y)
    assert_allclose(got.coef, skl.coef_, rtol=2e-3, atol=2e-4)


@pytest.mark.parametrize(
    "cv, solution, n_alphas, kept",
    [(None, "primal", 2, "workspace"), (None, "dual", 2, "workspace"), (None, "primal", 10, False),
     ("gcv", "primal", 2, False), (3, "primal", 2, "workspace"), (3, "primal", 10, "workspace"),
     (3, "primal", 33, False),
     (ShuffleSplit(n_splits=2, train_size=0.5, test_size=0.3, random_state=0), "primal", 2, True)],
)  # fmt: skip
def test_float64_copy_of_x_released_before_the_scheme(monkeypatch, cv, solution, n_alphas, kept):
    """Leave-one-out and GCV need X only to decompose it (dual intercepts too: the
    decomposition computes (X - x_offset) @ x_offset first): GCV, and the dual
    route with makers from the eigendecomposition (many alphas), free the
    float64 copy before the scheme is built; the dual route by Cholesky takes
    it as its workspace, and the makers (with the factorised Gram, the
    headline's peak) are placed in its memory instead of fresh memory, as does
    the fold dual route (folds that partition the samples, up to
    SCORED_MAX_ALPHAS = 32 alphas); with more alphas those folds free it, folds
    that refit keep it."""
    import gc
    import weakref

    import fastridge.solve as solve_module

    X, Y = make_problem(30, 400, 4, seed=23)
    copies, alive, schemes = [], [], []
    real_decompose, real_scheme = solve_module.decompose, solve_module._cv_scheme

    def decompose(Xt, **k):
        copies.append(weakref.ref(Xt))
        return real_decompose(Xt, **k)

    def scheme(*a, **k):
        gc.collect()
        copy = copies[-1]()
        alive.append(copy is not None)
        if copy is not None and k.get("workspace") is copy:
            alive[-1] = "workspace"
        del copy
        schemes.append(real_scheme(*a, **k))
        return schemes[-1]

    monkeypatch.setattr(solve_module, "decompose", decompose)
    monkeypatch.setattr(solve_module, "_cv_scheme", scheme)
    kw = dict(alpha_per_target=True, cv=cv, solution=solution)
    got = ridge_cv(X.astype(np.float32), Y, np.logspace(0, 1, n_alphas), **kw)
    assert alive == [kept]
    assert got.coef.shape == ((4, 400) if solution == "primal" else (4, 30))
    if kept == "workspace":  # the factorised Gram and both makers fit in the 30 x 400 copy
        makers = schemes[-1].dual_route.makers
        assert len({m.untyped_storage().data_ptr() for m in makers}) == 1
        del makers
    schemes.clear()
    gc.collect()
    assert copies[-1]() is None  # and released with the scheme


@pytest.mark.parametrize("cv", [None, "gcv", 3])
@pytest.mark.parametrize("n_alphas", [2, 12])  # leave-one-out makers by Cholesky / from eigh
def test_dual_solution_makes_no_design(monkeypatch, cv, n_alphas):
    """The design (Xs in the compute dtype, n_samples x n_features) and M = Xs^T U only
    feed primal coefficients: solution="dual" makes neither, and gets the primal
    model's predictions all the same."""
    import fastridge.solve as solve_module

    X, Y = make_problem(30, 400, 4, seed=29)
    made = []
    real_decompose = solve_module.decompose

    def decompose(Xt, **k):
        made.append(real_decompose(Xt, **k))
        return made[-1]

    monkeypatch.setattr(solve_module, "decompose", decompose)
    alphas = np.logspace(0, 1, n_alphas)
    fits = {}
    for solution in ("primal", "dual"):
        made.clear()
        est = FastRidgeCV(alphas, alpha_per_target=True, cv=cv, solution=solution)
        fits[solution] = est.fit(X, Y)
        for d in made:
            if solution == "dual":
                assert d.design is None and d.basis_M is None
            else:  # (float64 input: M is made from the design)
                assert d.design is not None and d.basis_M is None
    assert_array_equal(fits["dual"].alpha_, fits["primal"].alpha_)
    assert_allclose(fits["dual"].predict(X), fits["primal"].predict(X), rtol=1e-9, atol=1e-9)
    with pytest.raises(RuntimeError, match="without its design"):
        _ = made[-1].design_offset


def test_shares_memory():
    from fastridge._backend import as_tensor, shares_memory

    cpu = torch.device("cpu")
    a64 = np.ones((4, 3))
    assert shares_memory(as_tensor(a64, cpu, torch.float64), a64)
    assert not shares_memory(as_tensor(a64.astype(np.float32), cpu, torch.float64), a64)
    t64 = torch.ones(4, 3, dtype=torch.float64)
    assert shares_memory(as_tensor(t64, cpu, torch.float64), t64)
    assert shares_memory(as_tensor(t64[1:], cpu, torch.float64), t64[1:])
    assert not shares_memory(as_tensor(t64, cpu, torch.float32), t64)
    readonly = a64.copy()
    readonly.flags.writeable = False  # as a memmap opened with mode "r": copied
    assert not shares_memory(as_tensor(readonly, cpu, torch.float64), readonly)


def test_bad_splitter_fails_before_the_decomposition(monkeypatch):
    """The splits are made before any work: a splitter that cannot split (GroupKFold
    without groups) raises scikit-learn's error with nothing decomposed."""
    from sklearn.model_selection import GroupKFold

    import fastridge.solve as solve_module

    X, Y = make_problem(30, 12, 3, seed=5)
    seen = []
    real = solve_module.decompose
    monkeypatch.setattr(solve_module, "decompose", lambda *a, **k: seen.append(1) or real(*a, **k))
    with pytest.raises(ValueError, match="groups"):
        FastRidgeCV(alphas=(1.0, 10.0), cv=GroupKFold(n_splits=3)).fit(X, Y)
    assert seen == []
    FastRidgeCV(alphas=(1.0, 10.0), cv=GroupKFold(n_splits=3)).fit(X, Y, groups=np.arange(30) % 5)
    assert seen == [1]


def _near_duplicate_rows():
    """11 rows that nearly repeat three (eigenvalues 1e-7 lambda_max and below), 17
    features: float32 X, y, their float64 copies and lambda_max."""
    rng = np.random.default_rng(36)
    base = rng.standard_normal((3, 17))
    X = base[rng.integers(3, size=11)] + 1e-3 * rng.standard_normal((11, 17))
    y = X @ rng.standard_normal(17) + 0.5 * rng.standard_normal(11)
    X, y = X.astype(np.float32), y.astype(np.float32)
    X64, y64 = X.astype(np.float64), y.astype(np.float64)
    return X, y, X64, y64, np.linalg.svd(X64 - X64.mean(0), compute_uv=False)[0] ** 2


def test_float32_coefficients_of_near_duplicate_rows_off_the_dual_route():
    """Rows that nearly repeat three (eigenvalues 1e-7 lambda_max and below), alpha
    2e-8 lambda_max, float32, off the dual route (store_cv_results): M = Xs^T U made
    in float32 from the rounded design and U carried ~eps |X| in its small columns,
    which 1 / (eigval + alpha) amplified: coefficients 1.2e-4 off scikit-learn and
    predictions 1.8e-2 (a differential fuzz found it). M is made in float64 with
    the decomposition now."""
    from sklearn.linear_model import Ridge

    X, y, X64, y64, top = _near_duplicate_rows()
    alpha = 2e-8 * top
    ref = Ridge(alpha=alpha, solver="svd").fit(X64, y64)
    got = FastRidgeCV(alphas=[alpha], store_cv_results=True).fit(X, y)

    def rel(a, b):
        return np.linalg.norm(a - b) / np.linalg.norm(b)

    assert rel(got.coef_, ref.coef_) < 1e-6
    assert rel(got.predict(X).astype(np.float64), ref.predict(X64)) < 1e-4


def test_m_made_in_float64_only_where_float32_would_lose_digits(monkeypatch):
    """`decompose(make_M=alpha_min)` makes M in float64 (and drops the design) only
    when eps32 sqrt(max eigval / (min eigval + alpha_min)) > 1e-5, not for a
    well-conditioned X at an ordinary alpha."""
    import torch

    from fastridge._decompose import decompose

    rng = np.random.default_rng(0)
    X = torch.tensor(rng.standard_normal((40, 90)))
    top = float(torch.linalg.eigvalsh((X - X.mean(0)) @ (X - X.mean(0)).T)[-1])
    kw = dict(compute_dtype=torch.float32)
    assert decompose(X.clone(), make_M=1e-3 * top, **kw).basis_M is None
    near = X.clone()
    near[20:] = near[:20] + 1e-4 * torch.randn(20, 90, dtype=torch.float64)
    d = decompose(near.clone(), make_M=1e-9 * top, **kw)
    assert d.basis_M is not None and d.design is None
    lazy = decompose(near.clone(), **kw)  # (M from the design on first use)
    assert_allclose(d.M.numpy(), lazy.M.numpy(), rtol=1e-3, atol=1e-4 * float(lazy.M.abs().max()))


@pytest.mark.parametrize("cv", [None, 5])
@pytest.mark.parametrize("rel", [2e-8, 1e-4])
def test_float32_dual_route_left_for_near_duplicate_rows_at_a_tiny_alpha(cv, rel, capsys):
    """The same near-duplicate rows, alpha 2e-8 and 1e-4 lambda_max, on the routes
    without an eigendecomposition: primal coefficients Xs^T c from c = E / alpha in
    float32 were 2.8e-4 off scikit-learn and predictions 7e-2 (leave-one-out at
    2e-8; 5.6e-5 and 2e-3 with 5 folds; predictions 2.6e-5 and 4.1e-5 at 1e-4).
    lambda_max / (lambda_min + alpha) ~ 2e7 and ~1e4 now send the fit to the
    eigendecomposition route; dual coefficients keep the dual route."""
    from sklearn.linear_model import Ridge

    X, y, X64, y64, top = _near_duplicate_rows()
    alpha = rel * top
    ref = Ridge(alpha=alpha, solver="svd").fit(X64, y64)
    got = FastRidgeCV(alphas=[alpha], cv=cv, verbose=True).fit(X, y)
    assert "dual route unavailable" in capsys.readouterr().err
    if cv is None:  # and with more alphas than the Cholesky makers take (makers from eigh)
        many = FastRidgeCV(alphas=alpha * np.logspace(0, 1, 10), verbose=True).fit(X, y)
        assert "dual route unavailable" in capsys.readouterr().err
        assert many.alpha_ in alpha * np.logspace(0, 1, 10)
        best = Ridge(alpha=many.alpha_, solver="svd").fit(X64, y64)
        assert np.linalg.norm(many.coef_ - best.coef_) < 1e-6 * np.linalg.norm(best.coef_)
    assert np.linalg.norm(got.coef_ - ref.coef_) < 1e-6 * np.linalg.norm(ref.coef_)
    pred = got.predict(X).astype(np.float64)  # (float32's X @ coef: 5e-6 for scikit-learn's)
    tol = {2e-8: 3e-5, 1e-4: 1e-6}[rel]
    assert np.linalg.norm(pred - ref.predict(X64)) < tol * np.linalg.norm(ref.predict(X64))
    with pytest.warns(PrecisionWarning, match="solution='primal'"):  # (see below)
        FastRidgeCV(alphas=[alpha], cv=cv, verbose=True, solution="dual").fit(X, y)
    assert "dual route unavailable" not in capsys.readouterr().err


def _repeated_samples():
    rng = np.random.default_rng(0)
    X = np.repeat(rng.standard_normal((20, 200)), 2, axis=0)  # rank 20 of 40 samples
    return X, X @ rng.standard_normal((200, 3)) + rng.standard_normal((40, 3))


def _tall():
    rng = np.random.default_rng(0)  # n_samples > n_features: a Gram of rank 40 of 400
    X = rng.standard_normal((400, 3)) @ rng.standard_normal((3, 40))
    X += rng.standard_normal((400, 40))
    return X, X @ rng.standard_normal((40, 3)) * 0.1 + rng.standard_normal((400, 3))


def _near_duplicates():
    X, y, X64, y64, top = _near_duplicate_rows()
    return X64, y64[:, None], top


def _dual_fits_float32_and_float64(X, Y, sample_weight=None, **params):
    """solution="dual" fitted to X, Y in float32 and in float64: the relative distance
    of their fitted values, and the PrecisionWarnings of each fit (two lists)."""
    preds, warned = [], []
    for dtype in (np.float32, np.float64):
        weights = None if sample_weight is None else sample_weight.astype(dtype)
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            m = FastRidgeCV(solution="dual", **params)
            m.fit(X.astype(dtype), Y.astype(dtype), sample_weight=weights)
        warned.append([w for w in seen if issubclass(w.category, PrecisionWarning)])
        preds.append(m.predict(X.astype(dtype)).astype(np.float64))
    return np.linalg.norm(preds[0] - preds[1]) / np.linalg.norm(preds[1]), *warned


@pytest.mark.parametrize(
    "problem, tiny, ordinary",
    [
        (_repeated_samples, [1e-4], [1e2]),  # off the dual route (it refuses such X)
        (_tall, [1e-2], [1e3]),  # the covariance form
        # full rank, on the dual route: Cholesky makers, then makers from an eigh
        (_near_duplicates, [2e-8], [1e-2]),
        (_near_duplicates, 2e-8 * np.logspace(0, 1, 10), 1e-2 * np.logspace(0, 1, 10)),
    ],
)
def test_float32_dual_coefficients_warn_when_they_cannot_carry_the_fit(problem, tiny, ordinary):
    """Dual coefficients c = (K + alpha I)^-1 y are ~y / (lambda + alpha) on each
    eigenvector of the Gram, and predictions K_test c cancel the large parts: in
    float32 their rounding costs the predictions up to eps * lambda_max /
    (lambda_min + alpha), lambda_min 0 for a Gram of low rank. There is no better
    way in float32, so past 1e-3 a PrecisionWarning says so, for the alpha chosen;
    the fitted values here are then 1.4e-2 to 0.59 off float64's, so the warning is
    about a real loss. At the ordinary alphas they are 2e-7 to 2e-6 off and nothing
    is said, nor in float64."""
    X, Y, *scale = problem()
    scale = scale[0] if scale else 1.0
    # (on the fitted values: new points far from the data lose less)
    for alphas, loses in ((tiny, True), (ordinary, False)):
        loss, warned, warned64 = _dual_fits_float32_and_float64(
            X, Y, alphas=np.asarray(alphas) * scale
        )
        assert warned64 == []
        if loses:
            assert len(warned) == 1 and "solution='primal'" in str(warned[0].message)
            assert loss > 3e-3, loss
        else:
            assert warned == [] and loss < 1e-4, loss


@pytest.mark.parametrize("first", [0, 1])
@pytest.mark.parametrize("fit_intercept", [True, False])
def test_samples_of_weight_zero_cost_float32_dual_coefficients_nothing(first, fit_intercept):
    """Samples of weight 0 are null directions of the weighted Gram, but their
    weighted targets and dual coefficients are 0. They were counted as X's rank
    deficiency: leave-one-out at alpha 1e-4 was redone in float64 and warned of
    ~0.5 for a loss of 4e-7, and at 1e-4 lambda_max it left the dual route, whose
    projection's remainder (rounding alone) leaked y / alpha into the others'
    dual coefficients: fitted values 4e-4 off float64's, with 5 folds or GCV
    0.22 at alpha 1e-4 (a differential fuzz found them). Now the dual route keeps
    them apart, their remainder is dropped, and nothing is lost or said; with
    the first sample of weight 0 and an intercept too (the intercept direction
    then stays in the Gram). X of low rank among the weighted samples still warns."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 100))
    y = X @ rng.standard_normal(100) / 10 + rng.standard_normal(40)
    sw = rng.uniform(0.1, 3, 40)
    sw[first::5] = 0.0
    top = np.linalg.eigvalsh((X - X.mean(0)) @ (X - X.mean(0)).T)[-1]

    def loss(X, alpha, cv):
        lost, warned32, warned64 = _dual_fits_float32_and_float64(
            X, y, sw, alphas=[alpha], cv=cv, fit_intercept=fit_intercept
        )
        return lost, len(warned32) + len(warned64)

    for cv in (None, 5, "gcv"):
        for alpha in (1e-4, 1e-4 * top):
            lost, warned = loss(X, alpha, cv)
            assert lost < 1e-5 and warned == 0, (cv, alpha, lost, warned)
    repeated = np.repeat(X[:20], 2, axis=0)  # rank 20 among 32 weighted samples
    assert loss(repeated, 1e-4 * top, None)[1] == 1


@pytest.mark.parametrize("seed", [1, 4])
@pytest.mark.parametrize("cv", [None, 3])
def test_float64_dual_coefficients_of_the_covariance_form(seed, cv):
    """n_samples > n_features, X = one factor + noise 8e-6 + 5, alpha 1e-10
    lambda_max: the covariance form's U = Xs V / s carried ~eps sqrt(lambda_max /
    lambda_j) of the top direction in its small columns, and the dual coefficients
    multiplied that by lambda_max / (lambda_j + alpha) in the fitted values: 2.1e-2
    and 0.40 off scikit-learn's, unwarned (the primal fit 2.8e-7 and 2.9e-6; a
    differential fuzz found it, with weights and GroupKFold). U is orthonormalised
    for dual fits now: 3e-5 and 1e-4."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((24, 1)) @ rng.standard_normal((1, 3))
    X += 8e-6 * rng.standard_normal((24, 3)) + 5
    y = X @ rng.standard_normal(3) + rng.standard_normal(24) + 100
    alpha = 1e-10 * np.linalg.eigvalsh(np.cov(X.T, bias=True) * 24)[-1]
    exact = Ridge(alpha=alpha, solver="svd").fit(X, y).predict(X)
    with warnings.catch_warnings():
        warnings.simplefilter("error", PrecisionWarning)
        got = FastRidgeCV(alphas=[alpha], cv=cv, solution="dual").fit(X, y).predict(X)
    err = np.abs(got - exact).max() / np.abs(exact - y.mean()).max()
    assert err < 1e-3, err


@pytest.mark.parametrize("seed", [0, 1])
def test_dual_coefficients_leave_the_remainders_rounding_out_of_the_fit(seed):
    """The remainder Yc - U U^T Yc, divided by alpha in the dual coefficients, is
    rounded at ~eps |y| along U too, and K c multiplies that by the eigenvalues:
    float64 fitted values of X with 40 copied columns (the covariance form, a
    remainder) at alpha 1e-11 lambda_max were 4.7e-5 and 6.7e-5 off scikit-learn's
    (a fuzz found 3e-5 against the primal fit's 8e-13). Projected out: 1.6e-6
    and 5.5e-7."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((120, 100))
    X[:, 60:] = X[:, :40]
    X += 5
    y = X @ rng.standard_normal(100) / 10 + rng.standard_normal(120)
    alpha = 1e-11 * np.linalg.eigvalsh(X.T @ X)[-1]
    exact = Ridge(alpha=alpha, fit_intercept=False, solver="svd").fit(X, y).predict(X)
    got = FastRidgeCV(alphas=[alpha], fit_intercept=False, solution="dual").fit(X, y).predict(X)
    err = np.linalg.norm(got - exact) / np.linalg.norm(exact)
    assert err < 1e-5, err


@pytest.mark.parametrize("rel", [1e-4, 1e-6, 1e-8])
def test_coefficients_keep_directions_dropped_below_the_rank_tolerance(rel):
    """X of 3 factors plus noise 1e-5, 57 x 52 (the covariance form): one eigenvalue,
    2.6e-11, falls below the rank tolerance max(n, p) eps lambda_max (5.3e-11) and
    was dropped, and with it its part of the coefficients, (v^T X^T y) / (eigval +
    alpha): float64 coefficients were 2.4e-4, 5.4e-3 and 5.5e-3 off an exact
    least-squares solve at alpha 1e-4, 1e-6 and 1e-8 lambda_max (a differential
    fuzz found it; predictions agreed to ~1e-8). Kept for the coefficients now
    (`Decomposition.low`): within eps * lambda_max / alpha. Exactly null
    directions (copied columns) stay dropped: their eigenvalues are rounding."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((57, 3)) @ rng.standard_normal((3, 52))
    X += 1e-5 * rng.standard_normal((57, 52))
    y = rng.standard_normal(57)
    top = np.linalg.eigvalsh(X @ X.T)[-1]
    for Xf in (X, np.hstack([X, X[:, :5]])):  # (then 5 exactly null directions too)
        alpha = rel * top
        A = np.vstack([Xf, np.sqrt(alpha) * np.eye(Xf.shape[1])])
        exact = np.linalg.lstsq(A, np.concatenate([y, np.zeros(Xf.shape[1])]), rcond=None)[0]
        got = FastRidgeCV(alphas=[alpha], fit_intercept=False).fit(Xf, y)
        err = np.linalg.norm(got.coef_ - exact) / np.linalg.norm(exact)
        assert err < 100 * np.finfo(float).eps / rel, err


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_a_constant_column_with_a_sample_of_weight_zero_has_rank_zero(dtype):
    """A constant column is centred to exact zeros with sample weights that include
    zeros: its rounded weighted mean had left a direction of rounding counted as
    rank 1, leave-one-out 1e-3 off and GCV 7.6x off (a differential fuzz found it)."""
    X = np.full((3, 1), -1.2063376272873032)
    y = np.array([0.12710207850896227, 0.12647240124307296, 0.12611234075956043])
    w = np.array([0.0, 2.0581988414108032, 1.2041540065902352])
    loo = FastRidgeCV(alphas=[1.0]).fit(X.astype(dtype), y.astype(dtype), sample_weight=w)
    assert loo.rank_ == 0
    ref = RidgeCV(alphas=[1.0]).fit(X, y, sample_weight=w).best_score_
    assert_allclose(loo.best_score_, ref, rtol=1e-4 if dtype == np.float32 else 1e-10)
    # GCV with the intercept alone: the weighted in-sample RMSE times n / (n - 1)
    gcv = FastRidgeCV(alphas=[1.0], cv="gcv", scoring="neg_root_mean_squared_error")
    gcv.fit(X.astype(dtype), y.astype(dtype), sample_weight=w)
    rmse = np.sqrt(np.sum(w * (y - np.average(y, weights=w)) ** 2) / w.sum())
    assert_allclose(gcv.best_score_, -rmse * 3 / 2, rtol=1e-3 if dtype == np.float32 else 1e-10)


@pytest.mark.parametrize("shape", [(3, 1), (12, 3), (8, 20)], ids=["3x1", "n>p", "n<p"])
@pytest.mark.parametrize("spread", [1e-3, 1e-7])
@pytest.mark.parametrize("store", [False, True])
def test_loo_correlation_of_targets_barely_varying_around_a_large_mean(shape, spread, store):
    """Leave-one-out correlation without an intercept of targets 1000 + spread * noise:
    the predictions and the targets are both centred before their product is
    summed (with the predictions centred alone, 3 x 1 scored -0.99995 for -1 at a
    spread of 1e-3 and +1 at 1e-7; a differential fuzz found it)."""
    n, p = shape
    rng = np.random.default_rng(n + p)
    X = np.ones((n, p)) if p == 1 else rng.standard_normal((n, p))
    y = 1000.0 + spread * (np.array([0.0, 1.0, 3.0]) if n == 3 else rng.standard_normal(n))
    alpha = 1e-3
    got = FastRidgeCV(
        alphas=[alpha], fit_intercept=False, scoring="correlation", store_cv_results=store
    ).fit(X, y)
    loo = np.array([
        Ridge(alpha=alpha, fit_intercept=False).fit(np.delete(X, i, 0), np.delete(y, i))
        .predict(X[i : i + 1])[0]
        for i in range(n)
    ])  # fmt: skip
    pc, yc = loo - loo.mean(), y - y.mean()
    want = pc @ yc / np.sqrt((pc @ pc) * (yc @ yc))
    assert_allclose(got.alpha_scores_[0], want, atol=1e-6)


@pytest.mark.parametrize("spread", [1e-3, 1e-6])
@pytest.mark.parametrize("shape", [(60, 20), (30, 80)], ids=["n>p", "n<p"])
def test_float32_targets_around_a_large_mean_score_as_in_float64(spread, shape):
    """float32 targets 1000 + spread * 1000 * noise (as raw fMRI signal around its
    baseline) score, under every scheme and score, as a float64 fit of the same
    float32 data, to float32's rounding: they are centred in two passes
    (`_backend.centre_columns`). In one, the mean's rounding (~eps |mean|) stayed in
    every centred value: scores had been up to 3e-4 off at a spread of 1e-3 and
    1.0 off at 1e-6."""
    from sklearn.model_selection import GroupKFold, KFold

    n, p = shape
    rng = np.random.default_rng(n)
    X = rng.standard_normal((n, p)).astype(np.float32)
    Y = X @ rng.standard_normal((p, 4)) * 0.5 + rng.standard_normal((n, 4))
    Y = (1000.0 + spread * 1000.0 * Y / Y.std(axis=0)).astype(np.float32)
    w = rng.uniform(0.2, 3.0, n)
    groups = np.arange(n) % 7
    schemes = (None, "gcv", 5, KFold(4, shuffle=True, random_state=0), GroupKFold(3))
    for cv in schemes:
        for scoring in (None, "r2", "explained_variance", "correlation"):
            if cv == "gcv" and scoring not in (None, "r2"):
                continue
            for sw in (None, w):
                kw = {"alphas": [0.1, 1.0, 10.0, 100.0], "cv": cv, "scoring": scoring}
                fit = {"sample_weight": sw, "groups": groups if cv is schemes[-1] else None}
                got = FastRidgeCV(alpha_per_target=True, **kw).fit(X, Y, **fit)
                want = FastRidgeCV(alpha_per_target=True, **kw).fit(
                    X.astype(np.float64), Y.astype(np.float64), **fit
                )
                err = np.abs(got.alpha_scores_ - want.alpha_scores_).max()
                assert err <= 5e-6 * np.abs(want.alpha_scores_).max(), (cv, scoring, sw is None)


@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("shape", [(40, 10), (20, 60)], ids=["n>p", "n<p"])
def test_gcv_correlation_from_predictions_at_tiny_and_huge_alphas(fit_intercept, shape):
    """GCV's correlation scores the predictions y - e, e = (y - H y) n / (n - tr H):
    formed as such they were a small difference of large numbers where alpha
    shrinks hard, and float32 scored 0.2-0.8 off at alpha 1e9 without an intercept
    (a differential fuzz found it). Both dtypes now match the hat matrix's
    predictions, from alpha 1e-3 (nearly interpolating) to 1e9."""
    n, p = shape
    rng = np.random.default_rng(n + p)
    X = rng.standard_normal((n, p))
    Y = X @ rng.standard_normal((p, 5)) + rng.standard_normal((n, 5))
    alphas = [1e-3, 1.0, 1e3, 1e9]
    Xc = X - X.mean(axis=0) if fit_intercept else X
    Yc = Y - Y.mean(axis=0) if fit_intercept else Y
    want = []
    for alpha in alphas:
        H = Xc @ np.linalg.solve(Xc.T @ Xc + alpha * np.eye(p), Xc.T)
        trace = np.trace(H) + fit_intercept
        pred = Yc - (Yc - H @ Yc) * n / (n - trace)
        pc, yc = pred - pred.mean(axis=0), Y - Y.mean(axis=0)
        want.append((pc * yc).sum(0) / np.sqrt((pc * pc).sum(0) * (yc * yc).sum(0)))
    want = np.array(want).T  # (n_targets, n_alphas)
    for dtype, tol in ((np.float64, 1e-6), (np.float32, 1e-5)):
        got = FastRidgeCV(
            alphas=alphas, cv="gcv", scoring="correlation", fit_intercept=fit_intercept,
            alpha_per_target=True,
        ).fit(X.astype(dtype), Y.astype(dtype))  # fmt: skip
        assert_allclose(got.alpha_scores_, want, atol=tol)
