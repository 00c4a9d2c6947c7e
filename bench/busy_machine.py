"""fastridge on a machine busy with other processes, against an idle one; and
fastridge checkouts side by side.

A shared server often runs other jobs beside a fit. OpenBLAS's (and OpenMP's)
threads wait for each other at barriers, and a thread whose core another process
holds makes the others wait a scheduler time slice; fastridge runs small
factorisations on one thread, and while its large GEMMs find the cores busy
every factorisation and small GEMM too (see `fastridge._backend`, "small calls
on one BLAS thread"). This script shows what that is worth: for each fastridge
checkout given, each problem, cv and solution, fits with `--busy` CPU-bound
processes beside them (small numpy work, one core each) and without, with the
default threads and with n_threads=1, alternated, each fit in its own process.
With `--busy 0` it compares the checkouts on the idle machine alone.

    python bench/busy_machine.py --fastridge /path/a /path/b --size S --cv loo 5 \\
        --busy 2 --repeats 3
    # checkouts side by side on an idle machine only, default threads, both solutions
    python bench/busy_machine.py --fastridge /path/a /path/b --size S --cv loo 5 \\
        --busy 0 --threads default --solution primal dual --repeats 3
    # folds that are each decomposed on their own
    python bench/busy_machine.py --fastridge /path/a /path/b --size S \\
        --cv timeseries5 shufflesplit5 --busy 0 --threads default --repeats 3

Prints a markdown table of median wall seconds and stage seconds (`timings_`).
The busy processes are started before and stopped after each fit; everything
else on the machine adds to them, so run it on an otherwise idle machine. (On
the 2-core Zen 4 VM, 2 or 3 of these processes slowed fits 2-3x, as much with
n_threads=1, and did not reproduce the stalls that a differential fuzz's dozens
of short-lived processes caused: an S leave-one-out fit of 18-25 s instead of
1.6 s; see bench/RESULTS.md.)
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import time

from _checkout import SPLITTERS, run_code

FIT = """
import json, time
import _problems
from sklearn.model_selection import ShuffleSplit, TimeSeriesSplit
import fastridge
from fastridge import FastRidgeCV
X, Y = _problems.make_problem({n}, {p}, {t})
model = FastRidgeCV(alphas=_problems.ALPHAS_6, alpha_per_target=True, dtype="float32",
                    cv={cv}, n_threads={threads}, solution={solution!r})
start = time.perf_counter()
model.fit(X, Y)
wall = time.perf_counter() - start
print(json.dumps({{"wall": wall, "timings": model.timings_, "fastridge": fastridge.__file__}}))
"""


def _cv_code(cv: str) -> str:
    """The `cv=` argument's source for a `--cv` value."""
    return "None" if cv == "loo" else SPLITTERS.get(cv) or str(int(cv))


def _spin() -> None:
    """A busy process as a shared server runs them: small numpy work on one thread,
    allocating as it goes (a plain Python loop, which never yields its core, did
    not make fastridge's threads stall; a differential fuzz of small fits did)."""
    import numpy as np
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    with threadpool_limits(limits=1):
        while True:
            a = rng.standard_normal((60, 80))
            np.linalg.solve(a @ a.T + np.eye(60), a)


def fit_seconds(
    checkout: str, n: int, p: int, t: int, cv, threads, busy: int, solution: str = "dual"
) -> dict:
    """One fit in a new process (fastridge from `checkout`), `busy` spinning processes
    beside it from before its start to its end."""
    spinners = [multiprocessing.Process(target=_spin, daemon=True) for _ in range(busy)]
    for s in spinners:
        s.start()
    time.sleep(0.5 if busy else 0.0)  # (the spinners running before the fit starts)
    try:
        code = FIT.format(n=n, p=p, t=t, cv=cv, threads=threads, solution=solution)
        return run_code(code, checkout)
    finally:
        for s in spinners:
            s.terminate()
            s.join()


def main(argv=None) -> None:
    import _problems

    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--fastridge", nargs="+", required=True, help="checkouts to compare")
    ap.add_argument("--size", default="S", choices=sorted(_problems.SIZES))
    ap.add_argument(
        "--cv", nargs="+", default=["loo", "5"],
        help=f"loo, fold counts and/or {', '.join(SPLITTERS)}",
    )  # fmt: skip
    ap.add_argument("--busy", type=int, default=2, help="CPU-bound processes beside a fit")
    ap.add_argument("--threads", nargs="+", default=["default", "1"], choices=["default", "1"])
    ap.add_argument("--solution", nargs="+", default=["dual"], choices=["primal", "dual"])
    ap.add_argument("--repeats", type=int, default=3)
    ns = ap.parse_args(argv)
    dims = _problems.SIZES[ns.size]
    n, p, t = dims["n_samples"], dims["n_features"], dims["n_targets"]
    cases = [
        (checkout, cv, solution, threads, busy)
        for cv in ns.cv
        for solution in ns.solution
        for busy in sorted({0, ns.busy})
        for threads in (None if th == "default" else 1 for th in ns.threads)
        for checkout in ns.fastridge
    ]
    runs = {case: [] for case in cases}
    for _ in range(ns.repeats):  # alternated: every case once per round
        for case in cases:
            checkout, cv, solution, threads, busy = case
            res = fit_seconds(checkout, n, p, t, _cv_code(cv), threads, busy, solution)
            runs[case].append(res)
            print(case, f"{res['wall']:.2f}s", flush=True)
    print(
        f"\n{ns.size} (n={n}, p={p}, t={t}), 6 alphas, float32; median of {ns.repeats} "
        f"fits; {ns.busy} CPU-bound processes beside the busy ones\n"
    )
    head = "checkout | cv | solution | beside | n_threads | wall s (median) | fits | stages s"
    print(f"| {head} (median) |")
    print("|---|---|---|---|---|---|---|---|")
    for case in cases:
        checkout, cv, solution, threads, busy = case
        walls = [r["wall"] for r in runs[case]]
        stages = "; ".join(
            f"{k} {statistics.median(r['timings'][k] for r in runs[case]):.3f}"
            for k in ("decompose", "project", "cv", "refit")
            if all(k in r["timings"] for r in runs[case])
        )
        print(
            f"| {checkout} | {cv} | {solution} | {busy} | {threads or 'default'} | "
            f"{statistics.median(walls):.2f} | {' / '.join(f'{w:.2f}' for w in walls)} | "
            f"{stages} |"
        )


if __name__ == "__main__":
    main()
