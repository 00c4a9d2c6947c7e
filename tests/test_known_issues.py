"""Known wrong answers, found by a differential fuzz in session 28 and not yet fixed.

Each test states the right answer (brute-force float64 refits, or scikit-learn)
and is marked xfail(strict=True): it fails while the bug is there, and a fix makes
it pass, which strict xfail reports as a failure, so the mark is removed with the
fix. README, "Known issues", lists them.
"""

import numpy as np
import pytest
from numpy.testing import assert_allclose
from sklearn.linear_model import Ridge
from sklearn.model_selection import LeaveOneGroupOut

from fastridge import FastRidgeCV


@pytest.mark.xfail(strict=True, reason="known: correlation of a constant prediction")
def test_correlation_of_a_fold_of_repeated_samples_is_zero():
    """A test fold whose samples are copies of one row of X has a constant prediction,
    whose correlation is 0 (README, the built-in scores); it was scored from rounding,
    up to +-1, and moved the fold means (alpha_scores_) by up to 0.25."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((12, 3)) * [1.0, 60.0, 50.0]
    X[5] = X[2]
    groups = np.array([0, 1, 2, 3, 0, 2, 1, 3, 0, 1, 3, 0])  # samples 2 and 5: group 2
    y = rng.standard_normal(12)
    alphas = [1e-2, 1.0, 100.0]
    want = []
    for alpha in alphas:
        scores = []
        for g in range(4):
            train, test = groups != g, groups == g
            pred = Ridge(alpha=alpha, fit_intercept=False).fit(X[train], y[train]).predict(X[test])
            scores.append(0.0 if np.ptp(pred) < 1e-9 else np.corrcoef(pred, y[test])[0, 1])
        want.append(np.mean(scores))
    fit = FastRidgeCV(
        alphas=alphas, cv=LeaveOneGroupOut(), scoring="correlation", fit_intercept=False
    )
    assert_allclose(fit.fit(X, y, groups=groups).alpha_scores_, want, atol=1e-6)


@pytest.mark.xfail(strict=True, reason="known: float32 LOO correlation from y - e")
def test_float32_leave_one_out_correlation_at_large_alphas_equals_refits():
    """Leave-one-out off the dual route (n_samples > n_features), no intercept,
    offset features, alphas 1e2-1e6 lambda_max: float32 correlations were up to 0.48
    off refits (from y - e, which loses the shrunk prediction's digits), and the
    largest alpha was chosen where the smallest is best."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 10)) + 5.0
    y = X @ rng.standard_normal(10) + 3 * rng.standard_normal(60)
    alphas = np.linalg.svd(X, compute_uv=False)[0] ** 2 * np.array([1e2, 1e4, 1e5, 1e6])
    want = []
    for alpha in alphas:
        pred = [
            Ridge(alpha=alpha, fit_intercept=False)
            .fit(np.delete(X, i, 0), np.delete(y, i))
            .predict(X[i : i + 1])[0]
            for i in range(60)
        ]
        want.append(np.corrcoef(pred, y)[0, 1])
    fit = FastRidgeCV(alphas=alphas, scoring="correlation", dtype="float32", fit_intercept=False)
    assert_allclose(fit.fit(X.astype(np.float32), y).alpha_scores_, want, atol=1e-3)
