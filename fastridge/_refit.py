"""Step 6: coefficients for the chosen alphas, from the projection already computed.

    coef[t]      = M @ (Ũ[:, t] / (eigvals + alpha_t))        (M = Xs^T U = V diag(s))
    intercept[t] = y_offset[t] - x_offset @ coef[t]

This is the primal solution (Xs^T Xs + alpha I)^-1 Xs^T Yc written in the kept
eigenbasis, for dual and primal forms alike: no residual or dual-coefficient
GEMM is redone, the only GEMM is (n_chunk, rank) x (rank, n_features).
"""

from __future__ import annotations

import torch

from ._backend import mm
from ._cv import ProjectedChunk
from ._decompose import Decomposition


def coefficients(
    decomp: Decomposition,
    chunk: ProjectedChunk,
    alpha_per_target: torch.Tensor,
    out: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Coefficients and intercepts of one chunk.

    Parameters
    ----------
    decomp : Decomposition
    chunk : ProjectedChunk with n_chunk targets
    alpha_per_target : tensor of shape (n_chunk,)
        The alpha chosen for each target.
    out : tensor of shape (n_chunk, n_features), optional
        Where to write the coefficients (e.g. a view of the caller's host array,
        which saves a copy of the largest output).

    Returns
    -------
    coef : tensor of shape (n_chunk, n_features)
    intercept : tensor of shape (n_chunk,)
    """
    alphas, scaled = _scaled_projection(decomp, chunk, alpha_per_target)
    coef = mm(scaled.T, decomp.M.T, out=out)  # (n_chunk, n_features)
    if decomp.fit_intercept:
        # x_offset @ coef[t] from the (rank, n_chunk) projection, not another
        # pass over the (n_chunk, n_features) coefficients
        intercept = chunk.y_offset - decomp.offset_projection @ scaled
    else:
        intercept = torch.zeros_like(chunk.y_offset)
    if chunk.low_projection is not None:
        _add_low_directions(decomp, chunk, alphas, coef, intercept)
    return coef, intercept


# `_add_low_directions`: the dropped directions count for alphas this far above
# the rank tolerance tol = max(n_samples, n_features) eps lambda_max, where their
# eigenvalues' error (~eps lambda_max: the data's own rounding moves them as much)
# moves 1 / (eigval + alpha) by at most 1 / (100 max(n_samples, n_features))
LOW_ALPHA_FACTOR = 100.0


def _add_low_directions(decomp: Decomposition, chunk: ProjectedChunk, alphas, coef, intercept):
    """coef += M_low (U_low^T Yc / (eigval + alpha)), and the intercepts to match, for
    the targets whose alpha is far above the rank tolerance (`Decomposition.low`):
    eigen-directions dropped as numerically zero but above rounding. Their eigenvalues
    are below tol and inaccurate, yet at alpha >> tol their part hardly depends
    on them, and without it float64 coefficients of X of a few factors plus noise
    1e-5 (57 x 52) were 2.4e-4 off an exact solve at alpha 1e-4 lambda_max and
    5.5e-3 at 1e-8 (a differential fuzz found it); with it, 2e-12. Closer to tol
    the fit approaches the least-squares limit, where those directions would
    dominate with eigenvalues that are noise: dropped, as before."""
    _, M, eigvals, tol = decomp.low
    counted = alphas > LOW_ALPHA_FACTOR * tol  # (n_chunk,)
    if not bool(counted.any()):
        return
    shrink = 1.0 / (eigvals.to(alphas.device)[:, None] + alphas[None, :].to(torch.float64))
    scaled = chunk.low_projection * (shrink * counted[None, :]).to(coef.dtype)  # (d, n_chunk)
    coef.addmm_(scaled.T, M.T)  # (in place: no (n_chunk, n_features) temporary)
    if decomp.fit_intercept:
        intercept -= (M.T @ decomp.x_offset) @ scaled


def coordinate_predictions(decomp: Decomposition, chunk: ProjectedChunk, alpha: float):
    """Predictions less y_offset at one alpha, T diag(1 / (eigvals + alpha)) Ũ plus
    `low`'s part (see `_add_low_directions`), of the rows held out of the
    decomposition (`Decomposition.test_coordinates`), shape (n_test, n_chunk),
    compute dtype: (X_test - x_offset) coef without the coefficients, and without
    float32 X_test @ coef's cancellation. The shrinkage scales T's few rows, not
    the projection (at S, 30 folds x alphas had spent 0.11 s of 1.4 on the latter)."""
    T, T_low = decomp.test_coordinates
    shrink = 1.0 / (decomp.eigvals.to(T.device) + alpha)  # float64, (rank,)
    out = mm(T * shrink.to(T.dtype), chunk.UtY)
    if chunk.low_projection is not None and alpha > LOW_ALPHA_FACTOR * decomp.low[3]:
        low_shrink = 1.0 / (decomp.low[2].to(T.device) + alpha)
        out.addmm_(T_low * low_shrink.to(T.dtype), chunk.low_projection)
    return out


def _scaled_projection(decomp: Decomposition, chunk: ProjectedChunk, alpha_per_target):
    """(alphas (n_chunk,), Ũ / (eigvals + alpha) of shape (rank, n_chunk)), compute dtype.

    In the compute dtype: a float64 (rank, n_chunk) temporary costs more time
    than the float32 rounding of eigval + alpha costs accuracy. The projection
    is left alone (it may be reused): the denominators are built in the output
    buffer and Ũ divided into it, one temporary and two passes.
    """
    alphas = alpha_per_target.to(device=decomp.device, dtype=decomp.dtype)
    scaled = torch.add(decomp.eigvals.to(decomp.dtype)[:, None], alphas[None, :])
    return alphas, torch.div(chunk.UtY, scaled, out=scaled)


def dual_coefficients(
    decomp: Decomposition,
    chunk: ProjectedChunk,
    alpha_per_target: torch.Tensor,
    x_dot_offset: torch.Tensor | None,
    out: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Dual coefficients and intercepts of one chunk (kernel ridge form).

        c[t]         = U (Ũ[:, t] / (eigvals + alpha_t)) + remainder[:, t] / alpha_t
                     = E(alpha_t)[:, t] / alpha_t        (the residual identity, MATH.md)
        dual[t]      = sqrt(w) * c[t]
        coef[t]      = (X - x_offset)^T dual[t]          (never formed here)
        intercept[t] = y_offset[t] - x_dot_offset . dual[t]

    The GEMM is 2 n_samples rank n_chunk flops instead of the primal
    2 n_features rank n_chunk: cheaper whenever n_features > n_samples.

    Parameters
    ----------
    decomp : Decomposition
    chunk : ProjectedChunk with n_chunk targets
    alpha_per_target : tensor of shape (n_chunk,)
    x_dot_offset : tensor of shape (n_samples,) or None
        (X - x_offset) @ x_offset, the intercept's share of each sample; None
        without an intercept.
    out : tensor of shape (n_chunk, n_samples), optional

    Returns
    -------
    dual : tensor of shape (n_chunk, n_samples)
    intercept : tensor of shape (n_chunk,)
    """
    alphas, scaled = _scaled_projection(decomp, chunk, alpha_per_target)
    # the null-space part of c, remainder / alpha: no effect on predictions, kept so
    # that dual = (K + alpha I)^-1 y exactly (as kernel ridge defines it); none where
    # only samples of weight 0 are null (their dual coefficients are 0)
    # Where the remainder is rounding alone (`Decomposition.remainder_is_rounding`),
    # 1 / alpha would amplify it in a compute dtype below float64 (float32, alpha
    # 1e-4 lambda_max: fitted values 2e-3 off float64's, 4e-7 without it; a
    # differential fuzz found it). Not in float64: there it also carries what the
    # rounded U misses, and dropping it put fitted values 7e-7 off for 1e-8.
    rounding = decomp.remainder_is_rounding and decomp.dtype != torch.float64
    rest = None
    if chunk.remainder is not None and not rounding:
        rest = chunk.remainder
        # The remainder Yc - U Ũ is rounded at ~eps |y| along U too, which 1 / alpha
        # amplifies and K c multiplies by the eigenvalues: fitted values were 3e-5 off
        # in float64 at alpha 1.5e-11 lambda_max, the primal ones 8e-13 (a fuzz found
        # it). Projected out in the same GEMM: c = U (scaled - U^T rest / alpha) +
        # rest / alpha, for one more GEMM (U^T rest) where there is a remainder.
        scaled -= mm(decomp.U.T, rest) / alphas[None, :]
    dual = mm(scaled.T, decomp.U.T, out=out)  # (n_chunk, n_samples)
    if rest is not None:
        dual += (rest / alphas[None, :]).T
    if decomp.sqrt_sw is not None:
        dual *= decomp.sqrt_sw[None, :]
    if x_dot_offset is not None:
        intercept = chunk.y_offset - dual @ x_dot_offset.to(dual.dtype)
    else:
        intercept = torch.zeros_like(chunk.y_offset)
    return dual, intercept


def from_residuals(
    decomp: Decomposition,
    chunk: ProjectedChunk,
    alpha_per_target: torch.Tensor,
    residuals: torch.Tensor,
    solution: str,
    x_dot_offset: torch.Tensor | None,
    out: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Coefficients and intercepts of one chunk from its residuals E(alpha_t) (the
    Gram-form leave-one-out route, `_cv.DualRoute`), with c = E / alpha the dual
    coefficients in the weighted space (MATH.md):

        primal: coef[t] = Xs^T c[t],  intercept[t] = y_offset[t] - (Xs x_offset) . c[t]
        dual:   dual[t] = sqrt(w) * c[t],  intercept[t] = y_offset[t] - x_dot_offset . dual[t]

    Parameters
    ----------
    decomp : Decomposition in Gram form (with `design`)
    chunk : ProjectedChunk with n_chunk targets
    alpha_per_target : tensor of shape (n_chunk,)
    residuals : tensor of shape (n_chunk, n_samples)
        E of each target's alpha, one target per row; overwritten with c.
    solution : {"primal", "dual"}
    x_dot_offset : tensor of shape (n_samples,) or None
        See `dual_coefficients` (dual only).
    out : tensor of shape (n_chunk, n_features or n_samples), optional

    Returns
    -------
    coef : tensor of shape (n_chunk, n_features), or (n_chunk, n_samples) for dual
    intercept : tensor of shape (n_chunk,)
    """
    alphas = alpha_per_target.to(device=decomp.device, dtype=decomp.dtype)
    c = residuals.div_(alphas[:, None])  # (n_chunk, n_samples)
    if solution == "dual":
        if out is None:
            out = torch.empty_like(c)  # (c is a buffer the next chunk reuses)
        if decomp.sqrt_sw is None:
            dual = out.copy_(c)
        else:
            dual = torch.mul(c, decomp.sqrt_sw[None, :], out=out)
        if x_dot_offset is None:
            return dual, torch.zeros_like(chunk.y_offset)
        return dual, chunk.y_offset - dual @ x_dot_offset.to(dual.dtype)
    coef = mm(c, decomp.design, out=out)  # (n_chunk, n_features)
    if not decomp.fit_intercept:
        return coef, torch.zeros_like(chunk.y_offset)
    return coef, chunk.y_offset - c @ decomp.design_offset


X_FIT_BLOCK_BYTES = 64 << 20  # training rows `dual_kernel` takes in float64 at a time


def dual_kernel(X: torch.Tensor, X_fit, mean: torch.Tensor, read=None):
    """The kernel of a dual model's predictions, centred:

        K     = (X - mean) (X_fit - mean)^T    (n_rows, n_fit), X's dtype
        x_dot = (X_fit - mean) @ mean          (n_fit,), X's dtype (made in float64)

    Predictions X (X_fit - mean)^T dual^T + intercept are K dual^T + (intercept +
    dual @ x_dot), since X (X_fit - mean)^T = K + 1 x_dot^T. Centred, K is rounded
    at eps |X - mean| |X_fit - mean| rather than eps |X| |X_fit|, and the dual
    coefficients (~y / alpha) amplify that: float32 predictions of X offset by 5
    at alpha 2.4e-4 lambda_max were 5e-3 off, from dual coefficients good to 8e-5
    (a fuzz found it). x_dot is made as the fit makes it for the intercepts
    (`_decompose.decompose`), whose rounding it then meets.

    Parameters
    ----------
    X : tensor of shape (n_rows, n_features)
    X_fit : tensor or array of shape (n_fit, n_features)
        The training samples, read X_FIT_BLOCK_BYTES of float64 at a time.
    mean : tensor of shape (n_features,), float64
    read : callable, optional
        A block of X_fit's rows to a tensor (default: the block itself).

    Returns
    -------
    K : tensor of shape (n_rows, n_fit)
    x_dot : tensor of shape (n_fit,)
    """
    n_fit, n_features = X_fit.shape
    mean = mean.to(device=X.device, dtype=torch.float64)
    mean_sq = mean @ mean
    Xc = X - mean.to(X.dtype)
    K = X.new_empty((X.shape[0], n_fit))
    x_dot = torch.empty(n_fit, dtype=torch.float64, device=X.device)
    step = max(1, X_FIT_BLOCK_BYTES // max(1, n_features * 8))
    for start in range(0, n_fit, step):
        block = X_fit[start : start + step]
        block = (block if read is None else read(block)).to(X.device, torch.float64)
        stop = start + block.shape[0]
        x_dot[start:stop] = block @ mean - mean_sq
        mm(Xc, (block - mean).to(X.dtype).T, out=K[:, start:stop])
    return K, x_dot.to(X.dtype)
