"""Builds scikit-learn's test_ridge.py with `RidgeCV` rebound, into a module namespace.

Nothing of scikit-learn's file is copied into this repository: the installed
sklearn/linear_model/tests/test_ridge.py is read at import time, one statement
(`RidgeCV = <class under test>`) is appended to the line that imports RidgeCV
(so line numbers in tracebacks still point into scikit-learn's file), and the
result is executed in the caller's module namespace, where pytest collects it.
Every use of the name RidgeCV in that file, parametrize lists included, then
means the class under test.

Two modules use it (their names do not match test_*.py, so the default test
run does not collect these ~1,500 cases; tests/test_sklearn_compat.py runs the
RidgeCV subset in a subprocess and checks which pass):

- ridge_tests.py: RidgeCV is FastRidgeCV.
- ridge_tests_loo_vs_kfold.py: RidgeCV is FastRidgeCV, except that `cv` values
  fastridge does not implement (K-fold, splitters, iterables of splits) go to
  scikit-learn's RidgeCV. Tests that compare leave-one-out with a K-fold
  RidgeCV(cv=n_samples) then compare fastridge's leave-one-out with
  scikit-learn's K-fold.

By hand:  PYTHONPATH=. pytest tests/sklearn_ridge_shim/ridge_tests.py -k test_ridgecv
"""

import ast
from pathlib import Path

import sklearn

TEST_FILE = Path(sklearn.__file__).parent / "linear_model" / "tests" / "test_ridge.py"


def _find_ridgecv_import(tree: ast.Module) -> int:
    """Last line (1-based) of the `from sklearn.linear_model import ... RidgeCV` statement."""
    for node in tree.body:
        if (
            isinstance(node, ast.ImportFrom)
            and node.module == "sklearn.linear_model"
            and any(alias.name == "RidgeCV" and alias.asname is None for alias in node.names)
        ):
            return node.end_lineno
    raise RuntimeError(f"no 'from sklearn.linear_model import RidgeCV' in {TEST_FILE}")


def patched_source(rebind: str) -> str:
    """scikit-learn's test source with `rebind` appended to the RidgeCV import line."""
    source = TEST_FILE.read_text()
    lines = source.splitlines()
    end = _find_ridgecv_import(ast.parse(source)) - 1
    lines[end] = f"{lines[end]}; {rebind}"
    return "\n".join(lines) + "\n"


def delegating_class():
    """FastRidgeCV, except that fold cv values go to scikit-learn's RidgeCV: the tests
    run with it use scikit-learn's K-fold as the reference for leave-one-out."""
    from sklearn.linear_model import RidgeCV as SklearnRidgeCV

    from fastridge import FastRidgeCV

    class FastRidgeCVDelegatingKFold(FastRidgeCV):
        def fit(self, X, y, sample_weight=None, **params):
            if self.cv is None or isinstance(self.cv, str):
                return super().fit(X, y, sample_weight=sample_weight, **params)
            ref = SklearnRidgeCV(
                alphas=self.alphas,
                fit_intercept=self.fit_intercept,
                scoring=self.scoring,
                cv=self.cv,
                gcv_mode=self.gcv_mode,
                store_cv_results=self.store_cv_results,
                alpha_per_target=self.alpha_per_target,
            )
            ref.fit(X, y, sample_weight=sample_weight, **params)
            for name, value in vars(ref).items():
                if name.endswith("_") and not name.startswith("_"):
                    setattr(self, name, value)
            return self

    # Test ids built from the class name stay those of the strict run.
    FastRidgeCVDelegatingKFold.__name__ = "FastRidgeCV"
    return FastRidgeCVDelegatingKFold


def build_into(namespace: dict, ridgecv_class) -> None:
    """Execute scikit-learn's test_ridge.py in `namespace` with RidgeCV = ridgecv_class."""
    if not TEST_FILE.exists():
        return  # scikit-learn installed without its tests: nothing to collect
    namespace["_RidgeCVUnderTest"] = ridgecv_class
    code = compile(patched_source("RidgeCV = _RidgeCVUnderTest"), str(TEST_FILE), "exec")
    exec(code, namespace)  # noqa: S102
    # The global_random_seed parametrization lives in scikit-learn's conftest.
    from sklearn.conftest import pytest_generate_tests

    namespace["pytest_generate_tests"] = pytest_generate_tests
