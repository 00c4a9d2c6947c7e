"""Fits in a new process with fastridge from a given checkout (bench/busy_machine.py,
bench/splitters.py), and the splitters whose folds fastridge decomposes each on
its own (`fastridge._cv.RefitPerFold`)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

# `--cv` names: training sets that are not the test sets' complements
SPLITTERS = {
    "timeseries5": "TimeSeriesSplit(5)",
    "shufflesplit5": "ShuffleSplit(5, test_size=0.2, train_size=0.6, random_state=0)",
}


def run_code(code: str, checkout: str) -> dict:
    """Run `code` in a new `python -c` process with `checkout`, then bench/, first on
    sys.path, and return the JSON of its last line of output, whose "fastridge"
    (fastridge.__file__, or None when it did not import it) must lie in the checkout.

    (`python -c` puts the working directory first on sys.path: run from a
    checkout's root, PYTHONPATH alone had every "checkout" measure that one, as
    session 31's A/B tables did.)"""
    checkout = str(Path(checkout).resolve())
    prelude = f"import sys\nsys.path[:0] = [{checkout!r}, {str(HERE)!r}]\n"
    out = subprocess.run(
        [sys.executable, "-c", prelude + code], capture_output=True, text=True, check=True
    )
    res = json.loads(out.stdout.strip().splitlines()[-1])
    if res["fastridge"] and not Path(res["fastridge"]).resolve().is_relative_to(checkout):
        raise RuntimeError(f"fastridge came from {res['fastridge']}, not from {checkout}")
    return res
