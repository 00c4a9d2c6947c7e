"""solution="dual": kernel-ridge coefficients instead of coef_, same model.

Checked against the primal fit (coef_ = dual_coef_ @ (X_fit_ - X_mean_), same
alphas, same predictions) and against scikit-learn's KernelRidge dual_coef_.
"""

import warnings

import numpy as np
import pytest
import torch
from conftest import make_problem
from numpy.testing import assert_allclose
from sklearn.kernel_ridge import KernelRidge
from sklearn.linear_model import Ridge
from sklearn.model_selection import GroupKFold
from sklearn.utils._param_validation import InvalidParameterError

from fastridge import FastRidgeCV, PrecisionWarning
from fastridge.solve import ridge_cv

ALPHAS = np.logspace(-2, 3, 6)


def _pair(X, y, **params):
    primal = FastRidgeCV(alphas=ALPHAS, **params).fit(X, y)
    dual = FastRidgeCV(alphas=ALPHAS, solution="dual", **params).fit(X, y)
    return primal, dual


def _as_primal(dual):
    """coef_ from a dual fit, shape (*target_shape, n_features)."""
    d = np.asarray(dual.dual_coef_)
    X = np.asarray(dual.X_fit_, dtype=np.float64) - dual.X_mean_
    return (d.reshape(-1, X.shape[0]) @ X).reshape(*d.shape[:-1], X.shape[1])


@pytest.mark.parametrize(
    "shape",
    [(30, 80, 5), (80, 30, 5), (40, 40, 3)],
    ids=["n<p", "n>p", "n=p"],
)
@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("cv", [None, "gcv", 4])
def test_dual_is_the_primal_model(shape, fit_intercept, weighted, cv):
    X, Y = make_problem(*shape, seed=5)
    X_test = np.random.default_rng(1).standard_normal((9, X.shape[1]))
    sw = np.random.default_rng(2).random(X.shape[0]) + 0.2 if weighted else None
    params = dict(alpha_per_target=True, fit_intercept=fit_intercept, cv=cv)
    primal = FastRidgeCV(alphas=ALPHAS, **params).fit(X, Y, sample_weight=sw)
    dual = FastRidgeCV(alphas=ALPHAS, solution="dual", **params).fit(X, Y, sample_weight=sw)
    np.testing.assert_array_equal(dual.alpha_, primal.alpha_)
    np.testing.assert_allclose(dual.best_score_, primal.best_score_, rtol=1e-10)
    np.testing.assert_allclose(_as_primal(dual), primal.coef_, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(dual.intercept_, primal.intercept_, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(dual.predict(X_test), primal.predict(X_test), rtol=1e-8, atol=1e-9)
    assert dual.dual_coef_.shape == (Y.shape[1], X.shape[0])
    assert dual.X_fit_ is X  # a reference, not a copy
    assert not hasattr(dual, "coef_")


def test_dual_matches_kernel_ridge():
    """Without an intercept the dual coefficients are KernelRidge's (linear kernel)."""
    X, Y = make_problem(25, 60, 4, seed=7)
    fit = FastRidgeCV(alphas=[3.0], fit_intercept=False, solution="dual").fit(X, Y)
    kr = KernelRidge(alpha=3.0, kernel="linear").fit(X, Y)
    np.testing.assert_allclose(fit.dual_coef_, kr.dual_coef_.T, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("target_shape", [(), (1,), (4,), (3, 2)], ids=["1d", "2d-1", "2d", "3d"])
def test_dual_target_shapes(target_shape):
    X, Y = make_problem(20, 50, int(np.prod(target_shape)) if target_shape else 1, seed=8)
    y = Y[:, 0] if target_shape == () else Y.reshape(20, *target_shape)
    primal, dual = _pair(X, y, alpha_per_target=True)
    expected = (20,) if target_shape in ((), (1,)) else (*target_shape, 20)
    assert dual.dual_coef_.shape == expected
    np.testing.assert_allclose(dual.predict(X[:5]), primal.predict(X[:5]), rtol=1e-9, atol=1e-10)
    assert np.shape(dual.intercept_) == np.shape(primal.intercept_)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("chunk", [1, 3, "auto"])
def test_dual_dtypes_and_chunks(dtype, chunk):
    X, Y = make_problem(30, 70, 7, seed=9)
    X, Y = X.astype(dtype), Y.astype(dtype)
    primal, dual = _pair(X, Y, alpha_per_target=True, target_chunk=chunk)
    assert dual.dual_coef_.dtype == dtype
    tol = 2e-4 if dtype == np.float32 else 1e-9
    scale = np.abs(primal.predict(X)).max()
    np.testing.assert_allclose(dual.predict(X), primal.predict(X), rtol=tol, atol=tol * scale)


def test_dual_shared_alpha_and_groups():
    X, Y = make_problem(36, 50, 4, seed=10)
    groups = np.repeat(np.arange(6), 6)
    params = dict(cv=GroupKFold(3), scoring="neg_mean_squared_error")
    primal = FastRidgeCV(alphas=ALPHAS, **params).fit(X, Y, groups=groups)
    dual = FastRidgeCV(alphas=ALPHAS, solution="dual", **params).fit(X, Y, groups=groups)
    assert dual.alpha_ == primal.alpha_
    np.testing.assert_allclose(_as_primal(dual), primal.coef_, rtol=1e-8, atol=1e-10)


def test_dual_torch_in_torch_out():
    X, Y = make_problem(20, 40, 3, seed=11)
    fit = FastRidgeCV(alphas=ALPHAS, solution="dual").fit(torch.from_numpy(X), torch.from_numpy(Y))
    assert isinstance(fit.dual_coef_, torch.Tensor) and isinstance(fit.X_fit_, torch.Tensor)
    pred = fit.predict(torch.from_numpy(X[:4]))
    assert isinstance(pred, torch.Tensor)
    primal = FastRidgeCV(alphas=ALPHAS).fit(X, Y)
    np.testing.assert_allclose(pred.numpy(), primal.predict(X[:4]), rtol=1e-9, atol=1e-10)


def test_coef_of_a_dual_fit_is_explained_and_refits_switch_cleanly():
    X, Y = make_problem(20, 40, 3, seed=12)
    est = FastRidgeCV(alphas=ALPHAS, solution="dual").fit(X, Y)
    with pytest.raises(AttributeError, match="coef_ is not formed with solution='dual'"):
        est.coef_  # noqa: B018
    est.set_params(solution="primal").fit(X, Y)
    assert hasattr(est, "coef_")
    for name in ("dual_coef_", "X_fit_", "X_mean_"):
        assert not hasattr(est, name)
    est.set_params(solution="dual").fit(X, Y)
    assert not hasattr(est, "coef_") and hasattr(est, "dual_coef_")
    with pytest.raises(AttributeError, match="no attribute 'nonexistent_'"):
        est.nonexistent_  # noqa: B018


@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("shape", [(30, 4), (4, 30)], ids=["n>p", "n<p"])
def test_dual_of_x_without_any_direction(shape, fit_intercept):
    """X constant (with an intercept) or zero: rank 0, every target its mean (or
    0). The dual fit of the covariance form had indexed an empty spectrum."""
    X = np.ones(shape) if fit_intercept else np.zeros(shape)
    y = np.arange(shape[0], dtype=float)
    primal, dual = _pair(X, y, fit_intercept=fit_intercept)
    assert_allclose(dual.predict(X), primal.predict(X), atol=1e-12)
    assert_allclose(dual.predict(X), np.full(shape[0], y.mean() if fit_intercept else 0.0))


def _offset_problem(seed=0, offset=20.0):
    """60 x 200 float32 X far from centred (offset 20, spread 1), y, and the float64
    scikit-learn predictions at alpha 1e-2 lambda_max."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((60, 200)) + offset
    y = (X - offset) @ rng.standard_normal(200) / 10 + rng.standard_normal(60)
    Xc = X - X.mean(0)
    alpha = 1e-2 * np.linalg.eigvalsh(Xc @ Xc.T)[-1]
    exact = Ridge(alpha=alpha, solver="svd").fit(X, y).predict(X)
    return X.astype(np.float32), y.astype(np.float32), alpha, exact


@pytest.mark.parametrize("seed", [0, 1])
def test_float32_dual_predictions_of_x_far_from_centred(seed):
    """predict forms the kernel with the training samples centred
    (`_refit.dual_kernel`): uncentred, X X_fit^T was rounded at eps |X|^2, 400 times
    the centred kernel's here, and the dual coefficients (~y / alpha) carried that
    into predictions 8e-4 off float64's at an ordinary alpha, unwarned; 4e-7 now."""
    X, y, alpha, exact = _offset_problem(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("error", PrecisionWarning)
        got = FastRidgeCV(alphas=[alpha], solution="dual").fit(X, y).predict(X)
    err = np.linalg.norm(got - exact) / np.linalg.norm(exact - exact.mean())
    assert err < 1e-5, err


def test_bad_solution():
    X, Y = make_problem(10, 5, 2)
    with pytest.raises(InvalidParameterError, match="solution"):
        FastRidgeCV(solution="kernel").fit(X, Y)
    with pytest.raises(ValueError, match="solution must be 'primal' or 'dual'"):
        ridge_cv(X, Y, solution="kernel")
    with pytest.raises(ValueError, match=r"coef_out has shape \(2, 5\), expected \(2, 10\)"):
        ridge_cv(X, Y, solution="dual", coef_out=np.empty((2, 5)))


@pytest.mark.parametrize("cv", [None, 8])
def test_float32_coefficients_of_repeated_samples_within_precision_or_warned(cv):
    """52 samples, all copies of one row of X (114 features), alpha 4e-4 lambda_max:
    float32 coefficients on the dual route were 2.3e-3 (leave-one-out) and 1.8e-3
    (8 folds) off the float64 solution, past the README's 1e-3 for float32 fits, with
    no PrecisionWarning: the route's loss bound left out that the coefficients come
    from the targets' small part in X's range (a differential fuzz found it)."""
    rng = np.random.default_rng(0)
    X = np.repeat(rng.standard_normal((1, 114)), 52, axis=0).astype(np.float32)
    y = rng.standard_normal(52)
    Xd = X.astype(np.float64)
    alpha = 4e-4 * np.linalg.eigvalsh(Xd.T @ Xd)[-1]
    want = np.linalg.solve(Xd.T @ Xd + alpha * np.eye(114), Xd.T @ y)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = FastRidgeCV(alphas=[alpha], cv=cv, fit_intercept=False, dtype="float32").fit(X, y)
    err = np.abs(fit.coef_ - want).max() / np.abs(want).max()
    assert err < 1e-3 or any("precision" in str(w.message).lower() for w in caught)
