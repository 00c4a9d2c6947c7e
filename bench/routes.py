"""The dual route against the eigendecomposition route, alternated in one process.

For one problem size, each cv scheme and score, each solution: fit with the route
fastridge picks (`fastridge.solve._use_dual_route`, the dual route where it
applies) and with that choice switched off (the eigendecomposition route, step 3
of the README's "How it works"), alternating the two `--repeats` times so that
both see the same machine; a markdown table of the medians, with how far apart
the two fits' alphas and best scores are.

    PYTHONPATH=/path/to/fastridge python bench/routes.py --size S --cv loo 5 \\
        --scoring r2 correlation --repeats 3

Both routes run in this one process (no per-solver subprocess as in run.py), so
compare the two columns, not these times with the suite's.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _problems  # noqa: E402


def _fit(X, Y, alphas, cv, scoring, solution, route: bool, shared: bool = False):
    """One timed fit: (seconds, the fitted estimator)."""
    import fastridge
    import fastridge.solve as solve

    real = solve._use_dual_route
    if not route:
        solve._use_dual_route = lambda *a, **k: None
    try:
        model = fastridge.FastRidgeCV(
            alphas=alphas,
            alpha_per_target=not shared,
            cv=None if cv == "loo" else int(cv),
            scoring=scoring,
            solution=solution,
        )
        start = time.perf_counter()
        model.fit(X, Y)
        return time.perf_counter() - start, model
    finally:
        solve._use_dual_route = real


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="S", choices=sorted(_problems.SIZES))
    parser.add_argument("--cv", nargs="+", default=["loo", "5"], help="'loo' or a number of folds")
    parser.add_argument(
        "--scoring", nargs="+", default=["none", "r2", "correlation"], help="'none' for None"
    )
    parser.add_argument("--solution", nargs="+", default=["dual", "primal"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--n-alphas", type=int, default=6, help="6: the suite's grid; else a log grid 1e2-1e8"
    )
    parser.add_argument(
        "--shared", action="store_true", help="one alpha for all targets (scikit-learn's default)"
    )
    args = parser.parse_args(argv)
    if args.n_alphas == 6:
        alphas = _problems.ALPHAS_6
    else:
        alphas = tuple(float(a) for a in np.logspace(2, 8, args.n_alphas))
    size = _problems.SIZES[args.size]
    X, Y = _problems.make_problem(size["n_samples"], size["n_features"], size["n_targets"])
    kind = "one alpha for all targets" if args.shared else "an alpha per target"
    print(f"# {args.size}: X {X.shape}, Y {Y.shape}, float32, {len(alphas)} alphas "
          f"{', '.join(f'{a:.3g}' for a in alphas)}, {kind}")  # fmt: skip
    print()
    print("| cv | scoring | solution | dual route s | eigen route s | eigen / route "
          "| same alpha | max score diff |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for cv in args.cv:
        for scoring in args.scoring:
            scoring = None if scoring == "none" else scoring
            for solution in args.solution:
                times = {True: [], False: []}
                fitted = {}
                _fit(X, Y[:, :256], alphas, cv, scoring, solution, True, args.shared)  # warm-up
                for _ in range(args.repeats):
                    for route in (True, False):
                        seconds, fitted[route] = _fit(
                            X, Y, alphas, cv, scoring, solution, route, args.shared
                        )
                        times[route].append(seconds)
                a, b = fitted[True], fitted[False]
                same = float(np.mean(np.asarray(a.alpha_) == np.asarray(b.alpha_)))
                diff = float(np.abs(np.asarray(a.best_score_) - np.asarray(b.best_score_)).max())
                t_route, t_eigen = np.median(times[True]), np.median(times[False])
                print(
                    f"| {cv} | {scoring} | {solution} | {t_route:.2f} | {t_eigen:.2f} "
                    f"| {t_eigen / t_route:.2f} | {same:.2%} | {diff:.1e} |",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
