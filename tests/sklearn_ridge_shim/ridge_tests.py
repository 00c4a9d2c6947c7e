"""scikit-learn's own test_ridge.py, run with `RidgeCV` rebound to `FastRidgeCV`.

Nothing of scikit-learn's file is copied into this repository: the installed
sklearn/linear_model/tests/test_ridge.py is read at import time, one statement
is appended to the line that imports RidgeCV (so line numbers in tracebacks
still point into scikit-learn's file), and the result is executed in this
module's namespace, where pytest collects it. Every use of the name RidgeCV in
that file, parametrize lists included, then means FastRidgeCV.

The file name does not match test_*.py on purpose: the default test run does
not collect these thousands of cases; tests/test_sklearn_compat.py runs the
RidgeCV subset in a subprocess and checks which pass. To run it by hand:

    PYTHONPATH=. pytest tests/sklearn_ridge_shim/ridge_tests.py -k RidgeCV_or_name

With FASTRIDGE_SHIM_DELEGATE_CV=1, RidgeCV is instead a FastRidgeCV that hands
`cv` values fastridge does not implement (K-fold, splitters, iterables of
splits) to scikit-learn's RidgeCV. Tests that compare leave-one-out against a
K-fold RidgeCV of the same name then measure fastridge's leave-one-out
against scikit-learn's K-fold path.
"""

import ast
import os
from pathlib import Path

import sklearn

TEST_FILE = Path(sklearn.__file__).parent / "linear_model" / "tests" / "test_ridge.py"
DELEGATE_CV = os.environ.get("FASTRIDGE_SHIM_DELEGATE_CV", "0") not in ("", "0")


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


def _delegating_class():
    """FastRidgeCV, except that cv values fastridge lacks go to scikit-learn's RidgeCV."""
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

    return FastRidgeCVDelegatingKFold


if TEST_FILE.exists():
    if DELEGATE_CV:
        _FastRidgeCVUnderTest = _delegating_class()
    else:
        from fastridge import FastRidgeCV as _FastRidgeCVUnderTest
    # sklearn's module-level names (datasets, fixtures, helpers) become ours.
    _code = patched_source("RidgeCV = _FastRidgeCVUnderTest")
    exec(compile(_code, str(TEST_FILE), "exec"), globals())  # noqa: S102
    # The global_random_seed parametrization lives in scikit-learn's conftest.
    from sklearn.conftest import pytest_generate_tests  # noqa: E402, F401
