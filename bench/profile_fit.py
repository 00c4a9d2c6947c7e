"""Where one fit's time goes: its BLAS / LAPACK calls per stage, against the roofline.

For issue #4's "where fastridge is below the roofline, profile and say where the
time goes". One fastridge configuration of bench/run.py on one generated problem,
in this process: a warm-up fit, then one fit with fastridge's dense-algebra
entry points (`fastridge._backend.mm`, `addmm`, `cholesky_inverse`, `eigh`,
`svd`, `pivoted_cholesky_rank`) timed call by call. Each call is put in a stage:
inside `solve._project_into` "project", inside `solve._refit_into` or the
dual route's `residuals_of_best` "refit" (as solve times them), before the
first projection "decompose", anything else "cv". Then each group's
first call is timed again alone, best of 3, on copies of its arguments, so that
a slow call can be told from a slow shape. The copies' memory is touched
already: for a GEMM that writes new memory in the fit (the primal
coefficients, returned to the caller), the gap between the two rates is mostly
what this VM charges for its first touch.

    PYTHONPATH=/work/main python bench/profile_fit.py --size M --config fastridge-loo-f32-dual

Prints two markdown tables:

- per stage: fastridge's own `timings_`, the roofline's ideal seconds (the flop
  model at GEMM and eigh rates calibrated in this process, bench/_flops.py), the
  seconds in the calls above, and the rest (memory passes, casts, Python);
- per call group (stage, function, shapes, dtype): calls, seconds, GFLOP/s in
  the fit and alone.

The timings are one fit's, on a machine shared with whatever else runs: compare
its columns with each other, not with another run's.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(1, str(HERE))
try:
    import fastridge  # noqa: F401 - PYTHONPATH picks which checkout is measured
except ImportError:
    sys.path.append(str(HERE.parent))

import _problems  # noqa: E402
from _flops import flop_model, roofline  # noqa: E402
from _machine import calibrate  # noqa: E402
from run import CONFIGS, _cv_of, _solution_of  # noqa: E402

TIMED = ("mm", "addmm", "cholesky_inverse", "eigh", "svd", "pivoted_cholesky_rank")


def _operands(name: str, args) -> tuple:
    """The factors of a product (mm(a, b), addmm(add, a, b)); else the matrix."""
    return {"mm": args[:2], "addmm": args[1:3]}.get(name, args[:1])


def _is_gram(a, b) -> bool:
    """b is a's transpose (one symmetric product: half a GEMM's flops)."""
    return (
        a.data_ptr() == b.data_ptr() and a.shape == b.shape[::-1] and a.stride() == b.stride()[::-1]
    )


def _flops(name: str, args) -> float:
    """Flops of one call, as the flop model counts them (0 where it counts none)."""
    if name in ("mm", "addmm"):
        a, b = _operands(name, args)
        flops = 2.0 * a.shape[0] * a.shape[1] * b.shape[1]
        return flops / 2 if _is_gram(a, b) else flops
    n = args[0].shape[0]
    return {"cholesky_inverse": n**3, "eigh": 9.0 * n**3, "pivoted_cholesky_rank": n**3 / 3}.get(
        name, 0.0
    )


def _shapes(name: str, args) -> tuple:
    tensors = _operands(name, args)
    return tuple(tuple(t.shape) for t in tensors), str(tensors[0].dtype).removeprefix("torch.")


class Recorder:
    """Times the outermost call of each `TIMED` function (one calling another is
    counted once) and groups them by (stage, name, shapes, dtype)."""

    def __init__(self):
        self.stage = "decompose"
        self.depth = 0
        self.groups = collections.defaultdict(lambda: {"calls": 0, "seconds": 0.0, "flops": 0.0})
        self.args = {}  # group -> (function, copies of its first call's arguments)

    def wrap(self, name, fn):
        def timed(*args, **kwargs):
            if self.depth:
                return fn(*args, **kwargs)
            key = (self.stage, name, *_shapes(name, args))
            if key not in self.args:  # (copied before the call, which may overwrite them)
                self.args[key] = (fn, _copies(name, args), _copies("", kwargs))
            self.depth += 1
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                seconds = time.perf_counter() - t
                self.depth -= 1
                g = self.groups[key]
                g["calls"] += 1
                g["seconds"] += seconds
                g["flops"] += _flops(name, args)

        return timed

    def in_stage(self, stage, fn):
        def staged(*args, **kwargs):
            saved, self.stage = self.stage, stage
            try:
                return fn(*args, **kwargs)
            finally:
                self.stage = "cv" if saved == "decompose" else saved

        return staged


@contextlib.contextmanager
def installed(recorder: Recorder):
    """The timed functions replaced in every fastridge module that holds them (the
    modules import them by name), and the projection and refit put in stages;
    all put back on exit."""
    from fastridge import _backend, _cv, solve

    saved = []
    originals = {name: getattr(_backend, name) for name in TIMED}
    for module in [m for k, m in sys.modules.items() if k.startswith("fastridge")]:
        for name, fn in originals.items():
            if getattr(module, name, None) is fn:
                saved.append((module, name, fn))
                setattr(module, name, recorder.wrap(name, fn))
    # (the dual route's residuals of each target's best alpha are made as an argument
    # of the refit, and solve times them with it)
    for owner, name, stage in (
        (solve, "_project_into", "project"),
        (solve, "_refit_into", "refit"),
        (_cv.DualRoute, "residuals_of_best", "refit"),
    ):
        fn = getattr(owner, name)
        saved.append((owner, name, fn))
        setattr(owner, name, recorder.in_stage(stage, fn))
    try:
        yield recorder
    finally:
        for module, name, fn in saved:
            setattr(module, name, fn)


def _copies(name: str, args):
    """Fresh copies of a call's arguments, a list or a dict (some calls overwrite
    their inputs, e.g. the Cholesky inverse), a Gram's second factor still the
    first's transpose."""
    import torch

    def copy(a):
        return a.clone() if isinstance(a, torch.Tensor) else a

    if isinstance(args, dict):
        return {k: copy(a) for k, a in args.items()}
    copies = [copy(a) for a in args]
    if name == "mm" and _is_gram(*args[:2]):
        copies[1] = copies[0].T
    return copies


def alone_seconds(name: str, fn, args, kwargs, repeats: int = 3) -> float:
    """Best of `repeats` calls of fn, alone, on copies of a call's arguments."""
    best = float("inf")
    for _ in range(repeats + 1):  # (the first is a warm-up)
        copies, kwcopies = _copies(name, args), _copies(name, kwargs)
        t = time.perf_counter()
        fn(*copies, **kwcopies)
        best = min(best, time.perf_counter() - t)
    return best


STAGES = ("decompose", "project", "cv", "refit")


def profile(config: str, n: int, p: int, t: int, alphas) -> dict:
    """One warm fit of `config` (bench/run.py's CONFIGS) on the generated problem,
    its calls recorded, the roofline calibrated in this process.

    Returns a dict: wall (s), roofline (ideal seconds per stage and "total"),
    rates (calibrated GEMM GFLOP/s per dtype), timings (fastridge's `timings_`),
    in_calls (seconds in recorded calls per stage) and groups, a list of dicts
    (stage, call, shapes, dtype, calls, seconds, gflops, alone_gflops), slowest
    first."""
    import numpy as np

    from fastridge import FastRidgeCV

    _, params, dtype, _ = CONFIGS[config]
    X, Y = _problems.make_problem(n, p, t, dtype=getattr(np, dtype))

    def fit():
        m = FastRidgeCV(
            alphas=alphas,
            alpha_per_target=True,
            cv=params["cv"],
            dtype=params["dtype"],
            **params.get("extra", {}),
        )
        start = time.perf_counter()
        m.fit(X, Y)
        return m, time.perf_counter() - start

    fit()  # warm-up: thread pools, first touch of the allocator's memory
    with installed(Recorder()) as recorder:
        fitted, wall = fit()
    model = flop_model(n, p, t, len(alphas), cv=_cv_of(config), solution=_solution_of(config))
    cal = calibrate(n, p, model["eigh_size"], probes=False, eigh_dtypes=("float64",))
    groups = []
    for key, g in recorder.groups.items():
        stage, name, shapes, dt = key
        fn, args, kwargs = recorder.args[key]
        alone = _flops(name, args) / alone_seconds(name, fn, args, kwargs) / 1e9
        groups.append(
            {
                "stage": stage,
                "call": name,
                "shapes": shapes,
                "dtype": dt,
                "calls": g["calls"],
                "seconds": g["seconds"],
                "gflops": g["flops"] / g["seconds"] / 1e9,
                "alone_gflops": alone,
            }
        )
    groups.sort(key=lambda g: -g["seconds"])
    in_calls = {stage: sum(g["seconds"] for g in groups if g["stage"] == stage) for stage in STAGES}
    return {
        "config": config,
        "n_samples": n,
        "n_features": p,
        "n_targets": t,
        "n_alphas": len(alphas),
        "wall": wall,
        "timings": dict(fitted.timings_),
        "in_calls": in_calls,
        "groups": groups,
        "roofline": roofline(model, cal, "float64" if dtype == "float64" else "float32"),
        "rates": {d: cal["gemm"][d]["gflops"] for d in ("float32", "float64")},
    }


def markdown(res: dict) -> str:
    """`profile`'s result as a heading line and two markdown tables."""
    ideal, rates = res["roofline"], res["rates"]
    lines = [
        f"{res['config']} (n_samples={res['n_samples']}, n_features={res['n_features']}, "
        f"n_targets={res['n_targets']}, {res['n_alphas']} alphas): wall {res['wall']:.2f} s, "
        f"roofline {ideal['total']:.2f} s ({ideal['total'] / res['wall']:.0%}); calibration GEMM "
        f"{rates['float32']:.0f} GFLOP/s float32, {rates['float64']:.0f} float64",
        "",
        "| stage | fastridge s | ideal s | BLAS/LAPACK calls s | rest s |",
        "|---|---|---|---|---|",
    ]
    for stage in STAGES:
        measured, calls = res["timings"].get(stage, 0.0), res["in_calls"][stage]
        rest = measured - calls
        lines.append(
            f"| {stage} | {measured:.3f} | {ideal[stage]:.3f} | {calls:.3f} | {rest:.3f} |"
        )
    lines += [
        "",
        "| stage | call | shapes | dtype | calls | s | GFLOP/s | alone GFLOP/s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for g in res["groups"]:
        shapes = " @ ".join("x".join(map(str, s)) for s in g["shapes"])
        lines.append(
            f"| {g['stage']} | {g['call']} | {shapes} | {g['dtype']} | {g['calls']} "
            f"| {g['seconds']:.3f} | {g['gflops']:.0f} | {g['alone_gflops']:.0f} |"
        )
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--size", default="S", choices=sorted(_problems.SIZES))
    ap.add_argument(
        "--config",
        default="fastridge-loo-f32-dual",
        choices=[c for c in CONFIGS if c.startswith("fastridge")],
    )
    ap.add_argument("--alphas", type=int, default=6, choices=(3, 6))
    ap.add_argument("--n-samples", type=int, help="override the size's (testing)")
    ap.add_argument("--n-features", type=int)
    ap.add_argument("--n-targets", type=int)
    ns = ap.parse_args(argv)
    shape = _problems.SIZES[ns.size]
    n = ns.n_samples or shape["n_samples"]
    p = ns.n_features or shape["n_features"]
    t = ns.n_targets or shape["n_targets"]
    alphas = _problems.ALPHAS_3 if ns.alphas == 3 else _problems.ALPHAS_6
    print(f"{ns.size}: " + markdown(profile(ns.config, n, p, t, alphas)))


if __name__ == "__main__":
    main()
