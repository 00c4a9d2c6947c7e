"""Checks on user input, each failing with a ValueError/TypeError that names the problem.

X is small enough to hold in memory (the decomposition needs it); Y may not be:
a numpy memmap is never read whole here. Its dtype and shape are checked now and
its values chunk by chunk as the solver reads them (`check_finite_chunk`).
"""

from __future__ import annotations

import numbers

import numpy as np
import torch
from sklearn.utils.validation import check_scalar

from ._backend import array_kind


def check_alphas(alphas) -> np.ndarray:
    """Validate `alphas` (scalar or sequence) -> float64 array of shape (n_alphas,).

    Messages match scikit-learn's RidgeCV ("alphas[1] == -1, must be > 0.0").
    """
    if isinstance(alphas, torch.Tensor):
        alphas = alphas.detach().cpu().numpy()
    if array_kind(alphas) == "cupy":
        alphas = alphas.get()
    if isinstance(alphas, numbers.Number) or np.ndim(alphas) == 0:
        values = [("alphas", alphas.item() if hasattr(alphas, "item") else alphas)]
    else:
        if np.ndim(alphas) > 1:  # (flattened, a grid's shape would be lost unsaid)
            raise ValueError(
                f"alphas must be a scalar or a 1-D sequence, got shape {np.shape(alphas)}"
            )
        seq = list(np.asarray(alphas, dtype=object).ravel())
        if len(seq) == 0:
            raise ValueError("alphas is empty: give at least one positive value")
        names = ["alphas"] if len(seq) == 1 else [f"alphas[{i}]" for i in range(len(seq))]
        values = [
            (name, v.item() if hasattr(v, "item") else v)
            for name, v in zip(names, seq, strict=True)
        ]
    out = []
    for name, value in values:
        if isinstance(value, bool):
            raise TypeError(f"{name} must be an instance of float, not bool")
        check_scalar(
            value, name, target_type=numbers.Real, min_val=0.0, include_boundaries="neither"
        )
        if not np.isfinite(value):
            raise ValueError(f"{name} == {value}, must be finite")
        out.append(float(value))
    return np.asarray(out, dtype=np.float64)


def check_finite_chunk(
    t: torch.Tensor,
    name: str,
    first_target: int | None = None,
    target_shape: tuple = (),
    source_dtype=None,
) -> None:
    """Raise if a tensor holds NaN or infinity (checked per target chunk for Y).

    With `first_target` (the flat index of column 0 of `t`), the message names
    the first offending sample and target. `source_dtype` (numpy or torch), wider
    than t's, is what t was cast from: an infinity is then said to be an overflow
    of the cast (a finite float64 1e39 is inf in float32).
    """
    # Screen with column sums first: a NaN or infinity anywhere makes its column's
    # sum non-finite, and a sum is one read of the chunk, ~10x faster on CPU than
    # isfinite(t).all() (which writes a boolean copy; measured 0.025 s against
    # 0.23-0.34 s for 2000 x 20000 float32). A sum that overflows on finite values
    # only sends the chunk to the exact check below, which then passes it.
    if t.numel() == 0:
        return
    sums = t.sum(dim=0)
    if bool(torch.isfinite(sums).all()):
        if first_target is not None and t.ndim == 2:  # (a chunk of targets)
            _check_not_tiny(t, sums, name, first_target, target_shape)
        return
    finite = torch.isfinite(t)
    if bool(finite.all()):
        return
    kind = "NaN" if bool(torch.isnan(t).any()) else "infinity"
    where = ""
    if first_target is not None and t.ndim == 2:
        row, col = (int(i) for i in torch.nonzero(~finite)[0])
        where = f" (first at sample {row}, target {target_name(first_target, col, target_shape)})"
    if (
        kind == "infinity"
        and source_dtype is not None
        and _itemsize(source_dtype) > t.element_size()
    ):
        raise ValueError(
            f"Input {name} overflows {str(t.dtype)[6:]}{where}: its values exceed "
            f"{torch.finfo(t.dtype).max:.3g} (or it contains infinity); compute in "
            f"float64 or rescale {name}."
        )
    raise ValueError(f"Input {name} contains {kind}{where}.")


def target_name(first_target: int, col: int, target_shape: tuple):
    """Target `col` of a chunk starting at flat index `first_target`, as the user
    indexes it (a tuple for targets of 2 or more dimensions)."""
    target = first_target + col
    if len(target_shape) > 1:
        return tuple(int(i) for i in np.unravel_index(target, target_shape))
    return target


def _check_not_tiny(t: torch.Tensor, sums, name: str, first_target: int, target_shape: tuple):
    """Raise if a target's values are all so small that their squares, and its
    residuals', underflow in t's dtype: its scores are then 0 for every alpha and the
    first alpha wins (float32 Y of values ~1e-25 chose 0.1 for all 300 targets where
    float64 chose 10 to 100; a CLI review found it). Screened by the column sums
    already made: only columns of tiny sums are looked at (an exactly constant or
    zero target passes)."""
    small = 1e4 * float(torch.finfo(t.dtype).tiny) ** 0.5  # (1.1e-15 in float32)
    suspects = torch.nonzero(sums.abs() < small * t.shape[0])[:, 0]
    if not suspects.numel():
        return
    peak = t[:, suspects].abs().amax(dim=0)
    bad = torch.nonzero((peak > 0) & (peak < small))[:, 0]
    if bad.numel():
        col = int(suspects[bad[0]])
        raise ValueError(
            f"Input {name} is too small for {str(t.dtype)[6:]}: target "
            f"{target_name(first_target, col, target_shape)} reaches only "
            f"{float(peak[bad[0]]):.3g}, below {small:.2g}, where the squares of its "
            f"residuals underflow; rescale {name} (the chosen alphas do not change) or "
            "compute in float64."
        )


def _itemsize(dtype) -> int:
    """Bytes per value of a numpy or torch dtype."""
    return dtype.itemsize if isinstance(dtype, torch.dtype) else np.dtype(dtype).itemsize


def check_target_array(Y, n_samples: int):
    """Check Y's type, dtype and shape without reading its values.

    Returns (Y, target_shape) where Y is a numpy array (memmaps untouched),
    torch tensor or cupy array with a float dtype and ``Y.shape[0] == n_samples``.
    """
    kind = array_kind(Y)
    if kind == "numpy" and not isinstance(Y, np.ndarray):
        Y = np.asarray(Y)
    dtype = Y.dtype
    if kind == "torch":
        if dtype.is_complex:
            raise ValueError("Complex data not supported in y")
        if not dtype.is_floating_point:
            if dtype == torch.bool:
                raise ValueError("y has dtype bool; give numeric targets")
            Y = Y.to(torch.float64)
    else:
        npdt = np.dtype(dtype)
        if npdt.kind == "c":
            raise ValueError("Complex data not supported in y")
        if npdt.kind == "O":
            try:
                Y = np.asarray(Y, dtype=np.float64)
            except (TypeError, ValueError) as exc:
                raise ValueError(
                    f"y has dtype object and cannot be converted to float: {exc}"
                ) from None
        elif npdt.kind not in "iubf":
            # integers and booleans are converted chunk by chunk as they are read
            # (a memmap is never converted whole)
            raise ValueError(f"y has non-numeric dtype {npdt}; give a float or integer array")
    if Y.ndim == 0:
        raise ValueError("y is a scalar; expected an array of shape (n_samples, ...)")
    if Y.shape[0] != n_samples:
        raise ValueError(
            f"X and y have inconsistent numbers of samples: X has {n_samples}, "
            f"y has {Y.shape[0]} (y.shape={tuple(Y.shape)})"
        )
    target_shape = tuple(Y.shape[1:])
    if 0 in target_shape:
        raise ValueError(f"y has no targets (shape {tuple(Y.shape)})")
    return Y, target_shape


def check_sample_weight(sample_weight, n_samples: int, dtype=None) -> np.ndarray | None:
    """Validate sample weights -> float64 array of shape (n_samples,) or None; with
    `dtype` (the compute dtype), positive weights must be above its smallest normal
    number (the weights of the fit are sqrt(w)^2 in it: float32 weights of 1e-60
    had rounded to 0 and made an all-NaN model, exit 0)."""
    if sample_weight is None:
        return None
    if isinstance(sample_weight, torch.Tensor):
        sample_weight = sample_weight.detach().cpu().numpy()
    if array_kind(sample_weight) == "cupy":
        sample_weight = sample_weight.get()
    try:
        sw = np.asarray(sample_weight, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"sample_weight cannot be converted to float: {exc}") from None
    if sw.ndim == 0:
        sw = np.full(n_samples, float(sw))
    if sw.ndim != 1:
        # scikit-learn's wording (_check_sample_weight)
        raise ValueError(
            f"Sample weights must be 1D array or scalar, got {sw.ndim}D array. Expected "
            f"either a scalar value or a 1D array of length {n_samples}."
        )
    if sw.shape[0] != n_samples:
        raise ValueError(f"sample_weight.shape == {sw.shape}, expected ({n_samples},)!")
    if not np.all(np.isfinite(sw)):
        raise ValueError("sample_weight contains NaN or infinity.")
    if np.any(sw < 0):
        raise ValueError("Negative values in data passed to sample_weight")
    if not np.any(sw > 0):
        raise ValueError("sample_weight is zero everywhere: at least one sample needs weight")
    if dtype is not None:
        tiny = float(torch.finfo(dtype).tiny)
        smallest = float(sw[sw > 0].min())
        if smallest < tiny:
            raise ValueError(
                f"sample_weight has positive values down to {smallest:.3g}, below "
                f"{str(dtype)[6:]}'s range ({tiny:.3g}): compute in float64, or scale the "
                "weights and alphas up together (w * c with alpha * c fit the same model)"
            )
    return sw
