"""The only module that knows the differences between numpy, torch and cupy.

Inputs may be numpy arrays (memmaps included), torch tensors on any device or
cupy arrays. The solver works on torch tensors; results go back as the kind of
array the user passed, on the same device. cupy is never imported here: cupy
arrays are recognised by their type's module name and converted with DLPack,
so ``import fastridge`` neither imports cupy nor initialises CUDA.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import time
from dataclasses import dataclass

import numpy as np
import torch

_TORCH_FLOATS = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}


def array_kind(a) -> str:
    """Return "torch", "cupy" or "numpy" (anything else is treated as numpy)."""
    if isinstance(a, torch.Tensor):
        return "torch"
    if type(a).__module__.split(".")[0] == "cupy":
        return "cupy"
    return "numpy"


@dataclass(frozen=True)
class OutputKind:
    """How to hand results back: the array library and device of an input."""

    kind: str  # "numpy", "torch" or "cupy"
    device: torch.device

    @classmethod
    def of(cls, a) -> OutputKind:
        kind = array_kind(a)
        if kind == "torch":
            return cls(kind, a.device)
        if kind == "cupy":
            return cls(kind, torch.device("cuda", a.device.id))
        return cls(kind, torch.device("cpu"))

    def wrap(self, t: torch.Tensor):
        """Convert a torch tensor to this kind (numpy: on the host; else on `device`)."""
        if self.kind == "numpy":
            return t.detach().cpu().numpy()
        t = t.detach().to(self.device)
        if self.kind == "torch":
            return t
        import cupy  # only reached when the user passed cupy arrays

        return cupy.from_dlpack(t)


def resolve_device(device, *arrays) -> torch.device:
    """The compute device: explicit, or "auto" = the device of a GPU input, else
    CUDA if available, else CPU."""
    if device is None or device == "auto":
        dev = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
        for a in arrays:
            kind = array_kind(a)
            if kind == "torch" and a.device.type != "cpu":
                dev = a.device
                break
            if kind == "cupy":
                return torch.device("cuda", a.device.id)
    else:
        try:
            dev = torch.device(device)
        except (RuntimeError, TypeError):
            raise ValueError(
                f"device={device!r} is not a device: give 'auto', 'cpu', 'cuda' or 'cuda:k'"
            ) from None
    if dev.type not in ("cpu", "cuda"):  # ('meta' and 'mps' had failed inside torch)
        raise ValueError(f"device {str(dev)!r} is not supported: fastridge runs on cpu and cuda")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} was requested but CUDA is not available")
    return dev


def torch_dtype(dtype) -> torch.dtype:
    """torch dtype for a numpy/torch/str float dtype: float32 or float64, else a
    ValueError naming it (float16 had been computed in, int64 had been a KeyError)."""
    if dtype in (torch.float32, torch.float64):
        return dtype
    try:
        found = _TORCH_FLOATS.get(np.dtype(dtype))
    except TypeError:  # (not a numpy dtype: e.g. torch.bfloat16)
        found = None
    if found is None:
        raise ValueError(f"dtype must be float32 or float64, got {dtype!r}")
    return found


def host_empty(shape, dtype) -> np.ndarray:
    """An uninitialised host array for a large output, as np.empty (any dtype torch
    has: float32 / float64 outputs, and e.g. int64 or bool; numpy's otherwise).

    Allocated by torch rather than numpy: numpy asks the kernel for transparent
    huge pages on large arrays (madvise; NUMPY_MADVISE_HUGEPAGE), and a huge page
    must come from a free 2 MiB block. On this project's VMs those are the blocks
    the guest has handed back to the host (free page reporting), and each one
    costs the host's faults again: measured, 256 MiB touched one byte per page
    took 2.4-3.4 s in numpy's memory and 0.07-0.14 s in torch's (plain pages,
    which the kernel takes from smaller free blocks first). Where the kernel
    compacts memory for a huge page (THP "defrag=madvise") the first touch
    stalls too: filling a fresh 640 MB float32 array took 0.09-1.95 s with
    numpy's hint and 0.30-0.39 s with plain pages.
    """
    tdt = dtype if isinstance(dtype, torch.dtype) else _torch_of_numpy(np.dtype(dtype))
    if tdt is None:
        return np.empty(shape, dtype=dtype)
    return torch.empty(tuple(shape), dtype=tdt).numpy()


def _torch_of_numpy(dt: np.dtype) -> torch.dtype | None:
    """The torch dtype with numpy dtype `dt`'s layout, or None (e.g. byte-swapped)."""
    try:
        return torch.from_numpy(np.empty(0, dtype=dt)).dtype
    except (TypeError, ValueError):
        return None


def host_copy(a, dtype=None) -> np.ndarray:
    """A C-contiguous host copy of array `a`, converted to `dtype` (default: a's), in
    memory from torch's allocator (plain pages: see `host_empty`). Measured on this
    project's VM: the float64 copy of a memory-mapped 8,859 x 20,000 float32 X (the
    headline size) took 10.7-12.2 s through np.array and 0.55-0.82 s this way."""
    a = np.asarray(a)
    out = host_empty(a.shape, a.dtype if dtype is None else dtype)
    np.copyto(out, a, casting="unsafe")
    return out


def as_tensor(a, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """A torch tensor on `device` with `dtype`; no copy when nothing changes.

    cupy arrays are shared through DLPack (zero copy); numpy arrays are wrapped
    with ``torch.from_numpy`` when their layout allows it.
    """
    kind = array_kind(a)
    if kind == "torch":
        t = a
    elif kind == "cupy":
        t = torch.from_dlpack(a)
    else:
        a = np.asarray(a)
        if a.dtype.kind == "f" and a.dtype.itemsize < 4:
            a = host_copy(a, np.float32)  # float16 storage: torch on CPU computes poorly in half
        if not a.flags.writeable:
            # torch warns on read-only buffers (memmaps opened with mode "r"); the
            # chunk is converted to the compute dtype right after, so copy here.
            a = host_copy(a, np.dtype(str(dtype).replace("torch.", "")))
        t = torch.from_numpy(a)
    return t.to(device=device, dtype=dtype)


def shares_memory(t: torch.Tensor, a) -> bool:
    """Whether tensor `t` (e.g. from ``as_tensor(a, ...)``) may share memory with the
    user's array `a`; False means `t` is a private copy that may be overwritten."""
    kind = array_kind(a)
    if kind == "numpy":
        if t.device.type != "cpu":
            return False
        return bool(np.may_share_memory(t.detach().numpy(), np.asarray(a)))
    src = a if kind == "torch" else torch.from_dlpack(a)
    if src.device != t.device:
        return False
    return t.untyped_storage().data_ptr() == src.untyped_storage().data_ptr()


def float_dtype_of(a) -> np.dtype:
    """The numpy float dtype the computation should use for input `a`:
    float32 stays float32, float16 computes in float32, everything else float64."""
    dt = a.dtype
    if isinstance(dt, torch.dtype):
        name = str(dt).replace("torch.", "")
        dt = np.dtype(name) if name != "bfloat16" else np.dtype(np.float32)
    dt = np.dtype(dt)
    if dt == np.float32 or (dt.kind == "f" and dt.itemsize < 4):
        return np.dtype(np.float32)
    return np.dtype(np.float64)


@contextlib.contextmanager
def cpu_threads(n_threads: int | None, device: torch.device | None = None):
    """Temporarily set torch's intra-op CPU threads and the BLAS threads.

    `n_threads` None leaves the BLAS threads as they are. When the CPU GEMMs run
    in scipy's BLAS (`cpu_blas()` "numpy"), torch only does the elementwise passes and
    gets ONE thread: a second torch OpenMP thread competes with OpenBLAS's
    spinning worker for the cores. Measured on the 2-core AMD machine: 87 ms of
    overhead per target chunk with 2 torch threads, 1.9 ms with 1 (n=1000,
    256-target chunks), and the M benchmark ~5% faster. Otherwise torch gets
    `n_threads` (None: unchanged)."""
    on_cpu = device is None or torch.device(device).type == "cpu"
    torch_threads = n_threads
    if on_cpu and cpu_blas() == "numpy":
        torch_threads = 1
    old = torch.get_num_threads()
    if torch_threads is not None:
        torch.set_num_threads(int(torch_threads))
    try:
        if n_threads is None:
            yield
        else:
            from threadpoolctl import threadpool_limits  # a scikit-learn dependency

            with threadpool_limits(limits=int(n_threads), user_api="blas"):
                yield
    finally:
        torch.set_num_threads(old)


# --- CPU linear algebra -----------------------------------------------------
# torch is the engine, but on CPU its BLAS is whatever the wheel links: MKL for
# the official x86 builds, and MKL takes a slow path on non-Intel CPUs. Measured
# side by side on a 2-core AMD EPYC Zen 4: torch.mm ~112 GFLOP/s in float32 where
# numpy's OpenBLAS reached ~182 on the same shapes, a 2000 x 2000 float64 eigh
# 1.5 s against 0.85 s; on a Zen 5: 190-215 against 442-478 GFLOP/s (OpenBLAS's
# AVX-512 kernels), 0.59-0.67 s against 0.41 s. So there, the large CPU GEMMs and the eigh go to
# OpenBLAS through numpy arrays (torch.from_numpy / .numpy() share memory: nothing
# is copied), in scipy's copy of OpenBLAS, where LAPACK runs too (see `_host_gemm`). The rule
# is fixed per machine, not timed, so results are bit-for-bit repeatable across
# runs (a resumed solve must give the bits of an uninterrupted one).
# On CUDA, and for anything else, torch runs. FASTRIDGE_CPU_BLAS=torch|numpy
# overrides the rule.

CPU_BLAS_ENV = "FASTRIDGE_CPU_BLAS"
_cpu_blas: str | None = None


def cpu_blas() -> str:
    """The library that runs CPU GEMMs and eigh in this process: "numpy" or "torch"."""
    global _cpu_blas
    if _cpu_blas is None:
        choice = os.environ.get(CPU_BLAS_ENV, "auto").strip().lower()
        if choice not in ("auto", "numpy", "torch"):
            raise ValueError(f"{CPU_BLAS_ENV} must be auto, numpy or torch, got {choice!r}")
        _cpu_blas = _default_cpu_blas() if choice == "auto" else choice
    return _cpu_blas


def set_cpu_blas(choice: str | None) -> None:
    """Force "numpy" or "torch" for CPU GEMMs and eigh (None: back to the default rule)."""
    global _cpu_blas
    if choice not in (None, "numpy", "torch"):
        raise ValueError(f"cpu blas must be 'numpy', 'torch' or None, got {choice!r}")
    _cpu_blas = choice


def _default_cpu_blas() -> str:
    """numpy when torch's BLAS is MKL on a CPU that is not Intel's, else torch."""
    if not torch.backends.mkl.is_available():
        return "torch"
    return "torch" if _cpu_vendor() in ("GenuineIntel", "") else "numpy"


def _cpu_vendor() -> str:
    """The x86 vendor string ("GenuineIntel", "AuthenticAMD", ...), "" if unknown."""
    return _cpuinfo_field("vendor_id")


def _cpuinfo_field(name: str) -> str:
    """The first value of field `name` in /proc/cpuinfo ("" if unknown)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(name):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


# OpenBLAS core types whose GEMM kernels use AVX-512 (OpenBLAS runs Zen 4 and 5 as SkylakeX).
_AVX512_CORETYPES = {"skylakex", "cooperlake", "sapphirerapids"}


def blas_kernel_warning(architecture=None, cpu_flags=None, environ=None) -> str | None:
    """Why the host BLAS (scipy's OpenBLAS) may run below this CPU's speed, or None.

    OPENBLAS_CORETYPE forces OpenBLAS's kernels (some machines set it for old
    OpenBLAS builds that misdetect new CPUs); forced to an AVX2 type such as
    Haswell on a CPU with AVX-512, a current OpenBLAS runs its GEMMs at about
    half speed. Measured on this project's 2-core AMD EPYC (Zen 5), float32 GEMM
    at (2000 x 2000) @ (2000 x 2048): 237 GFLOP/s with OPENBLAS_CORETYPE=Haswell,
    478 without. Arguments default to this process: scipy's OpenBLAS core type
    (threadpoolctl), /proc/cpuinfo's flags and os.environ.
    """
    environ = os.environ if environ is None else environ
    forced = environ.get("OPENBLAS_CORETYPE")
    if not forced:
        return None
    if cpu_flags is None:
        cpu_flags = _cpuinfo_field("flags").split()
    if "avx512f" not in cpu_flags:
        return None
    if architecture is None:
        architecture = host_blas_architecture()
    if not architecture or architecture.lower() in _AVX512_CORETYPES:
        return None
    return (
        f"OpenBLAS runs its {architecture} kernels (OPENBLAS_CORETYPE={forced}) "
        "on a CPU with AVX-512: its GEMMs may run at about half speed. If this "
        "OpenBLAS build supports the CPU, unset OPENBLAS_CORETYPE (and OPENBLAS_L2_SIZE)."
    )


def host_blas_architecture() -> str:
    """The core type of the OpenBLAS fastridge's host GEMMs and LAPACK run in,
    scipy's ("" if not OpenBLAS or unknown)."""
    try:
        from threadpoolctl import threadpool_info  # a scikit-learn dependency
    except ImportError:
        return ""
    pools = [p for p in threadpool_info() if p.get("internal_api") == "openblas"]
    # scipy's own OpenBLAS first (numpy brings another copy): see `_host_gemm`
    pools.sort(key=lambda p: "scipy" not in p.get("filepath", ""))
    return (pools[0].get("architecture") or "") if pools else ""


def _numpy_path(*tensors: torch.Tensor) -> bool:
    t = tensors[0]
    return (
        t.device.type == "cpu"
        and t.dtype in (torch.float32, torch.float64)
        and all(x.dtype == t.dtype and x.device.type == "cpu" for x in tensors)
        and not any(x.requires_grad for x in tensors)
        and cpu_blas() == "numpy"
    )


def _blas_view(t: torch.Tensor) -> np.ndarray:
    """A numpy view BLAS can take as is (row- or column-major with a leading
    dimension); anything else is copied, as numpy would otherwise fall back to
    its slow non-BLAS loop."""
    if t.dim() == 2 and (t.stride(1) == 1 or t.stride(0) == 1) and min(t.shape) > 0:
        return t.numpy()
    return t.contiguous().numpy()


def mm(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """a @ b for 2-D tensors, into `out` if given (as torch.mm)."""
    numpy_path = _numpy_path(a, b) and (out is None or out.dtype == a.dtype)
    flops = 2.0 * a.shape[0] * a.shape[1] * b.shape[1] if a.device.type == "cpu" else 0.0
    with _probing(flops, numpy_path):
        if not numpy_path:
            if _is_torch_gram(a, b, out):
                return _blocked_gram(a, out)
            return torch.mm(a, b, out=out)
        an, bn = _blas_view(a), _blas_view(b)
        if out is not None and out.dim() == 2 and out.is_contiguous() and out.shape[0] > 0:
            _host_gemm(an, bn, out.numpy())  # row-major out: BLAS writes it directly
            return out
        res = _host_gemm(an, bn, host_empty((a.shape[0], b.shape[1]), an.dtype))
    res = torch.from_numpy(res)
    return res if out is None else out.copy_(res)


GRAM_LEAF = 256  # rows at most of `_blocked_gram`'s diagonal blocks


def _is_torch_gram(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor | None) -> bool:
    """a @ b is a Gram a a^T through torch: b is a's transpose. Of any size and on
    any device: one GEMM of a a^T is not exactly symmetric everywhere (torch's MKL
    on an AMD Zen 5 CPU, float64 at 512 x 37, measured; cuBLAS makes no promise),
    and a mirrored lower triangle is."""
    return (
        b.shape == a.shape[::-1]
        and b.stride() == a.stride()[::-1]
        and b.data_ptr() == a.data_ptr()
        and not a.requires_grad
        and (
            out is None
            or (out.dtype == a.dtype and out.device == a.device and out.shape == (a.shape[0],) * 2)
        )
    )


def _blocked_gram(a: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """a a^T (n, n) from GEMMs of its lower triangle only, then mirrored: torch has
    no syrk, and a full GEMM makes both halves. Exactly symmetric, as syrk's result.

    The rows are halved recursively: the lower-left block of each half is one GEMM,
    the diagonal blocks recurse down to GRAM_LEAF rows, where a full GEMM makes
    both halves of the (small) block; n^2 p + n GRAM_LEAF p flops at most against
    the GEMM's 2 n^2 p. Its large GEMMs run faster than the k(k + 1) / 2 equal
    blocks of ~500 rows before them: float64 with torch's MKL on a 2-core Intel
    Xeon, alternated in one process, 0.92 of their time at 999 x 4000, 0.93 at
    1999 x 8000, 0.90 at 3999 x 20000, 0.89 at 8858 x 20000 (one full GEMM took
    1.3x the blocks' time at 1999 x 8000)."""
    n = a.shape[0]
    out = torch.empty((n, n), dtype=a.dtype, device=a.device) if out is None else out
    _lower_gram(a, out)
    return mirror_lower(out, out)


def _lower_gram(a: torch.Tensor, out: torch.Tensor) -> None:
    """The lower triangle of a a^T into `out` (n, n), a view with unit column stride
    (the upper triangle of blocks above GRAM_LEAF rows is left as it was)."""
    n = a.shape[0]
    if n <= GRAM_LEAF:
        torch.mm(a, a.T, out=out)
        return
    half = n // 2
    torch.mm(a[half:], a[:half].T, out=out[half:, :half])
    _lower_gram(a[:half], out[:half, :half])
    _lower_gram(a[half:], out[half:, half:])


# --- small calls on one BLAS thread ----------------------------------------------
# OpenBLAS's threads meet at barriers, and wait at them by yielding the core: on a
# machine whose cores are busy with other processes, a thread that gave up its
# core waits a scheduler time slice (milliseconds) to get it back, at every
# barrier. A large GEMM meets a few times per call; a small GEMM, and LAPACK's
# blocked factorisations at every block step, many times per flop. Measured on the
# 2-core AMD Zen 4 VM beside a differential fuzz's processes (load average 3-9;
# plain CPU-bound loops did not cause it): a 200 x 200 Cholesky inverse (potrf +
# potri) took 0.84-0.88 s on OpenBLAS's 2 threads and 0.7-0.9 ms on one; a 39 x 39
# one 84-96 ms and 0.03 ms; an S-size K-fold fit 18.6 s, and 1.9 s with
# n_threads=1. torch's CPU LAPACK (OpenMP threads) does the
# same: 160 ms against 1.3 ms at 200 x 200 (its GEMMs did not). So small CPU
# factorisations run on one thread (`one_thread_if`), which an idle machine does
# not notice: there its threads do not pay on them either (a 200 x 200 Cholesky
# inverse 4.4 ms on 2 threads, 0.5 ms on one; 511 x 511 6.9 and 5.5 ms). Small
# GEMMs are another matter: on the idle machine 2 threads ran them 1.7-2.0x
# faster from 2.6e6 flops up (1000 x 200 @ 200 x 200 float64 0.81 ms against 1.62;
# session 31, measured), so they run on one thread only while the cores are busy
# (below; in session 30 all GEMMs under 1e8 flops had, which slowed the K-fold
# makers, 30 such GEMMs in an S fit, to half speed on an idle machine).
SMALL_LAPACK_N = 512  # factorisations of smaller matrices run on one thread
# Large factorisations stall as well when the machine is busy (a 999 x 999 Cholesky
# inverse 2-4 s on 2 threads beside the fuzz, 55 ms on one), but on an idle one
# their threads pay (18 ms against ~33). Large GEMMs share the cores fairly, and
# they tell which case holds: their threads' CPU time per wall second
# (time.process_time) was 0.99-1.01 per thread on the idle machine and 0.45-0.50
# beside the fuzz (measured). So each GEMM of PROBE_FLOPS or more probes
# the machine (`_probing`), and while the last one found it busy, factorisations
# of any size, and GEMMs below PROBE_FLOPS, run on one thread too.
# A library's first threaded GEMM in a process reads low on an idle machine (0.72-0.73
# per thread, and 0.3 s longer: its threads' set-up), so a small GEMM runs first.
PROBE_FLOPS = 1e9  # (~5 ms or more on 2 cores)
BUSY_RATIO = 0.8  # CPU seconds per thread per wall second below which cores are busy
_busy = False  # what the last probe found
_warmed = set()  # the libraries (numpy_path True / False) that have run a threaded GEMM


@functools.lru_cache(maxsize=1)
def _openblas_pools() -> tuple:
    """threadpoolctl's controllers of the OpenBLAS libraries loaded (scipy's and
    numpy's), found once; empty without threadpoolctl (a scikit-learn dependency)."""
    try:
        from scipy.linalg import blas  # noqa: F401 - scipy's OpenBLAS, loaded first
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return ()
    return tuple(ThreadpoolController().select(internal_api="openblas").lib_controllers)


@contextlib.contextmanager
def one_thread_if(small: bool):
    """Run the block's CPU BLAS / LAPACK calls on one thread, OpenBLAS's and torch's,
    when `small` (the previous settings are put back after it; ~4 us each way)."""
    if not small:
        yield
        return
    pools = _openblas_pools()
    saved = [pool.num_threads for pool in pools]
    torch_threads = torch.get_num_threads()
    for pool in pools:
        pool.set_num_threads(1)
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(torch_threads)
        for pool, n in zip(pools, saved, strict=True):
            pool.set_num_threads(n)


def small_factorisation(A: torch.Tensor) -> bool:
    """A factorisation of A (2-D) that runs on one thread: on the CPU, below SMALL_LAPACK_N
    or while the cores are busy."""
    return A.device.type == "cpu" and _one_thread_factorisation(min(A.shape))


def _one_thread_factorisation(n: int) -> bool:
    """A CPU factorisation of n rows runs on one thread (`small_factorisation`)."""
    return _busy or n < SMALL_LAPACK_N


def _one_thread_product(flops: float) -> bool:
    """A host BLAS product of `flops` runs on one thread: below PROBE_FLOPS while the
    cores are busy."""
    return _busy and flops < PROBE_FLOPS


def _blas_threads(numpy_path: bool) -> int:
    """Threads of the library a CPU GEMM runs in: scipy's OpenBLAS, or torch."""
    if numpy_path:
        return max((pool.num_threads for pool in _openblas_pools()), default=1)
    return torch.get_num_threads()


@contextlib.contextmanager
def _probing(flops: float, numpy_path: bool):
    """Time a CPU GEMM of `flops` and, when it is large enough to tell, record whether
    its threads got their cores (`_busy`)."""
    if flops < PROBE_FLOPS:
        yield
        return
    if numpy_path not in _warmed:
        _warmed.add(numpy_path)
        a = torch.ones((400, 400), dtype=torch.float64)  # 1.3e8 flops: threaded
        if numpy_path:
            _host_gemm(a.numpy(), a.numpy(), np.empty((400, 400)))
        else:
            torch.mm(a, a)
    threads = _blas_threads(numpy_path)
    wall, cpu = time.perf_counter(), time.process_time()
    yield
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    global _busy
    _busy = cpu < BUSY_RATIO * threads * wall


# --- one BLAS thread pool -----------------------------------------------------
# numpy and scipy each bring their own OpenBLAS, each with its own worker threads,
# and a pool's workers spin for a while after each call. A GEMM in one library
# right after LAPACK in the other then shares the cores with the spinning
# workers: measured on the 2-core machine, a float32 GEMM at (8000 x 1000) @
# (1000 x 1000) ran at 183-199 GFLOP/s right after scipy's Cholesky inverse
# through numpy, 367-383 through scipy; the Cholesky inverse right after a numpy
# GEMM took 39-112 ms against 13-17 ms. So every host GEMM, like every LAPACK
# call, goes to scipy's BLAS, and no numpy BLAS call runs inside a fit.


def _fortran_operand(m: np.ndarray) -> tuple[np.ndarray, int]:
    """(f, trans) with op(f) = m^T and f in Fortran order (no copy when m is row-
    or column-major; f2py copies anything else)."""
    if m.flags.f_contiguous and not m.flags.c_contiguous:
        return m, 1
    return m.T, 0


def _host_gemm(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> np.ndarray:
    """out = a @ b through scipy's BLAS (gemm; syrk, mirrored, when b is a^T), for
    float32 / float64 arrays, out row-major (n_rows_a, n_cols_b)."""
    from scipy.linalg import blas

    if out.size == 0:
        return out
    if a.shape[1] == 0:
        out[...] = 0
        return out
    single = a.dtype == np.float32
    small = _one_thread_product(2.0 * a.shape[0] * a.shape[1] * b.shape[1])
    # row-major out is out^T in column-major order, and out^T = b^T a^T
    if _is_transpose_of(b, a):
        syrk = blas.ssyrk if single else blas.dsyrk
        f, trans = _fortran_operand(a)  # op(f) = a^T, so a a^T = op(f)^T op(f)
        with one_thread_if(small):
            res = syrk(1.0, f, trans=1 - trans, c=out.T, lower=0, overwrite_c=1)
        _copy_into(res, out)
        whole = torch.from_numpy(out)  # (out^T's upper triangle is out's lower)
        mirror_lower(whole, whole)
        return out
    gemm = blas.sgemm if single else blas.dgemm
    x, tx = _fortran_operand(b)
    y, ty = _fortran_operand(a)
    with one_thread_if(small):
        res = gemm(1.0, x, y, trans_a=tx, trans_b=ty, c=out.T, overwrite_c=1)
    _copy_into(res, out)
    return out


def _is_transpose_of(b: np.ndarray, a: np.ndarray) -> bool:
    """b is a view of a transposed (same memory, same numbers): a @ b is a Gram."""
    return (
        b.shape == a.shape[::-1]
        and b.strides == a.strides[::-1]
        and b.__array_interface__["data"][0] == a.__array_interface__["data"][0]
    )


def _copy_into(res: np.ndarray, out: np.ndarray) -> None:
    """BLAS wrote `res`, out^T in Fortran order: a copy only if f2py could not
    write into out's memory."""
    if res.__array_interface__["data"][0] != out.__array_interface__["data"][0]:
        out[...] = res.T


def addmm(add: torch.Tensor, a: torch.Tensor, b: torch.Tensor, alpha: float = 1.0, out=None):
    """add + alpha * (a @ b) (as torch.addmm with beta=1)."""
    if not _numpy_path(a, b, add):
        return torch.addmm(add, a, b, alpha=alpha, out=out)
    if out is not None and out.data_ptr() == add.data_ptr():
        return out.copy_(addmm(add, a, b, alpha=alpha))  # the product must not overwrite `add`
    prod = mm(a, b, out=out)
    if alpha != 1.0:
        prod.mul_(alpha)
    return prod.add_(add)


def eigh(A: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigenvalues (ascending) and eigenvectors of a symmetric matrix, as torch.linalg.eigh."""
    with one_thread_if(small_factorisation(A)):
        if not _numpy_path(A):
            return torch.linalg.eigh(A)
        from scipy.linalg import eigh as scipy_eigh  # (scipy's BLAS: see `_host_gemm`)

        w, v = scipy_eigh(_blas_view(A), driver="evd", check_finite=False)
    return torch.from_numpy(w), torch.from_numpy(v)


def svd(A: torch.Tensor, full_matrices: bool = False):
    """U, singular values (descending) and V^T of A, as torch.linalg.svd: LAPACK's
    gesdd (divide and conquer) on the CPU, and where it fails to converge, as it
    can on some matrices (numpy's raised on one of a fuzz's 3,000 reference fits),
    gesvd's QR iteration."""
    with one_thread_if(small_factorisation(A)):
        return _svd(A, full_matrices)


def _svd(A: torch.Tensor, full_matrices: bool):
    from numpy.linalg import LinAlgError

    if not _numpy_path(A):
        try:
            return torch.linalg.svd(A, full_matrices=full_matrices)
        except torch.linalg.LinAlgError:
            if A.device.type != "cpu":
                return torch.linalg.svd(A, full_matrices=full_matrices, driver="gesvd")
            return _scipy_svd(A, full_matrices, "gesvd")
    try:
        return _scipy_svd(A, full_matrices, "gesdd")
    except LinAlgError:
        return _scipy_svd(A, full_matrices, "gesvd")


def _scipy_svd(A: torch.Tensor, full_matrices: bool, driver: str):
    """`svd` of a CPU tensor by scipy's LAPACK `driver` (see `_host_gemm`)."""
    from scipy.linalg import svd as scipy_svd

    u, s, vh = scipy_svd(
        _blas_view(A), full_matrices=full_matrices, lapack_driver=driver, check_finite=False
    )
    return torch.from_numpy(u), torch.from_numpy(s), torch.from_numpy(vh)


def cholesky_inverse(A: torch.Tensor) -> torch.Tensor | None:
    """Inverse of a symmetric positive definite float64 matrix by Cholesky (LAPACK
    potrf + potri), or None when A is not numerically positive definite. A is
    overwritten. On the CPU the work is done in A's memory, by scipy (OpenBLAS) on
    the numpy path (see `cpu_blas`), else by torch; on other devices by torch in
    new memory. Only the lower triangle of the result is sure to be the
    inverse's (on the numpy path the rest is left as it was): `mirror_lower`
    makes the whole matrix without a second n x n buffer."""
    with one_thread_if(small_factorisation(A)):
        return _cholesky_inverse(A)


def _cholesky_inverse(A: torch.Tensor) -> torch.Tensor | None:
    if not _numpy_path(A):
        if A.device.type != "cpu" or not A.is_contiguous():
            L, info = torch.linalg.cholesky_ex(A)
            return None if int(info) != 0 else torch.cholesky_inverse(L)
        # A^T is the same symmetric matrix in column-major order, the layout
        # LAPACK works in, so torch factorises and inverts it in place: no n x n
        # copies (measured at n = 6000: 2.3 s and no new memory, against 3.3 s
        # and two new 275 MB arrays for cholesky_ex(A) then cholesky_inverse(L))
        if not _torch_cholesky_in_place(A):
            return None
        torch.cholesky_inverse(A.mT, out=A.mT)
        return A
    from scipy.linalg import lapack

    a = _blas_view(A).T  # Fortran order, the same symmetric matrix: LAPACK works in place
    c, info = lapack.dpotrf(a, lower=1, clean=0, overwrite_a=1)
    if info != 0:
        return None
    inv, info = lapack.dpotri(c, lower=1, overwrite_c=1)
    if info != 0:
        return None
    return torch.from_numpy(inv)  # potri fills the lower triangle only


SYMV_BLOCK = 512  # rows and columns per block of `lower_symv` through torch
MIRROR_BLOCK = 128  # rows and columns per block of `mirror_lower` (at n = 2000 one maker
# took 7.7-8.8 ms with 128, 9.9-12.9 with 256, 12.8 with 64, 14.6 with 512)


def _host_or_device(lower: torch.Tensor, out: torch.Tensor | None = None):
    """(arrays, ops) for the blocked passes over a lower triangle below. On the
    CPU through numpy, on the calling thread whatever torch's thread count:
    right after LAPACK, OpenBLAS's threads still spin for a while, and torch ops
    on two threads on a 2-core machine then wait for the core they share
    (measured at n = 2000: 4-100 ms a call that way, 7 ms in numpy)."""
    cpu = lower.device.type == "cpu" and (out is None or out.device.type == "cpu")
    if cpu:
        return (lower.numpy(), None if out is None else out.numpy()), np
    return (lower, out), torch


def mirror_lower(
    lower: torch.Tensor,
    out: torch.Tensor,
    scale: float = 1.0,
    minus_outer: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """out = scale * S (- v a^T - a v^T with minus_outer=(v, a), vectors of
    shape (n,)), S the symmetric matrix whose lower triangle is `lower`'s (its
    upper triangle is not read), all (n, n); `out` may be any (n, n) view (e.g.
    a block of a larger buffer), of another dtype (cast on the way), or `lower`
    itself (each lower block is read before it is written). The symmetric
    rank-2 term is a Householder reflection on both sides
    (`_cv.DualRoute._reflected`), here folded into the one pass that writes `out`.

    Block by block, so that the transposed half is read from cache: a plain
    transposed copy of an n x n float64 matrix runs at a fraction of the
    bandwidth (5 ms against 2 ms at n = 2000, measured).
    """
    n = lower.shape[0]
    b = MIRROR_BLOCK
    (src, dst), xp = _host_or_device(lower, out)
    # Read the upper triangle of the transpose (the same numbers): LAPACK's
    # output is in Fortran order, so there its blocks are contiguous rows.
    up = src.T
    if minus_outer is not None:
        v, a = (t.to(lower.dtype) for t in minus_outer)
        if xp is np:
            v, a = v.numpy(), a.numpy()
    tmp = xp.empty((b, b), dtype=src.dtype) if xp is np else None
    for i in range(0, n, b):
        for j in range(0, i + 1, b):
            block = up[j : j + b, i : i + b]  # = S[i, j]^T = S[j, i]
            if i == j:  # the diagonal block from its upper triangle (a small copy)
                block = xp.triu(block) + xp.triu(block, 1).T
            t = tmp[: block.shape[0], : block.shape[1]] if xp is np else None
            t = xp.multiply(block, scale, out=t)
            if minus_outer is not None:  # (outer products: no BLAS call, see `_host_gemm`)
                t -= xp.outer(v[j : j + b], a[i : i + b])
                t -= xp.outer(a[j : j + b], v[i : i + b])
            dst[j : j + b, i : i + b] = t
            if i != j:
                dst[i : i + b, j : j + b] = t.T
    return out


def inverse_combination(
    inv: torch.Tensor,
    out: torch.Tensor,
    scale: float = 1.0,
    minus_outer: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """`mirror_lower`'s out = scale * S (- v a^T - a v^T) for S = inv, the result of
    `cholesky_inverse`, which is destroyed. Where torch computed it, inv holds S
    whole (both triangles): three in-place passes over it and one copy into
    `out` (at n = 2000 8 ms against 34 for `mirror_lower`'s blocks, at 1000 1.2
    against 9; torch's MKL, Intel Xeon, measured). scipy's potri (the numpy path)
    leaves the upper triangle as it was: `mirror_lower` then."""
    if _numpy_path(inv):
        return mirror_lower(inv, out, scale=scale, minus_outer=minus_outer)
    inv.mul_(scale)
    if minus_outer is not None:
        v, a = (t.to(inv.dtype) for t in minus_outer)
        inv.addr_(v, a, alpha=-1.0).addr_(a, v, alpha=-1.0)
    return out.copy_(inv)


def inverse_mv(inv: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """S @ x, shape (n,), for S = `cholesky_inverse`'s result `inv` (not modified):
    one matrix-vector product where torch made S whole, else `lower_symv`."""
    if _numpy_path(inv):
        return lower_symv(inv, x)
    return inv @ x.to(inv.dtype)


def lower_symv(lower: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """S @ x for the symmetric S whose lower triangle is `lower`'s (the upper
    triangle is not read), shape (n,), by blocks as `mirror_lower`."""
    n = lower.shape[0]
    x = x.to(lower.dtype)
    if lower.device.type == "cpu" and cpu_blas() == "numpy":
        src = lower.numpy()
        # one symv in scipy's BLAS (see `_host_gemm`); LAPACK output needs no copy.
        # Not on the torch path: OpenBLAS's workers would then spin beside torch's
        # next LAPACK call (a float64 Cholesky at n = 2000 took 80-90 ms right
        # after a dsymv, 32-48 ms alone; Intel Xeon, torch's MKL)
        from scipy.linalg import blas

        symv = blas.ssymv if src.dtype == np.float32 else blas.dsymv
        with one_thread_if(_one_thread_product(2.0 * n * n)):
            if src.flags.f_contiguous:
                return torch.from_numpy(symv(1.0, src, x.numpy(), lower=1))
            # (row-major: the transpose, in Fortran order, holds the triangle as its upper one)
            return torch.from_numpy(symv(1.0, src.T, x.numpy(), lower=0))
    src, b = lower, SYMV_BLOCK  # torch (memory-bound: large blocks, few calls)
    y = torch.zeros_like(x)
    for i in range(0, n, b):
        for j in range(0, i, b):
            block = src[i : i + b, j : j + b]
            y[i : i + b] += block @ x[j : j + b]
            y[j : j + b] += block.T @ x[i : i + b]
        d = src[i : i + b, i : i + b]
        y[i : i + b] += torch.tril(d) @ x[i : i + b] + torch.tril(d, -1).T @ x[i : i + b]
    return y


def pivoted_cholesky_rank(A: torch.Tensor, tol: float, work: torch.Tensor | None = None) -> int:
    """Numerical rank of a symmetric positive semidefinite float64 matrix A (n, n):
    the number of steps of LAPACK's pivoted Cholesky (dpstrf, n^3/3 flops) before
    the largest remaining pivot falls below `tol`. A is not modified; the
    factorisations run in `work`, a contiguous (n, n) float64 tensor on A's device
    whose contents are destroyed (None: a new one; at the headline size that is
    0.63 GB of fresh memory).

    A plain Cholesky of A - tol I (dpotrf, the same flops at about twice the
    speed: 23 against 40 ms at n = 2000, 150 against 276 ms at n = 4000,
    measured) settles the common full-rank case first: it succeeds only when
    every eigenvalue exceeds tol, and then every pivot of dpstrf does too (each
    is a Schur complement's diagonal entry, at least the smallest eigenvalue).
    It runs in the library of `cpu_blas()` (torch's for CUDA tensors): LAPACK
    from the other one would leave its threads spinning beside the next call.
    dpstrf, for rank-deficient matrices only, is scipy's, on the host.
    """
    n = A.shape[0]
    usable = (
        work is not None
        and work.shape == A.shape
        and work.dtype == A.dtype
        and work.device == A.device
        and work.is_contiguous()
        and work.data_ptr() != A.data_ptr()
    )
    work = work if usable else torch.empty_like(A, memory_format=torch.contiguous_format)
    work.copy_(A)
    work.diagonal().sub_(tol)
    if _plain_cholesky_succeeds(work):
        return n
    from scipy.linalg import lapack

    # A is symmetric: its transpose is the same matrix in Fortran order
    a = work.copy_(A).numpy().T if work.device.type == "cpu" else host_copy(A.cpu().numpy()).T
    with one_thread_if(_one_thread_factorisation(n)):  # (on the host, whatever A's device)
        _, _, rank, info = lapack.dpstrf(a, tol=tol, lower=1, overwrite_a=1)
    if info < 0:
        raise ValueError(f"dpstrf: illegal argument {-info}")
    return int(rank)


def _plain_cholesky_succeeds(work: torch.Tensor) -> bool:
    """Whether the symmetric `work` (contiguous) is numerically positive definite;
    a Cholesky factorisation in its memory (on the CPU) destroys it."""
    if work.device.type != "cpu":
        return int(torch.linalg.cholesky_ex(work)[1]) == 0
    with one_thread_if(small_factorisation(work)):
        if cpu_blas() == "numpy":
            from scipy.linalg import lapack

            return lapack.dpotrf(work.numpy().T, lower=1, clean=0, overwrite_a=1)[1] == 0
        return _torch_cholesky_in_place(work)


def _torch_cholesky_in_place(A: torch.Tensor) -> bool:
    """torch's Cholesky of the symmetric contiguous CPU tensor A in A's memory, as
    the lower factor of A.mT (A's column-major view, LAPACK's layout; see
    `cholesky_inverse`); False when A is not numerically positive definite."""
    F = A.mT
    info = torch.empty((), dtype=torch.int32)
    torch.linalg.cholesky_ex(F, out=(F, info))
    return int(info) == 0


class Workspace:
    """New arrays carved out of a buffer nobody needs any more, before fresh memory.

    A buffer that was just written (e.g. the private float64 copy of X, once the
    Gram is made from it) has its pages touched already; arrays placed in it
    cost no page faults. Fresh memory costs them, and on this project's VMs
    memory freed a few seconds earlier came back slow to touch (0.1-14 s per GB,
    against several GB/s for pages still held). The pieces are consecutive and
    page-aligned, handed out until the buffer is used up; after that `empty`
    allocates as usual. The buffer's memory is released when every piece is.

    Parameters
    ----------
    buffer : tensor or None
        Contiguous; its contents are overwritten. None: plain allocations only.
    """

    ALIGN = 4096  # bytes; pieces start on page boundaries (addresses, not offsets)

    def __init__(self, buffer: torch.Tensor | None):
        self._bytes = None
        if buffer is not None and buffer.is_contiguous():
            self._bytes = buffer.detach().reshape(-1).view(torch.uint8)
        self._used = 0

    def empty(self, shape: tuple, dtype: torch.dtype, device) -> torch.Tensor:
        """An uninitialised contiguous tensor, in the buffer while it has room."""
        shape = tuple(shape)
        n_bytes = math.prod(shape) * dtype.itemsize
        b = self._bytes
        if b is None or b.device != torch.device(device):
            return torch.empty(shape, dtype=dtype, device=device)
        base = b.data_ptr()
        start = -(-(base + self._used) // self.ALIGN) * self.ALIGN - base
        if start + n_bytes > b.numel():
            return torch.empty(shape, dtype=dtype, device=device)
        self._used = start + n_bytes
        return b[start : self._used].view(dtype).view(shape)


def reused_buffer(holder: dict, name: str, shape: tuple, dtype, device) -> torch.Tensor:
    """An uninitialised contiguous tensor of `shape` in holder[name]'s memory,
    reallocated only when it needs more elements or another dtype: a fresh
    buffer per alpha or chunk costs its page faults every time (and a smaller
    last chunk reuses the larger buffer's pages)."""
    shape = tuple(shape)
    numel = math.prod(shape)
    buf = holder.get(name)
    if buf is None or buf.numel() < numel or buf.dtype != dtype:
        holder[name] = None  # free the old buffer before allocating
        buf = holder[name] = torch.empty(shape, dtype=dtype, device=device)
    return buf if tuple(buf.shape) == shape else buf.view(-1)[:numel].view(shape)


def _malloc_trim():
    """glibc's malloc_trim, or None (another C library)."""
    try:
        import ctypes

        return getattr(ctypes.CDLL(None), "malloc_trim", None)
    except OSError:
        return None


_MALLOC_TRIM = _malloc_trim()


def release_free_heap() -> None:
    """Hand the host heap's free pages back to the operating system.

    glibc serves allocations below its mmap threshold from the heap, and raises
    that threshold (up to 32 MiB) each time a larger mapped block is freed: the
    decomposition's n_samples x n_samples float64 temporaries then stay in the
    heap once freed, and the process keeps their pages for the rest of the fit
    (0.15 GiB of M's peak resident memory, measured). No-op without glibc.
    """
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


def synchronize(device: torch.device) -> None:
    """Wait for queued device work (for timings and progress); no-op on CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


SUM_BLOCK = 256  # rows per partial sum in column_sq_sums


def column_sq_sums(E: torch.Tensor, overwrite: bool = False) -> torch.Tensor:
    """sum_i E[i, t]^2 for every column t, float64, shape (n_cols,).

    E has shape (n_rows, n_cols). Squares are taken in E's dtype and summed in
    blocks of SUM_BLOCK rows by one thin GEMM with a block-indicator matrix, and
    the block sums in float64. Why: a plain float32 sum over thousands of rows
    loses ~1e-6 relative, enough to flip near-tied alphas, and torch's strided
    column reduction (vector_norm(dim=0)) ran ~5x slower than this on CPU.
    `overwrite=True` squares E in place (for scratch buffers). `row_sq_sums` is
    the twin for one target per row, with weights.
    """
    sq = E.square_() if overwrite else E.square()
    indicator = block_indicator(E.shape[0], None, E.dtype, E.device)
    return mm(indicator.T, sq).to(torch.float64).sum(dim=0)


def column_sums(E: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """sum_i w_i E[i, t] for every column t (w = 1 when `weights` is None), float64,
    shape (n_cols,): summed as `column_sq_sums` sums squares, in blocks of SUM_BLOCK
    rows by one thin GEMM, the block sums in float64."""
    indicator = block_indicator(E.shape[0], weights, E.dtype, E.device)
    return mm(indicator.T, E).to(torch.float64).sum(dim=0)


def constant_columns_exact(
    y: torch.Tensor, means: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """`means` (n_cols,) of the columns of y (n_rows, n_cols), with each constant
    column's replaced by its value exactly: the (weighted) mean of n copies of c is
    not always c, and that rounding, over a spread of rounding, made scores of
    noise for a constant target (r2 of -247 with sample weights, the correlation
    of a one-sample fold 3e14; measured). With `weights` (n_rows,), constant over
    the rows of positive weight (a fold with one weighted test sample scored r2
    -1.9e31 where scikit-learn gives 0).

    On the CPU only the columns whose first two rows are equal are compared whole:
    a comparison pass over all of y cost more than the mean (27 ms against 5 for
    8859 x 2241 float32). Elsewhere the whole of y, which needs no host sync."""
    if y.device.type != "cpu":
        return _constant_columns_exact_in_one_pass(y, means, weights)
    if weights is not None and bool((weights == 0).any()):  # (a copy: rare)
        y = y[weights > 0]
        if y.shape[0] == 0:
            return means
    if y.shape[0] < 2:
        return y[0].to(means.dtype).clone()
    cols = torch.nonzero(y[1] == y[0])[:, 0]
    if cols.numel() == 0:
        return means
    block = y[:, cols]
    constant = (block == block[:1]).all(dim=0)
    exact = means.clone()
    exact[cols] = torch.where(constant, block[0].to(means.dtype), means[cols])
    return exact


def centre_columns(
    y: torch.Tensor, means: torch.Tensor, weights: torch.Tensor | None = None, out=None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(y - means (n_rows, n_cols), into `out` when given; the means, (n_cols,)) for
    `means` the (weighted, by `weights` (n_rows,)) column means of y in y's dtype,
    in two passes: the centred columns' own mean, the rounding of `means` (~eps
    |mean|), is taken away too. In one pass, float32 targets of spread 1e-6 of their
    mean were centred off by ~0.1 of that spread, and their scores were 1.8e-2 off a
    float64 fit of the same float32 data (2e-7 in two passes; 9e-7 and 1.4e-7 at a
    spread of 1e-2, measured). A constant column (`constant_columns_exact`) stays
    exactly 0."""
    centred = torch.sub(y, means, out=out) if out is not None else y - means
    if weights is None:
        total = torch.tensor(float(max(y.shape[0], 1)), dtype=torch.float64)
    else:  # (a tensor: no host sync on a device; no weight at all leaves means as is)
        total = weights.double().sum().clamp(min=torch.finfo(torch.float64).tiny)
    rest = column_sums(centred, weights) / total.to(y.device)  # (float64)
    centred.sub_(rest.to(centred.dtype))
    return centred, (means.double() + rest).to(means.dtype)


def _constant_columns_exact_in_one_pass(y, means, weights=None):
    """`constant_columns_exact` by one comparison over all of y, with no host sync
    (for devices, where a sync would stall the queued work): rows of weight 0 count
    as equal, the value is that of the first row of positive weight."""
    if weights is None:
        ref, same = y[:1], y == y[:1]
    else:
        first = torch.argmax((weights > 0).to(torch.int8)).reshape(1)
        ref = y.index_select(0, first)
        same = (y == ref) | (weights == 0)[:, None]
    return torch.where(same.all(dim=0), ref[0].to(means.dtype), means)


def block_indicator(n: int, weights, dtype, device) -> torch.Tensor:
    """The (n, n_blocks) matrix whose column j is 1 (or `weights`, shape (n,)) on
    entries j * SUM_BLOCK .. (j + 1) * SUM_BLOCK - 1 and 0 elsewhere: one GEMM with
    it sums squares in blocks of SUM_BLOCK (`column_sq_sums`, `row_sq_sums`)."""
    n_blocks = max(1, -(-n // SUM_BLOCK))
    block_of = torch.arange(n, device=device) // SUM_BLOCK
    indicator = (block_of[:, None] == torch.arange(n_blocks, device=device)[None, :]).to(dtype)
    if weights is not None:
        indicator *= weights.to(dtype)[:, None]
    return indicator


def row_sq_sums(E: torch.Tensor, indicator: torch.Tensor, buf: torch.Tensor) -> torch.Tensor:
    """sum_j w_j E[t, j]^2 for every row t, float64, shape (n_rows,): `column_sq_sums`
    for E stored one target per row, with the same precision (each row's squares
    summed in blocks of SUM_BLOCK columns in E's dtype, the block sums in float64).

    E has shape (n_rows, n_cols); `indicator` is ``block_indicator(n_cols, w, ...)``;
    the squares go through `buf`, of shape (n_buf, n_cols), n_buf rows at a time,
    each block summed by one thin GEMM while it is still in cache.
    """
    return row_block_sq_sums(E, indicator, buf).sum(dim=1)


def row_block_sq_sums(E: torch.Tensor, indicator: torch.Tensor, buf: torch.Tensor) -> torch.Tensor:
    """`row_sq_sums` before the last sum: per row of E (n_rows, n_cols), the sums of
    squares of each column of `indicator` (n_cols, n_blocks), float64, shape
    (n_rows, n_blocks); e.g. per fold with a `fold_indicator`."""
    return row_block_sums(E, indicator, buf, ("sq",))["sq"]


ROW_SUM_KINDS = ("sq", "sum", "abs", "y_dot")  # what `row_block_sums` sums


def row_block_sums(
    E: torch.Tensor,
    indicator: torch.Tensor,
    buf: torch.Tensor,
    kinds: tuple[str, ...],
    Yt: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Per row of E (n_rows, n_cols) and column of `indicator` (n_cols, n_blocks), the
    sums of each of `kinds`, float64 arrays of shape (n_rows, n_blocks): "sq" of
    E^2, "sum" of E, "abs" of |E| and "y_dot" of Yt * E, for `Yt` of E's shape.

    Each as `row_sq_sums`' squares: the values in E's dtype, through `buf` (n_buf,
    n_cols), n_buf rows at a time, each block summed by one thin GEMM while it is
    still in cache, the block sums in float64.
    """
    unknown = set(kinds) - set(ROW_SUM_KINDS)
    if unknown:
        raise ValueError(f"unknown row sums {sorted(unknown)}")
    if "y_dot" in kinds and (Yt is None or Yt.shape != E.shape):
        raise ValueError("the products with the targets need the targets, shaped as E")
    n_rows, step = E.shape[0], buf.shape[0]
    shape = (n_rows, indicator.shape[1])
    sums = {k: torch.empty(shape, dtype=torch.float64, device=E.device) for k in kinds}
    for start in range(0, n_rows, step):
        stop = min(start + step, n_rows)
        e, rows, out = E[start:stop], slice(start, stop), buf[: stop - start]
        for kind in kinds:
            if kind == "sum":
                sums[kind][rows] = mm(e, indicator)
                continue
            if kind == "sq":
                torch.square(e, out=out)
            elif kind == "abs":
                torch.abs(e, out=out)
            else:
                torch.mul(e, Yt[start:stop], out=out)
            sums[kind][rows] = mm(out, indicator)
    return sums


def fold_indicator(n: int, folds, dtype, device) -> tuple[torch.Tensor, torch.Tensor]:
    """`block_indicator` for folds: (indicator (n, n_blocks), fold (n_blocks,) int64),
    column k being 1 on up to SUM_BLOCK samples of fold fold[k] (a fold's samples
    taken in pieces of SUM_BLOCK) and 0 elsewhere; `folds` are index arrays or slices."""
    pieces, owner = [], []
    for f, rows in enumerate(folds):
        index = torch.arange(n)[rows] if isinstance(rows, slice) else torch.as_tensor(rows).cpu()
        for start in range(0, index.numel(), SUM_BLOCK):
            pieces.append(index[start : start + SUM_BLOCK])
            owner.append(f)
    indicator = torch.zeros((n, len(pieces)), dtype=dtype)
    for k, piece in enumerate(pieces):
        indicator[piece, k] = 1.0
    return indicator.to(device), torch.tensor(owner, dtype=torch.int64, device=device)


def copy_rows(src: torch.Tensor, dst: torch.Tensor, index: torch.Tensor, buf: torch.Tensor):
    """dst[index] = src[index] for a 1-D int64 `index` of rows, both (n_rows, n_cols),
    through `buf` (n_buf, n_cols) n_buf rows at a time (a gather into a cache-sized
    buffer, then a scatter: no temporary the size of the selection)."""
    step = buf.shape[0]
    for start in range(0, index.numel(), step):
        rows = index[start : start + step]
        block = torch.index_select(src, 0, rows, out=buf[: rows.numel()])
        dst.index_copy_(0, rows, block)
    return dst
