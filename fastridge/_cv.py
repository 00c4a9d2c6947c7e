"""Step 3-4: project a target chunk once, then held-out residuals for each alpha.

Notation of ../shared/MATH.md, in the sample-weighted ("scaled") space where
Yc = sqrt(w) * (Y - y_offset):

    Ũ          = U^T Yc                                    (rank, n_chunk)   one GEMM per chunk
    remainder  = Yc - U Ũ                                  (n_samples, n_chunk), alpha-free
    E(alpha)   = remainder + U diag(alpha / (eigvals + alpha)) Ũ              one GEMM per alpha
    1 - h_i    = leverage_rest_i + sum_j U_ij^2 alpha / (eigvals_j + alpha)

Writing E with the shrinkage alpha / (eigvals + alpha) (rather than Yc - U phi Ũ)
keeps float32 accurate when alpha is small: nothing cancels. When X has full
row rank the remainder is exactly zero and is skipped.

A CV scheme turns E into held-out residuals:
- `LeaveOneOut`: E / (1 - h), exact (scikit-learn's RidgeCV(cv=None)).
- `GeneralizedCV`: E / (1 - tr(H) / n_samples); its squared-error sums need no
  GEMM at all (O(rank * n_chunk) per alpha).
The K-fold / leave-group-out scheme slots in as another class with the same
`heldout_residuals` method and its own `folds`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ._decompose import Decomposition


@dataclass
class ProjectedChunk:
    """One target chunk after the alpha-free work.

    Attributes
    ----------
    y : tensor of shape (n_samples, n_chunk) or None
        The raw targets, kept only when a score needs them.
    Yc : tensor of shape (n_samples, n_chunk)
        sqrt(w) * (y - y_offset).
    y_offset : tensor of shape (n_chunk,)
        Weighted target mean with an intercept, zeros without.
    UtY : tensor of shape (rank, n_chunk)
        U^T Yc.
    remainder : tensor of shape (n_samples, n_chunk) or None
        Yc - U UtY; None when it is zero by construction.
    """

    y: torch.Tensor | None
    Yc: torch.Tensor
    y_offset: torch.Tensor
    UtY: torch.Tensor
    remainder: torch.Tensor | None


def project(decomp: Decomposition, Y: torch.Tensor, keep_y: bool = False) -> ProjectedChunk:
    """Centre/weight a chunk Y of shape (n_samples, n_chunk) and project it on U."""
    if decomp.fit_intercept:
        if decomp.sqrt_sw is None:
            y_offset = Y.mean(dim=0)
        else:
            w = decomp.sqrt_sw * decomp.sqrt_sw
            y_offset = (w / w.sum()) @ Y
    else:
        y_offset = torch.zeros(Y.shape[1], dtype=Y.dtype, device=Y.device)
    y = Y if keep_y else None
    # Never in place: Y may be a view of the caller's array.
    Yc = Y - y_offset
    if decomp.sqrt_sw is not None:
        Yc.mul_(decomp.sqrt_sw[:, None])
    UtY = decomp.U.T @ Yc
    remainder = None
    if decomp.has_remainder:
        remainder = torch.addmm(Yc, decomp.U, UtY, alpha=-1.0)
    return ProjectedChunk(y=y, Yc=Yc, y_offset=y_offset, UtY=UtY, remainder=remainder)


def shrinkage(decomp: Decomposition, alphas) -> torch.Tensor:
    """alpha / (eigvals + alpha) = 1 - phi, tensor of shape (n_alphas, rank), float64."""
    a = torch.as_tensor(alphas, dtype=torch.float64, device=decomp.device)
    return a[:, None] / (decomp.eigvals[None, :] + a[:, None])


def residuals(
    decomp: Decomposition, chunk: ProjectedChunk, shrink: torch.Tensor, out: torch.Tensor
) -> torch.Tensor:
    """In-sample residuals E(alpha) of shape (n_samples, n_chunk), written into `out`.

    `shrink` is one row of `shrinkage` (shape (rank,)), in the compute dtype.
    """
    scaled = chunk.UtY * shrink[:, None]
    if chunk.remainder is None:
        return torch.mm(decomp.U, scaled, out=out)
    return torch.addmm(chunk.remainder, decomp.U, scaled, out=out)


class LeaveOneOut:
    """Exact leave-one-out residuals E / (1 - h) for every alpha.

    Parameters
    ----------
    decomp : Decomposition
    alphas : array of shape (n_alphas,)
    """

    name = "loo"

    def __init__(self, decomp: Decomposition, alphas):
        self.decomp = decomp
        shrink = shrinkage(decomp, alphas)  # (n_alphas, rank), float64
        U2 = (decomp.U.to(torch.float64)) ** 2
        one_minus_h = decomp.leverage_rest.to(torch.float64)[None, :] + shrink @ U2.T
        # 1 - h_i > 0 for alpha > 0 unless sample i is alone in the intercept's
        # direction (n_samples == 1), which validation rejects.
        self.inv_one_minus_h = (1.0 / one_minus_h).to(decomp.dtype)  # (n_alphas, n_samples)
        self.shrink = shrink.to(decomp.dtype)
        self.folds = None  # one block: scores over all samples

    def heldout_residuals(self, chunk: ProjectedChunk, a: int, out: torch.Tensor) -> torch.Tensor:
        """Leave-one-out residuals (scaled space) for alpha index `a`, into `out`."""
        residuals(self.decomp, chunk, self.shrink[a], out)
        return out.mul_(self.inv_one_minus_h[a][:, None])


class GeneralizedCV:
    """Generalized cross-validation (Golub, Heath & Wahba 1979).

    An approximation of leave-one-out that replaces each h_i by the mean
    tr(H) / n_samples. Its squared-error sums need only ||E||^2 =
    ||remainder||^2 + sum_j shrink_j^2 Ũ_j^2, so each alpha costs O(rank *
    n_chunk), not a GEMM.
    """

    name = "gcv"

    def __init__(self, decomp: Decomposition, alphas):
        self.decomp = decomp
        shrink = shrinkage(decomp, alphas)  # (n_alphas, rank)
        n = decomp.n_samples
        trace_h = (1.0 - shrink).sum(dim=1) + (1.0 if decomp.fit_intercept else 0.0)
        self.inv_denominator = (1.0 / (1.0 - trace_h / n)).to(decomp.dtype)  # (n_alphas,)
        self.shrink = shrink.to(decomp.dtype)
        self.shrink_sq = (shrink**2).to(decomp.dtype)
        self.folds = None

    def heldout_residuals(self, chunk: ProjectedChunk, a: int, out: torch.Tensor) -> torch.Tensor:
        residuals(self.decomp, chunk, self.shrink[a], out)
        return out.mul_(self.inv_denominator[a])

    def squared_error_sums(self, chunk: ProjectedChunk) -> torch.Tensor:
        """Sum over samples of squared GCV residuals, shape (n_alphas, n_chunk)."""
        base = 0.0
        if chunk.remainder is not None:
            base = torch.linalg.vector_norm(chunk.remainder, dim=0) ** 2
        sums = self.shrink_sq @ (chunk.UtY * chunk.UtY) + base
        return sums * (self.inv_denominator[:, None] ** 2)
