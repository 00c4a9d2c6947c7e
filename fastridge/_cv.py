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
`heldout_residuals` method and its own `folds` (`LeaveGroupOut`). Leave-one-out
and folds that partition the samples also run without the eigendecomposition,
from one Cholesky inverse per alpha (`DualRoute`; `FoldDualRoute` for folds).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import torch

from ._backend import (
    Workspace,
    addmm,
    block_indicator,
    centre_columns,
    cholesky_inverse,
    column_sq_sums,
    constant_columns_exact,
    copy_rows,
    eigh,
    fold_indicator,
    inverse_combination,
    inverse_mv,
    lower_symv,
    mirror_lower,
    mm,
    reused_buffer,
    row_block_sums,
    row_sq_sums,
)
from ._chunks import available_memory
from ._decompose import (
    SVD_LOSS,
    Decomposition,
    drops_resolvable,
    gram_rank,
    gram_resolves,
    svd_spectrum,
)
from ._kernels import gcv_sums, update_best
from ._scoring import FOLD_PREDICTS, FOLD_SUMS


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
    UtY : tensor of shape (rank, n_chunk) or None
        U^T Yc (None when not projected, see `project`).
    remainder : tensor of shape (n_samples, n_chunk) or None
        Yc - U UtY; None when it is zero by construction.
    fold_products : list of tensors of shape (rank + 1, n_chunk) or None
        With ``project(..., folds=)``: per fold, U_b^T Yc_b in rows :rank (whose
        sum over the folds is UtY) and row rank free, for the scheme (`FoldRefits`),
        which overwrites them with UtY - U_b^T Yc_b.
    full_projection : tensor of shape (n_rows, n_chunk) or None
        With ``project(..., null=True)`` and a null basis: [U N]^T Yc, whose first
        rank rows are UtY (`Decomposition.full_basis`, `LeaveGroupOut`).
    low_projection : tensor of shape (d, n_chunk) or None
        U_low^T Yc for the dropped directions above rounding
        (`Decomposition.low`), for the coefficients; None without any.
    """

    y: torch.Tensor | None
    Yc: torch.Tensor
    y_offset: torch.Tensor
    UtY: torch.Tensor
    remainder: torch.Tensor | None
    fold_products: list | None = None
    full_projection: torch.Tensor | None = None
    low_projection: torch.Tensor | None = None


def project(
    decomp: Decomposition,
    Y: torch.Tensor,
    keep_y: bool = False,
    on_basis: bool = True,
    out: torch.Tensor | None = None,
    remainder: bool = True,
    folds=None,
    null: bool = False,
) -> ProjectedChunk:
    """Centre/weight a chunk Y of shape (n_samples, n_chunk) and project it on U
    (`on_basis=False`: centre/weight only, UtY is None; the dual-coefficient route).

    The centred chunk goes into `out` when given (of Y's shape; it may be Y
    itself, unless `keep_y`), else into a new tensor: Y may be a view of the
    caller's array, so it is never written otherwise. `remainder=False` skips the
    remainder (a GEMM and a chunk-sized block) for schemes that do not read it.
    `folds` (row indices or slices that partition the samples) makes UtY as the
    sum of the folds' U_b^T Yc_b, kept in `fold_products` for the scheme: the
    same flops as UtY alone. `null` also projects on the decomposition's null
    basis, in the same GEMM: `ProjectedChunk.full_projection`."""
    y = Y if keep_y else None
    if keep_y and out is not None and out.data_ptr() == Y.data_ptr():
        raise ValueError("project: `out` may not be Y itself when the raw Y is kept")
    if decomp.fit_intercept:
        w = None if decomp.sqrt_sw is None else decomp.sqrt_sw * decomp.sqrt_sw
        y_offset = Y.mean(dim=0) if w is None else (w / w.sum()) @ Y
        # (a constant target is centred to exactly 0: its residuals are 0, not noise)
        y_offset = constant_columns_exact(Y, y_offset, w)
        Yc, y_offset = centre_columns(Y, y_offset, w, out=out)
    else:
        y_offset = torch.zeros(Y.shape[1], dtype=Y.dtype, device=Y.device)
        Yc = torch.sub(Y, y_offset, out=out) if out is not None else Y - y_offset
    if decomp.sqrt_sw is not None:
        Yc.mul_(decomp.sqrt_sw[:, None])
    if not on_basis:
        return ProjectedChunk(y=y, Yc=Yc, y_offset=y_offset, UtY=None, remainder=None)
    products = full = None
    if null and decomp.null_basis is not None:
        if folds is not None:
            raise ValueError("project: `null` and `folds` do not go together")
        full = mm(decomp.full_basis.T, Yc)  # (n_rows, n_chunk)
        UtY = full[: decomp.rank]  # (rows: a contiguous view)
    elif folds is None:
        UtY = mm(decomp.U.T, Yc)
    else:
        rank, U = decomp.rank, decomp.U
        products = []
        for rows in folds:
            part = Yc.new_empty((rank + 1, Yc.shape[1]))
            mm(U[rows].T, Yc[rows], out=part[:rank])
            products.append(part)
        UtY = products[0][:rank].clone()
        for part in products[1:]:
            UtY += part[:rank]
    rest = None
    if decomp.has_remainder and remainder:
        rest = addmm(Yc, decomp.U, UtY, alpha=-1.0)
    return ProjectedChunk(
        y=y,
        Yc=Yc,
        y_offset=y_offset,
        UtY=UtY,
        remainder=rest,
        fold_products=products,
        full_projection=full,
        low_projection=None if decomp.low is None else mm(decomp.low[0].T, Yc),
    )


def shrinkage(decomp: Decomposition, alphas) -> torch.Tensor:
    """alpha / (eigvals + alpha) = 1 - phi, tensor of shape (n_alphas, rank), float64."""
    a = torch.as_tensor(alphas, dtype=torch.float64, device=decomp.device)
    return a[:, None] / (decomp.eigvals[None, :] + a[:, None])


def _one_minus_h(decomp: Decomposition, shrink: torch.Tensor, U64: torch.Tensor):
    """1 - h_i(alpha) = leverage_rest_i + sum_j U_ij^2 shrink_aj, float64, shape
    (n_alphas, n_samples), from `shrinkage` and U in float64. It is > 0 for
    alpha > 0 unless sample i is alone in the intercept's direction
    (n_samples == 1), which validation rejects."""
    return decomp.leverage_rest.to(torch.float64)[None, :] + shrink @ (U64 * U64).T


PRECISIONS = ("highest", "high", "medium")


def _round_to_tf32(t: torch.Tensor) -> torch.Tensor:
    """float32 rounded to TF32's 10-bit mantissa (round to nearest even)."""
    bits = t.contiguous().view(torch.int32)
    bits = (bits + 0xFFF + ((bits >> 13) & 1)) & ~0x1FFF
    return bits.view(torch.float32)


def _round_to_bf16(t: torch.Tensor) -> torch.Tensor:
    """float32 rounded to bfloat16's 8-bit mantissa, kept as float32."""
    return t.to(torch.bfloat16).to(torch.float32)


class ScoringGemm:
    """The residual GEMM U @ scaled at a chosen precision (the CV scoring GEMMs only;
    the projection, eigendecomposition and coefficients keep the compute dtype).

    Reduced precisions split each float32 operand into a rounded high part and
    a rounded remainder, x = hi + lo, and sum three products hi@hi + hi@lo +
    lo@hi with float32 accumulation (the "3-pass" scheme of tensor-core float32
    emulation). That keeps ~16 (bf16) to ~21 (TF32) mantissa bits, so the chosen
    alphas match float32 except on near-ties, while the products run on tensor
    cores:

    - "highest": plain GEMMs in the compute dtype.
    - "high": 3 x TF32 (10-bit mantissa parts). On CUDA: TF32 tensor cores.
    - "medium": 3 x bfloat16 (8-bit mantissa parts). On CUDA: bf16 tensor cores
      with float32 output.

    On CPU the same rounding is applied and the parts are multiplied in float32,
    which reproduces the tensor cores' arithmetic exactly (for tests); it is
    slower than "highest" there, so use "highest" on CPU.

    Parameters
    ----------
    U : tensor of shape (n_samples, rank)
    precision : {"highest", "high", "medium"}
    """

    def __init__(self, U: torch.Tensor, precision: str = "highest"):
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        if precision != "highest" and U.dtype != torch.float32:
            raise ValueError(
                f"precision={precision!r} lowers float32 GEMMs; the compute dtype is "
                f"{str(U.dtype)[6:]} (pass float32 data or dtype='float32')"
            )
        self.precision = precision
        self.cuda = U.device.type == "cuda"
        self.round = _round_to_tf32 if precision == "high" else _round_to_bf16
        self.U = U if precision == "highest" else self._split(U)
        self._work = {}

    def scale(self, UtY: torch.Tensor, shrink: torch.Tensor) -> torch.Tensor:
        """shrink[:, None] * UtY in a buffer reused across alphas and chunks."""
        buf = reused_buffer(self._work, "scaled", UtY.shape, UtY.dtype, UtY.device)
        return torch.mul(UtY, shrink[:, None], out=buf)

    def _split(self, x: torch.Tensor):
        hi = self.round(x)
        lo = self.round(x - hi)
        if self.cuda and self.precision == "medium":
            return hi.to(torch.bfloat16), lo.to(torch.bfloat16)  # exact: bf16-representable
        return hi, lo

    def __call__(self, scaled: torch.Tensor, out: torch.Tensor, add=None) -> torch.Tensor:
        """out = add + U @ scaled (add may be None), in float32 / the compute dtype."""
        if self.precision == "highest":
            if add is None:
                return mm(self.U, scaled, out=out)
            return addmm(add, self.U, scaled, out=out)
        U_hi, U_lo = self.U
        S_hi, S_lo = self._split(scaled)
        with _tf32_matmuls(self.cuda and self.precision == "high"):
            _mm_into(out, U_hi, S_hi, add)
            # the small cross terms last; lo @ lo is below float32 resolution
            out += _mm32(U_hi, S_lo)
            out += _mm32(U_lo, S_hi)
        return out


def _mm32(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a @ b with float32 output (bf16 inputs on CUDA: tensor cores, float32 result)."""
    if a.dtype == torch.bfloat16:
        try:
            return torch.mm(a, b, out_dtype=torch.float32)
        except (RuntimeError, TypeError):  # older torch: exact but without tensor cores
            return torch.mm(a.float(), b.float())
    return torch.mm(a, b)


def _mm_into(out, a, b, add):
    prod = _mm32(a, b)
    if add is None:
        return out.copy_(prod)
    return torch.add(add, prod, out=out)


class _tf32_matmuls:
    """Allow TF32 in CUDA float32 matmuls inside the block (when `on`), then restore."""

    def __init__(self, on: bool):
        self.on = on

    def __enter__(self):
        if self.on:
            self.old = torch.backends.cuda.matmul.allow_tf32
            torch.backends.cuda.matmul.allow_tf32 = True

    def __exit__(self, *exc):
        if self.on:
            torch.backends.cuda.matmul.allow_tf32 = self.old


def residuals(
    decomp: Decomposition,
    chunk: ProjectedChunk,
    shrink: torch.Tensor,
    out: torch.Tensor,
    gemm: ScoringGemm | None = None,
) -> torch.Tensor:
    """In-sample residuals E(alpha) of shape (n_samples, n_chunk), written into `out`.

    `shrink` is one row of `shrinkage` (shape (rank,)), in the compute dtype;
    `gemm` sets the precision of the GEMM (compute dtype when None). The remainder
    counts unless it is rounding alone (`Decomposition.remainder_is_rounding`).
    """
    gemm = gemm or ScoringGemm(decomp.U)
    return gemm(gemm.scale(chunk.UtY, shrink), out, add=_remainder(decomp, chunk))


def _remainder(decomp: Decomposition, chunk: ProjectedChunk) -> torch.Tensor | None:
    """The chunk's remainder, None where it is rounding alone."""
    return None if decomp.remainder_is_rounding else chunk.remainder


def _without_gram(decomp: Decomposition, rank: int) -> Decomposition:
    """`decomp` once `DualRoute` has its makers: the Gram freed (and destroyed by
    then), the rank known."""
    n_rows = decomp.n_samples - int(decomp.fit_intercept)
    return dataclasses.replace(decomp, gram=None, gram_rank=rank, has_remainder=rank < n_rows)


class LeaveOneOut:
    """Exact leave-one-out residuals E / (1 - h) for every alpha.

    Parameters
    ----------
    decomp : Decomposition
    alphas : array of shape (n_alphas,)
    precision : see ScoringGemm

    dual_route : bool
        Run `DualRoute` (`self.dual_route`), which it also does when `decomp`
        holds a Gram instead of an eigendecomposition (``decompose(...,
        eigen=False)``).
    workspace : tensor or None
        A buffer no longer needed (its contents are overwritten), for the dual
        route's makers: see `DualRoute`.
    scorer : _scoring.Scoring or None
        For the dual route, a built-in score other than leave-one-out's own (None),
        over all samples' leave-one-out residuals (`DualRoute`'s score folds).
    primal : bool
        Primal coefficients follow (see `DualRoute`).
    predictions : bool
        Off the dual route and at precision="highest", `blocks` yields held-out
        predictions instead of residuals, in the weighted space and up to a
        constant, for the scores of `_scoring.FOLD_PREDICTS` (the correlation).
        y - resid would lose them where the shrinkage is strong: the prediction
        is then a small difference of large numbers (float32 correlations were
        0.48 off refits at 1e5 lambda_max, n=60, p=10). With phi = 1 - shrink and
        h_i = q_i^2 + sum_j U_ij^2 phi_j, the leave-one-out prediction is

            sqrt(w_i) (p_i - y_offset) = ((U diag(phi) Ũ)_i - h_i Yc_i) / (1 - h_i),

        each term small where the shrinkage is strong, so that it keeps its
        digits. Where h_i >= 1/2 (weak shrinkage) that division amplifies the
        rounding of U diag(phi) Ũ ~ Yc instead, and the prediction is Yc_i minus the
        residual, -(U diag(shrink) Ũ + remainder)_i / (1 - h_i), as the residuals
        are formed. Both are one row of one basis per alpha (`_prediction_basis`):
        one GEMM per alpha, as for residuals.
    """

    name = "loo"

    def __init__(
        self,
        decomp: Decomposition,
        alphas,
        precision="highest",
        dual_route=False,
        workspace=None,
        scorer=None,
        primal=True,
        predictions=False,
    ):
        self.folds = None  # one block: scores over all samples, no per-fold averaging
        self.bases = None  # [alpha] -> (n_samples, rank), compute dtype
        self.dual_route = None
        self.predictions = False  # (the dual route forms its own predictions)
        if decomp.U is None or dual_route:  # no eigendecomposition, or asked: the dual route
            if precision != "highest":
                raise ValueError("the leave-one-out dual route runs at precision='highest'")
            self.dual_route = DualRoute(decomp, alphas, workspace, scorer=scorer, primal=primal)
            self.decomp = _without_gram(decomp, self.dual_route.rank)
            return
        self.decomp = decomp
        self.gemm = ScoringGemm(decomp.U, precision)
        shrink = shrinkage(decomp, alphas)  # (n_alphas, rank), float64
        U64 = decomp.U.to(torch.float64)
        inv_one_minus_h = 1.0 / _one_minus_h(decomp, shrink, U64)  # (n_alphas, n_samples)
        # (a remainder of rounding alone is not read: `residuals`)
        remainder = decomp.has_remainder and not decomp.remainder_is_rounding
        self.reads_remainder = remainder
        if remainder and precision == "highest":
            # E's remainder Yc - U UtY is rounded at ~eps |y| in the compute dtype
            # however small E_i is, and E_i / (1 - h_i) amplifies that: a sample
            # alone in a direction of X (a feature seen once) has 1 - h ~ alpha /
            # eigval (float32 scored 1.3e-2 off float64 at alpha 1e-7 lambda_max,
            # n=60, p=10, measured)
            _check_amplification(float(inv_one_minus_h.max()), decomp.dtype)
        self.inv_one_minus_h = inv_one_minus_h.to(decomp.dtype)
        self.shrink = shrink.to(decomp.dtype)
        # Without a remainder the leave-one-out residuals are ONE GEMM from UtY,
        # diag(1 / (1 - h)) U diag(shrink) @ UtY, with that basis kept per alpha
        # (n_samples x rank per alpha, like U): no scaling pass over UtY nor over
        # the residuals. Leave-one-out is leave-group-out with folds of one sample.
        n_alphas = shrink.shape[0]
        if predictions and precision == "highest":
            self._set_predictions(decomp, alphas, U64, inv_one_minus_h)
        elif not remainder and precision == "highest" and _bases_fit(decomp, n_alphas):
            self.bases = [
                (U64 * inv_one_minus_h[a][:, None] * shrink[a]).to(decomp.dtype)
                for a in range(n_alphas)
            ]

    def _set_predictions(self, decomp: Decomposition, alphas, U64, inv_one_minus_h):
        """What `predictions` needs (see the class), per alpha: the rows of the basis,
        direct (h_i < 1/2) or from the residual, their coefficients of Yc and of
        the remainder, and the bases themselves where they fit."""
        self.predictions = True
        a = torch.as_tensor(alphas, dtype=torch.float64, device=decomp.device)
        # phi found as such: 1 - shrink would lose its digits at large alpha
        phi = decomp.eigvals[None, :] / (decomp.eigvals[None, :] + a[:, None])  # (n_alphas, rank)
        h = phi @ (U64 * U64).T  # (n_alphas, n_samples)
        if decomp.q is not None:
            h += decomp.q.to(torch.float64)[None, :] ** 2
        direct = h < 0.5
        # basis rows: U_i diag(phi) / (1 - h_i) direct, -U_i diag(shrink) / (1 - h_i) else
        self._direct = direct
        self._phi = phi.to(decomp.dtype)
        self._y_coef = torch.where(direct, -h * inv_one_minus_h, 1.0).to(decomp.dtype)
        self._rem_coef = None
        if self.reads_remainder:  # (the residual's remainder, on the rows not direct)
            self._rem_coef = torch.where(direct, 0.0, -inv_one_minus_h).to(decomp.dtype)
        self._pred_work = {}
        n_alphas = a.shape[0]
        self.pred_bases = None
        if _bases_fit(decomp, n_alphas):
            self.pred_bases = [self._prediction_basis(i, None) for i in range(n_alphas)]

    def _prediction_basis(self, a: int, out: torch.Tensor | None) -> torch.Tensor:
        """Alpha `a`'s prediction basis (n_samples, rank), compute dtype (into `out`)."""
        U = self.decomp.U
        scale = torch.where(self._direct[a][:, None], self._phi[a], -self.shrink[a])
        out = torch.mul(U, scale, out=out) if out is not None else U * scale
        return out.mul_(self.inv_one_minus_h[a][:, None])

    def _predictions(self, chunk: ProjectedChunk, a: int, out: torch.Tensor) -> torch.Tensor:
        """Held-out predictions sqrt(w) (p - y_offset) (n_samples, n_chunk), into `out`."""
        if self.pred_bases is not None:
            basis = self.pred_bases[a]
        else:
            shape, U = (self.decomp.n_samples, self.decomp.rank), self.decomp.U
            basis = reused_buffer(self._pred_work, "basis", shape, U.dtype, U.device)
            basis = self._prediction_basis(a, basis)
        pred = mm(basis, chunk.UtY, out=out)
        pred.addcmul_(self._y_coef[a][:, None], chunk.Yc)
        remainder = _remainder(self.decomp, chunk)
        if self._rem_coef is not None and remainder is not None:
            pred.addcmul_(self._rem_coef[a][:, None], remainder)
        return pred

    def residuals(self, chunk: ProjectedChunk, a: int, out: torch.Tensor):
        """(E, w): the in-sample residuals E and the row scaling w = 1 / (1 - h) that
        makes them leave-one-out residuals, or (the leave-one-out residuals, None)
        when the basis already holds the scaling; E is written into `out`."""
        if self.bases is not None:
            return mm(self.bases[a], chunk.UtY, out=out), None
        # (E = Yc - U diag(phi) UtY would skip the remainder, 11 % faster at n_samples
        # = 8 n_features; but each alpha's rounding is then its own, where the
        # remainder's is common to all alphas and cancels from their comparison:
        # float32 chose alphas scoring up to 8e-4 below the best, not 3e-4, and to
        # 6e-4, not 2e-7, at noise 1e-2, measured over 6 problems)
        E = residuals(self.decomp, chunk, self.shrink[a], out, self.gemm)
        return E, self.inv_one_minus_h[a]

    def heldout_residuals(self, chunk: ProjectedChunk, a: int, out: torch.Tensor) -> torch.Tensor:
        """Leave-one-out residuals (scaled space) for alpha index `a`, into `out`."""
        E, w = self.residuals(chunk, a, out)
        return E if w is None else E.mul_(w[:, None])

    def blocks(self, chunk: ProjectedChunk, a: int, out: torch.Tensor):
        """One block: (None = all rows, residuals in the weighted space, sqrt weights),
        or with `predictions` the held-out predictions there (see the class)."""
        if self.predictions:
            yield None, self._predictions(chunk, a, out), self.decomp.sqrt_sw
            return
        yield None, self.heldout_residuals(chunk, a, out), self.decomp.sqrt_sw


class GeneralizedCV:
    """Generalized cross-validation (Golub, Heath & Wahba 1979).

    An approximation of leave-one-out that replaces each h_i by the mean
    tr(H) / n_samples. Its squared-error sums need only ||E||^2 =
    ||remainder||^2 + sum_j shrink_j^2 Ũ_j^2, so each alpha costs O(rank *
    n_chunk), not a GEMM.
    """

    name = "gcv"

    def __init__(
        self, decomp: Decomposition, alphas, precision: str = "highest", predictions=False
    ):
        self.decomp = decomp
        self.gemm = ScoringGemm(decomp.U, precision)
        shrink = shrinkage(decomp, alphas)  # (n_alphas, rank)
        n = decomp.n_samples
        # n - tr(H) = n - rank - intercept + sum shrink: the integer part apart, as
        # 1 - tr(H) / n cancels where X spans every sample (float64 GCV scored 7.5e-2
        # off at alpha 1e-15 lambda_max, 12 x 72; a differential fuzz found it)
        outside = n - decomp.rank - int(decomp.fit_intercept)
        rest = outside + shrink.sum(dim=1)  # n - tr(H), (n_alphas,), float64
        self.inv_denominator = (n / rest).to(decomp.dtype)  # (n_alphas,)
        self.shrink = shrink.to(decomp.dtype)
        self.shrink_sq = (shrink**2).to(decomp.dtype)
        self.folds = None
        self.reads_remainder = not decomp.remainder_is_rounding
        # With `predictions` (the scores of `_scoring.FOLD_PREDICTS`), `blocks` yields
        # the held-out predictions y - e in the weighted space. Where tr(H) < n / 2
        # they are formed as (U diag(phi) UtY - tr(H) Yc / n) n / (n - tr(H)): from
        # y - e they would be a small difference of large numbers where alpha shrinks
        # hard (float32 correlations 0.2-0.8 off float64's at alpha 1e9 without an
        # intercept; a differential fuzz found them). Elsewhere as y - e, whose e
        # then outweighs y (the first form, a difference of nearly equal terms times
        # a large n / (n - tr(H)), had put float32 3e-3 off at alpha 1e-3, 20 x 60).
        self.predictions = predictions
        if predictions:
            a64 = torch.as_tensor(alphas, dtype=torch.float64, device=decomp.device)
            eigvals = decomp.eigvals[None, :]
            phi = eigvals / (eigvals + a64[:, None])  # (as such: 1 - shrink cancels)
            trace = phi.sum(dim=1) + int(decomp.fit_intercept)  # tr(H), (n_alphas,)
            self._direct = (trace < n / 2).tolist()
            self._phi = phi.to(decomp.dtype)
            self._y_coef = (-trace / rest).to(decomp.dtype)  # -tr(H) / (n - tr(H))

    def heldout_residuals(self, chunk: ProjectedChunk, a: int, out: torch.Tensor) -> torch.Tensor:
        residuals(self.decomp, chunk, self.shrink[a], out, self.gemm)
        return out.mul_(self.inv_denominator[a])

    def _predictions(self, chunk: ProjectedChunk, a: int, out: torch.Tensor) -> torch.Tensor:
        """Held-out predictions sqrt(w) (p - y_offset) (n_samples, n_chunk), into `out`."""
        if not self._direct[a]:
            return self.heldout_residuals(chunk, a, out).neg_().add_(chunk.Yc)
        pred = self.gemm(self.gemm.scale(chunk.UtY, self._phi[a]), out)
        # (addcmul: no chunk-sized temporary for the term in Yc)
        return pred.mul_(self.inv_denominator[a]).addcmul_(chunk.Yc, self._y_coef[a])

    def blocks(self, chunk: ProjectedChunk, a: int, out: torch.Tensor):
        """One block: (None = all rows, residuals in the weighted space, sqrt weights),
        or with `predictions` the held-out predictions there."""
        if self.predictions:
            yield None, self._predictions(chunk, a, out), self.decomp.sqrt_sw
            return
        yield None, self.heldout_residuals(chunk, a, out), self.decomp.sqrt_sw

    def squared_error_sums(self, chunk: ProjectedChunk) -> torch.Tensor:
        """Sum over samples of squared GCV residuals, shape (n_alphas, n_chunk)."""
        base = 0.0
        remainder = _remainder(self.decomp, chunk)
        if remainder is not None:
            base = column_sq_sums(remainder)
        sums = gcv_sums(chunk.UtY, self.shrink_sq) + base  # fused on CUDA, float64
        return sums * (self.inv_denominator[:, None].double() ** 2)


def _bases_fit(
    decomp: Decomposition, n_matrices: int, n_rows: int | None = None, rank: int | None = None
) -> bool:
    """Whether `n_matrices` per-alpha bases of shape (n_rows, rank) (defaults: n_samples,
    the decomposition's rank) fit in a quarter of the device's free memory;
    otherwise the schemes fall back to scaling passes, slower but with no copies."""
    n_rows = decomp.n_samples if n_rows is None else n_rows
    rank = decomp.rank if rank is None else rank
    itemsize = torch.finfo(decomp.dtype).bits // 8
    return n_matrices * n_rows * rank * itemsize <= available_memory(decomp.device) // 4


_EPS64 = torch.finfo(torch.float64).eps

# Held-out residuals are refused in a compute dtype whose rounding, amplified by
# the folds' refit, would reach this relative size (`LostPrecision`). Measured
# (n=600, p=500, 5 folds of training sets smaller than p, float32): amplification
# 2.4e3 put the scores 1.3e-5 off float64's, 2.3e5 put them 1e-3 off; the fits a
# differential fuzz found wrong (0.5 to 1e4 off) had 3.5e5 and more.
PRECISION_TOLERANCE = 1e-3

# `DualRoute._refuse_primal`: eps * lambda_max / (lambda_min + alpha) bounds what
# primal coefficients from dual ones lose, times the share of the targets in the
# small eigen-directions. Measured in float32 against scikit-learn: at a ratio of
# 2.5e4 (X offset by 5 without an intercept) predictions were 2.4e-5 off, at ~2e7
# (near-duplicate rows) 7e-2; a helper's 1,155 ill-conditioned fits were up to
# 0.25 of the bound off (2.85e-3 at eps * ratio = 1.2e-2, 6.5e-4 at 1.2e-3), and
# 1.4e-7 to 4.6e-7 off the route. So the route is left past 1e-3.
DUAL_PRIMAL_TOLERANCE = 1e-3


class PrecisionWarning(UserWarning):
    """Results that kept fewer digits than their dtype could, with no better way in
    that dtype (e.g. float32 dual coefficients of a fit at a tiny alpha): the
    message says how many and what to do instead."""


class LostPrecision(ValueError):
    """Raised by a CV scheme whose held-out residuals would lose their digits in
    the compute dtype: some fold's refit (or a sample's 1 / (1 - h)) amplifies the
    targets' rounding by more than PRECISION_TOLERANCE / eps (`amplification`).
    The solve is then redone in float64 (`solve.ridge_cv`)."""

    def __init__(self, amplification: float, dtype: torch.dtype):
        self.amplification = amplification
        super().__init__(
            f"the held-out residuals would amplify {str(dtype)[6:]} rounding "
            f"{amplification:.3g}-fold"
            if math.isfinite(amplification)
            else f"a fold's refit is singular in {str(dtype)[6:]}"
        )


class RefitFolds(ValueError):
    """Raised by `LeaveGroupOut` in float64 where (I - H_bb)^-1 would amplify the
    rounding of the remainder and of the bracket I - q_b q_b^T - U_b U_b^T past
    SVD_LOSS: `FoldRefits` refits those folds in the shared basis instead, with no
    remainder (`solve._cv_scheme`)."""


def _check_amplification(amplification: float, dtype: torch.dtype) -> None:
    """LostPrecision when `amplification` times the rounding of `dtype` (below
    float64) exceeds PRECISION_TOLERANCE."""
    if dtype != torch.float64 and amplification * torch.finfo(dtype).eps > PRECISION_TOLERANCE:
        raise LostPrecision(amplification, dtype)


def _spectral_norm_estimate(A: torch.Tensor) -> float:
    """A lower estimate of the largest singular value of A (m x n): the square root
    of A^T A's largest eigenvalue by `_symmetric_norm_estimate`, exact enough to
    tell 1e2 from 1e6."""
    if A.numel() == 0:
        return 0.0
    columns = (A * A).sum(dim=0)  # (A^T A's diagonal, the start)
    return _symmetric_norm_estimate(lambda x: A.T @ (A @ x), columns) ** 0.5


def _symmetric_norm_estimate(apply, start: torch.Tensor, steps: int = 8) -> float:
    """The largest eigenvalue of a symmetric positive semidefinite matrix S, by power
    iteration: `apply(x)` is S @ x for x of shape (n,), `start` the first vector
    (S's diagonal: it weighs the rows where the top eigenvector lives). A lower
    estimate, within a small factor after a few steps (all the checks it feeds
    need), at n^2 reads a step."""
    x = start.to(torch.float64).abs() + 1.0 / max(1, start.numel())
    norm = 0.0
    for _ in range(steps):
        x = x / torch.linalg.vector_norm(x).clamp(min=1e-300)
        y = apply(x)
        norm = float(torch.linalg.vector_norm(y))
        x = y
    return norm


def _intercept_among_rows(decomp: Decomposition) -> bool:
    """Whether the intercept direction q stays among the reflected Gram's rows: with an
    intercept and a first sample of weight 0 the reflection leaves every row as it is
    (`_weighted_rows`), and q is a null direction of the Gram that is no zero row."""
    sqrt_sw = decomp.sqrt_sw
    return decomp.fit_intercept and sqrt_sw is not None and float(sqrt_sw[0]) == 0.0


def _weighted_rows(decomp: Decomposition, dtype: torch.dtype):
    """(restrict, n_rows): the projection x -> x on the rows of the (reflected) Gram
    of samples with weight, and how many independent directions they hold. A sample
    of weight 0 has a zero row of Xs, which the reflection leaves zero (its entry
    of the Householder vector is 0): the Gram's rows are the samples after the
    first with an intercept, else all. With an intercept and a first sample of
    weight 0 the reflection leaves every row as it is, so the intercept direction
    q stays among them: a null direction that holds no target, projected out too.
    Without a weight of 0, the identity and all the Gram's rows."""
    sqrt_sw = decomp.sqrt_sw
    n_rows = decomp.n_samples - int(decomp.fit_intercept)
    if sqrt_sw is None or not bool((sqrt_sw == 0).any()):
        return (lambda x: x), n_rows
    intercept = decomp.fit_intercept
    kept = ((sqrt_sw[1:] if intercept else sqrt_sw) > 0).to(dtype)
    n_rows = int(kept.sum())
    if not _intercept_among_rows(decomp):
        return (lambda x: x * kept), n_rows
    q = (sqrt_sw[1:] / torch.linalg.vector_norm(sqrt_sw)).to(dtype)

    def restrict(x):
        x = x * kept
        return x - (q @ x) * q

    return restrict, n_rows - 1


FOLD_NOT_HELD_OUT = (
    "a cross-validation fold cannot be held out: the model refit without it is "
    "undetermined (e.g. the fold holds every sample with weight, or the only samples "
    "of the intercept)"
)


# `DualRoute`'s leave-one-out passes with a score: columns of a maker per float64
# pass (`_loo_maker`), rows of targets per (1 - h) pass (`residuals_of_best`)
_BLOCK = 256


class DualRouteUnavailable(ValueError):
    """The Gram plus alpha * I could not be factorised (not numerically positive
    definite): the caller falls back to the eigendecomposition."""


class DualRoute:
    """Leave-one-out per target from centred targets alone, keeping dual coefficients,
    with no eigendecomposition.

    In Gram form the residuals of alpha a are E_a = R_a Yc with the residual
    maker R_a = I - H(alpha) = H [0, 0; 0, alpha (K_Z + alpha I)^-1] H (K_Z the
    Gram of the reflected design, H the Householder reflection that splits off
    the unpenalised intercept direction; R_a = alpha (K + alpha I)^-1 without an
    intercept), n_samples x n_samples. It comes from one Cholesky inverse per
    alpha in float64 (n^3 flops, LAPACK level 3) instead of an eigh (~9 n^3,
    its reduction memory-bound), and 1 - h = diag(R_a). Null directions of X
    are handled exactly (R_a is 1 on them). Each alpha then costs one GEMM per
    chunk; there is no projection Ũ = U^T Yc and no M = Xs^T U. The residuals of
    each target's best alpha so far are kept, and c = E(alpha*) / alpha* ARE the
    dual coefficients (MATH.md), so the coefficients need no further GEMM over
    the samples: primal coef = Xs^T c, dual coef = sqrt(w) * c.

    Scores are -sum_i w_i E_i^2 / n_samples with w = 1 / (1 - h)^2, the row
    weights folded into the block sums (`row_sq_sums`), so E stays unscaled.

    Parameters
    ----------
    decomp : Decomposition from ``decompose(..., eigen=False)`` (with `gram`)
    alphas : array of shape (n_alphas,)
    workspace : tensor or None
        A buffer no longer needed, e.g. the float64 copy of X the Gram came from:
        the factorised Gram and the makers are placed in it while it has room
        (`Workspace`), since its pages are touched already; the last maker goes
        where the factorisations were (at the headline size all 1.57 GB they
        need, in session 7 1.26 of them).
    folds : list of index arrays or slices, or None
        Test folds that partition the samples (K-fold, GroupKFold, ...), for held-out
        residuals of folds instead of leave-one-out: resid_b = (R_a)_bb^-1 (E_a)_b
        (`LeaveGroupOut`'s formula, as I - H = R_a), so an alpha's held-out
        residuals of every fold are ONE GEMM with the maker G_a^T,
        G_a = blockdiag((R_a)_bb)^-1 R_a, built in float64 (a small Cholesky
        inverse and a GEMM per fold, 2 n^3 / n_folds flops). The residuals kept
        are then held-out ones, turned into E_a = blockdiag((R_a)_bb) resid at
        the end (`residuals_of_best`). Folds and `_from_eigen` exclude each other.
    scorer : _scoring.Scoring, with folds; or None
        A built-in score (`_scoring.FOLD_SUMS`), per fold (averaged over folds).
        Without folds, leave-one-out with this score instead of its own: the
        makers R_a diag(1 / (1 - h)) give leave-one-out residuals, scored over
        all samples as one block (`_loo_maker`), turned into E = (1 - h) e_loo
        at the end.
    primal : bool
        The fit's coefficients are primal ones, Xs^T c: refused (DualRouteUnavailable)
        in a compute dtype below float64 when max eigval / (min eigval + alpha_min)
        times its eps exceeds DUAL_PRIMAL_TOLERANCE (`_refuse_primal`).
    constant_folds : bool tensor of shape (n_folds,) or None
        With folds: those whose samples all predict alike (copies of one row of X),
        scored 0 (a correlation of constant predictions; `solve.py`).
    """

    def __init__(
        self,
        decomp: Decomposition,
        alphas,
        workspace: torch.Tensor | None = None,
        folds=None,
        scorer=None,
        primal: bool = True,
        constant_folds: torch.Tensor | None = None,
    ):
        self.folds = folds
        self.scorer = scorer
        self.constant_folds = constant_folds
        # The blocks of samples that scores sum over: each fold; all samples for
        # leave-one-out with a score given; None for leave-one-out's own score.
        if folds is not None:
            self.score_folds = folds
        else:
            self.score_folds = None if scorer is None else [slice(0, decomp.n_samples)]
        scored = self.score_folds is not None
        # whether the makers give held-out predictions, centred over each score fold,
        # instead of residuals (set before either way of making them)
        self.predicts = scored and scorer.scoring in FOLD_PREDICTS
        if decomp.U is not None:
            if self.score_folds is not None:
                raise ValueError("the dual route builds fold and scored makers by Cholesky")
            self._from_eigen(decomp, alphas, primal)
            return
        G = decomp.gram  # (n_rows, n_rows), float64
        v = decomp.householder
        n = decomp.n_samples
        alphas = np.asarray(alphas, dtype=np.float64)
        # The inverse loses ~(lambda_max / alpha) * eps64 relative: below
        # eps64 * trace(K) >= eps64 * lambda_max, the eigendecomposition's shrinkage
        # form is the accurate one (scikit-learn's alpha=1e-16 tests). A float32 fit
        # rounds its makers to float32: the route serves it while that loss stays
        # below float32's rounding, down to trace(K) * eps64 / eps32 (~2e-9 trace). It
        # had stopped at eps32 * trace(K), and below it the eigendecomposition route's
        # folds, for X of rank below n_samples - 1, scored 1.2 off at 1e-7 lambda_max
        # or refused the fold (found by a differential fuzz).
        eps_gram, eps = torch.finfo(G.dtype).eps, torch.finfo(decomp.dtype).eps
        trace = float(G.diagonal().sum())  # (>= lambda_max)
        floor = trace * (eps_gram if eps <= eps_gram else eps_gram / eps)
        if alphas.min() < floor:
            raise DualRouteUnavailable(
                f"alpha {alphas.min():g} is below eps * trace(Gram) = {floor:g}"
            )
        self.makers = []  # [alpha] -> (n_samples, n_samples), compute dtype
        one_minus_h = []
        # One float64 buffer for all alphas, the factorised Gram + alpha I (at the
        # headline size an n x n float64 array is 630 MB, and fresh memory is slow
        # to touch on some VMs); each maker is written in one pass from its lower
        # triangle, mirrored, reflected and rounded together.
        space = Workspace(workspace)
        A = space.empty(G.shape, G.dtype, G.device)
        # The rank first, factorised in A (pivoted Cholesky destroys what it
        # factorises): then the last alpha factorises the Gram itself, and its
        # maker takes A's place, A being dead by then. At the headline size (3
        # alphas) that keeps every maker out of fresh memory: A and two makers in
        # the copy of X, one in A.
        self.rank = gram_rank(G, n, decomp.n_features, work=A)
        # samples of weight 0 are zero rows of the Gram, kept apart exactly: (K + alpha
        # I)^-1 is 1 / alpha there and 0 across, and their coefficients are 0 (their
        # rows of Xs and sqrt(w) are), so X is rank-deficient only below the others
        self._weighted, rows = _weighted_rows(decomp, G.dtype)
        self.rank_deficient = self.rank < rows
        if self.rank_deficient:
            # X of rank below the rows: the residuals' null-space part (the targets'
            # own, ~|y|) outweighs their range part (~alpha / eigval |y|), and the
            # coefficients come from the range part: c = E / alpha rounded to the
            # compute dtype loses ~eps * lambda_max / alpha of them, and with folds
            # turning the held-out residuals back into E through (R_a)_bb, whose
            # eigenvalues then span 1 to ~alpha / lambda_max, about its square. (A
            # differential fuzz found float32 coefficients 1e-2 off at alpha 1e-6
            # lambda_max, and float64 ones of 2 groups 5e-3 off at 4e-9.) The
            # eigendecomposition route makes them from the range alone.
            # The coefficients come from the targets' part in X's range, which for a
            # target spread over every sample direction is ~sqrt(rank / rows) of it
            # while E's rounding is eps |y|: float32 coefficients of 52 copies of one
            # row were 2.3e-3 off at alpha 4e-4 lambda_max, unwarned, with eps * ratio
            # 3e-4 (a differential fuzz found it).
            ratio = trace / float(alphas.min()) * (rows / max(self.rank, 1)) ** 0.5
            loss = eps * ratio
            if loss > PRECISION_TOLERANCE:
                raise DualRouteUnavailable(
                    f"X has rank {self.rank} < {G.shape[0]} and alpha {alphas.min():g} is "
                    f"small: its coefficients would lose {loss:.1g} of their digits"
                )
        # the largest eigenvalue, while G is whole (the last alpha factorises it): for
        # primal coefficients in a lower dtype (refused past a bound), for dual ones
        # (whose caller warns past it: `solve.dual_precision_loss`) and for the route's
        # own precision (refused past `gram_resolves`, as eigh is) where the trace
        # (>= lambda_max) does not settle it (0.1 s of estimates at n_samples = 4000)
        check = (
            not primal
            or eps > eps_gram
            or not gram_resolves(trace, 0.0, alphas.min(), eps_gram, eps)
        )
        top = _symmetric_norm_estimate(lambda x: G @ x, G.diagonal()) if check else 0.0
        self.spectrum = None  # (lambda_max, lambda_min) estimates, where made
        smallest = int(np.argmin(alphas))
        # with score folds, each R_a in float64 first (G_a is made from it)
        R = space.empty((n, n), G.dtype, G.device) if scored else None
        self.blocks = []  # with folds: [alpha][fold] -> (R_a)_bb, compute dtype
        self.fold_means = []  # with `predicts`: [alpha] -> the maker of their means
        for k, alpha in enumerate(alphas):
            last = k == len(alphas) - 1
            factor = G if last else A.copy_(G)
            factor.diagonal().add_(alpha)
            inv = cholesky_inverse(factor)  # (K_Z + alpha I)^-1 (its lower triangle at least)
            if inv is None:
                raise DualRouteUnavailable(f"Gram + {alpha:g} I is not positive definite")
            if check and k == smallest:
                self.spectrum = high, low = self._spectrum(top, inv, alpha)
                # The inverse's accuracy is the whole Gram's: a sample of weight 0 is a
                # zero row, apart exactly, but the intercept direction q left among the
                # rows (`_weighted_rows`) is a null direction of it like any other
                # (leave-one-out 5.4e-4 off at alpha 1e-14 lambda_max, 20 x 48 with
                # the first 3 weights 0; a differential fuzz found it)
                if _intercept_among_rows(decomp):
                    low = 0.0
                if not gram_resolves(high, low, alpha, eps_gram, eps):
                    # (the eigendecomposition route then takes the SVD of X)
                    raise DualRouteUnavailable(
                        f"max eigval / (min eigval + alpha {alpha:g}) ~ {high / (low + alpha):.2g}"
                        f": the Gram's inverse would lose {eps_gram * high / (low + alpha):.1g}"
                    )
                if primal and eps > eps_gram:
                    self._refuse_primal(high / (low + alpha), alpha, eps)
            maker = (Workspace(A) if last else space).empty((n, n), decomp.dtype, G.device)
            target = maker if R is None else R
            if v is None:  # R = alpha (K + alpha I)^-1
                one_minus_h.append(alpha * inv.diagonal())
                inverse_combination(inv, target, scale=alpha)  # (destroys inv)
            else:
                one_minus_h.append(self._reflected(inv, alpha, v.to(G.dtype), target))
            if folds is not None:
                blocks, means = self._fold_maker(R, maker)
                self.blocks.append(blocks)
                self.fold_means.append(means)
            elif scored:
                self.fold_means.append(self._loo_maker(R, maker))
                one_minus_h[-1] = R.diagonal().clone()  # (the maker's own)
            self.makers.append(maker)
        del A, inv, factor, R
        if scored:  # the sums over each score fold, unweighted
            self.fold_indicator = fold_indicator(n, self.score_folds, decomp.dtype, G.device)
            self.fold_sizes = [len(range(n)[f]) if isinstance(f, slice) else int(f.numel())
                               for f in self.score_folds]  # fmt: skip
            self._yt = None  # the chunk's targets, one per row, when a score needs them
            if folds is None:  # leave-one-out: E = (1 - h) e_loo, (n_alphas, n_samples)
                self.one_minus_h = torch.stack(one_minus_h).to(decomp.dtype)
            return
        # 1 - h_i > 0 for alpha > 0 (validation rejects a single sample)
        self._set_weights(1.0 / torch.stack(one_minus_h) ** 2, decomp.dtype)

    def _spectrum(self, top: float, inv: torch.Tensor, alpha: float):
        """(lambda_max, lambda_min) of the Gram, estimated: `top` is lambda_max's, and
        `inv`, the lower triangle of (K + alpha I)^-1, gives 1 / (lambda_min + alpha)
        by power iteration (lambda_min 0 for X of rank below the rows). Both are
        lower estimates of their norms, so the ratio lambda_max / (lambda_min +
        alpha) is estimated from below, within a small factor. Samples of weight 0
        are left out (`_weighted_rows`): counted, a fit redone in float64 warned of
        predictions ~0.5 off that were 3.6e-7 off (a differential fuzz found it)."""
        restrict = self._weighted
        norm = _symmetric_norm_estimate(
            lambda x: restrict(lower_symv(inv, restrict(x))), restrict(inv.diagonal())
        )
        bottom = 0.0 if self.rank_deficient else max(0.0, 1.0 / norm - alpha)
        return top, bottom

    @staticmethod
    def _refuse_primal(ratio: float, alpha: float, eps: float) -> None:
        """DualRouteUnavailable when primal coefficients Xs^T c would lose their
        digits: c = E / alpha, rounded to the compute dtype (eps), is ~y / alpha on
        eigen-directions far below alpha and Xs^T nearly cancels it there, so the
        fitted values X coef lose ~eps * ratio, ratio = lambda_max / (lambda_min +
        alpha) of the smallest alpha, refused past DUAL_PRIMAL_TOLERANCE.
        (Near-duplicate rows at alpha 2e-8 lambda_max, ratio ~2e7: float32
        coefficients 2.8e-4 off scikit-learn, predictions 7e-2; off the route 8e-8
        and 1e-5. A differential fuzz found it.)"""
        if eps * ratio > DUAL_PRIMAL_TOLERANCE:
            raise DualRouteUnavailable(
                f"max eigval / (min eigval + alpha {alpha:g}) ~ {ratio:.2g}: coefficients "
                f"from dual ones would lose {eps * ratio:.1g} of their digits"
            )

    def _fold_maker(self, R: torch.Tensor, maker: torch.Tensor):
        """maker = G^T (n_samples, n_samples), G = blockdiag(R_bb)^-1 R, from R = R_a
        (float64, symmetric): G^T's columns of fold b are R_:b R_bb^-1, one GEMM
        with the fold's Cholesky inverse (measured on the 2-core Zen 3 VM at
        n_samples = 2000, 5 folds: 0.09 s an alpha, against 0.22 s for a
        Cholesky solve per fold through torch; the GEMMs are 3.2 GFLOP).

        With `predicts`, maker = P^T C instead, P = I - G the held-out prediction
        maker and C the centring of each fold's columns (a prediction's part
        common to a fold, mostly the intercept, would dwarf a heavily shrunk one
        in float32): as G_bb = I, P^T is -G^T with the folds' own blocks zeroed,
        so it is formed exactly, in float64, before rounding.

        Returns the blocks R_bb (n_b, n_b) of every fold, in maker's dtype, and with
        `predicts` the maker of the means C took away, (n_samples, n_folds) (else
        None): held-out predictions = Y^T maker + (Y^T means) per fold."""
        blocks = []
        means = None
        if self.predicts:
            means = torch.empty((R.shape[0], len(self.folds)), dtype=R.dtype, device=R.device)
        for f, rows in enumerate(self.folds):
            # (n_b, n_b), a copy: a slice's block is a view of R, and a 1 x 1 view counts
            # as contiguous, so cholesky_inverse would overwrite R itself there
            R_bb = R[rows][:, rows].clone()
            blocks.append(R_bb.to(maker.dtype, copy=True))
            norm = _spectral_norm_estimate(R_bb) if self.rank_deficient else None
            inv = cholesky_inverse(R_bb)  # (destroys R_bb)
            if inv is None:
                raise ValueError(FOLD_NOT_HELD_OUT)
            inv = inverse_combination(inv, inv)  # the whole matrix, in place
            if norm is not None:
                # X of rank below the rows: R_bb is 1 on null directions and ~alpha /
                # lambda on others, and E_b = R_bb resid_b (`residuals_of_best`),
                # whose range part the coefficients come from, loses ~eps cond(R_bb)^2
                # of it (measured, float64: cond 3.3e6, 3.3e7, 3.3e8 put them 8.6e-5,
                # 5.3e-3, 1.3 off scikit-learn; a differential fuzz found it)
                cond = norm * _spectral_norm_estimate(inv)
                loss = torch.finfo(maker.dtype).eps * cond * cond
                if loss > PRECISION_TOLERANCE:
                    raise DualRouteUnavailable(
                        f"a fold's block of the residual maker has condition {cond:.2g} "
                        f"for X of rank {self.rank}: its coefficients would lose {loss:.1g}"
                    )
            cols = mm(R[:, rows], inv)  # (n_samples, n_b): G^T's columns of the fold
            if means is not None:
                cols[rows] = 0.0
                means[:, f] = cols.mean(dim=1).neg_()
                cols.neg_().sub_(means[:, f : f + 1])
            # (cast first: with rows an index tensor, not a slice, this is an index_put,
            # which does not cast; float32 with shuffled or grouped folds crashed)
            maker[:, rows] = cols.to(maker.dtype)
        return blocks, None if means is None else means.to(maker.dtype)

    def _loo_maker(self, R: torch.Tensor, maker: torch.Tensor):
        """maker = R diag(w) (n_samples, n_samples), w = 1 / diag(R) = 1 / (1 - h),
        from R = R_a (float64, symmetric): leave-one-out residuals E / (1 - h) in
        one GEMM (`_fold_maker` for folds of one sample, scored over all samples).

        With `predicts`, maker = P^T C instead, P = I - diag(w) R the leave-one-out
        prediction maker and C the centring over all columns: -R diag(w) with a
        zero diagonal (w_j R_jj = 1), centred. Returns, then, the maker of the
        means C took away, (n_samples, 1), (1 - R w) / n_samples; else None."""
        n = R.shape[0]
        w = 1.0 / R.diagonal()  # (n_samples,), float64
        mean = None
        if self.predicts:
            mean = ((1.0 - R @ w) / n)[:, None]
        for start in range(0, n, _BLOCK):  # a column block at a time, in float64
            cols = R[:, start : start + _BLOCK] * w[start : start + _BLOCK]
            if mean is not None:
                cols.diagonal(offset=-start).zero_()
                cols.neg_().sub_(mean)
            maker[:, start : start + _BLOCK] = cols  # (cast to maker's dtype)
        return None if mean is None else mean.to(maker.dtype)

    @staticmethod
    def _reflected(inv: torch.Tensor, alpha: float, v: torch.Tensor, out: torch.Tensor):
        """R = H [0, 0; 0, alpha inv] H into `out` (n_samples, n_samples), back from
        reflected coordinates, H = I - beta v v^T the Householder reflection, and
        diag(R) (float64). With S = [0, 0; 0, alpha inv], u = S v and
        a = beta u - (beta^2 v^T u / 2) v, H S H = S - v a^T - a v^T, a rank-2
        update written in one pass (`inverse_combination`, which destroys inv): the
        inner block is alpha inv - v' a'^T - a' v'^T, and row and column 0 are
        -(v_0 a + a_0 v)."""
        beta = 2.0 / float(v @ v)
        u = torch.zeros_like(v)
        u[1:] = alpha * inverse_mv(inv, v[1:])
        a = beta * u - (0.5 * beta * beta * float(v @ u)) * v
        diag = alpha * inv.diagonal() - 2.0 * v[1:] * a[1:]
        inverse_combination(inv, out[1:, 1:], scale=alpha, minus_outer=(v[1:], a[1:]))
        edge = -(v[0] * a + a[0] * v)  # S's row 0 is zero
        out[0] = edge.to(out.dtype)
        out[1:, 0] = edge[1:].to(out.dtype)
        return torch.cat([edge[:1], diag])

    def _set_weights(self, weights: torch.Tensor, dtype: torch.dtype):
        """Per alpha, the weights 1 / (1 - h)^2 of the squared residuals, (n_samples,),
        folded into `row_sq_sums`' block indicator."""
        self.row_weights = weights.to(dtype)  # (n_alphas, n_samples)
        n = self.row_weights.shape[1]
        self.indicators = [block_indicator(n, w, dtype, w.device) for w in self.row_weights]

    def _from_eigen(self, decomp: Decomposition, alphas, primal: bool = True):
        """The makers from an eigendecomposition without remainder instead:
        R_a = U diag(shrink_a) U^T as B B^T, B = U diag(sqrt(shrink_a)), a symmetric
        product in the compute dtype. With many alphas on a matrix that fits in
        cache the eigh plus these products beats one Cholesky inverse per alpha
        (measured at n_samples=2000, 6 alphas: 1.0 s against 1.24 s). Primal
        coefficients are refused as by Cholesky (`_refuse_primal`), here from the
        eigenvalues themselves."""
        if decomp.has_remainder:
            raise DualRouteUnavailable("the eigendecomposition has a remainder")
        eps = torch.finfo(decomp.dtype).eps
        if primal and decomp.dtype != torch.float64 and decomp.eigvals.numel():
            alpha = float(np.min(alphas))
            ratio = float(decomp.eigvals[0] / (decomp.eigvals[-1] + alpha))
            self._refuse_primal(ratio, alpha, eps)
        self.rank = decomp.rank
        shrink = shrinkage(decomp, alphas)  # (n_alphas, rank), float64
        one_minus_h = _one_minus_h(decomp, shrink, decomp.U.to(torch.float64))
        root = torch.sqrt(shrink).to(decomp.dtype)
        self.makers = []
        for a in range(shrink.shape[0]):
            B = decomp.U * root[a]
            self.makers.append(mm(B, B.T))
        self._set_weights(1.0 / one_minus_h**2, decomp.dtype)

    def score(
        self, chunk: ProjectedChunk, a: int, kept, scratch, squares, best_score, best_index,
        keep: bool = True,
    ):  # fmt: skip
        """Alpha `a`'s leave-one-out scores of the chunk (float64, (n_chunk,)), with the
        running best per target (score, index) and its residuals updated in place
        (not with `keep` False: for a shared alpha, scores only);
        alphas in order 0, 1, ...; ties keep the earlier alpha and NaN never wins,
        as `_scoring.select`.

        The residuals are stored one target per row: `kept` holds each target's
        best so far, `scratch` is a work buffer, both (n_chunk, n_samples);
        `squares` is one of (n_rows, n_samples), n_rows <= n_chunk, that the
        squares and the copied rows go through. Rows make the targets whose best
        changed cheap to copy: only the fewer of the improved and the unchanged
        rows move (at M, a masked select of whole chunks took 0.2 s of a 5 s fit),
        and when most improved the two buffers trade places.

        With folds the residuals are held-out ones, the running best is on the mean
        over folds, and the scores per fold are returned.

        Returns (scores, kept, scratch): the scores of shape (n_blocks, n_chunk), one
        block (all samples) for leave-one-out or one per fold, and the buffers after
        the trade, if any.
        """
        # E^T = Yc^T R_a (R_a is symmetric; with folds G_a^T): one row per target
        E = mm(chunk.Yc.T, self.makers[a], out=kept if a == 0 and keep else scratch)
        if self.score_folds is None:
            scores = (-row_sq_sums(E, self.indicators[a], squares) / E.shape[1])[None]
        else:
            scores = self._fold_scores(chunk, a, E, squares)
        if not keep:
            return scores, kept, scratch
        better = update_best(scores.mean(dim=0), a, best_score, best_index)
        if better is None:  # alpha 0, computed into `kept` itself
            return scores, kept, scratch
        n_better = int(better.sum())  # (a device sync on CUDA: the copy's size)
        if 2 * n_better <= better.numel():
            copy_rows(E, kept, better.nonzero()[:, 0], squares)
            return scores, kept, scratch
        copy_rows(kept, E, (~better).nonzero()[:, 0], squares)
        return scores, E, kept

    def _fold_scores(self, chunk: ProjectedChunk, a: int, E: torch.Tensor, squares):
        """Per fold, the scores (n_folds, n_chunk) of held-out residuals E (n_chunk,
        n_samples), or with `predicts` of centred held-out predictions, from each
        fold's sums (`_scoring.FOLD_SUMS`) and what the score needs of the targets
        over the fold (found once a chunk, at alpha 0, as the targets one per row
        when the sums or `residuals_of_best` need them)."""
        kinds = FOLD_SUMS[self.scorer.scoring]
        if a == 0:
            self._y_stats = [self.scorer.target_stats(chunk.Yc[rows]) for rows in self.score_folds]
            if "y_dot" in kinds or self.predicts:
                self._keep_targets(chunk, E)
        indicator, fold_of = self.fold_indicator
        pieces = row_block_sums(E, indicator, squares, kinds, self._yt)  # (n_chunk, n_pieces)
        n_folds = len(self.score_folds)
        sums = {
            k: v.new_zeros((n_folds, E.shape[0])).index_add_(0, fold_of, v.T)
            for k, v in pieces.items()
        }
        scores = torch.stack(
            [
                self.scorer.from_sums({k: v[f] for k, v in sums.items()}, n_b, self._y_stats[f])
                for f, n_b in enumerate(self.fold_sizes)
            ]
        )
        if self.constant_folds is not None:
            scores[self.constant_folds] = 0.0
        return scores

    def _keep_targets(self, chunk: ProjectedChunk, like: torch.Tensor):
        """The chunk's centred targets one per row, in `self._yt` (shaped as `like`,
        (n_chunk, n_samples)), a buffer reused from chunk to chunk."""
        if self._yt is None or self._yt.shape != like.shape:
            self._yt = torch.empty_like(like)
        self._yt.copy_(chunk.Yc.T)

    def residuals(self, chunk: ProjectedChunk, a: int, out: torch.Tensor) -> torch.Tensor:
        """The in-sample residuals E_a of every target of the chunk for alpha `a`
        (n_chunk, n_samples), in `out` (of that shape): for a shared alpha, once it
        is chosen. One GEMM with the alpha's maker, then `residuals_of_best`."""
        E = mm(chunk.Yc.T, self.makers[a], out=out)
        if self.predicts:  # residuals_of_best reads this chunk's targets
            self._keep_targets(chunk, E)
        best = torch.full((E.shape[0],), a, dtype=torch.long, device=E.device)
        return self.residuals_of_best(E, best)

    def residuals_of_best(self, kept: torch.Tensor, best_index: torch.Tensor) -> torch.Tensor:
        """The in-sample residuals E of each target's best alpha (n_chunk,
        n_samples), in `kept`: `score` left them there, or the held-out residuals,
        turned into E in place (folds: E_b = (R_a)_bb resid_b; leave-one-out with
        a score: E = (1 - h) e_loo), or with `predicts` the held-out predictions
        centred over each score fold, made residuals first."""
        if self.score_folds is None:
            return kept
        present = torch.unique(best_index).tolist()
        if self.predicts:  # kept holds centred held-out predictions p'
            # p = p' + the score folds' means of each target's best alpha, (n_chunk,
            # n_folds): one thin GEMM over every alpha that won; resid = y - p
            means = torch.cat([self.fold_means[a] for a in present], dim=1)
            n_folds = len(self.score_folds)
            per_alpha = mm(self._yt, means).view(kept.shape[0], len(present), n_folds)
            slot = torch.searchsorted(torch.tensor(present, device=best_index.device), best_index)
            mean = per_alpha[torch.arange(kept.shape[0], device=kept.device), slot]
            kept.neg_().add_(self._yt)  # y - p'
            for f, rows in enumerate(self.score_folds):
                kept[:, rows] -= mean[:, f : f + 1]
        if self.folds is None:  # leave-one-out: a row block of targets at a time
            for start in range(0, kept.shape[0], _BLOCK):
                rows = slice(start, start + _BLOCK)
                kept[rows] *= self.one_minus_h[best_index[rows]]
            return kept
        # the targets of each alpha (all of them when only one alpha won)
        chosen = {a: None if len(present) == 1 else (best_index == a).nonzero()[:, 0]
                  for a in present}  # fmt: skip
        for f, rows in enumerate(self.folds):
            cols = kept[:, rows]  # (n_chunk, n_b)
            for a, targets in chosen.items():
                if targets is None:
                    cols = mm(cols, self.blocks[a][f])
                else:
                    cols[targets] = mm(cols[targets], self.blocks[a][f])
            kept[:, rows] = cols
        return kept


def _rows(index: np.ndarray, device: torch.device):
    """A slice when `index` is a contiguous increasing range (a cheap view), else a tensor."""
    if index.size and np.array_equal(index, np.arange(index[0], index[0] + index.size)):
        return slice(int(index[0]), int(index[0]) + index.size)
    return torch.as_tensor(index, dtype=torch.long, device=device)


def _alpha_groups(n_alphas: int, bytes_per_alpha: int, budget: int = 2**27) -> list[list[int]]:
    """The alphas 0..n_alphas-1 in consecutive groups whose temporaries, at
    `bytes_per_alpha` each, stay within `budget` bytes (at least one per group):
    one GEMM per group instead of per alpha, without a large temporary."""
    size = max(1, min(n_alphas, budget // max(1, bytes_per_alpha)))
    return [list(range(i, min(i + size, n_alphas))) for i in range(0, n_alphas, size)]


class LeaveGroupOut:
    """Exact held-out residuals for folds whose training set is the complement of
    the test set (KFold, GroupKFold, LeaveOneGroupOut, PredefinedSplit,
    ShuffleSplit with the default train size, ...), from the shared decomposition:

        resid_b(alpha) = (I - H_bb(alpha))^-1 E_b(alpha)
        I - H_bb = [I - q_b q_b^T - U_b U_b^T] + U_b diag(alpha / (eigvals + alpha)) U_b^T

    which equals refitting without fold b (intercept included) and predicting
    fold b. The n_b x n_b inverses are built once per fit in float64 (n_alphas *
    sum_b n_b^2 values); each chunk then costs one small GEMM per fold and alpha.

    Scores weight the test samples by `sample_weight`, as scikit-learn's
    GridSearchCV (it passes sample_weight to the scorer) and its leave-one-out do.

    With `predictions`, the blocks are the held-out predictions instead, in the
    weighted space and up to a constant per fold and target, for the scores
    of `_scoring.FOLD_PREDICTS` (the correlation, which centres them). y - resid
    would lose them: a prediction shrunk far below the targets' spread is a small
    difference of large numbers (in float32 the correlation was 0.66 off with
    alphas up to 1e10, measured). Formed directly, with y_b's own part taken out,

        sqrt(w_b) (p_b - const) = (I - H_bb)^-1 U_b diag(phi) (UtY - U_b^T Yc_b)
                                  - d_b (q_b^T Yc_b),
        d_b = (I - H_bb)^-1 q_b - q_b / (1 - q_b^T q_b)

    (phi = 1 - shrink; q_b / (1 - q_b^T q_b), the limit of (I - H_bb)^-1 q_b at
    infinite alpha, is a constant prediction, so d_b is found in float64 with it
    subtracted), every term keeps its digits however strong the shrinkage. When U
    and q span every sample (no remainder) the bracket above is 0 and
    I - H_bb = U_b diag(shrink) U_b^T: residuals, and predictions of alphas up to
    the largest eigenvalue, p_b - const = -(I - H_bb)^-1 U_b diag(shrink)
    (UtY - U_b^T Yc_b), take that form, which keeps its digits however weak the
    shrinkage (formed, the bracket is U's rounding).

    Parameters
    ----------
    decomp : Decomposition
    alphas : array of shape (n_alphas,)
    test_folds : list of int arrays
        Test sample indices of each fold (training set = the other samples).
    precision : see ScoringGemm
    predictions : bool
        Yield held-out predictions (above); only at precision="highest".
    refit_folds : bool
        Raise `RefitFolds` where (I - H_bb)^-1 amplifies rounding past SVD_LOSS
        (for test folds that partition the samples, which `FoldRefits` takes).
    """

    name = "folds"

    def __init__(
        self,
        decomp: Decomposition,
        alphas,
        test_folds,
        precision: str = "highest",
        predictions: bool = False,
        refit_folds: bool = False,
    ):
        if predictions and precision != "highest":
            raise ValueError("held-out predictions are formed at precision='highest' only")
        # With a null basis N, the folds work in [U N] with eigenvalue 0 on N: no
        # remainder, so the shrink form below holds (see the class).
        self.projects_null = bool(decomp.has_remainder and decomp.null_basis is not None)
        n_null = 0
        if self.projects_null:
            n_null = decomp.null_basis.shape[1]
            zeros = decomp.eigvals.new_zeros(n_null)
            decomp = dataclasses.replace(
                decomp,
                U=decomp.full_basis,
                eigvals=torch.cat([decomp.eigvals, zeros]),
                has_remainder=False,
                null_basis=None,
                design=None,  # (its M would be [U N]'s: never made)
                basis_M=None,
            )
        self.decomp = decomp
        self.predictions = predictions
        # predictions are formed from UtY and the folds' own rows: the remainder lies
        # outside the span of H, so the projection need not form it
        self.reads_remainder = not predictions and not self.projects_null
        self.gemm = ScoringGemm(decomp.U, precision)
        shrink = shrinkage(decomp, alphas)  # (n_alphas, rank) float64
        self.shrink = shrink.to(decomp.dtype)
        a64 = torch.as_tensor(alphas, dtype=torch.float64, device=decomp.device)[:, None]
        # phi = 1 - shrink, as a quotient: 1 - shrink would lose it when alpha >> eigvals
        phi = decomp.eigvals[None, :] / (decomp.eigvals[None, :] + a64)
        # Without a remainder, I - H_bb = U_b diag(shrink) U_b^T exactly (`bracket`
        # below), and the predictions of an alpha up to the largest eigenvalue are
        # taken from it: p_b - const = -(I - H_bb)^-1 U_b diag(shrink) (UtY - U_b^T Yc_b),
        # no offset. Above it the bracket form, exact in its limit, serves them better.
        top = float(decomp.eigvals.max()) if decomp.eigvals.numel() else 0.0
        # [alpha] -> whether its predictions take the shrink form
        self.shrink_form = [not decomp.has_remainder and float(a) <= top for a in a64[:, 0]]
        form = torch.tensor(self.shrink_form, device=decomp.device)[:, None]
        # [alpha] -> what multiplies UtY - U_b^T Yc_b in the predictions (rank,), or
        # UtY in the residuals (shrink)
        scale64 = torch.where(form, -shrink, phi) if predictions else shrink
        self.predict_scale = scale64.to(decomp.dtype)
        # (unrounded when the decomposition kept it: see `Decomposition.basis64`)
        U = decomp.U.to(torch.float64) if decomp.basis64 is None else decomp.basis64
        q = None if decomp.q is None else decomp.q.to(torch.float64)
        self.folds = [_rows(np.asarray(f), decomp.device) for f in test_folds]
        n_alphas = shrink.shape[0]
        sizes = [len(f) for f in test_folds]
        n_rows = sum(sizes)
        rank = decomp.rank
        # Without a remainder, resid_b = (I - H_bb)^-1 U_b diag(shrink) UtY. The
        # matrices (I - H_bb)^-1 U_b diag(shrink) of all folds are stacked per alpha
        # (sum_b n_b x rank per alpha, like U), so an alpha's held-out residuals of
        # every fold are ONE GEMM from UtY: no full residual GEMM, no n_b x n_b GEMM
        # per fold, no scaling pass over UtY, and one large GEMM rather than a
        # smaller one per fold. (Predictions read no remainder: it is outside the
        # span of H.)
        self.stacked_bases = None  # [alpha] -> (sum_b n_b, rank), compute dtype
        if (
            (predictions or not decomp.has_remainder)
            and precision == "highest"
            and _bases_fit(decomp, n_alphas, n_rows)
        ):
            ends = np.cumsum(sizes).tolist()
            self._bounds = list(zip([0, *ends[:-1]], ends, strict=True))
            self.stacked_bases = [decomp.U.new_empty((n_rows, rank)) for _ in range(n_alphas)]
        self.inverses = []  # [fold][alpha] -> (n_b, n_b), compute dtype
        # [fold][alpha] -> d_b (n_b,), compute dtype; None without an intercept
        self.offsets = [] if predictions and q is not None else None
        # whether any alpha takes the bracket form (below): else it is not formed
        any_bracket = decomp.has_remainder or (predictions and not all(self.shrink_form))
        # With a remainder, held-out residuals are (I - H_bb)^-1 E_b from the compute
        # dtype's E_b (without one the stacked bases, made in float64, take UtY)
        residual_check = decomp.has_remainder and precision == "highest"
        for b, rows in enumerate(self.folds):
            Ub = U[rows]
            n_b = Ub.shape[0]
            base = None
            if any_bracket:
                base = -mm(Ub, Ub.T)
                if q is not None:
                    base -= torch.outer(q[rows], q[rows])
                base.diagonal().add_(1.0)
            # The bracket I - q_b q_b^T - U_b U_b^T is 0 when U and q span every sample
            # (no remainder): formed, it is U's rounding, which outweighs U_b diag(shrink)
            # U_b^T at small alpha / eigvals (float32 at 1e-6 refused the fold as not
            # positive definite; float64's scores were 1e-7 off), so residuals leave it
            # out, and so do the predictions of alphas up to the largest eigenvalue
            # (`self.shrink_form`). Above it predictions keep it: their offsets d_b rest on it
            # being exact at large alpha (the correlation at alpha 1e10 was 0.02 off
            # without it).
            per_alpha, offsets = [], []
            # U_b diag(shrink) U_b^T of several alphas as ONE GEMM (their U_b diag(shrink)
            # stacked): at M, 5 folds of 400 and 6 alphas, 0.61 s against 0.70 with a
            # product per alpha, measured. (Only the lower triangle is read below.)
            for group in _alpha_groups(n_alphas, n_b * (Ub.shape[1] + n_b) * 8):
                scaled = Ub[None] * shrink[group, None, :]  # (n_group, n_b, rank)
                flat = scaled.reshape(len(group) * n_b, Ub.shape[1])  # (rank may be 0)
                products = mm(flat, Ub.T).reshape(len(group), n_b, n_b)
                inverses = []  # float64
                for a, product in zip(group, products, strict=True):
                    bracket = decomp.has_remainder or (predictions and not self.shrink_form[a])
                    inverse = cholesky_inverse(product.add_(base) if bracket else product)
                    if inverse is not None:  # (only its lower triangle is sure: made whole)
                        inverse = mirror_lower(inverse, inverse)
                    if inverse is None:
                        if decomp.dtype != torch.float64:
                            # the rounded basis may be why (float32 at 1e-10 lambda_max
                            # with samples of weight 0 was refused, float64 fits it; a
                            # differential fuzz found it): redone in float64, which
                            # refuses a fold that truly cannot be held out
                            raise LostPrecision(float("inf"), decomp.dtype)
                        raise ValueError(FOLD_NOT_HELD_OUT)
                    if residual_check:  # (I - H_bb)^-1 amplifies E_b's rounding
                        amplification = _spectral_norm_estimate(inverse)
                        _check_amplification(amplification, decomp.dtype)
                        if refit_folds and amplification * _EPS64 > SVD_LOSS:
                            # float64 5-fold scores of 54 x 48 (training folds below
                            # the rank) were 0.23 off at alpha 1e-15 lambda_max and
                            # 1.7e-5 at 1e-11, FoldRefits' 3e-13 (a fuzz found it)
                            raise RefitFolds(f"(I - H_bb)^-1 amplifies {amplification:.2g}-fold")
                    inverses.append(inverse)
                    per_alpha.append(inverse.to(decomp.dtype))
                    if self.offsets is not None:
                        qb = q[rows]
                        if bracket:
                            d = mm(inverse, qb[:, None])[:, 0] - qb / (1.0 - qb @ qb)
                        else:  # (the shrink form's predictions need no offset)
                            d = torch.zeros_like(qb)
                        offsets.append(d.to(decomp.dtype))
                if self.stacked_bases is not None:
                    # The alphas' inverses stacked: one GEMM with U_b per group, in
                    # float64: (I - H_bb)^-1 reaches eigvals / alpha where U_b diag(shrink)
                    # is small, and its product with U_b is rounded only once shrink
                    # has scaled it back (float32 scored folds of repeated samples 20 %
                    # off at 1e-9 lambda_max when the product was float32, measured).
                    block = mm(torch.cat(inverses), Ub)  # (n_group * n_b, rank)
                    start, stop = self._bounds[b]
                    for k, a in enumerate(group):
                        self.stacked_bases[a][start:stop] = block[k * n_b : (k + 1) * n_b].mul_(
                            scale64[a]
                        )
            self.inverses.append(per_alpha)
            if self.offsets is not None:
                self.offsets.append(offsets)
        self._largest_fold = max(sizes)
        if decomp.basis64 is not None:  # (made the matrices above: not kept)
            self.decomp = dataclasses.replace(decomp, basis64=None)
        self._work = {}
        self._held_in = None  # (chunk, `_chunk_parts`)
        # how predictions take y_b's own part out (`_prediction_blocks`): the cheapest
        # that fits. Kept parts cost n_folds * rank rows a target (room for
        # n_samples); own makers 2 n_b^2 flops a target and alpha, refound 2 n_b rank.
        self._parts = self.own_makers = None
        # values a target beyond `bytes_per_target`'s (the null basis' projection)
        self.extra_per_target = n_null
        rank = decomp.rank
        if predictions:
            if len(self.folds) * rank <= decomp.n_samples:
                self._parts = "kept"
                self.extra_per_target += len(self.folds) * rank
            elif self.stacked_bases is not None and sum(n * n for n in sizes) <= rank * n_rows:
                self._parts = "own"
                Uc = decomp.U
                self.own_makers = [  # [fold][alpha] -> PB_b U_b^T (n_b, n_b), compute dtype
                    [mm(bases[start:stop], Uc[rows].T) for bases in self.stacked_bases]
                    for rows, (start, stop) in zip(self.folds, self._bounds, strict=True)
                ]
            else:
                self._parts = "refound"

    def _projection(self, chunk: ProjectedChunk) -> torch.Tensor:
        """The chunk's projection on this scheme's basis, (rank, n_chunk): UtY, or with
        a null basis [U N]^T Yc."""
        return chunk.full_projection if self.projects_null else chunk.UtY

    def _buffer(self, n_rows: int, like: torch.Tensor) -> torch.Tensor:
        """A (n_rows, n_chunk) scratch block, reused across folds, alphas and chunks."""
        shape = (n_rows, like.shape[1])
        return reused_buffer(self._work, "held", shape, like.dtype, like.device)

    def blocks(self, chunk: ProjectedChunk, a: int, out: torch.Tensor):
        """Yield (rows, weighted held-out residuals (n_b, n_chunk), their sqrt weights)
        per fold, or with `predictions` the held-out predictions (see the class).
        A zero-weight sample's rows of U are zero, so its block of I - H_bb is the
        identity and its (weighted) residual is 0, as it should."""
        sqrt_sw = self.decomp.sqrt_sw
        if self.predictions:
            yield from self._prediction_blocks(chunk, a, out)
            return
        if self.stacked_bases is not None:
            bases = self.stacked_bases[a]
            # folds may overlap (ShuffleSplit): then sum_b n_b > n_samples rows
            held = out if bases.shape[0] <= out.shape[0] else self._buffer(bases.shape[0], out)
            held = mm(bases, self._projection(chunk), out=held[: bases.shape[0]])
            for rows, (start, stop) in zip(self.folds, self._bounds, strict=True):
                yield rows, held[start:stop], None if sqrt_sw is None else sqrt_sw[rows]
            return
        if self.projects_null:  # [U N] diag(shrink) [U N]^T Yc: no remainder
            chunk = dataclasses.replace(chunk, UtY=chunk.full_projection, remainder=None)
        residuals(self.decomp, chunk, self.shrink[a], out, self.gemm)
        # The consumer is done with a fold's residuals before the next is computed.
        buf = self._buffer(self._largest_fold, out)
        for rows, inverses in zip(self.folds, self.inverses, strict=True):
            held_out = mm(inverses[a], out[rows], out=buf[: inverses[a].shape[0]])
            yield rows, held_out, None if sqrt_sw is None else sqrt_sw[rows]

    def _chunk_parts(self, chunk: ProjectedChunk) -> dict:
        """This chunk's per-fold parts of the predictions, found once a chunk:
        "intercept", [fold] -> q_b^T Yc_b (1, n_chunk) (with an intercept), and with "kept"
        parts [fold] -> UtY - U_b^T Yc_b (rank, n_chunk), the training rows'
        projection (else None: found for each alpha in `_prediction_blocks`)."""
        if self._held_in is not None and self._held_in[0] is chunk:
            return self._held_in[1]
        self._held_in = None  # (the previous chunk's, freed first)
        parts = {"intercept": None, "rest": None}
        if self.offsets is not None:
            q = self.decomp.q
            parts["intercept"] = [mm(q[rows][None, :], chunk.Yc[rows]) for rows in self.folds]
        if self._parts == "kept":
            U = self.decomp.U
            # UtY - U_b^T Yc_b with one new block a fold
            parts["rest"] = [
                mm(U[rows].T, chunk.Yc[rows]).sub_(self._projection(chunk)).neg_()
                for rows in self.folds
            ]
        self._held_in = (chunk, parts)
        return parts

    def _prediction_blocks(self, chunk: ProjectedChunk, a: int, out: torch.Tensor):
        """`blocks` with `predictions`: the class's formula, per fold, with UtY -
        U_b^T Yc_b kept for the chunk ("kept"), or its U_b^T Yc_b applied as
        -(PB_b U_b^T) Yc_b, n_b x n_b matrices made once a fit ("own makers": for
        folds smaller than the rank), or found again ("refound")."""
        sqrt_sw = self.decomp.sqrt_sw
        parts = self._chunk_parts(chunk)
        projection = self._projection(chunk)
        bases = self.stacked_bases
        n_rows = bases[a].shape[0] if bases is not None else self._largest_fold
        held = out if n_rows <= out.shape[0] else self._buffer(n_rows, out)
        for b, rows in enumerate(self.folds):
            n_b = self.inverses[b][a].shape[0]
            Yb = chunk.Yc[rows]
            if self._parts == "own":
                start, stop = self._bounds[b]
                pred = mm(bases[a][start:stop], projection, out=held[start:stop])
                scratch = reused_buffer(self._work, "own", (n_b, Yb.shape[1]), Yb.dtype, Yb.device)
                pred.sub_(mm(self.own_makers[b][a], Yb, out=scratch))
            else:
                if parts["rest"] is not None:
                    rest = parts["rest"][b]
                else:
                    shape = projection.shape
                    rest = reused_buffer(self._work, "rest", shape, Yb.dtype, Yb.device)
                    rest = mm(self.decomp.U[rows].T, Yb, out=rest).sub_(projection).neg_()
                if bases is not None:
                    start, stop = self._bounds[b]
                    pred = mm(bases[a][start:stop], rest, out=held[start:stop])
                else:  # (no room for the bases)
                    if parts["rest"] is None:  # a scratch block
                        scaled = rest.mul_(self.predict_scale[a][:, None])
                    else:
                        scaled = rest * self.predict_scale[a][:, None]
                    pred = mm(self.inverses[b][a], mm(self.decomp.U[rows], scaled), out=held[:n_b])
            if parts["intercept"] is not None:
                pred.addmm_(self.offsets[b][a][:, None], parts["intercept"][b], alpha=-1.0)
            yield rows, pred, None if sqrt_sw is None else sqrt_sw[rows]


class FoldRefits:
    """Exact held-out residuals for folds that partition the samples, by refitting
    each fold in the shared basis Z = U diag(sqrt(eigvals)) (n_samples x rank):
    ridge does not change under a rotation of the features, and its solution lies
    in X's row space, so the fold's ridge in Z is its ridge in X. For X with more
    samples than its rank (the covariance form) this costs one GEMM of 2 n_b rank
    flops a target per fold and alpha, where `LeaveGroupOut` adds an n_b x n_b
    block to a full residual GEMM (2 n_samples (rank + n_b) flops a target and
    alpha). Per fold b, training rows T, s = sqrt(w), W_T = sum_T w:

        m_b = -Z_b^T s_b / W_T                (Z's training mean; Z^T s = 0)
        C_b = Z^T Z - Z_b^T Z_b - W_T m_b m_b^T = V_b diag(lam_b) V_b^T    (float64)
        c_b = diag(sqrt(eigvals)) (UtY - U_b^T Yc_b) + m_b (s_b^T Yc_b)   (training X^T y)
        resid_b(alpha) = Yc_b + s_b (s_b^T Yc_b) / W_T
                         - (Z_b - s_b m_b^T) V_b diag(1 / (lam_b + alpha)) V_b^T c_b

    (without an intercept m_b and the s_b terms are 0). So with, per fold and
    alpha, made once a fit in float64,
    P_ab = (Z_b - s_b m_b^T) V_b diag(1 / (lam_b + alpha)) V_b^T diag(sqrt(eigvals))
    (n_b x rank) and d_ab = s_b / W_T - (Z_b - s_b m_b^T) V_b diag(..) V_b^T m_b,

        resid_b(alpha) = Yc_b - [P_ab | -d_ab] [UtY - U_b^T Yc_b; s_b^T Yc_b]

    one GEMM a fold and alpha, whose right-hand side is found once a chunk per
    fold (n_folds x (rank + 1) values a target, `extra_per_target`), and the
    GEMM of every alpha but the smallest from that alpha's residuals ("base",
    made once a chunk) with the difference of the two makers. No remainder
    Yc - U UtY is needed. With `predictions`, the blocks are s_b (p_b - the
    training mean of y), the prediction less a constant per fold and target, as
    `LeaveGroupOut`'s, from [P_ab | d'_ab], d'_ab = s_b / W_T - d_ab.
    Z^T Z is diag(sqrt(eigvals)) U^T U diag(sqrt(eigvals)) from the U the targets
    are projected on (not diag(eigvals)), so each fold's refit is exact for that U.

    Parameters
    ----------
    decomp : Decomposition with U (not the dual route's)
    alphas : array of shape (n_alphas,)
    test_folds : list of int arrays, disjoint, covering every sample
    predictions : bool
        Yield held-out predictions (above).
    """

    name = "folds"
    reads_remainder = False  # (nor does the primal refit)
    projects_folds = True  # project(..., folds=self.folds): UtY from the folds' U_b^T Yc_b

    def __init__(self, decomp: Decomposition, alphas, test_folds, predictions: bool = False):
        self.decomp = decomp
        self.predictions = predictions
        if sum(len(f) for f in test_folds) != decomp.n_samples:  # (their rows of `out`)
            raise ValueError("FoldRefits needs test folds that partition the samples")
        self.folds = [_rows(np.asarray(f), decomp.device) for f in test_folds]
        rank = decomp.rank
        # the folds' right-hand sides, and the base residuals (n_samples a target)
        self.extra_per_target = len(self.folds) * (rank + 1) + decomp.n_samples
        a64 = torch.as_tensor(alphas, dtype=torch.float64, device=decomp.device)
        U = decomp.U.to(torch.float64)
        root = decomp.eigvals.clamp(min=0.0).sqrt()  # (rank,)
        gram = mm(U.T, U)  # U^T U, the identity up to U's rounding
        s = decomp.sqrt_sw
        s = None if s is None else s.to(torch.float64)
        w_total = float(decomp.n_samples if s is None else (s * s).sum())
        intercept = decomp.q is not None
        top_all = float(decomp.eigvals[0]) if rank else 0.0  # (the downdate's scale)
        eps = torch.finfo(decomp.dtype).eps
        # Each alpha's residuals are the smallest alpha's ("base", made once a chunk)
        # less a difference: its rounding is then common to all alphas and cancels
        # from their comparison, as leave-one-out's remainder does (from a maker per
        # alpha instead, float32 chose alphas scoring up to 1.7e-3 below the best
        # by the mean squared error, against LeaveGroupOut's 3e-4, measured). The
        # same flops: the base's GEMM replaces its alpha's. Predictions are made
        # directly: shrunk by a large alpha they would be a small difference of the
        # base's large ones (the correlation was 0.05 off at alpha 1e10, float32).
        self.base = None if predictions else int(torch.argmin(a64))
        # [fold][alpha] -> the base alpha's [P_ab | -d_ab] (residuals; predictions:
        # [P_ab | d'_ab]), for the others the difference from it, [P_ab - P_a0b |
        # the same of the intercept column]; n_b x (rank + 1) with an intercept
        # (its rank-one term rides in the GEMM), else n_b x rank; compute dtype
        self.makers = []
        self.direct = []  # [fold][alpha] -> whether makers[fold][alpha] is not a difference
        for rows in self.folds:
            Ub = U[rows]
            Zb = Ub * root
            C = (gram - mm(Ub.T, Ub)) * root[:, None] * root[None, :]
            if intercept:
                sb = torch.ones(Zb.shape[0], dtype=torch.float64, device=Zb.device)
                sb = sb if s is None else s[rows]
                w_train = w_total - float((sb * sb).sum())
                if w_train <= 0.0:
                    raise ValueError(FOLD_NOT_HELD_OUT)
                m = -(Zb.T @ sb) / w_train
                C -= w_train * torch.outer(m, m)
                Zb = Zb - torch.outer(sb, m)  # test rows centred on the training mean
            lam, V = eigh((C + C.T) / 2)  # (on one thread when small: `_backend.eigh`)
            lam = lam.clamp(min=0.0)
            # The training rows' null directions (e.g. training folds of at most
            # n_features samples, or repeated samples): V_k^T c_b is 0 there, as
            # training X^T y lies in training X's row space, but c_b's rounding
            # (a float32 difference UtY - U_b^T Yc_b) is not, and 1 / alpha would
            # amplify it (float32 scored -10.4 for -4.26 at alpha 1e-7 lambda_max,
            # n=7, p=5, 3 folds). They are dropped, with decompose's tolerance, and
            # so is a direction of singular value below eps s_max: its part of c_b,
            # up to s |y|, is under c_b's rounding, eps s_max |y| (float32 only:
            # float64's eps is below decompose's tolerance). On session 30's fuzz
            # cases with folds and n_samples > n_features in float32 (2,887), against
            # the scores before the SVD below: 1 fit 2x worse and none better with
            # this floor, 7 worse and 5 better without it.
            top = float(lam[-1]) if lam.numel() else 0.0
            rel_tol = max(decomp.n_samples, decomp.n_features) * _EPS64
            sv_tol = max(rel_tol, eps)  # (on singular values, relative to s_max)
            tol = max(rel_tol, sv_tol * sv_tol) * top  # (on eigh's eigenvalues)
            # C, a downdate of X's covariance, is within ~eps lambda_max only, as
            # `decompose`'s eigh is: then the SVD of D instead, as `decompose` does,
            # where the fit is finer than eigh resolves (4 folds of X of columns
            # scaled 1e-3 to 1e3 around 100, 60 x 12, at 1e-14 lambda_max: scores
            # 2.4e-3 off refits by the downdate's eigh, 1.9e-12 by the SVD), or
            # where eigh dropped a direction the SVD keeps and the fit feels (rows
            # repeated with 1e-7 noise, at alpha 1e-2: 1.7e-5 to 6.7e-4 off).
            a_min = float(a64.min())
            by_svd = top > 0.0 and not gram_resolves(top_all, float(lam[0]), a_min, _EPS64, eps)
            dropped = top > 0.0 and not by_svd and bool((lam <= rel_tol * top).any())
            # (D, n_train x rank in float64, formed only where it is read)
            D = (
                _training_rows(U, root, rows, s, m if intercept else None)
                if by_svd or dropped
                else None
            )
            if dropped:
                by_svd = drops_resolvable(D, lam, V, "covariance", a_min, rel_tol, eps, sv_tol)
            if by_svd:
                lam, V, _ = svd_spectrum(D, "covariance")  # (ascending, as eigh's)
                top = float(lam[-1]) if lam.numel() else 0.0
                tol = sv_tol * sv_tol * top
            live = lam > tol
            A = mm(Zb, V)  # (n_b, rank)
            B = V.T * root[None, :]  # V_b^T diag(sqrt(eigvals))
            Vm = V.T @ m if intercept else None
            full = []  # float64
            for alpha in a64:
                scaled = A * torch.where(live, 1.0 / (lam + alpha), 0.0)[None, :]
                maker = A.new_empty((A.shape[0], rank + intercept))
                maker[:, :rank] = mm(scaled, B)
                if decomp.dtype != torch.float64:  # (it maps the compute dtype's
                    # rounding of UtY - U_b^T Yc_b, a difference, into the residuals)
                    amplification = _spectral_norm_estimate(maker[:, :rank])
                    _check_amplification(amplification, decomp.dtype)
                if intercept:  # (Z_b - s_b m^T) V diag(1/(lam + alpha)) V^T m, less s_b / W_T
                    d = scaled @ Vm
                    maker[:, rank] = d if predictions else d - sb / w_train
                full.append(maker)
            per_alpha, direct = [], []
            for a, maker in enumerate(full):
                if self.base is not None and a != self.base:
                    # The difference only where it is no larger than the maker: with a
                    # fold Gram near singular and a tiny smallest alpha the base's maker
                    # is huge, and its rounding would swamp every other alpha's residuals
                    # (float32 scores 70x off, measured), where a maker of its own keeps
                    # each alpha's digits.
                    diff = maker - full[self.base]
                    if torch.linalg.norm(diff) <= torch.linalg.norm(maker):
                        per_alpha.append(diff.to(decomp.dtype))
                        direct.append(False)
                        continue
                per_alpha.append(maker.to(decomp.dtype))
                direct.append(True)
            self.makers.append(per_alpha)
            self.direct.append(direct)
        self._work = {}
        self._held_in = None  # (chunk, `_chunk_parts`)

    def release(self):
        """Drop the chunk's parts and buffers held between alphas (before a retry
        with a smaller chunk, or at the end)."""
        self._held_in = None
        self._work.clear()

    def _chunk_parts(self, chunk: ProjectedChunk):
        """Per fold, UtY - U_b^T Yc_b (rank, n_chunk) and, with an intercept, one
        row more: s_b^T Yc_b; and the base alpha's blocks of every fold in one
        (n_samples, n_chunk) buffer, folds in order; found once a chunk."""
        if self._held_in is not None and self._held_in[0] is chunk:
            return self._held_in[1]
        self._held_in = None  # (the previous chunk's, freed first)
        if chunk.fold_products is None:
            raise ValueError("FoldRefits needs chunks projected with its folds (`projects_folds`)")
        sqrt_sw, UtY = self.decomp.sqrt_sw, chunk.UtY
        rank, intercept = UtY.shape[0], self.decomp.q is not None
        base = None
        if self.base is not None:
            shape = (self.decomp.n_samples, UtY.shape[1])
            base = reused_buffer(self._work, "base", shape, UtY.dtype, UtY.device)
        parts, start = [], 0
        for b, rows in enumerate(self.folds):
            Yb = chunk.Yc[rows]
            rest = chunk.fold_products[b][: rank + intercept]  # U_b^T Yc_b, row rank free
            rest[:rank].sub_(UtY).neg_()
            if intercept:
                if sqrt_sw is None:
                    torch.sum(Yb, 0, keepdim=True, out=rest[rank:])
                else:
                    mm(sqrt_sw[rows][None], Yb, out=rest[rank:])
            n_b = Yb.shape[0]
            if base is not None:  # Yc_b - [P_ab | -d_ab] [rest; s_b^T Yc_b], one GEMM
                addmm(
                    Yb, self.makers[b][self.base], rest, alpha=-1.0, out=base[start : start + n_b]
                )
            parts.append((rest, start, start + n_b))
            start += n_b
        self._held_in = (chunk, (parts, base))
        return self._held_in[1]

    def blocks(self, chunk: ProjectedChunk, a: int, out: torch.Tensor):
        """Yield (rows, weighted held-out residuals (n_b, n_chunk), their sqrt
        weights) per fold, or with `predictions` the held-out predictions (see
        the class), each in its own rows of `out`: the base alpha's, plus (less, for
        residuals) its difference maker times the fold's right-hand side."""
        sqrt_sw = self.decomp.sqrt_sw
        parts, base = self._chunk_parts(chunk)
        for rows, makers, direct, (rest, start, stop) in zip(
            self.folds, self.makers, self.direct, parts, strict=True
        ):
            dst = out[start:stop]
            if base is None:  # predictions, [P_ab | d'_ab] [rest; s_b^T Yc_b]
                mm(makers[a], rest, out=dst)
            elif a == self.base:  # (a copy: scores may overwrite their blocks)
                dst.copy_(base[start:stop])
            elif direct[a]:  # Yc_b - [P_ab | -d_ab] [rest; s_b^T Yc_b]
                addmm(chunk.Yc[rows], makers[a], rest, alpha=-1.0, out=dst)
            else:
                addmm(base[start:stop], makers[a], rest, alpha=-1.0, out=dst)
            yield rows, dst, None if sqrt_sw is None else sqrt_sw[rows]


def _training_rows(U, root, rows, sqrt_sw, mean) -> torch.Tensor:
    """A fold's training rows of the shared basis, Z_T = U_T diag(root), centred on
    their weighted mean `mean` (rank,) when not None: Z_T - s_T mean^T (float64,
    (n_train, rank)), the D of `FoldRefits` (D^T D is the fold's covariance)."""
    train = torch.ones(U.shape[0], dtype=torch.bool, device=U.device)
    train[rows] = False
    D = U[train] * root
    if mean is not None:
        D -= torch.outer(torch.ones_like(D[:, 0]) if sqrt_sw is None else sqrt_sw[train], mean)
    return D


class FoldDualRoute:
    """Held-out residuals of folds that partition the samples by `DualRoute` (one
    Cholesky inverse per alpha, no eigendecomposition, no projection), for
    per-target alphas with a built-in score (each from sums over a fold,
    `_scoring.FOLD_SUMS`) and no sample weights; the same results as
    `LeaveGroupOut`, up to rounding.

    Parameters
    ----------
    decomp : Decomposition from ``decompose(..., eigen=False)``
    alphas : array of shape (n_alphas,)
    test_folds : list of int arrays, disjoint, covering every sample
    scorer : _scoring.Scoring
    workspace : see `DualRoute`
    constant_folds : see `DualRoute`
    """

    name = "folds"

    def __init__(
        self, decomp: Decomposition, alphas, test_folds, scorer, workspace=None, primal=True,
        constant_folds=None,
    ):  # fmt: skip
        self.folds = [_rows(np.asarray(f), decomp.device) for f in test_folds]
        self.dual_route = DualRoute(
            decomp, alphas, workspace, folds=self.folds, scorer=scorer, primal=primal,
            constant_folds=constant_folds,
        )  # fmt: skip
        self.decomp = _without_gram(decomp, self.dual_route.rank)


class RefitPerFold:
    """Held-out residuals by an exact refit on each training set.

    The fallback for splitters whose training set is not the complement of the
    test set (TimeSeriesSplit, ShuffleSplit with train_size set, ...): the
    leave-group-out identity does not apply, so each fold gets a decomposition
    of its own training rows. Correct, but one decomposition per fold.

    The test rows' predictions come from their coordinates in the fold's basis,
    T = (X_test - x_offset) M, made with the decomposition in its work dtype
    (`Decomposition.test_coordinates`): T (Ũ / (eigval + alpha)) + y_offset,
    one (n_test, rank) GEMM per alpha and no coefficients. With `predictions`,
    the blocks are those predictions less y_offset (the constant intercept +
    x_offset . coef, see `LeaveGroupOut`), in the weighted space: they keep
    their digits when shrunk far below the targets' spread.
    """

    name = "refit"
    # each fold projects its own training rows; the primal refit in a fold reads
    # their UtY only
    reads_remainder = False

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
        predictions: bool = False,
    ):
        from ._decompose import decompose

        self.predictions = predictions
        self.alphas = torch.as_tensor(alphas, dtype=torch.float64, device=X.device)
        self.sqrt_sw = None
        if sample_weight is not None:
            self.sqrt_sw = torch.sqrt(sample_weight).to(compute_dtype)
        self.folds, self.trains, self.decomps = [], [], []
        for train, test in splits:
            train_rows = _rows(np.asarray(train), X.device)
            rows = _rows(np.asarray(test), X.device)
            sw = None if sample_weight is None else sample_weight[train_rows]
            self.decomps.append(
                decompose(
                    X[train_rows],
                    fit_intercept=fit_intercept,
                    sample_weight=sw,
                    compute_dtype=compute_dtype,
                    gcv_mode=gcv_mode,
                    alpha_min=float(self.alphas.min()),
                    keep_design=False,  # (no coefficients: predictions from T)
                    test_rows=X[rows],
                )
            )
            self.trains.append(train_rows)
            self.folds.append(rows)
        self._projections = None

    def blocks(self, chunk: ProjectedChunk, a: int, out: torch.Tensor):
        from ._refit import coordinate_predictions

        if a == 0:  # project each training set once per chunk, reuse for every alpha
            self._projections = [
                project(d, chunk.y[tr], keep_y=False, remainder=False)
                for d, tr in zip(self.decomps, self.trains, strict=True)
            ]
        for d, proj, rows in zip(self.decomps, self._projections, self.folds, strict=True):
            resid = coordinate_predictions(d, proj, float(self.alphas[a]))
            if not self.predictions:
                resid.add_(proj.y_offset).neg_().add_(chunk.y[rows])
            if self.sqrt_sw is None:
                yield rows, resid, None
            else:  # weighted space, as the scores expect
                yield rows, resid * self.sqrt_sw[rows][:, None], self.sqrt_sw[rows]
