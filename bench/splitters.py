"""fastridge against himalaya with splitters whose training sets are not the test
sets' complements (`TimeSeriesSplit`, `ShuffleSplit(train_size=...)`), side by side.

fastridge then decomposes each fold on its own (`fastridge._cv.RefitPerFold`), as
himalaya does for every cv. Both fit the same seeded problem (bench/_problems.py),
6 alphas, per-target alphas, float32, scored by the mean squared error (himalaya's
default), with dual coefficients (what himalaya's `KernelRidgeCV` returns); each
fit is the second of two in a new process (the first pays for imports and first
touches), the solvers alternated.

    python bench/splitters.py --size S --cv timeseries5 shufflesplit5 --repeats 3
    python bench/splitters.py --fastridge /path/to/checkout --size S

Prints a markdown table: median wall seconds of the repeats, the fits, and the
share of targets whose alpha equals himalaya's.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import numpy as np
from _checkout import SPLITTERS, run_code

ROOT = Path(__file__).resolve().parent.parent

FIT = """
import json, time
import numpy as np
import _problems
from sklearn.model_selection import ShuffleSplit, TimeSeriesSplit
X, Y = _problems.make_problem({n}, {p}, {t})
alphas = np.asarray(_problems.ALPHAS_6, dtype=np.float32)
if {solver!r} == "himalaya":
    from himalaya.backend import set_backend
    from himalaya.kernel_ridge import KernelRidgeCV
    set_backend("torch", on_error="raise")
    make = lambda: KernelRidgeCV(alphas=alphas, kernel="linear", fit_intercept=True, cv={cv},
                                 solver_params=dict(local_alpha=True))
    where = None
else:
    import fastridge
    make = lambda: fastridge.FastRidgeCV(alphas=alphas, alpha_per_target=True, cv={cv},
                                         scoring="neg_mean_squared_error", solution="dual")
    where = fastridge.__file__
for _ in range(2):
    model = make()
    start = time.perf_counter()
    model.fit(X, Y)
    wall = time.perf_counter() - start
chosen = np.asarray(model.best_alphas_ if {solver!r} == "himalaya" else model.alpha_, float)
index = np.abs(np.log(chosen)[:, None] - np.log(alphas.astype(float))[None]).argmin(axis=1)
np.save({index_file!r}, index)
print(json.dumps({{"wall": wall, "fastridge": where}}))
"""


def fit(solver: str, checkout: str, n: int, p: int, t: int, cv: str, index_file: str) -> dict:
    """Two fits in a new process (fastridge from `checkout`); the second's wall
    seconds, and each target's alpha (its index in the grid) saved to `index_file`."""
    code = FIT.format(n=n, p=p, t=t, cv=SPLITTERS[cv], solver=solver, index_file=index_file)
    return run_code(code, checkout)


def main(argv=None) -> None:
    import _problems

    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--fastridge", default=str(ROOT), help="checkout to measure")
    ap.add_argument("--size", default="S", choices=sorted(_problems.SIZES))
    ap.add_argument("--cv", nargs="+", default=list(SPLITTERS), choices=list(SPLITTERS))
    ap.add_argument("--repeats", type=int, default=3)
    ns = ap.parse_args(argv)
    dims = _problems.SIZES[ns.size]
    n, p, t = dims["n_samples"], dims["n_features"], dims["n_targets"]
    solvers = ("fastridge", "himalaya")
    walls = {(cv, s): [] for cv in ns.cv for s in solvers}
    same = {cv: [] for cv in ns.cv}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(ns.repeats):  # alternated: every case once per round
            for cv in ns.cv:
                files = {s: str(Path(tmp) / f"{s}.npy") for s in solvers}
                for s in solvers:
                    res = fit(s, ns.fastridge, n, p, t, cv, files[s])
                    walls[cv, s].append(res["wall"])
                    print((cv, s), f"{res['wall']:.2f}s", flush=True)
                chosen = [np.load(files[s]) for s in solvers]
                same[cv].append(float(np.mean(chosen[0] == chosen[1])))
    print(
        f"\n{ns.size} (n={n}, p={p}, t={t}), 6 alphas, float32, dual coefficients; the "
        f"second fit of a process, median of {ns.repeats}; fastridge from {ns.fastridge}\n"
    )
    print("| cv | solver | wall s (median) | fits | same alpha as himalaya |")
    print("|---|---|---|---|---|")
    for cv in ns.cv:
        for s in solvers:
            w = walls[cv, s]
            agree = f"{100 * min(same[cv]):.2f} %" if s == "fastridge" else ""
            fits = " / ".join(f"{x:.2f}" for x in w)
            print(f"| {cv} | {s} | {statistics.median(w):.2f} | {fits} | {agree} |")


if __name__ == "__main__":
    main()
