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

import numpy as np
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
        self.folds = None  # one block: scores over all samples, no per-fold averaging

    def heldout_residuals(self, chunk: ProjectedChunk, a: int, out: torch.Tensor) -> torch.Tensor:
        """Leave-one-out residuals (scaled space) for alpha index `a`, into `out`."""
        residuals(self.decomp, chunk, self.shrink[a], out)
        return out.mul_(self.inv_one_minus_h[a][:, None])

    def blocks(self, chunk: ProjectedChunk, a: int, out: torch.Tensor):
        """One block: (None = all rows, residuals in the weighted space, sqrt weights)."""
        yield None, self.heldout_residuals(chunk, a, out), self.decomp.sqrt_sw


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

    def blocks(self, chunk: ProjectedChunk, a: int, out: torch.Tensor):
        yield None, self.heldout_residuals(chunk, a, out), self.decomp.sqrt_sw

    def squared_error_sums(self, chunk: ProjectedChunk) -> torch.Tensor:
        """Sum over samples of squared GCV residuals, shape (n_alphas, n_chunk)."""
        base = 0.0
        if chunk.remainder is not None:
            base = torch.linalg.vector_norm(chunk.remainder, dim=0) ** 2
        sums = self.shrink_sq @ (chunk.UtY * chunk.UtY) + base
        return sums * (self.inv_denominator[:, None] ** 2)


def _rows(index: np.ndarray, device: torch.device):
    """A slice when `index` is a contiguous increasing range (a cheap view), else a tensor."""
    if index.size and np.array_equal(index, np.arange(index[0], index[0] + index.size)):
        return slice(int(index[0]), int(index[0]) + index.size)
    return torch.as_tensor(index, dtype=torch.long, device=device)


class LeaveGroupOut:
    """Exact held-out residuals for folds whose training set is the complement of
    the test set (KFold, GroupKFold, LeaveOneGroupOut, PredefinedSplit,
    ShuffleSplit with the default train size, ...), from the shared decomposition:

        resid_b(alpha) = (I - H_bb(alpha))^-1 E_b(alpha)
        I - H_bb = [I - q_b q_b^T - U_b U_b^T] + U_b diag(alpha / (eigvals + alpha)) U_b^T

    which equals refitting without fold b (intercept included) and predicting
    fold b. The n_b x n_b inverses are built once per fit in float64 (n_alphas *
    sum_b n_b^2 values); each chunk then costs one small GEMM per fold and alpha.

    Held-out residuals are returned unweighted, y - prediction: like
    scikit-learn's GridSearchCV, fold scores do not weight the test samples.

    Parameters
    ----------
    decomp : Decomposition
    alphas : array of shape (n_alphas,)
    test_folds : list of int arrays
        Test sample indices of each fold (training set = the other samples).
    """

    name = "folds"

    def __init__(self, decomp: Decomposition, alphas, test_folds):
        self.decomp = decomp
        shrink = shrinkage(decomp, alphas)  # (n_alphas, rank) float64
        self.shrink = shrink.to(decomp.dtype)
        U = decomp.U.to(torch.float64)
        q = None if decomp.q is None else decomp.q.to(torch.float64)
        sqrt_sw = decomp.sqrt_sw
        if sqrt_sw is not None and not bool((sqrt_sw > 0).all()):
            raise ValueError(
                "sample_weight has zeros: fold-based cv needs positive weights "
                "(a zero-weight test sample has no defined held-out residual)"
            )
        self.folds = [_rows(np.asarray(f), decomp.device) for f in test_folds]
        self.inverses = []  # [fold][alpha] -> (n_b, n_b), compute dtype
        for rows in self.folds:
            Ub = U[rows]
            base = -(Ub @ Ub.T)
            if q is not None:
                base -= torch.outer(q[rows], q[rows])
            base.diagonal().add_(1.0)
            per_alpha = []
            for a in range(shrink.shape[0]):
                A = base + (Ub * shrink[a]) @ Ub.T
                L, info = torch.linalg.cholesky_ex(A)
                if int(info) != 0:
                    raise ValueError(
                        "a cross-validation fold cannot be held out: the model refit "
                        "without it is undetermined (e.g. the fold holds every sample "
                        "with weight, or the only samples of the intercept)"
                    )
                per_alpha.append(torch.cholesky_inverse(L).to(decomp.dtype))
            self.inverses.append(per_alpha)
        self._scratch = None

    def blocks(self, chunk: ProjectedChunk, a: int, out: torch.Tensor):
        """Yield (rows, held-out residuals of shape (n_b, n_chunk), None) per fold."""
        residuals(self.decomp, chunk, self.shrink[a], out)
        sqrt_sw = self.decomp.sqrt_sw
        for rows, inverses in zip(self.folds, self.inverses, strict=True):
            Eb = out[rows]
            resid = inverses[a] @ Eb
            if sqrt_sw is not None:
                resid /= sqrt_sw[rows][:, None]
            yield rows, resid, None


class RefitPerFold:
    """Held-out residuals by an exact refit on each training set.

    The fallback for splitters whose training set is not the complement of the
    test set (TimeSeriesSplit, ShuffleSplit with train_size set, ...): the
    leave-group-out identity does not apply, so each fold gets a decomposition
    of its own training rows. Correct, but one decomposition per fold.
    """

    name = "refit"

    def __init__(
        self,
        X: torch.Tensor,
        alphas,
        splits,
        *,
        fit_intercept,
        sample_weight,
        compute_dtype,
        gcv_mode=None,
    ):
        from ._decompose import decompose

        self.alphas = torch.as_tensor(alphas, dtype=torch.float64, device=X.device)
        self.fit_intercept = fit_intercept
        self.folds, self.trains, self.decomps, self.X_tests = [], [], [], []
        for train, test in splits:
            train_rows = _rows(np.asarray(train), X.device)
            sw = None if sample_weight is None else sample_weight[train_rows]
            self.decomps.append(
                decompose(
                    X[train_rows],
                    fit_intercept=fit_intercept,
                    sample_weight=sw,
                    compute_dtype=compute_dtype,
                    gcv_mode=gcv_mode,
                )
            )
            self.trains.append(train_rows)
            rows = _rows(np.asarray(test), X.device)
            self.folds.append(rows)
            self.X_tests.append(X[rows].to(compute_dtype))
        self._projections = None

    def blocks(self, chunk: ProjectedChunk, a: int, out: torch.Tensor):
        from ._refit import coefficients

        if a == 0:  # project each training set once per chunk, reuse for every alpha
            self._projections = [
                project(d, chunk.y[tr], keep_y=False)
                for d, tr in zip(self.decomps, self.trains, strict=True)
            ]
        width = chunk.y.shape[1]
        for d, proj, rows, Xt in zip(
            self.decomps, self._projections, self.folds, self.X_tests, strict=True
        ):
            coef, intercept = coefficients(d, proj, self.alphas[a].expand(width))
            yield rows, chunk.y[rows] - (Xt @ coef.T + intercept), None
