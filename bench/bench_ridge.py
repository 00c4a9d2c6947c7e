"""pytest-benchmark suite: fastridge and its peers on one small seeded problem.

Run (from the repository root; PYTHONPATH chooses which fastridge is measured):

    PYTHONPATH=/work/main pytest bench/bench_ridge.py --benchmark-only -p no:cacheprovider

Each benchmark is one full fit (warm-up round, then the timed rounds); every
solver selects per-target alphas. The problem is BENCH_SIZE in conftest.py,
small enough for a shared 2-core machine. Peak memory and the large sizes are
run.py's job (one subprocess per solver); this suite is for quick comparisons
and regressions. extra_info records the model GFLOP/s of each fit and, where
it is meaningful, the share of targets whose alpha agrees with scikit-learn.
"""

from __future__ import annotations

import numpy as np
import pytest
from _flops import flop_model
from _problems import ALPHAS_3
from conftest import BENCH_SIZE

ROUNDS = 3


def _run(benchmark, fit, cv=None):
    result = benchmark.pedantic(fit, rounds=ROUNDS, warmup_rounds=1, iterations=1)
    n, p, t = BENCH_SIZE.values()
    gflop = flop_model(n, p, t, len(ALPHAS_3), cv=cv)["gemm_flops"] / 1e9
    benchmark.extra_info["model_gflop"] = gflop
    benchmark.extra_info["gflops_at_median"] = gflop / benchmark.stats.stats.median
    return result


@pytest.fixture(scope="module")
def sklearn_alpha(problem64):
    from sklearn.linear_model import RidgeCV

    X, Y = problem64
    return RidgeCV(alphas=ALPHAS_3, alpha_per_target=True).fit(X, Y).alpha_


@pytest.mark.parametrize("cv", [None, "gcv", 5], ids=["loo", "gcv", "kfold5"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fastridge(benchmark, problem32, problem64, sklearn_alpha, cv, dtype):
    from fastridge import FastRidgeCV

    X, Y = problem32 if dtype == "float32" else problem64

    def fit():
        return FastRidgeCV(alphas=ALPHAS_3, alpha_per_target=True, cv=cv, dtype=dtype).fit(X, Y)

    if cv == 5:
        try:
            FastRidgeCV(alphas=ALPHAS_3, cv=5, alpha_per_target=True).fit(X[:50], Y[:50, :4])
        except (ValueError, TypeError, NotImplementedError) as exc:
            pytest.skip(f"FastRidgeCV(cv=5) not available yet: {exc}")
    model = _run(benchmark, fit, cv=cv)
    benchmark.extra_info["same_alpha_as_sklearn_loo"] = float(
        np.mean(np.asarray(model.alpha_) == sklearn_alpha)
    )
    if cv is None:
        # Exact LOO must pick the same alphas as scikit-learn (up to float32 near-ties).
        assert benchmark.extra_info["same_alpha_as_sklearn_loo"] >= 0.999


def test_sklearn(benchmark, problem64):
    from sklearn.linear_model import RidgeCV

    X, Y = problem64
    _run(benchmark, lambda: RidgeCV(alphas=ALPHAS_3, alpha_per_target=True).fit(X, Y))


@pytest.fixture
def himalaya_backend(request):
    from himalaya.backend import set_backend

    # himalaya's backend is a global: set it for this benchmark, restore after.
    backend = set_backend(request.param)
    yield backend
    set_backend("numpy")


@pytest.mark.parametrize("himalaya_backend", ["numpy", "torch"], indirect=True)
@pytest.mark.parametrize("kind", ["ridge", "kernel"])
def test_himalaya(benchmark, problem32, himalaya_backend, kind):
    X, Y = problem32
    alphas = np.asarray(ALPHAS_3, dtype=np.float32)
    if kind == "ridge":
        from himalaya.ridge import RidgeCV

        def fit():
            params = dict(local_alpha=True, warn=False)
            return RidgeCV(alphas=alphas, fit_intercept=True, cv=5, solver_params=params).fit(X, Y)
    else:
        from himalaya.kernel_ridge import KernelRidgeCV

        def fit():
            params = dict(local_alpha=True)
            return KernelRidgeCV(
                alphas=alphas, kernel="linear", fit_intercept=True, cv=5, solver_params=params
            ).fit(X, Y)

    _run(benchmark, fit, cv=5)
