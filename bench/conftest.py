"""pytest-benchmark fixtures for bench/bench_*.py (not part of the default test run).

Run: PYTHONPATH=/work/main pytest bench/ --benchmark-only -p no:cacheprovider

The default `pytest` collects only tests/ (pyproject testpaths) and bench files
are named bench_*.py, which pytest's default python_files never matches, so a
plain `pytest` never runs them; naming the file on the command line does.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(1, str(HERE))
try:
    import fastridge  # noqa: F401 - PYTHONPATH picks which checkout is measured
except ImportError:
    sys.path.append(str(HERE.parent))

import _problems  # noqa: E402

BENCH_SIZE = dict(n_samples=500, n_features=2000, n_targets=2000)


@pytest.fixture(scope="session")
def problem32():
    """(X, Y) float32 of BENCH_SIZE, seeded."""
    return _problems.make_problem(*BENCH_SIZE.values(), seed=0, dtype=np.float32)


@pytest.fixture(scope="session")
def problem64():
    """The same problem in float64."""
    return _problems.make_problem(*BENCH_SIZE.values(), seed=0, dtype=np.float64)


def pytest_collect_file(file_path, parent):
    """Collect bench_*.py when bench/ itself is given (`pytest bench/ --benchmark-only`).

    Only reached when pytest collects bench/: the default run (testpaths =
    tests) never loads this conftest.
    """
    if not (file_path.suffix == ".py" and file_path.name.startswith("bench_")):
        return None
    if parent.session.isinitpath(file_path):
        return None  # named explicitly: pytest's own collector takes it
    # Only when bench/ (or a folder inside it) was asked for on the command line:
    # `pytest` from the root must not run benchmarks even if testpaths is missing.
    asked = [Path(a.split("::")[0]).resolve() for a in parent.config.args]
    if any(a == HERE or HERE in a.parents for a in asked):
        return pytest.Module.from_parent(parent, path=file_path)
    return None
