"""What machine and software a benchmark ran on, and how fast its GEMM and eigh are.

The GEMM and eigh rates are measured in the same run as the solvers (in their
own subprocess), on shapes like the solvers', so the roofline is this machine
at this moment (other processes included), not a datasheet number.
"""

from __future__ import annotations

import os
import platform
import resource
import statistics
import subprocess
import time
from pathlib import Path

import numpy as np


def peak_rss_bytes() -> int:
    """This process's peak resident set size (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def current_rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _cpuinfo(key: str) -> str | None:
    """The first value of field `key` (an exact field name) in /proc/cpuinfo, or None."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                name, _, value = line.partition(":")
                if name.strip() == key:
                    return value.strip()
    except OSError:
        pass
    return None


def cpu_model() -> str:
    return _cpuinfo("model name") or platform.processor() or "unknown"


def cpu_family_model() -> str:
    """'family 26, model 2' from /proc/cpuinfo (AMD Zen 4 is family 25, Zen 5 family 26)."""
    return f"family {_cpuinfo('cpu family') or '?'}, model {_cpuinfo('model') or '?'}"


def cpu_flags() -> list[str]:
    flags = (_cpuinfo("flags") or "").split()
    return sorted(f for f in flags if f.startswith(("avx", "fma")))


def mem_total_bytes() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return 0


def git_commit(path) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(path), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        dirty = subprocess.run(
            ["git", "-C", str(path), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def _version(name):
    try:
        module = __import__(name)
        return getattr(module, "__version__", "unknown")
    except Exception:  # noqa: BLE001 - a missing optional peer is recorded, not fatal
        return None


def machine_info() -> dict:
    """CPU, cores, memory, BLAS and library versions (JSON-serialisable)."""
    import numpy as np
    import torch

    info = {
        "cpu_model": cpu_model(),
        "cpu_family_model": cpu_family_model(),
        "cpu_flags": cpu_flags(),
        # set on some machines for old OpenBLAS builds; they choose numpy's GEMM kernels
        "openblas_env": {k: os.environ.get(k) for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")},
        "logical_cpus": os.cpu_count(),
        "affinity_cpus": len(os.sched_getaffinity(0)),
        "mem_total_gib": round(mem_total_bytes() / 2**30, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch_threads": torch.get_num_threads(),
        "versions": {
            name: _version(name)
            for name in ("numpy", "scipy", "torch", "sklearn", "himalaya", "threadpoolctl")
        },
        "torch_config": torch.__config__.show(),
        "numpy_config": None,
    }
    try:
        from threadpoolctl import threadpool_info

        info["threadpools"] = threadpool_info()
    except ImportError:
        info["threadpools"] = None
    try:
        import fastridge

        where = Path(fastridge.__file__).resolve().parent.parent
        info["fastridge"] = {
            "path": str(where),
            "commit": git_commit(where),
            "version": fastridge.__version__,
        }
    except ImportError:
        info["fastridge"] = None
    info["numpy_blas"] = [
        {k: p.get(k) for k in ("internal_api", "version", "num_threads", "architecture")}
        for p in (info["threadpools"] or [])
        if p.get("user_api") == "blas"
    ]
    del np
    return info


def _best_time(fn, repeats: int, torch_threads: int | None = None) -> tuple[float, float]:
    """(fastest, median) seconds of `repeats` calls after one warm-up call, with
    torch's intra-op threads set to `torch_threads` meanwhile (None: unchanged).

    The roofline uses the fastest: it is what the machine can do, and on a
    shared machine the slower repeats measure the neighbours.
    """
    import torch

    saved = torch.get_num_threads()
    if torch_threads is not None:
        torch.set_num_threads(torch_threads)
    try:
        fn()  # warm-up (thread pools, page faults of the output)
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
    finally:
        torch.set_num_threads(saved)
    return min(times), statistics.median(times)


def gemm_rate(m: int, k: int, n: int, dtype: str, repeats: int = 5) -> dict:
    """GFLOP/s of a CPU (m, k) @ (k, n) GEMM in `dtype` (fastest of `repeats`), in
    torch, numpy and scipy (each may bring its own BLAS); the machine's rate is
    the fastest library (fastridge routes CPU GEMMs to scipy's OpenBLAS where
    torch's BLAS is slower, see the README)."""
    import torch
    from scipy.linalg import blas

    tdtype = getattr(torch, dtype)
    gen = torch.Generator().manual_seed(0)
    A = torch.randn(m, k, generator=gen, dtype=tdtype)
    B = torch.randn(k, n, generator=gen, dtype=tdtype)
    C = torch.empty(m, n, dtype=tdtype)
    An, Bn, Cn = A.numpy(), B.numpy(), C.numpy()
    flops = 2.0 * m * k * n
    gemm = blas.sgemm if dtype == "float32" else blas.dgemm
    by_library = {}
    for lib, f in (
        ("torch", lambda: torch.mm(A, B, out=C)),
        ("numpy", lambda: np.matmul(An, Bn, out=Cn)),
        # row-major C = A B is column-major C^T = B^T A^T, written in place
        ("scipy", lambda: gemm(1.0, Bn.T, An.T, c=Cn.T, overwrite_c=1)),
    ):
        # numpy's BLAS is timed with torch on one thread, as fastridge runs it
        # (fastridge._backend.cpu_threads): torch's idle OpenMP workers keep
        # spinning after its own GEMMs and took cores from OpenBLAS here (S-size
        # calibrations read 96-120 GFLOP/s float32 instead of ~190).
        seconds, median = _best_time(f, repeats, torch_threads=1 if lib != "torch" else None)
        by_library[lib] = {
            "seconds": seconds,
            "median_seconds": median,
            "gflops": flops / seconds / 1e9,
        }
    best = max(by_library, key=lambda lib: by_library[lib]["gflops"])
    return {"shape": [m, k, n], "dtype": dtype, "library": best, **by_library[best],
            "by_library": by_library}  # fmt: skip


def eigh_time(size: int, dtype: str, repeats: int = 2) -> dict:
    """Seconds of a symmetric eigendecomposition with vectors of a (size, size) SPD
    matrix in `dtype`: torch.linalg.eigh, numpy.linalg.eigh and scipy.linalg.eigh
    (divide and conquer, as fastridge), the fastest.

    The rate is reported as 9 size**3 flops / seconds, the usual operation
    count for tridiagonal reduction + divide and conquer with vectors.
    """
    import scipy.linalg
    import torch

    tdtype = getattr(torch, dtype)
    gen = torch.Generator().manual_seed(0)
    A = torch.randn(size, size + 16, generator=gen, dtype=tdtype)
    S = A @ A.T
    Sn = S.numpy()
    by_library = {}
    for lib, f in (
        ("torch", lambda: torch.linalg.eigh(S)),
        ("numpy", lambda: np.linalg.eigh(Sn)),
        ("scipy", lambda: scipy.linalg.eigh(Sn, driver="evd", check_finite=False)),
    ):
        # numpy and scipy with torch on one thread, as in gemm_rate
        seconds, median = _best_time(f, repeats, torch_threads=1 if lib != "torch" else None)
        by_library[lib] = {"seconds": seconds, "median_seconds": median,
                           "gflops": 9.0 * size**3 / seconds / 1e9}  # fmt: skip
    best = min(by_library, key=lambda lib: by_library[lib]["seconds"])
    return {"size": size, "dtype": dtype, "library": best, **by_library[best],
            "by_library": by_library}  # fmt: skip


def first_touch_rate(n_bytes: int = 256 << 20) -> dict:
    """GB/s of writing one byte per page into `n_bytes` of new memory: in numpy's
    memory (madvised for transparent huge pages when numpy's hint is on, as for
    every large numpy array), once more right after freeing it, and in torch's
    memory (plain pages, as fastridge's large host arrays: `_backend.host_empty`).

    Why: on this project's VMs a huge page comes from the free 2 MiB blocks that
    the guest has handed back to the host, and its first touch ran at ~0.1 GB/s
    in sessions 7 and 8, while plain pages came from smaller free blocks at
    several GB/s (until those run out); memory freed a moment ago came back fast
    either way. Every solver pays this for its fresh arrays, so a run records
    the state it met.
    """
    import torch

    page = 4096
    rates = {}
    for name in ("fresh", "just_freed", "plain_pages"):
        t = time.perf_counter()
        if name == "plain_pages":
            a = torch.empty(n_bytes, dtype=torch.uint8).numpy()
        else:
            a = np.empty(n_bytes, dtype=np.uint8)
        a[::page] = 1
        rates[name] = n_bytes / (time.perf_counter() - t) / 1e9
        del a
        if name == "just_freed":
            time.sleep(3)  # (memory freed 2-3 s ago is handed back to the host)
    from numpy._core.multiarray import _get_madvise_hugepage

    hint = bool(_get_madvise_hugepage())
    return {"bytes": n_bytes, "gb_per_s": rates, "numpy_hugepage_hint": hint}


def calibrate(
    n_samples: int,
    n_features: int,
    eigh_size: int,
    eigh_max: int = 4000,
    probes: bool = True,
    eigh_dtypes: tuple = ("float64", "float32"),
) -> dict:
    """GEMM rates at the shapes the solver runs and the eigh time at its size.

    GEMM: (n_samples, n_samples) @ (n_samples, 2048), the per-alpha residual
    shape, in float32 and float64; with `probes`, also the Gram shape (n, p) @
    (p, n) in float64 and the first-touch rate of fresh memory (~10 s more at
    the headline size). eigh: measured at min(eigh_size, eigh_max) in each of
    `eigh_dtypes`; above eigh_max the time is extrapolated as size**3 (stated in
    the result). eigh_size 0 (the dual route with few alphas has no eigh)
    records 0 seconds.
    """
    k = min(n_samples, 4096)
    chunk = 2048
    out = {"load_before": load_average()}
    if probes:
        out["first_touch"] = first_touch_rate()
    out["gemm"] = {
        "float32": gemm_rate(k, k, chunk, "float32"),
        "float64": gemm_rate(k, k, chunk, "float64"),
    }
    if probes:
        kf = min(n_features, 8192)
        out["gemm_gram_float64"] = gemm_rate(k, kf, k, "float64", repeats=2)
    measured = min(eigh_size, eigh_max)
    out["eigh"] = {}
    for dtype in eigh_dtypes:
        if not measured:
            out["eigh"][dtype] = {"seconds": 0.0, "size": 1, "seconds_at_size": 0.0}
            continue
        e = eigh_time(measured, dtype, repeats=3 if measured <= 2000 else 1)
        e["extrapolated_to"] = eigh_size
        e["seconds_at_size"] = e["seconds"] * (eigh_size / measured) ** 3
        out["eigh"][dtype] = e
    out["load_after"] = load_average()
    return out
