"""Ill-conditioned X: what the Gram or covariance matrix cannot resolve (its
eigenvalues are each within ~eps lambda_max), the SVD of X does; leave-one-out's
1 - h is exact where it is tiny. Against refits by scikit-learn's SVD solver."""

import numpy as np
import pytest
import torch
from conftest import make_problem
from numpy.testing import assert_allclose
from sklearn.linear_model import Ridge
from test_core import brute_force_loo

from fastridge import FastRidgeCV
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


def loo_scores(X, y, alphas):
    """Minus the mean squared leave-one-out error of each alpha, by refits."""
    return np.array([-np.mean(brute_force_loo(X, y[:, None], a, False) ** 2) for a in alphas])


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
