"""Benchmark runner: every solver on the same generated problem, each in its own process.

Usage (from the repository root; PYTHONPATH chooses which fastridge is measured):

    PYTHONPATH=/work/main python bench/run.py suite --sizes S M --alphas 3 6
    PYTHONPATH=/work/main python bench/run.py sweep --kind t
    python bench/run.py report bench/out/suite-*.json     # markdown table again
    python bench/run.py plot bench/out/sweep-*.json       # PNG plots again

Each (problem, solver) runs in a fresh subprocess (bench/_worker.py) so its
peak RSS (ru_maxrss) is its own. Problems are generated once (seeded, float64,
then cast) and cached as .npy under bench/out/data/, so every solver sees the
same numbers. The GEMM and eigh rates that define the roofline are measured in
the same run, in their own subprocess, at the problem's shapes.

Output: bench/out/<kind>-<UTC time>.json (machine, calibration, every run, the
agreement with the reference solver) and a .md table next to it.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(1, str(HERE))
import _problems  # noqa: E402
from _flops import flop_model, roofline  # noqa: E402
from _machine import load_average, machine_info  # noqa: E402
from _targets import speed_ratio  # noqa: E402

OUT = HERE / "out"
DATA = OUT / "data"
N_SAMPLED_TARGETS = 256  # targets whose coefficients are compared across solvers

_KFOLD = {"cv": 5, "extra": {"scoring": "neg_mean_squared_error"}}

# name -> (solver, params, input dtype, cv scheme). The scheme picks the reference
# for the agreement check: "loo" and "gcv" against scikit-learn's exact LOO,
# "kfold5" against himalaya's RidgeCV (numpy backend, same KFold(5) folds).
CONFIGS = {
    "fastridge-loo-f32": ("fastridge", {"cv": None, "dtype": "float32"}, "float32", "loo"),
    "fastridge-loo-f64": ("fastridge", {"cv": None, "dtype": "float64"}, "float64", "loo"),
    "fastridge-gcv-f32": ("fastridge", {"cv": "gcv", "dtype": "float32"}, "float32", "gcv"),
    "fastridge-gcv-f64": ("fastridge", {"cv": "gcv", "dtype": "float64"}, "float64", "gcv"),
    # Fold scores as himalaya's default (mean over folds of the MSE); fastridge's
    # default for folds is R^2, like scikit-learn's RidgeCV(cv=k).
    "fastridge-kfold5-f32": ("fastridge", _KFOLD | {"dtype": "float32"}, "float32", "kfold5"),
    "fastridge-kfold5-f64": ("fastridge", _KFOLD | {"dtype": "float64"}, "float64", "kfold5"),
    # solution="dual": kernel-ridge coefficients, what himalaya's KernelRidgeCV returns
    "fastridge-loo-f32-dual": (
        "fastridge",
        {"cv": None, "dtype": "float32", "extra": {"solution": "dual"}},
        "float32",
        "loo",
    ),
    "fastridge-kfold5-f32-dual": (
        "fastridge",
        {"cv": 5, "dtype": "float32", "extra": _KFOLD["extra"] | {"solution": "dual"}},
        "float32",
        "kfold5",
    ),
    "sklearn-loo-f64": ("sklearn", {}, "float64", "loo"),
    "himalaya-ridge-numpy-f32": ("himalaya_ridge", {"backend": "numpy"}, "float32", "kfold5"),
    "himalaya-ridge-torch-f32": ("himalaya_ridge", {"backend": "torch"}, "float32", "kfold5"),
    "himalaya-kernel-numpy-f32": ("himalaya_kernel", {"backend": "numpy"}, "float32", "kfold5"),
    "himalaya-kernel-torch-f32": ("himalaya_kernel", {"backend": "torch"}, "float32", "kfold5"),
    # KernelRidgeCV then its get_primal_coef(), timed: the same output as
    # fastridge's primal fit (KernelRidgeCV alone returns dual coefficients only)
    "himalaya-kernel-primal-torch-f32": (
        "himalaya_kernel_primal",
        {"backend": "torch"},
        "float32",
        "kfold5",
    ),
}
# K-fold: the first himalaya config that ran (all use KFold(5) without shuffling).
REFERENCE = {
    "loo": ["sklearn-loo-f64"],
    "gcv": ["sklearn-loo-f64"],
    "kfold5": [
        "himalaya-ridge-numpy-f32",
        "himalaya-kernel-numpy-f32",
        "himalaya-kernel-torch-f32",
        "himalaya-ridge-torch-f32",
    ],
}
DEFAULT_SOLVERS = list(CONFIGS)


def _first_touch(cal: dict) -> str:
    """The calibration's first-touch rates of new memory, as a sentence part."""
    ft = cal.get("first_touch")
    if not ft:
        return ""
    r = ft["gb_per_s"]
    hint = {True: "huge pages; ", False: "its hint off; "}.get(ft.get("numpy_hugepage_hint"), "")
    plain = f", {r['plain_pages']:.2f} GB/s in plain pages" if "plain_pages" in r else ""
    return (
        f"; first touch of {ft['bytes'] / 2**30:.2f} GiB of new memory {r['fresh']:.2f} GB/s "
        f"in numpy's ({hint}{r['just_freed']:.1f} GB/s right after freeing it){plain}"
    )


def coef_first_touch(rec: dict, cal: dict) -> tuple[float, float] | None:
    """(GiB, seconds) of the primal coefficients' first touch, estimated: the refit
    GEMM writes them into new memory (they are returned), whose pages this VM backs
    at about the calibration's plain-page rate (torch's allocations are plain
    pages). The flop model counts none of it. None without that calibration, and
    for dual solutions, whose coefficients are the residual buffers of the cv
    stage, touched there."""
    rate = ((cal or {}).get("first_touch") or {}).get("gb_per_s", {}).get("plain_pages")
    primal = _solution_of(rec["config"]) == "primal"
    if not rate or not primal or "refit" not in (rec.get("timings") or {}):
        return None
    size = 8 if rec["dtype"] == "float64" else 4
    nbytes = float(rec["n_features"]) * rec["n_targets"] * size
    return nbytes / 2**30, nbytes / (rate * 1e9)


def _by_library(rec: dict, key: str = "gflops", unit: str = "") -> str:
    """'torch 112, numpy 182' from a calibration record (the faster one is used)."""
    libs = rec.get("by_library")
    if not libs:  # a calibration from before both libraries were measured
        return "torch only"
    return ", ".join(f"{lib} {v[key]:.{2 if unit else 0}f}{unit}" for lib, v in libs.items())


def with_probes(cal: dict, rec: dict) -> dict:
    """The calibration with each GEMM rate raised to the fastest of the run's own
    probes (taken in the solver's process before and between its fits): this
    VM's rate swings within minutes (e.g. an S calibration at 175 GFLOP/s
    float32 and fits that ran as if at ~400), and the roofline must be what the
    machine could do while the fits ran, never less."""
    samples = rec.get("gemm_samples") or []
    if not samples:
        return cal
    cal = copy.deepcopy(cal)
    for dtype in ("float32", "float64"):
        g = cal["gemm"][dtype]
        g["gflops"] = max(g["gflops"], max(s[dtype] for s in samples))
    return cal


def apply_model(rec: dict, cal: dict) -> None:
    """Model flops, GFLOP/s and roofline of one run record, from the flop model and
    the calibration of its problem, raised by the run's own GEMM probes
    (`with_probes`; also used by `report --remodel`)."""
    cal = with_probes(cal, rec)
    rec["gemm_gflops_used"] = {d: cal["gemm"][d]["gflops"] for d in ("float32", "float64")}
    config = rec["config"]
    solution = _solution_of(config)
    n, p, t = rec["n_samples"], rec["n_features"], rec["n_targets"]
    model = flop_model(n, p, t, len(rec["alphas"]), cv=_cv_of(config), solution=solution)
    rec["model_gflop"] = model["gemm_flops"] / 1e9
    if rec.get("ok"):
        rec["gflops"] = model["gemm_flops"] / rec["wall"] / 1e9
        dtype = "float64" if rec["dtype"] == "float64" else "float32"
        rec["roofline"] = roofline(model, cal, dtype)
        rec["roofline_fraction"] = rec["roofline"]["total"] / rec["wall"]


def _solution_of(config: str) -> str:
    return CONFIGS[config][1].get("extra", {}).get("solution", "primal")


def _cv_of(config: str):
    return {"loo": None, "gcv": "gcv", "kfold5": 5}[CONFIGS[config][3]]


def estimated_peak_bytes(config, n, p, t, n_alphas) -> int:
    """Rough peak memory of a solver, to skip runs that cannot fit (stated as such).

    scikit-learn (float64): about five p x t float64 arrays plus X and its
    centred copy: 5 * 8 p t + 16 n p + 0.3 GiB is a little above the peaks measured at S
    (1.54 GiB) and M (6.28 GiB) on this machine. himalaya:
    X, Y, per-fold predictions for every alpha and the p x t (or n x t) result.
    fastridge: X, Y, the p x t coefficients and a 1 GiB chunk budget.
    """
    solver, _, dtype, _ = CONFIGS[config]
    item = 8 if dtype == "float64" else 4
    if solver == "sklearn":
        return 8 * (2 * n * p + 5 * p * t) + (3 << 28)
    if solver.startswith("himalaya"):
        return item * (2 * n * p + 3 * n * t + n_alphas * n * t + p * t)
    return item * (n * p + n * t + p * t) + 8 * n * n * 3 + (1 << 30)


def mem_available() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def problem_files(n, p, t, seed=0) -> dict:
    """Generate (once) and cache X, Y of a problem in float32 and float64."""
    DATA.mkdir(parents=True, exist_ok=True)
    stem = DATA / f"n{n}_p{p}_t{t}_s{seed}"
    files = {d: (f"{stem}_X_{d}.npy", f"{stem}_Y_{d}.npy") for d in ("float32", "float64")}
    if not all(os.path.exists(f) for pair in files.values() for f in pair):
        # In a child process: the parent stays small while solvers run.
        argv = ["_generate", str(n), str(p), str(t), str(seed), str(stem)]
        subprocess.run([sys.executable, str(HERE / "run.py"), *argv], check=True)
    return files


def _generate(n, p, t, seed, stem):
    X, Y = _problems.make_problem(n, p, t, seed, np.float64)
    np.save(f"{stem}_X_float64.npy", X)
    np.save(f"{stem}_Y_float64.npy", Y)
    np.save(f"{stem}_X_float32.npy", X.astype(np.float32))
    np.save(f"{stem}_Y_float32.npy", Y.astype(np.float32))


def run_child(spec: dict, timeout: float) -> dict:
    """Run one solver in its own process; returns its result dict (or why it failed)."""
    tag = spec["prefix"]
    spec_path, result_path = tag + "_spec.json", tag + "_result.json"
    with open(spec_path, "w") as f:
        json.dump(spec, f)
    t = time.perf_counter()
    try:
        proc = subprocess.run(
            [sys.executable, str(HERE / "_worker.py"), spec_path, result_path],
            timeout=timeout,
            capture_output=True,
            text=True,
        )
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": f"timeout after {timeout:.0f}s", "spec": spec}
    elapsed = time.perf_counter() - t
    if not os.path.exists(result_path):
        return {
            "ok": False,
            "error": f"worker died (exit {proc.returncode}): {proc.stderr[-2000:]}",
            "spec": spec,
        }
    with open(result_path) as f:
        result = json.load(f)
    result["process_seconds"] = elapsed
    if not result.get("ok"):
        result["stderr"] = proc.stderr[-2000:]
    return result


def calibrate_child(n, p, m, timeout=900) -> dict:
    """GEMM and eigh rates (bench/_machine.calibrate) measured in a fresh process."""
    argv = [sys.executable, str(HERE / "run.py"), "_calibrate", str(n), str(p), str(m)]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def probe_kfold() -> str | None:
    """None if FastRidgeCV(cv=5) fits a tiny problem, else the error text."""
    argv = [sys.executable, str(HERE / "run.py"), "_probe"]
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode == 0:
        return None
    return proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "failed"


def _probe():
    try:
        import fastridge
    except ImportError:
        sys.path.append(str(HERE.parent))
        import fastridge
    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((40, 10)), rng.standard_normal((40, 3))
    fastridge.FastRidgeCV(alphas=(1.0, 10.0), cv=5, alpha_per_target=True).fit(X, Y)


def agreement(result: dict, ref: dict) -> dict:
    """Share of targets with the same alpha, and coefficient differences, vs `ref`."""
    a = np.load(result["alpha_file"])
    b = np.load(ref["alpha_file"])
    same = a == b
    out = {"reference": ref["config"], "same_alpha": float(same.mean()), "n_targets": a.size}
    ca, cb = np.load(result["coef_file"]), np.load(ref["coef_file"])
    idx = np.asarray(result["sample_targets"])
    keep = same[idx]
    if keep.any():
        diff = np.abs(ca[keep] - cb[keep]).max(axis=1)
        scale = np.abs(cb[keep]).max(axis=1)
        rel = diff / np.where(scale > 0, scale, 1.0)
        out["coef_max_rel_diff"] = float(rel.max())
        out["coef_median_rel_diff"] = float(np.median(rel))
        out["coef_compared_targets"] = int(keep.sum())
    return out


def run_problem(name, n, p, t, alphas, configs, args, calibrations, kfold_error) -> list[dict]:
    """All configs on one problem, `args.rounds` times in turn; returns their result
    records (`merge_rounds`)."""
    files = problem_files(n, p, t, args.seed)
    key = f"{n}x{p}"
    if key not in calibrations:
        print(f"  calibrating GEMM/eigh at n={n}, p={p} ...", flush=True)
        calibrations[key] = calibrate_child(n, p, min(n - 1, p))
    cal = calibrations[key]
    sample = np.linspace(0, t - 1, min(t, N_SAMPLED_TARGETS)).astype(int).tolist()
    tag = f"{name}_a{len(alphas)}"
    records = []
    runs = []  # (record, spec) of the configs that run
    for config in configs:
        solver, params, dtype, scheme = CONFIGS[config]
        rec = {"problem": name, "n_samples": n, "n_features": p, "n_targets": t}
        rec.update(config=config, solver=solver, dtype=dtype, scheme=scheme, alphas=list(alphas))
        records.append(rec)
        if scheme == "kfold5" and solver == "fastridge" and kfold_error:
            rec.update(ok=False, skipped=f"FastRidgeCV(cv=5) not available: {kfold_error}")
            print(f"  {config}: skipped (cv=5 not in this fastridge)", flush=True)
            continue
        need = estimated_peak_bytes(config, n, p, t, len(alphas))
        limit = args.mem_fraction * mem_available()
        if need > limit:
            rec.update(
                ok=False,
                skipped=f"estimated peak {need / 2**30:.1f} GiB > {limit / 2**30:.1f} GiB "
                f"({args.mem_fraction:.0%} of available memory)",
            )
            print(f"  {config}: skipped ({rec['skipped']})", flush=True)
            continue
        if config in args.skip_at.get(name, ()):
            rec.update(ok=False, skipped=args.skip_reason.get((name, config), "skipped by plan"))
            continue
        spec = {
            "solver": solver,
            "params": params,
            "X": files[dtype][0],
            "Y": files[dtype][1],
            "alphas": list(alphas),
            "repeats": args.repeats_for(name),
            "warmup": args.warmup,
            "sample_targets": sample,
            "prefix": str(args.run_dir / f"{tag}_{config}"),
            # the calibration's per-alpha shape (see _machine.calibrate)
            "gemm_probe": cal["gemm"]["float32"]["shape"],
        }
        runs.append((rec, spec))

    results = {id(rec): [] for rec, _ in runs}
    for k in range(args.rounds):
        for rec, spec in runs:
            label = rec["config"] + (f" (round {k + 1}/{args.rounds})" if args.rounds > 1 else "")
            print(f"  {label} ...", end=" ", flush=True)
            res = run_child(spec, args.timeout)
            results[id(rec)].append(res)
            if res.get("ok"):
                print(f"{res['wall']:.2f}s  peak {res['peak_rss'] / 2**30:.2f} GiB", flush=True)
            else:
                print(f"FAILED: {res.get('error')}", flush=True)
    for rec, spec in runs:
        res = merge_rounds(results[id(rec)])
        rec.update({k: v for k, v in res.items() if k != "spec"})
        rec["repeats"] = spec["repeats"]
        rec["sample_targets"] = sample
        rec["warmup_kind"] = spec["warmup"]
        apply_model(rec, cal)
        if rec.get("ok"):
            print(
                f"  {rec['config']}: {rec['wall']:.2f}s  peak {rec['peak_rss'] / 2**30:.2f} GiB  "
                f"{rec['roofline_fraction']:.0%} of roofline",
                flush=True,
            )

    # Agreement with the reference of each scheme, when both ran.
    by_config = {r["config"]: r for r in records if r.get("ok")}
    for rec in records:
        if not rec.get("ok"):
            continue
        names = [c for c in REFERENCE[rec["scheme"]] if c in by_config]
        ref_name = names[0] if names else None
        if ref_name is not None and ref_name != rec["config"]:
            ref = dict(by_config[ref_name], config=ref_name)
            rec["agreement"] = agreement(rec, ref)
        if "sklearn-loo-f64" in by_config and rec["config"] != "sklearn-loo-f64":
            rec["speedup_vs_sklearn"] = speed_ratio(by_config["sklearn-loo-f64"], rec)
            rec["rss_ratio_vs_sklearn"] = rec["peak_rss"] / by_config["sklearn-loo-f64"]["peak_rss"]
    return records


def merge_rounds(results: list[dict]) -> dict:
    """One result from a config's rounds (each a fresh process timing its repeats):
    every timed fit's wall and their median, each round's median (`round_walls`,
    for `speed_ratio`), the stage timings of the round nearest the median, the
    highest peak RSS and every GEMM probe. A failed round fails the config."""
    if len(results) == 1:
        return results[0]
    failed = [r for r in results if not r.get("ok")]
    if failed:
        return dict(failed[0], rounds=len(results))
    merged = dict(results[-1])  # (its outputs, compared for agreement, are the last written)
    merged["rounds"] = len(results)
    merged["walls"] = [w for r in results for w in r["walls"]]
    merged["wall"] = statistics.median(merged["walls"])
    merged["round_walls"] = [r["wall"] for r in results]
    nearest = min(results, key=lambda r: abs(r["wall"] - merged["wall"]))
    merged["timings"], merged["timings_wall"] = nearest["timings"], nearest["timings_wall"]
    for key in ("peak_rss", "rss_inputs"):
        merged[key] = max(r[key] for r in results)
    merged["gemm_samples"] = [g for r in results for g in r.get("gemm_samples") or []]
    merged["load_start"] = results[0].get("load_start")
    merged["process_seconds"] = sum(r.get("process_seconds", 0.0) for r in results)
    return merged


def _save(path: Path, doc: dict):
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w") as f:
        json.dump(doc, f, indent=1, default=str)
    tmp.replace(path)


class Plan:
    """Options shared by suite and sweep."""

    def __init__(self, ns):
        self.seed = ns.seed
        self.warmup = ns.warmup
        self.timeout = ns.timeout
        self.mem_fraction = ns.mem_fraction
        self.repeats = ns.repeats
        self.repeats_large = ns.repeats_large
        self.rounds = ns.rounds
        self.skip_at = {}
        self.skip_reason = {}
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        self.stamp = stamp
        self.run_dir = OUT / "runs" / stamp
        self.run_dir.mkdir(parents=True, exist_ok=True)

    def repeats_for(self, name: str) -> int:
        return self.repeats_large if name in ("M", "L") else self.repeats


def _header(kind: str, argv) -> dict:
    return {
        "kind": kind,
        "started_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(
            ([f"PYTHONPATH={os.environ['PYTHONPATH']}"] if os.environ.get("PYTHONPATH") else [])
            + ["python", "bench/run.py"]
            + list(argv)
        ),
        "load_start": load_average(),
        "machine": machine_info(),
        "calibration": {},
        "runs": [],
    }


def cmd_suite(ns, argv):
    plan = Plan(ns)
    doc = _header("suite", argv)
    kfold_error = probe_kfold()
    doc["kfold_probe"] = kfold_error or "ok"
    path = OUT / f"suite-{plan.stamp}.json"
    configs = ns.solvers or DEFAULT_SOLVERS
    for size in ns.sizes:
        dims = _problems.SIZES[size]
        n, p, t = dims["n_samples"], dims["n_features"], dims["n_targets"]
        for a in ns.alphas:
            alphas = _problems.ALPHAS_3 if a == 3 else _problems.ALPHAS_6
            print(f"{size} (n={n}, p={p}, t={t}), {a} alphas", flush=True)
            doc["runs"] += run_problem(
                size, n, p, t, alphas, configs, plan, doc["calibration"], kfold_error
            )
            doc["load_end"] = load_average()
            _save(path, doc)
    _finish(path, doc)
    print(f"wrote {path} and {path.with_suffix('.md')}")


def _finish(path, doc) -> None:
    """Stamp the end time, save the JSON and write and print its markdown table."""
    doc["finished_utc"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    _save(path, doc)
    md = markdown(doc)
    path.with_suffix(".md").write_text(md)
    print(md)


SWEEPS = {
    # kind -> (base dims, the varied key, values, alpha grid size)
    "t": (dict(n_samples=1000, n_features=4000), "n_targets", [1000, 2000, 4000, 8000, 16000], 3),
    "n": (dict(n_features=4000, n_targets=4000), "n_samples", [250, 500, 1000, 2000, 4000], 3),
    # more samples than features (encoding models: the covariance form)
    "n_enc": (dict(n_features=1000, n_targets=10000), "n_samples", [2000, 4000, 8000, 16000], 3),
    "alphas": (
        dict(n_samples=1000, n_features=4000, n_targets=4000),
        "n_alphas",
        [1, 2, 3, 6, 12],
        None,
    ),
}


def sweep_alphas(k: int):
    """k alphas, doubling from 1e4 (k=3 gives the headline grid {1e4, 2e4, 4e4})."""
    return tuple(1e4 * 2.0**j for j in range(k))


def cmd_sweep(ns, argv):
    plan = Plan(ns)
    doc = _header("sweep", argv)
    kfold_error = probe_kfold()
    doc["kfold_probe"] = kfold_error or "ok"
    base, key, values, a = SWEEPS[ns.kind]
    doc["sweep"] = {"kind": ns.kind, "key": key, "values": values if not ns.values else ns.values}
    path = OUT / f"sweep-{ns.kind}-{plan.stamp}.json"
    configs = ns.solvers or ["fastridge-loo-f32", "fastridge-loo-f64", "sklearn-loo-f64"]
    for v in doc["sweep"]["values"]:
        dims = dict(base)
        alphas = _problems.ALPHAS_3
        if key == "n_alphas":
            alphas = sweep_alphas(v)
        else:
            dims[key] = v
        n, p, t = dims["n_samples"], dims["n_features"], dims["n_targets"]
        name = f"{ns.kind}={v}"
        print(f"{name} (n={n}, p={p}, t={t}), {len(alphas)} alphas", flush=True)
        recs = run_problem(name, n, p, t, alphas, configs, plan, doc["calibration"], kfold_error)
        for r in recs:
            r["sweep_value"] = v
        doc["runs"] += recs
        doc["load_end"] = load_average()
        _save(path, doc)
    _finish(path, doc)
    plot(doc, path.with_suffix(".png"))
    print(f"wrote {path}, .md and .png")


def _fmt(x, spec):
    return "" if x is None else format(x, spec)


def markdown(doc: dict) -> str:
    """The results table (measured numbers only) plus the context needed to read it."""
    m = doc["machine"]
    fr = m.get("fastridge") or {}
    blas = ", ".join(
        " ".join(filter(None, (b["internal_api"], b["version"], b.get("architecture"))))
        for b in m["numpy_blas"]
    )
    coretype = (m.get("openblas_env") or {}).get("OPENBLAS_CORETYPE")
    if "openblas_env" in m:
        blas += f"; OPENBLAS_CORETYPE={coretype}" if coretype else "; OPENBLAS_CORETYPE unset"
    lines = [
        f"Command: `{doc['command']}`  ",
        f"Started {doc['started_utc']}; load average at start {doc['load_start']}, "
        f"at end {doc.get('load_end')}  ",
        f"Machine: {m['cpu_model']}"
        + (f" ({m['cpu_family_model']})" if "cpu_family_model" in m else "")
        + f", {m['affinity_cpus']} CPUs, {m['mem_total_gib']} GiB; "
        f"torch {m['versions']['torch']} ({m['torch_threads']} threads), "
        f"numpy {m['versions']['numpy']} ({blas}), "
        f"scikit-learn {m['versions']['sklearn']}, himalaya {m['versions']['himalaya']}  ",
        f"fastridge from {fr.get('path')} at commit {fr.get('commit')}; "
        f"FastRidgeCV(cv=5) probe: {doc.get('kfold_probe')}  ",
    ]
    for key, cal in doc["calibration"].items():
        g = cal["gemm"]
        e = cal["eigh"]["float64"]
        lines.append(
            f"Calibration at {key}: GEMM {g['float32']['gflops']:.0f} GFLOP/s float32, "
            f"{g['float64']['gflops']:.0f} float64 (shape {g['float32']['shape']}; "
            f"{_by_library(g['float32'])}); eigh float64 n={e['size']} {e['seconds']:.2f}s "
            f"({_by_library(e, 'seconds', 's')}){_first_touch(cal)}  "
        )
    lines += [
        "",
        "| problem | alphas | solver | wall s | repeats | peak RSS GiB | inputs GiB | "
        "model GFLOP | GFLOP/s | roofline s | % roofline | x vs sklearn | RSS / sklearn | "
        "same alpha (ref) | coef max rel diff | note |",
        "|" + "---|" * 16,
    ]
    for r in doc["runs"]:
        na = len(r["alphas"])
        if not r.get("ok"):
            why = r.get("skipped") or r.get("error", "failed")
            lines.append(
                f"| {r['problem']} | {na} | {r['config']} | | | | | | | | | | | | | {why} |"
            )
            continue
        ag = r.get("agreement") or {}
        same = ""
        if ag:
            ref = "sk" if ag["reference"].startswith("sklearn") else "him"
            same = f"{ag['same_alpha']:.4%} ({ref})"
        note = ""
        if r.get("round_walls"):
            note = f"{len(r['round_walls'])} rounds: " + " / ".join(
                f"{w:.2f}" for w in r["round_walls"]
            )
        elif r["repeats"] == 1:
            note = "1 repeat"
        lines.append(
            "| "
            + " | ".join(
                [
                    r["problem"],
                    str(na),
                    r["config"],
                    f"{r['wall']:.2f}",
                    str(len(r.get("walls") or ()) or r["repeats"]),
                    f"{r['peak_rss'] / 2**30:.2f}",
                    f"{r['rss_inputs'] / 2**30:.2f}",
                    f"{r['model_gflop']:.0f}",
                    f"{r['gflops']:.0f}",
                    f"{r['roofline']['total']:.2f}",
                    f"{r['roofline_fraction']:.0%}",
                    _fmt(r.get("speedup_vs_sklearn"), ".1f"),
                    _fmt(r.get("rss_ratio_vs_sklearn"), ".2f"),
                    same,
                    _fmt(ag.get("coef_max_rel_diff"), ".1e"),
                    note,
                ]
            )
            + " |"
        )
    if any(r.get("round_walls") for r in doc["runs"]):
        lines += [
            "",
            "With rounds (`--rounds`), every solver ran once per round, in turn, each time "
            "in a new process: wall s is the median of all its timed fits, repeats their "
            "count, the note each round's median, and x vs sklearn the median of the "
            "per-round ratios.",
        ]
    stage_lines = []
    for r in doc["runs"]:
        if r.get("ok") and r.get("timings"):
            tm, ideal = r["timings"], r["roofline"]
            parts = []
            stages = ("decompose", "project", "cv", "refit")
            for stage in stages:
                if stage in tm:
                    s = f"{stage} {tm[stage]:.2f}"
                    if stage == "project" and "read" in tm:
                        s += f" (read {tm['read']:.2f})"  # ridge_cv times read inside project
                    if stage in ideal and ideal[stage] > 0:
                        s += f" [ideal {ideal[stage]:.2f}]"
                    cal = doc["calibration"].get(f"{r['n_samples']}x{r['n_features']}")
                    touch = coef_first_touch(r, cal) if stage == "refit" else None
                    if touch:
                        s += (
                            f" [first touch of the {touch[0]:.2f} GiB coefficients ~{touch[1]:.2f}]"
                        )
                    parts.append(s)
            other = r.get("timings_wall", r["wall"]) - sum(tm.get(k, 0.0) for k in stages)
            parts.append(f"outside stages {other:.2f}")
            head = f"| {r['problem']} | {len(r['alphas'])} | {r['config']} | "
            stage_lines.append(head + "; ".join(parts) + " |")
    if stage_lines:
        lines += [
            "",
            "Per-stage seconds (fastridge `timings_`, of the repeat nearest the median; "
            "[ideal] = flop model / rates measured in this run; [first touch] = the "
            "primal coefficients' bytes / the calibration's plain-page first-touch rate, "
            "an estimate of what this VM charges for their new memory, outside the model):",
            "",
            "| problem | alphas | solver | stages |",
            "|---|---|---|---|",
            *stage_lines,
        ]
    rate_lines = []
    for r in doc["runs"]:
        samples = r.get("gemm_samples") or []
        if r.get("ok") and samples and "gemm_gflops_used" in r:
            cells = []
            for d in ("float32", "float64"):
                got = [x[d] for x in samples]
                cells.append(
                    f"{r['gemm_gflops_used'][d]:.0f} ({min(got):.0f}-{max(got):.0f} in "
                    f"{len(got)} probes)"
                )
            rate_lines.append(f"| {r['problem']} | {r['config']} | " + " | ".join(cells) + " |")
    if rate_lines:
        lines += [
            "",
            "GEMM GFLOP/s behind each roofline: the larger of the calibration above and "
            "the run's own probes (scipy, the calibration's shape, fastest of 3, taken in "
            "the solver's process before its warm-up and after each timed fit):",
            "",
            "| problem | solver | float32 used (probes) | float64 used (probes) |",
            "|---|---|---|---|",
            *rate_lines,
        ]
    return "\n".join(lines) + "\n"


def plot(doc: dict, path: Path):
    """Wall time against the swept quantity, one line per solver, plus the roofline."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot (pip install matplotlib)")
        return
    key = doc["sweep"]["key"]
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    configs = sorted({r["config"] for r in doc["runs"]})
    for config in configs:
        runs = [r for r in doc["runs"] if r["config"] == config and r.get("ok")]
        pts = [(r["sweep_value"], r["wall"]) for r in runs]
        if pts:
            xs, ys = zip(*sorted(pts), strict=True)
            ax.plot(xs, ys, "o-", label=config)
    roof = {}
    for r in doc["runs"]:
        if r.get("ok") and r["config"] == "fastridge-loo-f32":
            roof[r["sweep_value"]] = r["roofline"]["total"]
    if roof:
        xs = sorted(roof)
        ax.plot(xs, [roof[x] for x in xs], "k--", label="roofline (float32 flop model)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(key)
    ax.set_ylabel("wall time (s)")
    ax.set_title(f"cost vs {key} (load at start {doc['load_start']})", fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"wrote {path}")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)

    def common(p):
        p.add_argument("--solvers", nargs="*", choices=list(CONFIGS), default=None)
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--repeats", type=int, default=3, help="timed repeats (median)")
        p.add_argument("--repeats-large", type=int, default=1, help="repeats at M and L")
        p.add_argument(
            "--rounds",
            type=int,
            default=1,
            help="run every solver this many times in turn, each in a new process; "
            "speed ratios are then the median of the per-round ratios",
        )
        p.add_argument("--warmup", choices=["subset", "full", "none"], default="subset")
        p.add_argument("--timeout", type=float, default=1800.0, help="seconds per solver")
        p.add_argument("--mem-fraction", type=float, default=0.85)

    s = sub.add_parser("suite", help="sizes x alpha grids x solvers")
    s.add_argument("--sizes", nargs="+", default=["S", "M"], choices=list(_problems.SIZES))
    s.add_argument("--alphas", nargs="+", type=int, default=[3, 6], choices=[3, 6])
    common(s)
    w = sub.add_parser("sweep", help="how cost grows with t, n or the number of alphas")
    w.add_argument("--kind", choices=list(SWEEPS), required=True)
    w.add_argument("--values", nargs="*", type=int, default=None)
    common(w)
    r = sub.add_parser("report", help="markdown table of a result JSON")
    r.add_argument("json")
    r.add_argument(
        "--remodel",
        action="store_true",
        help="recompute model flops and roofline with the current flop model (same calibration)",
    )
    pl = sub.add_parser("plot", help="PNG plot of a sweep JSON")
    pl.add_argument("json")
    if argv and argv[0] == "_generate":  # internal: run.py generates problems in a child
        n, p, t, seed = (int(x) for x in argv[1:5])
        return _generate(n, p, t, seed, argv[5])
    if argv and argv[0] == "_calibrate":  # internal: rates in a child
        from _machine import calibrate

        print(json.dumps(calibrate(*(int(x) for x in argv[1:4]))))
        return None
    if argv and argv[0] == "_probe":  # internal: does FastRidgeCV(cv=5) work?
        return _probe()
    ns = parser.parse_args(argv)

    if ns.cmd == "suite":
        cmd_suite(ns, argv)
    elif ns.cmd == "sweep":
        cmd_sweep(ns, argv)
    elif ns.cmd == "report":
        doc = json.loads(Path(ns.json).read_text())
        if ns.remodel:
            for rec in doc["runs"]:
                cal = doc["calibration"].get(f"{rec['n_samples']}x{rec['n_features']}")
                if cal is not None:
                    apply_model(rec, cal)
            doc["remodelled"] = "model flops and roofline recomputed by `report --remodel`"
        print(markdown(doc))
    elif ns.cmd == "plot":
        plot(json.loads(Path(ns.json).read_text()), Path(ns.json).with_suffix(".png"))


if __name__ == "__main__":
    main()
