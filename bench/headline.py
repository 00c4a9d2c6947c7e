"""The headline problem end to end, out of core: X.npy, Y.npy (memmapped) -> coef.npy.

n_samples=8,859, n_features=20,000, n_targets=173,568 (226 x 768) float32,
alphas {1e4, 2e4, 4e4}, exact leave-one-out, one alpha per target.

    python bench/headline.py generate      # X.npy (0.7 GB), Y.npy (6.2 GB), chunk-wise
    PYTHONPATH=/work/main python bench/headline.py solve   # ridge_cv, Y memmapped, coef_out memmap
    python bench/headline.py clean         # delete the .npy files (~21 GB with coef.npy)
    PYTHONPATH=/work/main python bench/headline.py all     # generate + solve + clean

`solve` runs `fastridge solve` (the command line, in this process) into
bench/out/headline/model/ by default; `--via ridge_cv` calls the function with an
open_memmap coef.npy instead (and allows --limit-targets). `--solution dual`
stores the kernel-ridge coefficients. `generate` and `solve` each run in their
own process under `all`, so the solve's peak RSS is its own. The solve records
the per-stage timings, the wall time, ru_maxrss, and the peaks of anonymous and file-backed resident
memory sampled every 0.2 s (reading a memmapped Y and writing a memmapped
coef.npy puts file pages in RSS that the kernel may drop at any time:
RssAnon is what the process really holds), and the roofline: the flop model
(bench/_flops.py) at the fastest GEMM rates measured just before and just after
the solve, as a fraction of the wall and of the stages' sum. Results go to
bench/out/headline-<UTC time>.json. --n-samples/--n-features/--n-targets
make a smaller problem of the same shape for testing the script.

Why the peers cannot run this problem on a 24 GiB machine is computed and
written to the same JSON (see `peer_estimates`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(1, str(HERE))
import _problems  # noqa: E402
from _flops import flop_model, roofline  # noqa: E402
from _machine import (  # noqa: E402
    calibrate,
    load_average,
    machine_info,
    peak_rss_bytes,
)

DEFAULT_DIR = HERE / "out" / "headline"
TARGET_SHAPE = (226, 768)


class MemorySampler:
    """Peaks of VmRSS, RssAnon and RssFile of this process, sampled in a thread."""

    def __init__(self, interval=0.2):
        self.interval = interval
        self.peaks = {"VmRSS": 0, "RssAnon": 0, "RssFile": 0}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self):
        with open("/proc/self/status") as f:
            for line in f:
                key = line.split(":", 1)[0]
                if key in self.peaks:
                    self.peaks[key] = max(self.peaks[key], int(line.split()[1]) * 1024)

    def _run(self):
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self._sample()


def paths(directory: Path) -> dict:
    return {name: directory / f"{name}.npy" for name in ("X", "Y", "coef")}


def generate(ns):
    """X and Y into .npy memmaps, block by block (never Y whole in memory)."""
    from numpy.lib.format import open_memmap

    n, p, t = ns.n_samples, ns.n_features, ns.n_targets
    d = Path(ns.dir)
    d.mkdir(parents=True, exist_ok=True)
    f = paths(d)
    need = 4 * (n * p + n * t + t * p)  # X, Y and the coefficients solve will write
    free = shutil.disk_usage(d).free
    if need > free:
        raise SystemExit(
            f"not enough disk space in {d}: need {need / 1e9:.1f} GB "
            f"(X, Y and coef), {free / 1e9:.1f} GB free"
        )
    t0 = time.perf_counter()
    X = open_memmap(f["X"], mode="w+", dtype=np.float32, shape=(n, p))
    _problems.make_X(n, p, ns.seed, out=X)
    X.flush()
    tx = time.perf_counter() - t0
    G = _problems.signal_basis(X, ns.seed)
    del X
    shape = (n, t) if t != int(np.prod(TARGET_SHAPE)) else (n, *TARGET_SHAPE)
    Y = open_memmap(f["Y"], mode="w+", dtype=np.float32, shape=shape)
    Y2 = Y.reshape(n, t)
    for j in range(-(-t // _problems.BLOCK)):
        lo, hi = j * _problems.BLOCK, min((j + 1) * _problems.BLOCK, t)
        Y2[:, lo:hi] = _problems.y_block(G, t, j, ns.seed)
        if j % 32 == 31:
            Y.flush()  # keep dirty pages bounded
    Y.flush()
    del Y, Y2
    info = {"X_seconds": tx, "total_seconds": time.perf_counter() - t0, "shape_Y": list(shape)}
    print(json.dumps(info))
    return info


def peer_estimates(n, p, t, n_alphas) -> dict:
    """Why scikit-learn and himalaya are not run on this problem (memory arithmetic)."""
    gib = 2**30
    return {
        "sklearn RidgeCV(alpha_per_target=True)": (
            "not run: it converts X and Y to float64 in memory "
            f"(Y alone {8 * n * t / gib:.1f} GiB) and holds p x t float64 coefficient "
            f"arrays ({8 * p * t / gib:.1f} GiB each; its peak was ~5 of them at the S "
            f"and M sizes, ~{5 * 8 * p * t / gib:.0f} GiB here), so a single one "
            "already exceeds this 24 GiB machine; it has no out-of-core path."
        ),
        "himalaya KernelRidgeCV / RidgeCV (cv=5)": (
            "not run: it needs Y in memory on the backend "
            f"({4 * n * t / gib:.1f} GiB float32) plus the n x t dual coefficients "
            f"({4 * n * t / gib:.1f} GiB) and returns no primal coefficients "
            f"(RidgeCV's p x t primal would be another {4 * p * t / gib:.1f} GiB); it "
            "could fit in 24 GiB with n_targets_batch, but it computes 5-fold CV, not "
            "the exact leave-one-out this problem asks for, and would take longer "
            "than this benchmark's time budget (not measured)."
        ),
    }


def calibration(model: dict, n_samples: int) -> dict:
    """The rates behind the roofline, measured as the suite's calibration
    (bench/_machine.calibrate) but without its probes: the GEMMs at the per-alpha
    shape and the float64 eigh only (none for the dual route with few alphas)."""
    return calibrate(n_samples, 0, model["eigh_size"], probes=False, eigh_dtypes=("float64",))


def roofline_fields(model: dict, calibrations: list[dict], wall: float, stages: dict) -> dict:
    """The roofline of the run at the fastest rates any calibration measured (taken
    before and after the solve: on a shared VM the rate swings within minutes, and
    the roofline must be what the machine could do, never less), and its
    fraction of the end-to-end wall and of the solve's stages."""
    best = calibrations[0]
    for cal in calibrations[1:]:
        for dtype in ("float32", "float64"):
            if cal["gemm"][dtype]["gflops"] > best["gemm"][dtype]["gflops"]:
                best = {**best, "gemm": {**best["gemm"], dtype: cal["gemm"][dtype]}}
    ideal = roofline(model, best, "float32")
    return dict(
        calibrations=calibrations,
        gemm_gflops_used={d: best["gemm"][d]["gflops"] for d in ("float32", "float64")},
        roofline=ideal,
        roofline_fraction=ideal["total"] / wall,
        roofline_fraction_of_stages=ideal["total"] / stages,
    )


def _run_fields(timings, info, mem, alpha, model, seconds, shape) -> dict:
    """The result fields both solve paths record (info: form, rank, target_chunk)."""
    n, p, t_full, n_alphas = shape
    values, counts = np.unique(alpha, return_counts=True)
    return dict(
        timings=timings,
        form=info["form"],
        rank=info["rank"],
        target_chunk=info["target_chunk"],
        peak_rss=peak_rss_bytes(),
        sampled_peaks=mem.peaks,
        alpha_counts={f"{v:g}": int(c) for v, c in zip(values, counts, strict=True)},
        model_gflop=model["gemm_flops"] / 1e9,
        model_stages_gflop={k: v / 1e9 for k, v in model["stages"].items()},
        achieved_gflops=model["gemm_flops"] / seconds / 1e9,
        peer_estimates=peer_estimates(n, p, t_full, n_alphas),
        load_end=load_average(),
        finished_utc=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )


def solve_cli(ns, doc, f):
    """`fastridge solve` (in this process, so its memory is sampled) from X.npy and
    Y.npy into a model directory: the command line's own reading, fingerprints,
    chunk-wise pwrite of the coefficients, fsync per chunk and final rename."""
    from fastridge.cli import main as cli_main

    model_dir = Path(ns.dir) / "model"
    argv = ["solve", str(f["X"]), str(f["Y"]), "--alphas", *map(str, ns.alphas)]
    argv += ["--out", str(model_dir), "--overwrite", "--dtype", "float32", "--progress"]
    argv += ["--solution", ns.solution]
    if ns.target_chunk != "auto":
        argv += ["--target-chunk", str(ns.target_chunk)]
    doc["cli_argv"] = ["fastridge", *argv]
    with MemorySampler() as mem:
        t0 = time.perf_counter()
        code = cli_main(argv)
        wall = time.perf_counter() - t0
    if code != 0:
        raise SystemExit(f"fastridge solve failed with exit code {code}")
    meta = json.loads((model_dir / "model.json").read_text())
    name = "coef.npy" if ns.solution == "primal" else "dual_coef.npy"
    return wall, mem, meta, np.load(model_dir / name, mmap_mode="r"), model_dir


def solve(ns):
    """The headline problem end to end: through `fastridge solve` (default), or
    ridge_cv with coefficients written into an open_memmap coef.npy (--via ridge_cv)."""
    from numpy.lib.format import open_memmap

    try:
        import fastridge
    except ImportError:
        sys.path.append(str(HERE.parent))
        import fastridge
    import torch

    d = Path(ns.dir)
    f = paths(d)
    doc = {
        "kind": "headline",
        "started_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(
            ([f"PYTHONPATH={os.environ['PYTHONPATH']}"] if os.environ.get("PYTHONPATH") else [])
            + ["python", "bench/headline.py", *sys.argv[1:]]
        ),
        "load_start": load_average(),
        "machine": machine_info(),
    }
    n, p = np.load(f["X"], mmap_mode="r").shape
    t = int(np.prod(np.load(f["Y"], mmap_mode="r").shape[1:]))
    if ns.limit_targets:
        t = min(ns.limit_targets, t)
    model = flop_model(n, p, t, len(ns.alphas), cv=None, solution=ns.solution)
    calibrations = [calibration(model, n)]  # (and one after the solve)
    if ns.via == "cli":
        if ns.limit_targets:
            raise SystemExit("--limit-targets needs --via ridge_cv")
        wall, mem, meta, coef, model_dir = solve_cli(ns, doc, f)
        calibrations.append(calibration(model, n))
        alpha = np.load(model_dir / "alpha.npy")
        solve_seconds = sum(v for k, v in meta["timings"].items() if k not in ("read",))
        doc.update(
            problem={
                "n_samples": n,
                "n_features": p,
                "n_targets": t,
                "target_shape": meta["target_shape"],
            },
            alphas=list(ns.alphas),
            solution=ns.solution,
            via="cli",
            fastridge_commit=doc["machine"]["fastridge"],
            wall_seconds=wall,
            solve_seconds=solve_seconds,
            **_run_fields(
                meta["timings"], meta, mem, alpha, model, wall, (n, p, t, len(ns.alphas))
            ),
            **roofline_fields(model, calibrations, wall, solve_seconds),
        )
        if not ns.skip_check:
            X = np.load(f["X"])
            Y = np.load(f["Y"], mmap_mode="r")
            res = type("Result", (), {"alpha": alpha})
            doc["check"] = spot_check(X, Y, res, coef, ns.alphas, ns.solution)
        return _finish_solve(doc, mem)
    t0 = time.perf_counter()
    X = np.load(f["X"])  # 0.7 GB: in memory
    Y = np.load(f["Y"], mmap_mode="r")  # 6.2 GB: read in target chunks by ridge_cv
    t_full = int(np.prod(Y.shape[1:]))
    if t < t_full:
        # The first `limit_targets` targets only (a view of the memmap, still read
        # in chunks); per-target stages are extrapolated to all targets below.
        Y = Y.reshape(n, t_full)[:, :t]
    # primal: coef.npy (t, p); dual: the kernel-ridge coefficients (t, n) in the same file
    n_coef = p if ns.solution == "primal" else n
    coef = open_memmap(f["coef"], mode="w+", dtype=np.float32, shape=(t, n_coef))
    load_seconds = time.perf_counter() - t0
    alphas = tuple(ns.alphas)
    with MemorySampler() as mem:
        t1 = time.perf_counter()
        res = fastridge.ridge_cv(
            X,
            Y,
            alphas,
            cv=None,
            alpha_per_target=True,
            dtype="float32",
            target_chunk=ns.target_chunk if ns.target_chunk == "auto" else int(ns.target_chunk),
            coef_out=coef,
            solution=ns.solution,
            verbose=True,
        )
        solve_seconds = time.perf_counter() - t1
        t2 = time.perf_counter()
        coef.flush()
        flush_seconds = time.perf_counter() - t2
    wall = time.perf_counter() - t0
    calibrations.append(calibration(model, n))
    doc.update(
        problem={"n_samples": n, "n_features": p, "n_targets": t, "target_shape": Y.shape[1:]},
        alphas=list(alphas),
        solution=ns.solution,
        fastridge_commit=doc["machine"]["fastridge"],
        torch_threads=torch.get_num_threads(),
        load_seconds=load_seconds,
        solve_seconds=solve_seconds,
        flush_seconds=flush_seconds,
        wall_seconds=wall,
        **_run_fields(
            res.timings,
            vars(res),
            mem,
            res.alpha,
            model,
            solve_seconds,
            (n, p, t_full, len(alphas)),
        ),
        **roofline_fields(model, calibrations, wall, solve_seconds),
    )
    if t < t_full:
        # Per-target stages scale with the number of targets; decompose does not.
        per_target = {k: v for k, v in res.timings.items() if k != "decompose"}
        scale = t_full / t
        doc["extrapolation"] = {
            "label": "EXTRAPOLATED from the first targets (decompose measured, the rest "
            "scaled linearly in n_targets); not a measurement of the full run",
            "measured_targets": t,
            "full_targets": t_full,
            "decompose": res.timings["decompose"],
            "per_target_stages_scaled": {k: v * scale for k, v in per_target.items()},
            "solve_seconds": res.timings["decompose"]
            + scale * (solve_seconds - res.timings["decompose"]),
            "flush_seconds": flush_seconds * scale,
        }
    # A few coefficients against a direct float64 solve (sanity, not timed).
    doc["check"] = None if ns.skip_check else spot_check(X, Y, res, coef, alphas, ns.solution)
    return _finish_solve(doc, mem)


def _finish_solve(doc, mem):
    out = HERE / "out" / f"headline-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1, default=str))
    summary = {k: doc[k] for k in ("wall_seconds", "solve_seconds", "timings", "peak_rss")}
    summary["peak_rss_gib"] = doc["peak_rss"] / 2**30
    summary["sampled_peaks_gib"] = {k: v / 2**30 for k, v in mem.peaks.items()}
    print(json.dumps(summary, indent=1))
    print(f"wrote {out}")
    return doc


def spot_check(X, Y, res, coef, alphas, solution="primal", n_check=4) -> dict:
    """Coefficients of a few targets vs a float64 normal-equation solve (dual form).

    With the chosen alpha a: w = Xc^T (Xc Xc^T + a I)^-1 (y - mean y) (for a dual
    solve, the stored row is c = (Xc Xc^T + a I)^-1 (y - mean y) and w = Xc^T c).
    Relative max difference per target; float32 end to end should give ~1e-4 or
    better.
    """
    n, p = X.shape
    t = res.alpha.shape[0]
    idx = np.linspace(0, t - 1, n_check).astype(int)
    Xc = X.astype(np.float64)
    Xc -= Xc.mean(axis=0)
    K = Xc @ Xc.T
    Y2 = Y.reshape(n, t)
    diffs = []
    for i in idx:
        y = np.asarray(Y2[:, i], dtype=np.float64)
        y = y - y.mean()
        a = float(res.alpha[i])
        w = Xc.T @ np.linalg.solve(K + a * np.eye(n), y)
        got = coef[i] if solution == "primal" else Xc.T @ np.asarray(coef[i], np.float64)
        diffs.append(float(np.abs(got - w).max() / np.abs(w).max()))
    return {"targets": idx.tolist(), "coef_max_rel_diff": diffs}


def clean(ns):
    for path in paths(Path(ns.dir)).values():
        if path.exists():
            path.unlink()
            print(f"removed {path}")
    model_dir = Path(ns.dir) / "model"
    if model_dir.exists():
        shutil.rmtree(model_dir)
        print(f"removed {model_dir}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("step", choices=["generate", "solve", "clean", "all"])
    dims = _problems.SIZES["headline"]
    parser.add_argument("--n-samples", type=int, default=dims["n_samples"])
    parser.add_argument("--n-features", type=int, default=dims["n_features"])
    parser.add_argument("--n-targets", type=int, default=dims["n_targets"])
    parser.add_argument("--alphas", type=float, nargs="+", default=list(_problems.ALPHAS_3))
    parser.add_argument("--target-chunk", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dir", default=str(DEFAULT_DIR))
    parser.add_argument("--keep", action="store_true", help="with 'all': keep the .npy files")
    parser.add_argument("--skip-check", action="store_true", help="no float64 spot check")
    parser.add_argument(
        "--via",
        choices=["cli", "ridge_cv"],
        default="cli",
        help="cli: `fastridge solve` into a model directory (default); ridge_cv: the "
        "function with an open_memmap coef.npy (needed for --limit-targets)",
    )
    parser.add_argument(
        "--solution",
        choices=["primal", "dual"],
        default="primal",
        help="primal coef (t, p) or kernel-ridge dual coefficients (t, n) in coef.npy",
    )
    parser.add_argument(
        "--limit-targets",
        type=int,
        default=None,
        help="solve: only the first N targets (times of the rest extrapolated, labelled)",
    )
    ns = parser.parse_args(argv)
    if ns.step == "generate":
        generate(ns)
    elif ns.step == "solve":
        solve(ns)
    elif ns.step == "clean":
        clean(ns)
    else:
        base = [sys.executable, str(Path(__file__).resolve())]
        given = argv if argv is not None else sys.argv[1:]
        rest = [a for a in given if a not in ("all", "--keep")]
        if not paths(Path(ns.dir))["Y"].exists():
            subprocess.run([*base, "generate", *rest], check=True)
        subprocess.run([*base, "solve", *rest], check=True)
        if not ns.keep:
            clean(ns)


if __name__ == "__main__":
    main()
