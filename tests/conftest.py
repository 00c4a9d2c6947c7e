"""Shared test setup: the one place that generates (device, dtype) combinations.

CUDA cases carry the `gpu` marker and are skipped when no CUDA device exists.
"""

import numpy as np
import pytest
import torch

HAS_CUDA = torch.cuda.is_available()

DEVICES = [
    pytest.param("cpu", id="cpu"),
    pytest.param(
        "cuda",
        id="cuda",
        marks=[pytest.mark.gpu, pytest.mark.skipif(not HAS_CUDA, reason="no CUDA device")],
    ),
]
DTYPES = [pytest.param(np.float64, id="f64"), pytest.param(np.float32, id="f32")]

# Tolerances keyed by dtype, against float64 references.
TOL = {np.float64: dict(rtol=1e-8, atol=1e-10), np.float32: dict(rtol=2e-3, atol=2e-4)}


@pytest.fixture(params=["numpy", "torch"])
def blas(request):
    """Both CPU GEMM/LAPACK paths (fastridge._backend.cpu_blas), one per test case."""
    from fastridge import _backend

    _backend.set_cpu_blas(request.param)
    yield request.param
    _backend.set_cpu_blas(None)


def pytest_collection_modifyitems(config, items):
    if HAS_CUDA:
        return
    skip = pytest.mark.skip(reason="no CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def make_problem(
    n_samples,
    n_features,
    n_targets=3,
    *,
    rank=None,
    seed=0,
    noise=1.0,
    standardize=False,
    dtype=np.float64,
):
    """A random regression problem: X (n_samples, n_features), Y (n_samples, n_targets).

    `rank` < min(n_samples, n_features) makes X rank-deficient (a product of two
    thin factors). Targets mix strong and weak signal so they prefer different alphas.
    """
    rng = np.random.default_rng(seed)
    if rank is None:
        X = rng.standard_normal((n_samples, n_features))
    else:
        X = rng.standard_normal((n_samples, rank)) @ rng.standard_normal((rank, n_features))
    X = X + rng.standard_normal(n_features) * 0.5  # nonzero means: intercept matters
    if standardize:
        X = (X - X.mean(0)) / X.std(0)
    W = rng.standard_normal((n_features, n_targets))
    W *= np.logspace(0, -2, n_targets)[None, :]  # strong to weak targets
    Y = X @ W + noise * rng.standard_normal((n_samples, n_targets)) + rng.standard_normal(n_targets)
    return X.astype(dtype), Y.astype(dtype)
