"""Fused CUDA epilogues (kernels/epilogue.cu) and their plain-torch reference twins.

Each kernel has a twin here, in plain torch, that defines what it computes; the
twin is what runs on CPU and whenever cupy is missing, and tests/test_kernels.py
compares the two (see kernels/README.md for the table kernel -> twin -> test).

- `loo_epilogue` / `loo_epilogue_reference`: for one alpha index `a` and one
  target chunk, the leave-one-out score -sum_i (E[i, t] w[i])^2 / n_samples of
  every target (scikit-learn RidgeCV's scoring=None, w = 1 / (1 - h)), stored in
  `scores[a]` if given, and the running per-target best alpha (ties keep the
  alpha listed first, NaN never wins, as `fastridge._scoring.select`). Optionally
  keeps `E[:, t] * keep_scale` of each target's best alpha so far (keep_scale =
  1 / alpha keeps the dual coefficients c = E / alpha, MATH.md).
- `gcv_sums` / `gcv_sums_reference`: sum_j shrink_sq[a, j] UtY[j, t]^2 for every
  alpha, one pass over UtY (the alpha-dependent part of GCV's squared errors).

The kernels accumulate in float64 for float32 and float64 inputs alike; the
twins sum blocks of 256 squares in the compute dtype and the block sums in
float64 (as the engine's scoring does), so on float32 the kernels are slightly
the more accurate of the two.

The kernels run only for CUDA tensors with cupy importable; cupy is imported
here lazily, never by `import fastridge`. Tensors go to cupy through DLPack (no
copies) and kernels are launched on torch's current stream.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import numpy as np
import torch

from ._backend import column_sq_sums

_SOURCE = "epilogue.cu"
_HEADER = "epilogue.cuh"
# Must match kernels/epilogue.cuh.
_BLOCK_COLS = 32
_BLOCK_ROWS = 8
_GCV_ALPHAS = 8
_FINALIZE_THREADS = 256
# Each row lane of a split should still add up a few rows.
_MIN_ROWS_PER_SPLIT = 64
_MAX_SPLIT = 1024

_CTYPE = {torch.float32: "float", torch.float64: "double"}


# ---------------------------------------------------------------- reference twins


def loo_epilogue_reference(
    E: torch.Tensor,
    w: torch.Tensor,
    a: int,
    n_samples: int,
    best_score: torch.Tensor,
    best_index: torch.Tensor,
    scores: torch.Tensor | None = None,
    keep: torch.Tensor | None = None,
    keep_scale: float = 1.0,
    overwrite: bool = False,
) -> None:
    """Score one alpha for a chunk of targets and update the per-target best, in place.

    Plain torch, any device. The arithmetic is the engine's
    (`_backend.column_sq_sums`): squares of E * w in the compute dtype, summed
    over blocks of 256 rows, the block sums in float64, divided by -n_samples.

    Parameters
    ----------
    E : tensor of shape (n_samples, n_chunk), float32 or float64
        In-sample residuals of alpha `a`.
    w : tensor of shape (n_samples,), dtype of E, or None
        1 / (1 - h) for alpha `a` (leave-one-out scaling); None when E is
        already scaled (the same as ones, without the multiplication).
    a : int
        Index of the alpha; alphas must be visited in order 0, 1, ..., and
        a == 0 initialises `best_score` and `best_index`.
    n_samples : int
        Divisor of the score (the number of rows of E).
    best_score : tensor of shape (n_chunk,), float64
        Best score so far per target, updated in place.
    best_index : tensor of shape (n_chunk,), int64
        Index of the best alpha so far per target, updated in place. A later
        alpha replaces it only on a strictly better score (ties keep the first).
    scores : tensor of shape (n_alphas, n_chunk), float64, optional
        If given, row `a` receives the scores.
    keep : tensor of shape (n_samples, n_chunk), dtype of E, optional
        If given, columns whose best alpha became `a` receive E[:, t] * keep_scale.
    keep_scale : float
        Scale of the kept columns (1 / alpha keeps the dual coefficients).
    overwrite : bool
        Scale and square E in place instead of into a new (n_samples, n_chunk) tensor (the
        engine's E is a scratch buffer; a fresh allocation per alpha costs page
        faults). Scores are the same bits either way. Not with `keep`.
    """
    _check_loo(E, w, a, n_samples, best_score, best_index, scores, keep)
    if overwrite and keep is not None:
        raise ValueError("overwrite=True cannot keep columns of E (it squares E in place)")
    # Scaled first, then squared: the same bits as Scoring(None) on scaled residuals.
    if w is None:
        resid = E
    else:
        resid = E.mul_(w[:, None]) if overwrite else E * w[:, None]
    score = -column_sq_sums(resid, overwrite=overwrite) / n_samples
    if scores is not None:
        scores[a] = score
    update_best(score, a, best_score, best_index)
    if keep is not None:
        scale = torch.tensor(keep_scale, dtype=E.dtype, device=E.device)
        keep.copy_(torch.where((best_index == a)[None, :], E * scale, keep))


def gcv_sums_reference(UtY: torch.Tensor, shrink_sq: torch.Tensor) -> torch.Tensor:
    """sum_j shrink_sq[a, j] UtY[j, t]^2 for every alpha, in the compute dtype.

    Parameters
    ----------
    UtY : tensor of shape (rank, n_chunk), float32 or float64
    shrink_sq : tensor of shape (n_alphas, rank), dtype of UtY
        (alpha / (eigvals + alpha))^2 per alpha.

    Returns
    -------
    sums : tensor of shape (n_alphas, n_chunk), float64
    """
    _check_gcv(UtY, shrink_sq)
    return (shrink_sq @ (UtY * UtY)).to(torch.float64)


def update_best(score: torch.Tensor, a: int, best_score: torch.Tensor, best_index: torch.Tensor):
    """Fold alpha `a`'s scores (n_chunk,) into the running best per target, in place
    (alphas visited in order 0, 1, ...; a == 0 initialises). A later alpha wins
    only on a strictly better score and NaN never wins, as `_scoring.select`.
    Returns the mask of targets whose best became `a` (None for a == 0: all)."""
    if a == 0:
        best_score.copy_(score)
        best_index.fill_(0)
        return None
    better = _beats(score, best_score)
    best_score.copy_(torch.where(better, score, best_score))
    best_index.masked_fill_(better, a)
    return better


def _beats(score: torch.Tensor, best: torch.Tensor) -> torch.Tensor:
    """score > best with NaN counted as -inf (so NaN never wins), as _scoring.select."""
    return ~torch.isnan(score) & torch.where(torch.isnan(best), score > -torch.inf, score > best)


# ---------------------------------------------------------------- dispatch


def loo_epilogue(
    E: torch.Tensor,
    w: torch.Tensor,
    a: int,
    n_samples: int,
    best_score: torch.Tensor,
    best_index: torch.Tensor,
    scores: torch.Tensor | None = None,
    keep: torch.Tensor | None = None,
    keep_scale: float = 1.0,
    *,
    backend: str = "auto",
    overwrite: bool = False,
) -> None:
    """`loo_epilogue_reference`, run by the fused CUDA kernel when possible.

    backend : "auto", "torch" or "cuda"
        "auto" uses the kernel for CUDA tensors when cupy imports, else the
        torch twin; "cuda" insists on the kernel (error if it cannot run).
    overwrite : bool
        Lets the torch twin scale and square E in place (the kernel never needs to).
        Same parameters otherwise.
    """
    if _use_kernel(E, backend):
        _check_loo(E, w, a, n_samples, best_score, best_index, scores, keep)
        _loo_epilogue_cuda(E, w, a, n_samples, best_score, best_index, scores, keep, keep_scale)
    else:
        loo_epilogue_reference(
            E, w, a, n_samples, best_score, best_index, scores, keep, keep_scale, overwrite
        )


def gcv_sums(UtY: torch.Tensor, shrink_sq: torch.Tensor, *, backend: str = "auto") -> torch.Tensor:
    """`gcv_sums_reference`, run by the fused CUDA kernel when possible (see loo_epilogue)."""
    if _use_kernel(UtY, backend):
        _check_gcv(UtY, shrink_sq)
        return _gcv_sums_cuda(UtY, shrink_sq)
    return gcv_sums_reference(UtY, shrink_sq)


def _use_kernel(x, backend: str) -> bool:
    if backend not in ("auto", "torch", "cuda"):
        raise ValueError(f"backend must be 'auto', 'torch' or 'cuda', got {backend!r}")
    # Not a tensor: let the twin's checks name the problem.
    on_cuda = isinstance(x, torch.Tensor) and x.device.type == "cuda"
    if backend == "torch":
        return False
    if backend == "cuda":
        if not on_cuda:
            raise ValueError(f"backend='cuda' needs CUDA tensors, got {_describe(x)} on CPU")
        if not cupy_available():
            raise RuntimeError("backend='cuda' needs cupy, which is not importable")
        return True
    return on_cuda and cupy_available()


@functools.cache
def cupy_available() -> bool:
    """Whether cupy imports (checked once; only called for CUDA tensors)."""
    if importlib.util.find_spec("cupy") is None:
        return False
    try:
        import cupy  # noqa: F401
    except Exception:  # a broken CUDA install shows up as any error; fall back to torch
        return False
    return True


# ---------------------------------------------------------------- checks


def _check_loo(E, w, a, n_samples, best_score, best_index, scores, keep) -> None:
    if not isinstance(E, torch.Tensor) or E.ndim != 2 or E.dtype not in _CTYPE:
        raise ValueError(
            "E must be a float32 or float64 tensor of shape (n_samples, n_chunk), got "
            f"{_describe(E)}"
        )
    n_rows, n_cols = E.shape
    if n_rows < 1 or n_cols < 1:
        raise ValueError(f"E must have at least one row and one column, got shape {tuple(E.shape)}")
    if w is not None:
        _expect(w, "w", (n_rows,), E.dtype, E.device)
    if int(n_samples) != n_samples or n_samples < 1:
        raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}")
    if int(a) != a or a < 0:
        raise ValueError(f"alpha index a must be a non-negative integer, got {a!r}")
    _expect(best_score, "best_score", (n_cols,), torch.float64, E.device)
    _expect(best_index, "best_index", (n_cols,), torch.int64, E.device)
    if scores is not None:
        if scores.ndim != 2 or scores.shape[1] != n_cols or a >= scores.shape[0]:
            raise ValueError(
                f"scores must have shape (n_alphas > {a}, {n_cols}), got {_describe(scores)}"
            )
        _expect(scores, "scores", tuple(scores.shape), torch.float64, E.device)
    if keep is not None:
        _expect(keep, "keep", (n_rows, n_cols), E.dtype, E.device)


def _check_gcv(UtY, shrink_sq) -> None:
    if not isinstance(UtY, torch.Tensor) or UtY.ndim != 2 or UtY.dtype not in _CTYPE:
        raise ValueError(
            "UtY must be a float32 or float64 tensor of shape (rank, n_chunk), got "
            f"{_describe(UtY)}"
        )
    if not isinstance(shrink_sq, torch.Tensor) or shrink_sq.ndim != 2:
        raise ValueError(
            f"shrink_sq must be a tensor of shape (n_alphas, rank), got {_describe(shrink_sq)}"
        )
    if shrink_sq.shape[0] < 1:
        raise ValueError("shrink_sq must have at least one alpha (row)")
    _expect(shrink_sq, "shrink_sq", (shrink_sq.shape[0], UtY.shape[0]), UtY.dtype, UtY.device)


def _expect(x, name, shape, dtype, device) -> None:
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a tensor, got {type(x).__name__}")
    if tuple(x.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {tuple(x.shape)}")
    if x.dtype != dtype:
        raise ValueError(f"{name} must have dtype {dtype}, got {x.dtype}")
    if x.device != device:
        raise ValueError(f"{name} must be on {device}, got {x.device}")


def _describe(x) -> str:
    if isinstance(x, torch.Tensor):
        return f"a {x.dtype} tensor of shape {tuple(x.shape)}"
    return type(x).__name__


# ---------------------------------------------------------------- CUDA path


def kernels_dir() -> Path:
    """Directory holding epilogue.cu and epilogue.cuh.

    Installed, they are package data of `fastridge.kernels` (fastridge/kernels/);
    in a source checkout they are kernels/ next to the package.
    """
    here = Path(__file__).resolve().parent
    for candidate in (here / "kernels", here.parent / "kernels"):
        if (candidate / _SOURCE).is_file() and (candidate / _HEADER).is_file():
            return candidate
    raise FileNotFoundError(
        f"CUDA kernel sources {_SOURCE} and {_HEADER} not found in {here / 'kernels'} "
        f"or {here.parent / 'kernels'}"
    )


def kernel_source() -> str:
    """epilogue.cu with epilogue.cuh pasted in place of its #include.

    One self-contained string: NVRTC needs no include path, and cupy's compile
    cache (keyed on the source text) sees any change to the header.
    """
    d = kernels_dir()
    source = (d / _SOURCE).read_text()
    include = f'#include "{_HEADER}"'
    if include not in source:
        raise RuntimeError(f"{d / _SOURCE} no longer includes {_HEADER}")
    return source.replace(include, (d / _HEADER).read_text(), 1)


def choose_n_split(n_rows: int, n_cols: int, n_sm: int) -> int:
    """Row splits of the partial-sum kernels: enough blocks to fill the device.

    A chunk of n_cols targets gives only ceil(n_cols / 32) column tiles (64 for
    2048 targets, fewer than an A100's 108 SMs), so rows are split too, aiming
    at ~8 resident 256-thread blocks per SM, while every row lane keeps a few
    rows to add. The result depends on (n_rows, n_cols, n_sm) only, so a run is
    reproducible on a given device model.
    """
    tiles = -(-n_cols // _BLOCK_COLS)
    want = -(-8 * n_sm // tiles)
    most = max(1, n_rows // _MIN_ROWS_PER_SPLIT)
    return int(max(1, min(want, most, _MAX_SPLIT)))


_NAMES = (
    "fastridge::loo_partial<float>",
    "fastridge::loo_partial<double>",
    "fastridge::loo_finalize",
    "fastridge::loo_keep<float>",
    "fastridge::loo_keep<double>",
    "fastridge::gcv_partial<float>",
    "fastridge::gcv_partial<double>",
    "fastridge::gcv_finalize",
)


@functools.cache
def _module(device_index: int):
    """The compiled RawModule for one device (compiled once per process and device)."""
    import cupy

    with cupy.cuda.Device(device_index):
        # --fmad=false: every fma is explicit in epilogue.cuh, so the kernels give
        # the bits of the host build tests/test_kernels.py checks.
        return cupy.RawModule(
            code=kernel_source(),
            options=("--std=c++17", "--fmad=false"),
            name_expressions=_NAMES,
        )


def _launch(device: torch.device, name: str, grid, block, args) -> None:
    """Launch kernel `name` on torch's current stream; tensor arguments go through DLPack.

    The DLPack hand-over happens inside the stream context, so producer (torch)
    and consumer (cupy) streams are the same and nothing synchronises.
    """
    import cupy

    index = device.index if device.index is not None else torch.cuda.current_device()
    stream = torch.cuda.current_stream(index)
    with cupy.cuda.Device(index), cupy.cuda.ExternalStream(stream.cuda_stream):
        # cupy.from_dlpack: a view of the same memory, no copy.
        kernel_args = tuple(
            cupy.from_dlpack(x.detach()) if isinstance(x, torch.Tensor) else x for x in args
        )
        _module(index).get_function(name)(grid, block, kernel_args)


def _rows_contiguous(x: torch.Tensor) -> torch.Tensor:
    # The kernels take a row stride but need unit column stride.
    return x if x.stride(-1) == 1 else x.contiguous()


def _n_sm(device: torch.device) -> int:
    return torch.cuda.get_device_properties(device).multi_processor_count


def _loo_epilogue_cuda(E, w, a, n_samples, best_score, best_index, scores, keep, keep_scale):
    E = _rows_contiguous(E)
    # E already scaled: unit weights (x * 1 is exact, so the same bits as the twin)
    w = torch.ones(E.shape[0], dtype=E.dtype, device=E.device) if w is None else w.contiguous()
    for name, t in (("best_score", best_score), ("best_index", best_index)):
        if not t.is_contiguous():
            raise ValueError(f"{name} must be contiguous for the CUDA kernel")
    if scores is not None and not scores[a].is_contiguous():
        raise ValueError("scores[a] must be contiguous for the CUDA kernel")
    if keep is not None and keep.stride(-1) != 1:
        raise ValueError("keep must have unit column stride for the CUDA kernel")
    n_rows, n_cols = E.shape
    ctype = _CTYPE[E.dtype]
    n_split = choose_n_split(n_rows, n_cols, _n_sm(E.device))
    partial = torch.empty((n_split, n_cols), dtype=torch.float64, device=E.device)
    tiles = -(-n_cols // _BLOCK_COLS)
    args = (E, np.int64(E.stride(0)), w, np.int64(n_rows), np.int64(n_cols), np.int32(n_split))
    _launch(
        E.device,
        f"fastridge::loo_partial<{ctype}>",
        (tiles, n_split),
        (_BLOCK_COLS, _BLOCK_ROWS),
        (*args, partial),
    )
    # Without a score buffer the kernel ignores scores_row; any valid pointer will do.
    scores_row = scores[a] if scores is not None else best_score
    args = (partial, np.int64(n_cols), np.int32(n_split), np.int64(n_samples), np.int32(a))
    _launch(
        E.device,
        "fastridge::loo_finalize",
        (-(-n_cols // _FINALIZE_THREADS),),
        (_FINALIZE_THREADS,),
        (*args, np.int32(scores is not None), scores_row, best_score, best_index),
    )
    if keep is not None:
        scalar = np.float32 if E.dtype == torch.float32 else np.float64
        row_blocks = min(-(-n_rows // _BLOCK_ROWS), 65535)
        args = (E, np.int64(E.stride(0)), keep, np.int64(keep.stride(0)), np.int64(n_rows))
        _launch(
            E.device,
            f"fastridge::loo_keep<{ctype}>",
            (tiles, row_blocks),
            (_BLOCK_COLS, _BLOCK_ROWS),
            (*args, np.int64(n_cols), best_index, np.int32(a), scalar(keep_scale)),
        )


def _gcv_sums_cuda(UtY, shrink_sq) -> torch.Tensor:
    UtY = _rows_contiguous(UtY)
    shrink_sq = _rows_contiguous(shrink_sq)
    rank, n_cols = UtY.shape
    n_alphas = shrink_sq.shape[0]
    ctype = _CTYPE[UtY.dtype]
    n_split = choose_n_split(rank, n_cols, _n_sm(UtY.device))
    partial = torch.empty((n_split, n_alphas, n_cols), dtype=torch.float64, device=UtY.device)
    out = torch.empty((n_alphas, n_cols), dtype=torch.float64, device=UtY.device)
    tiles = -(-n_cols // _BLOCK_COLS)
    args = (UtY, np.int64(UtY.stride(0)), shrink_sq, np.int64(shrink_sq.stride(0)), np.int64(rank))
    _launch(
        UtY.device,
        f"fastridge::gcv_partial<{ctype}>",
        (tiles, n_split, -(-n_alphas // _GCV_ALPHAS)),
        (_BLOCK_COLS, _BLOCK_ROWS),
        (*args, np.int64(n_cols), np.int32(n_alphas), np.int32(n_split), partial),
    )
    _launch(
        UtY.device,
        "fastridge::gcv_finalize",
        (-(-n_cols // _FINALIZE_THREADS), n_alphas),
        (_FINALIZE_THREADS,),
        (partial, np.int32(n_split), np.int32(n_alphas), np.int64(n_cols), out),
    )
    return out
