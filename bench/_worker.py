"""One solver on one cached problem, in its own process (so ru_maxrss is its own).

Usage (run by run.py, not by hand): python bench/_worker.py SPEC.json RESULT.json

SPEC keys: solver ("fastridge", "sklearn", "himalaya_ridge", "himalaya_kernel",
"himalaya_kernel_primal"),
params (solver options), X / Y (paths of .npy files in the solver's dtype),
alphas, repeats, warmup ("subset", "full" or "none"), sample_targets (target
indices whose coefficients are saved for the agreement check), prefix (path
prefix of the saved alpha / coefficient arrays), gemm_probe ([m, k, n]: time a
scipy float32 and float64 GEMM of that shape before the warm-up, between the
repeats and after them, for the roofline; absent: no probes).

The result records every repeat's wall time, the median, the peak RSS of this
process (ru_maxrss, so it includes X and Y themselves: `rss_inputs` says how
much of it they are), fastridge's per-stage timings, and where the selected
alphas and the sampled coefficients were saved.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
import traceback
from pathlib import Path

import numpy as np

sys.path.insert(1, str(Path(__file__).resolve().parent))
from _machine import current_rss_bytes, load_average, peak_rss_bytes  # noqa: E402


def _import_fastridge():
    try:
        import fastridge
    except ImportError:
        # Fall back to the checkout this bench/ lives in (PYTHONPATH wins when set).
        sys.path.append(str(Path(__file__).resolve().parent.parent))
        import fastridge
    return fastridge


class Solver:
    """fit(X, Y) -> (alpha (n_targets,), coef rows for `idx` (len(idx), n_features))."""

    def __init__(self, name, params, alphas):
        self.name = name
        self.params = params
        self.alphas = np.asarray(alphas, dtype=np.float64)
        self.timings = None
        self.model = None
        if name.startswith("himalaya"):
            from himalaya.backend import set_backend

            # himalaya keeps its backend in a global; this process runs one config only.
            self.backend = set_backend(params.get("backend", "numpy"), on_error="raise")

    def fit(self, X, Y):
        p = self.params
        if self.name == "fastridge":
            fastridge = _import_fastridge()
            model = fastridge.FastRidgeCV(
                alphas=self.alphas,
                alpha_per_target=True,
                cv=p.get("cv"),
                dtype=p.get("dtype"),
                **p.get("extra", {}),
            )
            model.fit(X, Y)
            self.timings = dict(model.timings_)
        elif self.name == "sklearn":
            from sklearn.linear_model import RidgeCV

            model = RidgeCV(alphas=self.alphas, alpha_per_target=True).fit(X, Y)
        elif self.name == "himalaya_ridge":
            from himalaya.ridge import RidgeCV

            model = RidgeCV(
                alphas=self.alphas.astype(X.dtype),
                fit_intercept=True,
                cv=p.get("cv", 5),
                solver_params=dict(local_alpha=True, warn=False, **p.get("solver_params", {})),
            ).fit(X, Y)
        elif self.name in ("himalaya_kernel", "himalaya_kernel_primal"):
            from himalaya.kernel_ridge import KernelRidgeCV

            model = KernelRidgeCV(
                alphas=self.alphas.astype(X.dtype),
                kernel="linear",
                fit_intercept=True,
                cv=p.get("cv", 5),
                solver_params=dict(local_alpha=True, **p.get("solver_params", {})),
            ).fit(X, Y)
            if self.name == "himalaya_kernel_primal":
                # The same output as a primal fit, (n_features, n_targets), timed:
                # himalaya's own X_fit^T dual_coef (the dual coefficients of a fit
                # with an intercept sum to 0, so X need not be centred).
                self.primal_coef = model.get_primal_coef()
        else:
            raise ValueError(f"unknown solver {self.name!r}")
        self.model = model

    def outputs(self, X, idx):
        """Selected alphas (n_targets,) and coefficient rows of targets `idx`."""
        m = self.model
        if self.name == "fastridge" and "dual_coef_" in vars(m):
            # solution="dual": primal rows of the sampled targets (not timed)
            dual = np.asarray(m.dual_coef_[idx], np.float64)
            Xc = np.asarray(m.X_fit_, dtype=np.float64) - m.X_mean_
            return np.asarray(m.alpha_, dtype=np.float64), dual @ Xc
        if self.name in ("fastridge", "sklearn"):
            return np.asarray(m.alpha_, dtype=np.float64), np.asarray(m.coef_[idx], np.float64)
        to_np = self.backend.to_numpy
        # himalaya returns exp(-log(alpha)) in float32, e.g. 19999.998 for 2e4:
        # map each back to the nearest grid value (in log space) before comparing.
        raw = to_np(m.best_alphas_).astype(np.float64)
        grid = np.sort(self.alphas)
        nearest = np.abs(np.log(raw)[:, None] - np.log(grid)[None, :]).argmin(axis=1)
        alpha = grid[nearest]
        self.snap_error = float(np.max(np.abs(raw / alpha - 1.0))) if raw.size else 0.0
        if self.name == "himalaya_ridge":
            coef = to_np(m.coef_)[:, idx].T.astype(np.float64)
        elif self.name == "himalaya_kernel_primal":
            coef = to_np(self.primal_coef)[:, idx].T.astype(np.float64)
        else:
            # Primal coefficients of a linear kernel with an intercept: the
            # centred X transposed times the dual coefficients (not timed).
            dual = to_np(m.dual_coef_)[:, idx].astype(np.float64)
            Xc = np.asarray(X, dtype=np.float64) - X.mean(axis=0, dtype=np.float64)
            coef = (Xc.T @ dual).T
        return alpha, coef


def gemm_probe(shape, repeats: int = 3) -> dict:
    """GFLOP/s of scipy's float32 and float64 GEMM at `shape` ([m, k, n]), fastest of
    `repeats` after one warm-up call: the machine's rate at this moment, taken
    next to the fits because this VM's rate swings within minutes."""
    from scipy.linalg import blas

    m, k, n = shape
    rng = np.random.default_rng(0)
    rates = {}
    for dtype, gemm in (("float32", blas.sgemm), ("float64", blas.dgemm)):
        A = np.asfortranarray(rng.standard_normal((m, k)).astype(dtype))
        B = np.asfortranarray(rng.standard_normal((k, n)).astype(dtype))
        C = np.zeros((m, n), dtype=dtype, order="F")
        best = np.inf
        for _ in range(repeats + 1):
            t = time.perf_counter()
            gemm(1.0, A, B, c=C, overwrite_c=1)
            best = min(best, time.perf_counter() - t)
        rates[dtype] = 2.0 * m * k * n / best / 1e9
        del A, B, C
    return rates


def run(spec: dict) -> dict:
    import torch

    result = {"spec": spec, "load_start": load_average()}
    X = np.load(spec["X"])
    Y = np.load(spec["Y"])
    result["rss_inputs"] = current_rss_bytes()
    solver = Solver(spec["solver"], spec.get("params", {}), spec["alphas"])
    probe = spec.get("gemm_probe")
    samples = result["gemm_samples"] = []
    if probe:
        samples.append(gemm_probe(probe))

    warmup = spec.get("warmup", "subset")
    if warmup != "none":
        t = time.perf_counter()
        Yw = Y if warmup == "full" else np.ascontiguousarray(Y[:, : min(Y.shape[1], 256)])
        solver.fit(X, Yw)
        result["warmup"] = {"kind": warmup, "seconds": time.perf_counter() - t}
        del Yw

    walls, stage_timings = [], []
    for _ in range(int(spec.get("repeats", 1))):
        solver.model = None
        t = time.perf_counter()
        solver.fit(X, Y)
        walls.append(time.perf_counter() - t)
        stage_timings.append(solver.timings)
        if probe:
            samples.append(gemm_probe(probe))
    result["walls"] = walls
    result["wall"] = statistics.median(walls)
    # The stage timings of the repeat closest to the median.
    best = min(range(len(walls)), key=lambda i: abs(walls[i] - result["wall"]))
    result["timings"] = stage_timings[best]
    result["timings_wall"] = walls[best]
    result["peak_rss"] = peak_rss_bytes()
    result["torch_threads"] = torch.get_num_threads()
    result["load_end"] = load_average()

    idx = np.asarray(spec.get("sample_targets", []), dtype=np.int64)
    alpha, coef = solver.outputs(X, idx)
    prefix = spec["prefix"]
    np.save(prefix + "_alpha.npy", alpha)
    np.save(prefix + "_coef.npy", coef)
    result["alpha_file"] = prefix + "_alpha.npy"
    if getattr(solver, "snap_error", None) is not None:
        result["alpha_snap_max_rel_error"] = solver.snap_error
    result["coef_file"] = prefix + "_coef.npy"
    values, counts = np.unique(alpha, return_counts=True)
    result["alpha_counts"] = {f"{v:g}": int(c) for v, c in zip(values, counts, strict=True)}
    return result


def main(argv):
    spec_path, result_path = argv[1], argv[2]
    with open(spec_path) as f:
        spec = json.load(f)
    try:
        result = run(spec)
        result["ok"] = True
    except Exception as exc:  # noqa: BLE001 - the parent records why a solver failed
        result = {
            "spec": spec,
            "ok": False,
            "error": f"{type(exc).__name__}: {exc}",
            "traceback": traceback.format_exc(),
            "peak_rss": peak_rss_bytes(),
        }
    with open(result_path, "w") as f:
        json.dump(result, f, indent=1)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
