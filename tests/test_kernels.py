"""Fused epilogue kernels (kernels/) against their torch reference twins (fastridge/_kernels.py).

No GPU exists where this suite is developed, so the kernels' arithmetic is
tested through their host build: kernels/epilogue_host.cpp runs the functions
of kernels/epilogue.cuh over the same work split as the CUDA kernels. It is
compiled here into a temporary shared library and loaded with ctypes. The
`gpu` tests compare the real kernels (through cupy) with the torch twins and,
bit for bit, with the host build; they are skipped without CUDA.
"""

import ctypes
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from fastridge import _kernels
from fastridge._kernels import (
    choose_n_split,
    gcv_sums,
    gcv_sums_reference,
    loo_epilogue,
    loo_epilogue_reference,
)
from fastridge._scoring import Scoring, select

ROOT = Path(__file__).resolve().parents[1]
KERNELS = ROOT / "kernels"
HAS_CUDA = torch.cuda.is_available()
requires_cuda = pytest.mark.skipif(not HAS_CUDA, reason="no CUDA device")
NVCC = shutil.which("nvcc")
CXX = shutil.which(os.environ.get("CXX", "g++"))
# Set by test_sanitized_build: a directory holding sanitized builds to load instead.
PREBUILT = os.environ.get("FASTRIDGE_TEST_PREBUILT")
SANITIZE_FLAGS = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-g"]
# Test instruments compiled from kernels/: flags and source.
BUILDS = {
    "host": (["-std=c++17", "-O2"], "epilogue_host.cpp"),
    "emulate": (["-std=c++20", "-O1", "-pthread"], "epilogue_emulate.cpp"),
}


def build_command(kind: str, out: Path, sanitize: bool = False) -> list:
    flags, source = BUILDS[kind]
    cmd = [CXX, *flags, "-ffp-contract=off", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC"]
    cmd += [str(KERNELS / source), "-o", str(out)]
    return cmd + (SANITIZE_FLAGS if sanitize else [])


def build(kind: str, tmp_path_factory) -> Path:
    if PREBUILT:
        return Path(PREBUILT) / f"lib{kind}.so"
    if CXX is None:
        pytest.skip("no C++ compiler to build the kernels' host build and emulator")
    out = tmp_path_factory.mktemp(kind) / f"lib{kind}.so"
    subprocess.run(build_command(kind, out), check=True, capture_output=True, text=True)
    return out


DTYPES = [pytest.param(torch.float64, id="f64"), pytest.param(torch.float32, id="f32")]
# Kernel (float64 accumulation) against the twin (compute-dtype accumulation):
# the float32 gap is the twin's rounding, up to ~n_samples * 6e-8 relative.
TOL = {torch.float64: dict(rtol=1e-12, atol=0.0), torch.float32: dict(rtol=5e-5, atol=0.0)}
LOO_SHAPES = [(1, 1), (1, 7), (2, 1), (5, 3), (33, 31), (100, 65), (257, 40)]


# ---------------------------------------------------------------- the host build


class HostBuild:
    """ctypes wrapper of kernels/epilogue_host.cpp; takes contiguous CPU tensors."""

    def __init__(self, path: Path):
        self.lib = ctypes.CDLL(str(path))
        p, ll, i32 = ctypes.c_void_p, ctypes.c_longlong, ctypes.c_int
        for sfx, real in (("f32", ctypes.c_float), ("f64", ctypes.c_double)):
            f = getattr(self.lib, f"fr_loo_epilogue_{sfx}")
            f.argtypes = [p, ll, p, ll, ll, ll, i32, i32, p, p, p]
            f.restype = None
            f = getattr(self.lib, f"fr_loo_keep_{sfx}")
            f.argtypes = [p, ll, p, ll, ll, ll, p, i32, real]
            f.restype = None
            f = getattr(self.lib, f"fr_gcv_sums_{sfx}")
            f.argtypes = [p, ll, p, ll, ll, ll, i32, i32, p]
            f.restype = None

    @staticmethod
    def _sfx(x):
        return {torch.float32: "f32", torch.float64: "f64"}[x.dtype]

    def loo(self, E, w, a, n_samples, n_split, best_score, best_index, scores=None):
        assert E.stride(1) == 1 and w.is_contiguous()
        row = None if scores is None else scores[a].data_ptr()
        getattr(self.lib, f"fr_loo_epilogue_{self._sfx(E)}")(
            E.data_ptr(), E.stride(0), w.data_ptr(), E.shape[0], E.shape[1], n_samples, a,
            n_split, row, best_score.data_ptr(), best_index.data_ptr(),
        )  # fmt: skip

    def keep(self, E, keep, best_index, a, scale):
        getattr(self.lib, f"fr_loo_keep_{self._sfx(E)}")(
            E.data_ptr(), E.stride(0), keep.data_ptr(), keep.stride(0), E.shape[0], E.shape[1],
            best_index.data_ptr(), a, scale,
        )  # fmt: skip

    def gcv(self, UtY, shrink_sq, n_split):
        out = torch.empty((shrink_sq.shape[0], UtY.shape[1]), dtype=torch.float64)
        getattr(self.lib, f"fr_gcv_sums_{self._sfx(UtY)}")(
            UtY.data_ptr(), UtY.stride(0), shrink_sq.data_ptr(), shrink_sq.stride(0),
            UtY.shape[0], UtY.shape[1], shrink_sq.shape[0], n_split, out.data_ptr(),
        )  # fmt: skip
        return out


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    return HostBuild(build("host", tmp_path_factory))


# ---------------------------------------------------------------- helpers


def make_loo(n, c, n_alphas, dtype, seed=0):
    """Residual blocks per alpha (n_alphas, n, c) with per-target scales, and w (n_alphas, n).

    Each (alpha, target) gets its own scale so the best alpha varies over targets.
    """
    g = torch.Generator().manual_seed(seed)
    E = torch.randn((n_alphas, n, c), generator=g, dtype=torch.float64)
    E *= 0.5 + torch.rand((n_alphas, 1, c), generator=g, dtype=torch.float64)
    w = 1.0 + torch.rand((n_alphas, n), generator=g, dtype=torch.float64)
    return E.to(dtype), w.to(dtype)


def run_loo(step, E, w, *, keep_scales=None, **kw):
    """Visit alphas in order with `step` (reference, dispatch or host); return the state."""
    n_alphas, n, c = E.shape
    scores = torch.full((n_alphas, c), torch.nan, dtype=torch.float64, device=E.device)
    best_score = torch.full((c,), torch.nan, dtype=torch.float64, device=E.device)
    best_index = torch.full((c,), -1, dtype=torch.int64, device=E.device)
    keep = None
    if keep_scales is not None:
        keep = torch.zeros((n, c), dtype=E.dtype, device=E.device)
    for a in range(n_alphas):
        # Own allocations, so a read past the end of E[a] or w[a] is out of bounds
        # (the sanitizer run checks), not a read of the next alpha's block.
        Ea = E[a].clone() if E[a].is_contiguous() else E[a]
        step(Ea, w[a].clone(), a, n, best_score, best_index, scores, keep, keep_scales, **kw)
        chosen = scores.gather(0, best_index[None, :])[0]
        torch.testing.assert_close(best_score, chosen, rtol=0, atol=0, equal_nan=True)
    return scores, best_score, best_index, keep


def reference_step(E, w, a, n, best_score, best_index, scores, keep, keep_scales):
    scale = 1.0 if keep_scales is None else keep_scales[a]
    loo_epilogue_reference(E, w, a, n, best_score, best_index, scores, keep, scale)


def host_step(host, n_split):
    def step(E, w, a, n, best_score, best_index, scores, keep, keep_scales):
        host.loo(E, w, a, n, n_split, best_score, best_index, scores)
        if keep is not None:
            host.keep(E, keep, best_index, a, keep_scales[a])

    return step


# ---------------------------------------------------------------- LOO epilogue


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", LOO_SHAPES, ids=[f"{n}x{c}" for n, c in LOO_SHAPES])
@pytest.mark.parametrize("split", ["one", "three", "more_than_rows"])
def test_loo_host_matches_reference(host, dtype, shape, split):
    n, c = shape
    n_split = {"one": 1, "three": 3, "more_than_rows": n + 5}[split]  # empty splits too
    E, w = make_loo(n, c, 4, dtype, seed=n * 1000 + c)
    ref = run_loo(reference_step, E, w)
    got = run_loo(host_step(host, n_split), E, w)
    torch.testing.assert_close(got[0], ref[0], **TOL[dtype])
    torch.testing.assert_close(got[1], ref[1], **TOL[dtype])
    assert torch.equal(got[2], ref[2])
    # The data really exercise the selection: targets pick different alphas.
    if c >= 31:
        assert len(torch.unique(ref[2])) >= 3


@pytest.mark.parametrize("dtype", DTYPES)
def test_twin_is_the_engine_path(dtype):
    """The twin gives the bits of today's engine path (LeaveOneOut residuals scaled in
    place, Scoring(None), select + gather), so swapping it in changes no CPU result."""
    n_alphas, n, c = 4, 40, 33
    E, w = make_loo(n, c, n_alphas, dtype, seed=4)
    scores, best_score, best_index, _ = run_loo(reference_step, E, w)
    engine = torch.stack([Scoring(None)(E[a].clone().mul_(w[a][:, None]), None, None)
                          for a in range(n_alphas)])  # fmt: skip
    assert torch.equal(scores, engine)
    best = select(engine)
    assert torch.equal(best_index, best)
    assert torch.equal(best_score, engine.gather(0, best[None, :])[0])


@pytest.mark.parametrize("dtype", DTYPES)
def test_loo_without_weights_is_unit_weights(dtype):
    """w=None (E already scaled, the engine's per-alpha bases) gives the bits of
    unit weights, and of scaling E first and passing no weights."""
    n_alphas, n, c = 3, 40, 17
    E, w = make_loo(n, c, n_alphas, dtype, seed=6)
    ones = torch.ones_like(w[0])

    def unit_step(E_a, w_a, a, n, best_score, best_index, scores, keep, keep_scales):
        loo_epilogue(E_a, None, a, n, best_score, best_index, scores)

    def ones_step(E_a, w_a, a, n, best_score, best_index, scores, keep, keep_scales):
        loo_epilogue(E_a, ones, a, n, best_score, best_index, scores)

    # (scores, best_score, best_index); nothing is kept
    for r, g in zip(run_loo(ones_step, E, w)[:3], run_loo(unit_step, E, w)[:3], strict=True):
        assert torch.equal(r, g)
    scaled = E * w[:, :, None]
    ref = run_loo(reference_step, E, w)[:3]
    got = run_loo(unit_step, scaled, w)[:3]
    for r, g in zip(ref, got, strict=True):
        assert torch.equal(r, g)


def test_loo_row_stride(host):
    """E may be a column slice of a wider buffer: the kernels take its row stride."""
    E, w = make_loo(37, 50, 3, torch.float32, seed=3)
    sliced = E[:, :, 5:28]
    assert sliced.stride(1) == 50
    ref = run_loo(reference_step, sliced, w)
    got = run_loo(host_step(host, 2), sliced, w)
    torch.testing.assert_close(got[0], ref[0], **TOL[torch.float32])
    assert torch.equal(got[2], ref[2])


@pytest.mark.parametrize("dtype", DTYPES)
def test_loo_ties_keep_first_alpha(host, dtype):
    n, c = 19, 6
    X, w = make_loo(n, c, 1, dtype, seed=7)
    X, w1 = X[0], w[0]
    w = w1.expand(4, n).contiguous()
    # alpha 0 worse than 1; alphas 1 and 2 tie exactly (same input); alpha 3 worse.
    E = torch.stack([2 * X, X, X.clone(), 3 * X])
    for step in (reference_step, host_step(host, 2)):
        scores, _, best, _ = run_loo(step, E, w)
        assert torch.equal(scores[1], scores[2])
        assert torch.all(best == 1)
    # All alphas tie: the first one wins.
    E = X.expand(3, n, c).contiguous()
    for step in (reference_step, host_step(host, 2)):
        _, _, best, _ = run_loo(step, E, w[:3])
        assert torch.all(best == 0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_loo_nan_and_inf_select_as_engine(host, dtype):
    """NaN scores never win and ties go first, exactly as fastridge._scoring.select."""
    patterns = [  # per target: what each of 3 alphas' residual column holds
        ("nan", 1.0, 1.0),
        (1.0, "nan", 2.0),
        ("nan", "nan", "nan"),
        ("nan", "inf", 1.0),
        ("nan", "inf", "inf"),
        ("inf", "nan", "inf"),
        (2.0, 1.0, "nan"),
        (1.0, 1.0, 1.0),
    ]
    n, c = 5, len(patterns)
    E = torch.empty((3, n, c), dtype=dtype)
    for t, pattern in enumerate(patterns):
        for a, v in enumerate(pattern):
            E[a, :, t] = {"nan": torch.nan, "inf": torch.inf}.get(v, v)
    w = torch.ones((3, n), dtype=dtype)
    ref = run_loo(reference_step, E, w)
    got = run_loo(host_step(host, 2), E, w)
    assert torch.equal(ref[2], select(ref[0]))
    assert torch.equal(got[2], select(got[0]))
    assert torch.equal(got[2], ref[2])
    torch.testing.assert_close(got[0], ref[0], equal_nan=True, **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_loo_keep_dual_coefficients(host, dtype):
    """keep[:, t] ends as E(best alpha)[:, t] * scale(best alpha)."""
    n, c, n_alphas = 23, 45, 4
    E, w = make_loo(n, c, n_alphas, dtype, seed=11)
    alphas = [0.5, 3.0, 10.0, 70.0]
    scales = [1.0 / a for a in alphas]
    ref = run_loo(reference_step, E, w, keep_scales=scales)
    got = run_loo(host_step(host, 3), E, w, keep_scales=scales)
    assert torch.equal(got[2], ref[2])
    assert torch.equal(got[3], ref[3])
    best = ref[2]
    expected = torch.stack([E[best[t], :, t] * scales[best[t]] for t in range(c)], dim=1)
    torch.testing.assert_close(ref[3], expected.to(dtype), rtol=1e-6, atol=0.0)
    assert len(torch.unique(best)) >= 3


def test_loo_precision_against_float64(host):
    """flash-attention's rule: the kernel's float32 error against a float64 reference
    is at most 2x the float32 torch twin's (here it is far smaller: float64 sums)."""
    n, c = 4000, 16
    g = torch.Generator().manual_seed(5)
    # A common offset makes the sums long and one-signed, where float32 sums lose most.
    E32 = (torch.randn((1, n, c), generator=g) + 3.0).float()
    w32 = (1.0 + torch.rand((1, n), generator=g)).float()
    truth = run_loo(reference_step, E32.double(), w32.double())[0]
    err_ref = ((run_loo(reference_step, E32, w32)[0] - truth).abs() / truth.abs()).max()
    err_host = ((run_loo(host_step(host, 7), E32, w32)[0] - truth).abs() / truth.abs()).max()
    assert err_ref > 0  # the float32 twin does round: the comparison is not vacuous
    assert err_host <= 2 * err_ref
    assert err_host < 1e-12  # double accumulation of exact float32 products


def test_loo_float64_precision(host):
    """float64: the kernel's error against exact sums stays within a few ulps per row."""
    n, c = 3000, 8
    E, w = make_loo(n, c, 1, torch.float64, seed=9)
    E += 2.0
    exact = torch.tensor(
        [-float(_exact_sum_sq(E[0, :, t].numpy(), w[0].numpy())) / n for t in range(c)],
        dtype=torch.float64,
    )
    err_ref = ((run_loo(reference_step, E, w)[0][0] - exact).abs() / exact.abs()).max()
    err_host = ((run_loo(host_step(host, 5), E, w)[0][0] - exact).abs() / exact.abs()).max()
    # Sequential lanes of n / (8 * n_split) = 75 rows: bound ~75 * 2^-53 ~ 1e-14.
    assert err_host < 1e-13
    assert err_ref < 1e-13


def _exact_sum_sq(e, w):
    from fractions import Fraction

    return sum((Fraction(float(a)) * Fraction(float(b))) ** 2 for a, b in zip(e, w, strict=True))


# ---------------------------------------------------------------- GCV sums

GCV_SHAPES = [(1, 1, 1), (7, 3, 3), (50, 33, 8), (50, 33, 9), (130, 70, 17)]


def make_gcv(rank, c, n_alphas, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    UtY = torch.randn((rank, c), generator=g, dtype=torch.float64)
    eig = torch.rand(rank, generator=g, dtype=torch.float64) * 100
    alphas = torch.logspace(-2, 3, n_alphas, dtype=torch.float64)
    shrink_sq = (alphas[:, None] / (eig[None, :] + alphas[:, None])) ** 2
    return UtY.to(dtype), shrink_sq.to(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", GCV_SHAPES, ids=["x".join(map(str, s)) for s in GCV_SHAPES])
@pytest.mark.parametrize("n_split", [1, 3, 200])
def test_gcv_host_matches_reference(host, dtype, shape, n_split):
    rank, c, n_alphas = shape
    UtY, shrink_sq = make_gcv(rank, c, n_alphas, dtype, seed=rank + c + n_alphas)
    ref = gcv_sums_reference(UtY, shrink_sq)
    got = host.gcv(UtY, shrink_sq, n_split)
    torch.testing.assert_close(got, ref, **TOL[dtype])
    # The engine's formula, independently: ||diag(shrink) UtY||^2 per alpha.
    direct = torch.stack([(s[:, None] * UtY.double() ** 2).sum(0) for s in shrink_sq.double()])
    torch.testing.assert_close(got, direct, **TOL[dtype])


def test_gcv_precision_against_float64(host):
    UtY, shrink_sq = make_gcv(4000, 16, 5, torch.float64, seed=2)
    UtY32, shrink32 = (UtY + 3.0).float(), shrink_sq.float()
    truth = gcv_sums_reference(UtY32.double(), shrink32.double())
    err_ref = ((gcv_sums_reference(UtY32, shrink32) - truth).abs() / truth).max()
    err_host = ((host.gcv(UtY32, shrink32, 7) - truth).abs() / truth).max()
    assert err_ref > 0
    assert err_host <= 2 * err_ref


# ---------------------------------------------------------------- dispatch and checks


@pytest.mark.parametrize("dtype", DTYPES)
def test_dispatch_on_cpu_is_the_reference(dtype):
    E, w = make_loo(30, 9, 3, dtype, seed=1)
    scales = [1.0, 0.5, 0.25]

    def dispatch_step(E, w, a, n, best_score, best_index, scores, keep, keep_scales):
        loo_epilogue(E, w, a, n, best_score, best_index, scores, keep, keep_scales[a])

    ref = run_loo(reference_step, E, w, keep_scales=scales)
    got = run_loo(dispatch_step, E, w, keep_scales=scales)
    for r, g in zip(ref, got, strict=True):
        assert torch.equal(r, g)
    UtY, shrink_sq = make_gcv(20, 9, 3, dtype)
    assert torch.equal(gcv_sums(UtY, shrink_sq), gcv_sums_reference(UtY, shrink_sq))


def test_backend_argument():
    E, w = make_loo(4, 3, 1, torch.float64)
    state = (torch.empty(3, dtype=torch.float64), torch.empty(3, dtype=torch.int64))
    with pytest.raises(ValueError, match="backend must be"):
        loo_epilogue(E[0], w[0], 0, 4, *state, backend="triton")
    with pytest.raises(ValueError, match="needs CUDA tensors"):
        loo_epilogue(E[0], w[0], 0, 4, *state, backend="cuda")
    loo_epilogue(E[0], w[0], 0, 4, *state, backend="torch")
    assert torch.all(state[1] == 0)


def _bad_inputs():
    f64, i64 = torch.float64, torch.int64
    E = torch.zeros((4, 3))
    w = torch.ones(4)
    bs, bi = torch.zeros(3, dtype=f64), torch.zeros(3, dtype=i64)
    return [
        ("E must be a float32 or float64", (E.half(), w.half(), 0, 4, bs, bi)),
        ("E must be a float32 or float64", (E[0], w, 0, 4, bs, bi)),
        ("E must be a float32 or float64", (E.numpy(), w, 0, 4, bs, bi)),
        ("at least one row", (E[:0], w[:0], 0, 4, bs, bi)),
        (r"w must have shape \(4,\)", (E, w[:3], 0, 4, bs, bi)),
        ("w must have dtype", (E, w.double(), 0, 4, bs, bi)),
        ("n_samples must be a positive", (E, w, 0, 0, bs, bi)),
        ("alpha index", (E, w, -1, 4, bs, bi)),
        ("best_score must have dtype", (E, w, 0, 4, bs.float(), bi)),
        (r"best_index must have shape \(3,\)", (E, w, 0, 4, bs, bi[:2])),
        ("best_index must have dtype", (E, w, 0, 4, bs, bi.int())),
        ("scores must have shape", (E, w, 2, 4, bs, bi, torch.zeros((2, 3), dtype=f64))),
        ("keep must have dtype", (E, w, 0, 4, bs, bi, None, torch.zeros((4, 3), dtype=f64))),
    ]


@pytest.mark.parametrize("match,args", _bad_inputs(), ids=lambda x: x if isinstance(x, str) else "")
def test_bad_inputs_name_the_problem(match, args):
    with pytest.raises(ValueError, match=match):
        loo_epilogue(*args)


def test_gcv_bad_inputs():
    UtY = torch.zeros((5, 3))
    with pytest.raises(ValueError, match=r"shrink_sq must have shape \(2, 5\)"):
        gcv_sums(UtY, torch.zeros((2, 4)))
    with pytest.raises(ValueError, match="shrink_sq must have dtype"):
        gcv_sums(UtY, torch.zeros((2, 5), dtype=torch.float64))
    with pytest.raises(ValueError, match="at least one alpha"):
        gcv_sums(UtY, torch.zeros((0, 5)))


def test_import_needs_no_cupy_and_no_cuda():
    code = (
        "import sys, torch, fastridge, fastridge._kernels as k\n"
        "k.loo_epilogue_reference\n"
        "assert 'cupy' not in sys.modules, 'cupy imported'\n"
        "assert not torch.cuda.is_initialized(), 'CUDA initialised'\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


def test_choose_n_split():
    # 2048 targets on a 108-SM A100: 64 column tiles x 14 splits >= 8 blocks per SM.
    assert choose_n_split(8859, 2048, 108) == 14
    assert choose_n_split(1, 2048, 108) == 1  # never more splits than rows allow
    assert choose_n_split(100_000, 1, 108) == 8 * 108  # one column tile: rows carry it
    assert choose_n_split(10**9, 1, 10**6) == 1024  # workspace cap


def test_kernel_sources_are_found():
    d = _kernels.kernels_dir()
    assert d == KERNELS
    source = _kernels.kernel_source()
    # The header is pasted in: NVRTC needs no include path.
    assert '#include "epilogue.cuh"' not in source
    assert "loo_lane_sum" in source


# ---------------------------------------------------------------- nvcc


@pytest.mark.skipif(NVCC is None, reason="nvcc not on PATH")
def test_check_script_compiles_without_warnings():
    res = subprocess.run(
        ["bash", str(KERNELS / "check.sh")], capture_output=True, text=True, timeout=180
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "without warnings" in res.stdout


@pytest.mark.skipif(NVCC is None, reason="nvcc not on PATH")
def test_runtime_source_defines_every_kernel_name(tmp_path):
    """What cupy compiles (the inlined source) builds under -Werror and defines
    exactly the kernels _kernels.py asks for by name."""
    src = tmp_path / "inlined.cu"
    src.write_text(_kernels.kernel_source())
    ptx = tmp_path / "inlined.ptx"
    cmd = [NVCC, "-std=c++17", "--fmad=false", "-arch=sm_80", "--Werror", "all-warnings"]
    subprocess.run([*cmd, "-ptx", str(src), "-o", str(ptx)], check=True, timeout=120)
    entries = re.findall(r"\.entry\s+(\w+)", ptx.read_text())
    demangled = subprocess.run(
        ["c++filt"], input="\n".join(entries), capture_output=True, text=True, check=True
    ).stdout.split("\n")
    # "void fastridge::loo_partial<float>(float const*, ...)" -> "fastridge::loo_partial<float>"
    names = {d.split("(")[0].removeprefix("void ") for d in demangled if d}
    assert names == set(_kernels._NAMES)


# ---------------------------------------------------------------- CUDA path on the emulator


def kernel_params(source: str) -> dict:
    """Parameter types of every __global__ function in epilogue.cu, by kernel name.

    "const T* __restrict__ E" -> "T*", "long long ld_e" -> "long long".
    """
    found = re.findall(r"__global__ void __launch_bounds__\([^)]*\)\s*(\w+)\(([^)]*)\)", source)
    params = {}
    for name, plist in found:
        types = []
        for p in plist.split(","):
            tokens = p.replace("const", "").replace("__restrict__", "").replace("*", " * ").split()
            types.append(" ".join(tokens[:-1]).replace(" *", "*"))
        params[name] = types
    return params


_CT = {"long long": ctypes.c_longlong, "int": ctypes.c_int}
_CT |= {"float": ctypes.c_float, "double": ctypes.c_double}
_NP = {"long long": np.int64, "int": np.int32, "float": np.float32, "double": np.float64}
_TORCH = {"float": torch.float32, "double": torch.float64, "long long": torch.int64}


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    """kernels/epilogue_emulate.cpp loaded, as a replacement for _kernels._launch."""
    lib = ctypes.CDLL(str(build("emulate", tmp_path_factory)))
    params = kernel_params((KERNELS / "epilogue.cu").read_text())
    assert set(params) == {"loo_partial", "loo_finalize", "loo_keep", "gcv_partial", "gcv_finalize"}
    calls = []

    def launch(device, name, grid, block, args):
        """_kernels._launch, checking every argument against the kernel's signature."""
        base, _, targ = name.removeprefix("fastridge::").partition("<")
        T = targ.rstrip(">")
        types = [t.replace("T", T) if T else t for t in params[base]]
        assert len(args) == len(types), f"{name}: {len(args)} arguments for {len(types)}"
        c_args = []
        for i, (t, x) in enumerate(zip(types, args, strict=True)):
            if t.endswith("*"):
                assert isinstance(x, torch.Tensor), f"{name} argument {i}: tensor expected"
                assert x.dtype == _TORCH[t[:-1]], f"{name} argument {i}: {x.dtype} for {t}"
                c_args.append(ctypes.c_void_p(x.data_ptr()))
            else:
                assert type(x) is _NP[t], f"{name} argument {i}: {type(x).__name__} for {t}"
                c_args.append(_CT[t](x))
        assert 1 <= len(grid) <= 3 and 1 <= len(block) <= 3
        assert all(0 < g < 2**31 for g in grid) and all(0 < g <= 65535 for g in grid[1:])
        assert 0 < int(np.prod(block)) <= 1024
        dims = [*grid, *[1] * (3 - len(grid)), *block, *[1] * (3 - len(block))]
        fn = getattr(lib, f"emu_{base}" + (f"_{T}" if T else ""))
        fn.argtypes = [ctypes.c_uint] * 6 + [c.__class__ for c in c_args]
        fn.restype = None
        fn(*dims, *c_args)
        calls.append(name)

    launch.calls = calls
    return launch


@pytest.fixture
def on_emulator(emulator, monkeypatch):
    """Route _kernels' CUDA launches to the emulator; the device has `n_sm` SMs."""

    def setup(n_sm):
        monkeypatch.setattr(_kernels, "_launch", emulator)
        monkeypatch.setattr(_kernels, "_n_sm", lambda device: n_sm)
        emulator.calls.clear()
        return emulator.calls

    return setup


def cuda_path_step(E, w, a, n, best_score, best_index, scores, keep, keep_scales):
    scale = 1.0 if keep_scales is None else keep_scales[a]
    _kernels._loo_epilogue_cuda(E, w, a, n, best_score, best_index, scores, keep, scale)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1), (9, 33), (150, 70), (300, 5), (3, 300)], ids=str)
@pytest.mark.parametrize("n_sm", [1, 4, 108])
def test_cuda_path_on_emulator(host, on_emulator, dtype, shape, n_sm):
    """_kernels' CUDA path, with the kernel bodies of epilogue.cu run on the CPU: same
    bits as the host build (same n_split), the twin's selection and kept columns."""
    calls = on_emulator(n_sm)
    n, c = shape
    E, w = make_loo(n, c, 3, dtype, seed=n + c + n_sm)
    scales = [1.0, 0.1, 0.01]
    got = run_loo(cuda_path_step, E, w, keep_scales=scales)
    ctype = "float" if dtype == torch.float32 else "double"
    expected_calls = [f"fastridge::loo_partial<{ctype}>", "fastridge::loo_finalize"]
    assert calls == (expected_calls + [f"fastridge::loo_keep<{ctype}>"]) * 3
    same = run_loo(host_step(host, choose_n_split(n, c, n_sm)), E, w, keep_scales=scales)
    for g, h in zip(got, same, strict=True):
        assert torch.equal(g, h)
    ref = run_loo(reference_step, E, w, keep_scales=scales)
    torch.testing.assert_close(got[0], ref[0], **TOL[dtype])
    assert torch.equal(got[2], ref[2])
    assert torch.equal(got[3], ref[3])


def test_cuda_path_on_emulator_without_scores_and_strided(host, on_emulator):
    """No score buffer (the kernel must not write one), E a column slice of a wider buffer."""
    on_emulator(4)
    E, w = make_loo(130, 60, 3, torch.float32, seed=8)
    sliced = E[:, :, 10:47]
    best_score = torch.empty(37, dtype=torch.float64)
    best_index = torch.empty(37, dtype=torch.int64)
    ref_score, ref_index = best_score.clone(), best_index.clone()
    for a in range(3):
        _kernels._loo_epilogue_cuda(sliced[a], w[a], a, 130, best_score, best_index, None, None, 1)
        host.loo(sliced[a], w[a], a, 130, choose_n_split(130, 37, 4), ref_score, ref_index)
    assert torch.equal(best_score, ref_score)
    assert torch.equal(best_index, ref_index)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1, 1), (70, 40, 3), (200, 9, 17)], ids=str)
@pytest.mark.parametrize("n_sm", [1, 108])
def test_cuda_gcv_path_on_emulator(host, on_emulator, dtype, shape, n_sm):
    calls = on_emulator(n_sm)
    rank, c, n_alphas = shape
    UtY, shrink_sq = make_gcv(rank, c, n_alphas, dtype, seed=rank)
    got = _kernels._gcv_sums_cuda(UtY, shrink_sq)
    assert len(calls) == 2
    assert torch.equal(got, host.gcv(UtY, shrink_sq, choose_n_split(rank, c, n_sm)))
    torch.testing.assert_close(got, gcv_sums_reference(UtY, shrink_sq), **TOL[dtype])


def _libasan():
    if CXX is None or PREBUILT:
        return None
    path = subprocess.run([CXX, "-print-file-name=libasan.so"], capture_output=True, text=True)
    path = path.stdout.strip()
    return path if os.path.isabs(path) and os.path.exists(path) else None


LIBASAN = _libasan()


@pytest.mark.slow
@pytest.mark.skipif(LIBASAN is None, reason="no AddressSanitizer runtime (or already sanitized)")
def test_sanitized_build(tmp_path):
    """The host build and the emulated kernels, built with AddressSanitizer and
    UBSan: no read or write outside the tensors, no undefined behaviour."""
    procs = [
        subprocess.Popen(build_command(kind, tmp_path / f"lib{kind}.so", sanitize=True))
        for kind in BUILDS
    ]
    assert all(p.wait(timeout=300) == 0 for p in procs)
    env = dict(os.environ, FASTRIDGE_TEST_PREBUILT=str(tmp_path), LD_PRELOAD=LIBASAN)
    env["ASAN_OPTIONS"] = "detect_leaks=0"  # the Python interpreter's own allocations
    # A few cases that cover every kernel, several splits, empty splits, > 8 alphas
    # and > 256 targets (the whole file under the sanitizers takes minutes).
    cases = [
        "test_cuda_path_on_emulator[108-(150, 70)-f32]",
        "test_cuda_path_on_emulator[1-(3, 300)-f64]",
        "test_cuda_gcv_path_on_emulator[1-(200, 9, 17)-f32]",
        "test_loo_host_matches_reference[more_than_rows-5x3-f64]",
        "test_gcv_host_matches_reference[200-130x70x17-f32]",
        "test_loo_keep_dual_coefficients[f32]",
    ]
    cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider"]
    cmd += [f"{__file__}::{case}" for case in cases]
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    assert " passed" in res.stdout


# ---------------------------------------------------------------- the real kernels (CUDA)


def _cuda_or_skip():
    if not _kernels.cupy_available():
        pytest.skip("cupy not importable")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1), (33, 31), (1000, 300), (4099, 2048)])
@pytest.mark.gpu
@requires_cuda
def test_cuda_loo_matches_reference_and_host(host, dtype, shape):
    _cuda_or_skip()
    n, c = shape
    E, w = make_loo(n, c, 3, dtype, seed=n + c)
    scales = [1.0, 0.1, 0.01]

    def cuda_step(E, w, a, n, best_score, best_index, scores, keep, keep_scales):
        loo_epilogue(
            E, w, a, n, best_score, best_index, scores, keep, keep_scales[a], backend="cuda"
        )

    got = run_loo(cuda_step, E.cuda(), w.cuda(), keep_scales=scales)
    got = [x.cpu() for x in got]
    ref = run_loo(reference_step, E, w, keep_scales=scales)
    torch.testing.assert_close(got[0], ref[0], **TOL[dtype])
    assert torch.equal(got[2], ref[2])
    assert torch.equal(got[3], ref[3])
    # Same work split, same explicit fmas: the host build gives the same bits.
    n_split = choose_n_split(n, c, torch.cuda.get_device_properties(0).multi_processor_count)
    same = run_loo(host_step(host, n_split), E, w, keep_scales=scales)
    for g, h in zip(got, same, strict=True):
        assert torch.equal(g, h)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1, 1), (130, 70, 17), (4099, 2048, 3)])
@pytest.mark.gpu
@requires_cuda
def test_cuda_gcv_matches_reference_and_host(host, dtype, shape):
    _cuda_or_skip()
    rank, c, n_alphas = shape
    UtY, shrink_sq = make_gcv(rank, c, n_alphas, dtype)
    got = gcv_sums(UtY.cuda(), shrink_sq.cuda(), backend="cuda").cpu()
    torch.testing.assert_close(got, gcv_sums_reference(UtY, shrink_sq), **TOL[dtype])
    n_split = choose_n_split(rank, c, torch.cuda.get_device_properties(0).multi_processor_count)
    assert torch.equal(got, host.gcv(UtY, shrink_sq, n_split))


@pytest.mark.gpu
@requires_cuda
def test_cuda_runs_on_torch_stream():
    """Launched on torch's current stream: a side stream's results are ordered with it."""
    _cuda_or_skip()
    E, w = make_loo(500, 700, 1, torch.float32)
    E, w = E[0].cuda(), w[0].cuda()
    s = torch.cuda.Stream()
    best_score = torch.empty(700, dtype=torch.float64, device="cuda")
    best_index = torch.empty(700, dtype=torch.int64, device="cuda")
    with torch.cuda.stream(s):
        E2 = E * 2  # produced on s, consumed by the kernel on s
        loo_epilogue(E2, w, 0, 500, best_score, best_index, backend="cuda")
    s.synchronize()
    ref = torch.empty_like(best_score)
    loo_epilogue_reference(E2, w, 0, 500, ref, torch.empty_like(best_index))
    torch.testing.assert_close(best_score, ref, **TOL[torch.float32])


def test_twin_overwrite_gives_the_same_bits():
    from fastridge._kernels import loo_epilogue_reference

    g = torch.Generator().manual_seed(3)
    E = torch.randn(37, 11, generator=g)
    w = torch.rand(37, generator=g) + 1.0
    results = []
    for overwrite in (False, True):
        best_score = torch.empty(11, dtype=torch.float64)
        best_index = torch.zeros(11, dtype=torch.int64)
        scores = torch.empty(2, 11, dtype=torch.float64)
        for a in range(2):
            E_a = E * (a + 1)
            loo_epilogue_reference(
                E_a, w, a, 37, best_score, best_index, scores, overwrite=overwrite
            )
            if overwrite:
                assert torch.equal(E_a, (E * (a + 1) * w[:, None]) ** 2)  # scaled, squared
        results.append((scores, best_score, best_index))
    for x, y in zip(*results, strict=True):
        assert torch.equal(x, y)
