"""Step 1: centre X and eigendecompose it once (../shared/MATH.md).

Everything later (every alpha, every target chunk, every CV scheme) uses the
`Decomposition` built here. Notation, for the scaled and centred design
Xs = sqrt(w) * (X - x_offset) of shape (n_samples, n_features):

    Xs = U diag(s) V^T            (thin SVD, kept rank r)
    eigvals = s**2                 shape (rank,)
    U                              shape (n_samples, rank), orthonormal columns
    M = Xs^T U = V diag(s)         shape (n_features, rank)

With an intercept, the unit vector q = sqrt(w) / ||sqrt(w)|| spans the
unpenalised intercept direction. U is built exactly orthogonal to q: the
samples are first rotated by a Householder reflection that maps q to the first
axis, and the decomposition runs on the remaining n_samples - 1 coordinates.
This is what makes the leave-one-out errors equal scikit-learn's (the intercept
is refit in every fold) without relying on an eigenvalue being "numerically 0".

The dual form (eigh of the Gram matrix) is used when the rotated sample count
is <= n_features, the primal form (eigh of the covariance) otherwise, like
scikit-learn's gcv_mode="auto". Where that matrix, whose eigenvalues eigh finds
only to ~eps lambda_max, cannot resolve the fit, the SVD of the reflected design
gives the same quantities instead (`SVD_LOSS`, `drops_resolvable`).

Rank tolerance: directions with eigval <= max(n_samples, n_features) * eps *
max(eigvals) are dropped (eps of the decomposition dtype, numpy.matrix_rank's
rule). They carry phi = eigval / (eigval + alpha) ~ 0 for any alpha that matters,
and the residual step treats them exactly as the null space (see `remainder`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from ._backend import constant_columns_exact, eigh, mm, pivoted_cholesky_rank, svd


@dataclass(frozen=True)
class Decomposition:
    """The one object that flows between the steps.

    Attributes
    ----------
    U : tensor of shape (n_samples, rank), compute dtype
        Orthonormal basis of the range of the scaled, centred X.
    eigvals : tensor of shape (rank,), float64
        Squared singular values of the scaled, centred X, descending.
    design : tensor of shape (n_samples, n_features) or None, compute dtype
        Xs itself (Gram form only, and not with ``decompose(..., keep_design=False)``):
        primal coefficients are Xs^T c from the dual coefficients c, and M is
        computed from it on first use.
    basis_M : tensor of shape (n_features, rank) or None, compute dtype
        M = Xs^T U = V diag(s) made in the work dtype, then rounded: from the
        covariance form's eigenvectors, or in Gram form with ``decompose(...,
        make_M=True)``; else None, and `M` is made on first use from `design`.
    x_offset : tensor of shape (n_features,), compute dtype
        (Weighted) mean of X, zeros without an intercept.
    sqrt_sw : tensor of shape (n_samples,) or None
        Square roots of the sample weights (None: all ones).
    q : tensor of shape (n_samples,) or None
        Unit intercept direction (None when fit_intercept=False).
    leverage_rest : tensor of shape (n_samples,), compute dtype
        1 - q_i**2 - ||U_i||**2 >= 0: the part of each sample's leverage outside
        the kept span (0 when X has full row rank; ||N_i||**2 with `null_basis`).
    has_remainder : bool or None
        True when (I - qq^T - UU^T) Y can be nonzero, i.e. the kept span does
        not cover every sample direction (n_samples > rank + intercept). None,
        like gram_rank, until the Gram's rank is known (see below).
    form : str
        "gram" (eigh of n_samples x n_samples) or "covariance" (n_features^2).
    gram, householder, gram_rank
        Set instead of U, eigvals, M and leverage_rest by ``decompose(...,
        eigen=False)``: the float64 Gram of the reflected design Z (n_rows x
        n_rows; n_rows = n_samples - 1 with an intercept) and the Householder
        vector of the reflection (None without an intercept). The leave-one-out
        dual route needs only these (`_cv.DualRoute`): no eigendecomposition.
        gram_rank, the numerical rank of the Gram (`gram_rank`), is left None:
        the dual route finds it in the buffer its factorisations go through,
        before them, and then factorises the Gram itself for its last alpha.
    x_dot_offset : tensor of shape (n_samples,) or None, compute dtype
        (X - x_offset) @ x_offset, for the intercepts of dual coefficients; set
        by ``decompose(..., x_dot_offset=True)`` (from X before it is centred, so
        that X is not needed afterwards).
    null_basis : tensor of shape (n_samples, n_rows - rank) or None, compute dtype
        Gram form with a remainder: the Gram's dropped eigenvectors N, so that
        [q U N] is an orthonormal basis of every sample direction (I - qq^T - UU^T
        = NN^T). Folds work in the basis [U N] with shrinkage 1 on N
        (`full_basis`, `_cv.LeaveGroupOut`) rather than from the remainder, whose
        rounding (I - H_bb)^-1 amplifies by up to eigval / alpha. None in the
        covariance form (N would be n_samples x (n_samples - rank)) or without a
        remainder.
    basis64 : tensor of shape (n_samples, rank + n_null) or None, float64
        `full_basis` before its rounding to a lower compute dtype
        (``decompose(..., keep_basis64=True)``; None when the compute dtype is
        float64). The folds' (I - H_bb)^-1 is made from it: a float32 [U N]'s
        rounding moves U_b diag(shrink) U_b^T by ~1e-7 in every direction, and its
        small eigenvalues are ~alpha / eigval where shrink mixes 1 (N) with small
        values (weighted folds of repeated samples scored r2 0.80 for 0.85 at
        alpha 4e-9 lambda_max, measured).
    low : (basis, M, eigvals, tol) or None
        The eigen-directions dropped as numerically zero whose eigenvalue is still
        above rounding (LOW_FLOOR eps lambda_max < eigval <= tol, the rank
        tolerance): their basis (n_samples, d) and M (n_features, d), compute
        dtype, eigvals (d,), float64, and tol; None without any. Their eigenvalues
        are not accurate, but at alpha far above tol their part of the primal
        coefficients, M (U^T Yc / (eigval + alpha)), hardly depends on them, and
        dropping it cost up to 5.5e-3 of float64 coefficients
        (`_refit.coefficients`, LOW_ALPHA_FACTOR).
    by_svd : bool
        Whether the spectrum came from the SVD of the design rather than from eigh
        (`SVD_LOSS`); the rank tolerance and `low` are then on singular values.
    test_coordinates : (T, T_low) or None
        With ``decompose(..., test_rows=X_test)``: those rows in the basis,
        T = (X_test - x_offset) M of shape (n_test, rank) and T_low the same with
        `low`'s M, (n_test, d) or None, made in the work dtype and then rounded to
        the compute dtype. Their predictions are T (Ũ / (eigval + alpha)) plus
        y_offset (`_refit.coordinate_predictions`: a fold's test rows in
        `_cv.RefitPerFold`, samples of weight 0 in leave-one-out's cv_results_).
    """

    U: torch.Tensor | None
    eigvals: torch.Tensor | None
    design: torch.Tensor | None
    basis_M: torch.Tensor | None
    x_offset: torch.Tensor
    sqrt_sw: torch.Tensor | None
    q: torch.Tensor | None
    leverage_rest: torch.Tensor
    has_remainder: bool | None
    form: str
    n_samples: int
    n_features: int
    fit_intercept: bool
    gram: torch.Tensor | None = None
    householder: torch.Tensor | None = None
    gram_rank: int | None = None
    x_dot_offset: torch.Tensor | None = None
    null_basis: torch.Tensor | None = None
    basis64: torch.Tensor | None = None
    low: tuple | None = None
    by_svd: bool = False
    test_coordinates: tuple | None = None

    @functools.cached_property
    def full_basis(self) -> torch.Tensor:
        """[U N], shape (n_samples, n_rows), compute dtype: U and `null_basis` side by
        side (U alone without a null basis)."""
        if self.null_basis is None:
            return self.U
        return torch.cat([self.U, self.null_basis], dim=1)

    @functools.cached_property
    def M(self) -> torch.Tensor:
        """Xs^T U = V diag(s), shape (n_features, rank), compute dtype: coefficients are
        ``M @ (Ũ / (eigvals + alpha))``. In Gram form one GEMM, done on first use
        only: the leave-one-out route that works from dual coefficients never needs it.
        """
        if self.basis_M is not None:
            return self.basis_M
        return mm(self._design().T, self.U)

    @functools.cached_property
    def design_offset(self) -> torch.Tensor:
        """Xs @ x_offset, shape (n_samples,), compute dtype (Gram form): x_offset @ coef[t]
        equals design_offset @ c[:, t] for primal coefficients Xs^T c."""
        return self._design() @ self.x_offset

    def _design(self) -> torch.Tensor:
        if self.design is None:
            raise RuntimeError("this decomposition was made without its design (keep_design=False)")
        return self.design

    @functools.cached_property
    def offset_projection(self) -> torch.Tensor:
        """M^T x_offset, shape (rank,), compute dtype: x_offset @ coef[t] equals
        offset_projection @ (Ũ[:, t] / (eigvals + alpha_t)), a dot product over
        the rank instead of over n_features (the intercepts' share of X)."""
        return self.M.T @ self.x_offset

    @functools.cached_property
    def remainder_is_rounding(self) -> bool:
        """Whether the samples of weight 0 span the whole remainder (X has full rank
        over the others): their weighted targets are 0, so every target's remainder
        (I - qq^T - UU^T) Y is 0, its computed value the projection's rounding alone
        (~eps |Y|). Residuals leave it out: added, it swamped in-sample residuals of
        ~alpha / eigval |Y| (float64 leave-one-out scored 1.0 off at alpha 1e-15
        lambda_max, 20 x 48 with 3 weights of 0; float32 GCV 1e9 off at 1e-12;
        a differential fuzz found them). Dual coefficients, see
        `_refit.dual_coefficients`."""
        if self.sqrt_sw is None or self.eigvals is None or not self.has_remainder:
            return False
        return self.full_rank_where_weighted

    @functools.cached_property
    def full_rank_where_weighted(self) -> bool:
        """Whether the kept directions span every sample direction of weight above 0
        (rank = their count, less the intercept): any further null direction of the
        Gram is a sample of weight 0, whose weighted target and dual coefficient are 0."""
        return _spans_weighted(self.rank, self.sqrt_sw, self.n_samples, self.fit_intercept)

    @property
    def rank(self) -> int:
        if self.eigvals is None:
            return self.gram_rank
        return int(self.eigvals.shape[0])

    @property
    def dtype(self) -> torch.dtype:
        return self.x_offset.dtype

    @property
    def device(self) -> torch.device:
        return self.x_offset.device


# `decompose(make_M=...)` makes M in the work dtype past this relative loss
M_TOLERANCE = 1e-5

# `Decomposition.low` holds the dropped eigenvalues above LOW_FLOOR eps lambda_max:
# those of exact null directions are rounding, measured at most 1.3 eps lambda_max
# over 30 random low-rank X (20-300 x 10-300, scaled columns); counted, they put
# ~eps lambda_max / alpha of noise into coefficients that were exact. Left out,
# a genuine one costs more: at 16 eps lambda_max, one of 14 such directions left
# out put weighted 5-fold coefficients 6.9e-6 off (float64, n=30, p=234, alpha
# 4.3e-4 lambda_max), 3.2e-7 with it
LOW_FLOOR = 4.0

# `decompose` takes the SVD of the reflected design Z instead of eigh of its Gram or
# covariance when eigh's resolution, eps lambda_max in every eigenvalue, would move
# the fit by more than this (or the compute dtype's eps) relative to its smallest
# eigenvalue plus the smallest alpha (`_eigh_resolves`). The SVD resolves singular
# values to eps s_max, eigenvalues s**2 to eps s_max s: X of columns scaled 1e-3 to
# 1e3 with an offset of 100 and no intercept (40 x 10, alphas 1e-2 and 1) had its
# smallest direction (4.5e-3) dropped as below eigh's rank tolerance (5.6e-3), and
# leave-one-out chose alpha 1 where scikit-learn's SVD and exact refits choose 1e-2
# (coefficients 0.99 off). It costs 3.5-6x the Gram and eigh (measured here,
# float64: 0.38-0.46 s for 0.12-0.14 s at 3000 x 1000, 3.4-4.0 s for 1.0-1.1 s at
# 8000 x 2000), so only where eigh falls short.
SVD_LOSS = 1e-9


def choose_form(n_samples: int, n_features: int, fit_intercept: bool, gcv_mode=None) -> str:
    """ "gram" when the rotated sample count (n_samples - 1 with an intercept) is
    <= n_features, else "covariance"; gcv_mode "gram" / "covariance" forces one."""
    if gcv_mode in ("gram", "covariance"):
        return gcv_mode
    return "gram" if n_samples - int(fit_intercept) <= n_features else "covariance"


def gram_rank(G: torch.Tensor, n_samples: int, n_features: int, work=None) -> int:
    """Numerical rank of the Gram G (n_rows x n_rows, float64) by pivoted Cholesky,
    with this module's tolerance; G is kept, `work` (a tensor like G, or None for a
    new one) is where the factorisations run."""
    top = float(G.diagonal().max()) if G.shape[0] else 0.0
    tol = max(n_samples, n_features) * torch.finfo(G.dtype).eps * top
    return pivoted_cholesky_rank(G, tol, work=work) if top > 0.0 else 0


def _householder_vector(q: torch.Tensor) -> torch.Tensor:
    """v such that (I - 2 v v^T / v^T v) maps the unit vector q to -sign(q_0) e_0."""
    v = q.clone()
    # Adding sign(q_0) avoids cancellation (the standard Householder choice).
    v[0] += 1.0 if float(q[0]) >= 0 else -1.0
    return v


def _reflect(v: torch.Tensor, A: torch.Tensor) -> torch.Tensor:
    """(I - 2 v v^T / v^T v) @ A for A of shape (n_samples, k), in place on A."""
    coef = (v @ A) * (2.0 / (v @ v))
    A.addr_(v, coef, alpha=-1.0)
    return A


def _orthonormalise(A: torch.Tensor) -> torch.Tensor:
    """A R^-1 with R^T R = A^T A (Cholesky QR), for A of shape (n_rows, rank) with
    nearly orthonormal columns: column j loses its parts along columns 0..j-1 (the
    larger eigenvalues' directions, where its error lies) and its norm's rounding."""
    R = torch.linalg.cholesky(mm(A.T, A), upper=True)  # (a Gram: half a GEMM)
    return torch.linalg.solve_triangular(R, A, upper=True, left=False)


def gram_resolves(top: float, bottom: float, alpha, eps: float, compute_eps: float) -> bool:
    """Whether X's Gram (or covariance) matrix, of largest and smallest eigenvalues
    `top` and `bottom`, rounded at eps, resolves the fit at `alpha` (None: 0):
    eigh's eigenvalues, or a Cholesky inverse of Gram + alpha I, are each within
    ~eps top, which moves direction j by ~eps top / (eigval_j + alpha), largest at
    the smallest (`SVD_LOSS`)."""
    return eps * top <= max(SVD_LOSS, compute_eps) * (max(bottom, 0.0) + (alpha or 0.0))


def _spans_weighted(rank: int, sqrt_sw, n_samples: int, fit_intercept: bool) -> bool:
    """Whether `rank` kept directions span every sample direction of weight above 0
    (their count, less the intercept's)."""
    n_weighted = n_samples if sqrt_sw is None else int((sqrt_sw > 0).sum())
    return rank >= n_weighted - int(fit_intercept)


def _eigh_resolves(eigvals: torch.Tensor, alpha_min, eps: float, compute_eps: float) -> bool:
    """`gram_resolves` for eigh's eigenvalues (ascending)."""
    if not eigvals.numel() or float(eigvals[-1]) <= 0.0:
        return True
    return gram_resolves(float(eigvals[-1]), float(eigvals[0]), alpha_min, eps, compute_eps)


def drops_resolvable(
    Z: torch.Tensor,
    eigvals,
    vecs,
    form: str,
    alpha_min,
    rel_tol: float,
    compute_eps: float,
    keep_tol: float | None = None,
) -> bool:
    """Whether eigh dropped (eigenvalue <= rel_tol lambda_max) a direction the SVD
    would keep (singular value above keep_tol s_max, by default rel_tol s_max) and
    the fit would feel. eigh resolves eigenvalues to ~eps lambda_max
    only, singular values to ~sqrt(eps) s_max, where the SVD resolves them to ~eps
    s_max: Z on the dropped eigenvectors (Z V_d, or Z^T U_d in Gram form), formed
    directly, has them as the SVD would, and its Frobenius norm bounds the largest.
    Past the SVD's own tolerance, such a direction's part of the
    coefficients, up to s s_max / alpha of theirs, is weighed as in `gram_resolves`
    (float32 coefficients of near-duplicate columns, s = 1.3e-8 s_max at alpha
    2e-7 lambda_max, had been 2.3e-2 off with it dropped)."""
    top = float(eigvals[-1]) if eigvals.numel() else 0.0
    n_dropped = int((eigvals <= rel_tol * top).sum()) if top > 0.0 else 0
    if not n_dropped:
        return False
    dropped = vecs[:, :n_dropped]  # (eigh's order: ascending)
    part = mm(Z, dropped) if form == "covariance" else mm(Z.T, dropped)
    s_max, s_dropped = top**0.5, float(torch.linalg.vector_norm(part))
    if s_dropped <= (rel_tol if keep_tol is None else keep_tol) * s_max:
        return False
    return alpha_min is None or s_dropped * s_max > max(SVD_LOSS, compute_eps) * alpha_min


def svd_spectrum(Z: torch.Tensor, form: str):
    """Z's spectrum as eigh of its Gram (form "gram") or covariance would give it,
    ascending, from its SVD: (eigvals (k,), vecs, rows). Gram form: vecs are the
    Gram's eigenvectors (n_rows, n_rows), every one (the null ones for
    `Decomposition.null_basis`), rows None. Covariance form: vecs are V (n_features,
    k) and rows U (n_rows, k), k = min(n_rows, n_features)."""
    n_rows, n_features = Z.shape
    full = form == "gram" and n_rows > n_features  # (a forced Gram form of a tall Z)
    U, s, Vt = svd(Z, full_matrices=full)
    eigvals = s * s
    if full:  # the Gram's null directions beyond n_features
        eigvals = torch.cat([eigvals, eigvals.new_zeros(n_rows - n_features)])
    eigvals = eigvals.flip(0)
    if form == "gram":
        return eigvals, U.flip(1), None
    return eigvals, Vt.T.flip(1), U.flip(1)


def _finite(product: torch.Tensor, name: str, Xs: torch.Tensor) -> torch.Tensor:
    """`product` (X's Gram or covariance), or a ValueError naming the overflow: a
    finite X of huge magnitude (e.g. 1e200) made LAPACK's eigh fail to converge."""
    # (the sum first: one read, no boolean copy of an n x n matrix)
    if not bool(torch.isfinite(product.sum())) and not bool(torch.isfinite(product).all()):
        raise ValueError(
            f"X's {name} matrix overflows {str(product.dtype)[6:]} (X's centred values "
            f"reach {float(Xs.abs().max()):.3g}): rescale X"
        )
    return product


def decompose(
    X: torch.Tensor,
    *,
    fit_intercept: bool = True,
    sample_weight: torch.Tensor | None = None,
    compute_dtype: torch.dtype | None = None,
    gcv_mode: str | None = None,
    eigen: bool = True,
    overwrite_x: bool = False,
    x_dot_offset: bool = False,
    keep_design: bool = True,
    keep_basis64: bool = False,
    make_M: float | None = None,
    alpha_min: float | None = None,
    test_rows: torch.Tensor | None = None,
) -> Decomposition:
    """Centre, weight and eigendecompose X once (or take its SVD: `SVD_LOSS`).

    Parameters
    ----------
    X : tensor of shape (n_samples, n_features)
        The design, already on the compute device, in the dtype the
        decomposition should run in (float64 recommended: see README).
    fit_intercept : bool
        Centre X (weighted) and keep the intercept direction unpenalised.
    sample_weight : tensor of shape (n_samples,) or None
        Non-negative weights (at least one positive).
    compute_dtype : torch dtype or None
        Dtype of U, M, x_offset and leverage_rest in the result (X's dtype if None).
    gcv_mode : {None, "auto", "eigen", "svd", "gram", "covariance"}
        Accepted for scikit-learn compatibility. "gram" / "covariance" force a
        form; the others choose the smaller eigenproblem automatically.
    eigen : bool
        False: Gram form only, stop at the Gram of the reflected design (and its
        rank) without eigendecomposing it; see `Decomposition.gram`.
    overwrite_x : bool
        Centre, weight and reflect X in place (for a private copy: at the
        headline size one n_samples x n_features float64 array, 1.4 GB, less;
        and fresh memory is slow to touch on some VMs). X is then no longer X.
    x_dot_offset : bool
        Also compute `Decomposition.x_dot_offset` (needs fit_intercept).
    keep_design : bool
        False: no `Decomposition.design` in Gram form. Only primal coefficients
        (and M) are made from it; dual coefficients never need it, and it is an
        n_samples x n_features array of the compute dtype (at the headline size
        0.71 GB of fresh memory, kept to the end).
    keep_basis64 : bool
        Also keep `Decomposition.basis64` (for folds, `_cv.LeaveGroupOut`).
    make_M : float or None
        Gram form, the smallest alpha of a fit whose primal coefficients come from
        the projection: make M = Xs^T U now, in the work dtype, from the reflected
        design, when the compute dtype would lose its digits, and drop the design
        (M's only use then). Made later from the rounded `design` and U, M's
        columns s_j v_j carry ~eps |X| whatever s_j, and 1 / (eigval + alpha)
        amplifies that by up to sqrt(max eigval / (min eigval + alpha)): float32
        coefficients of near-duplicate rows at alpha 2e-8 lambda_max were 1.2e-4
        off scikit-learn and their predictions 1.8e-2 (a differential fuzz found
        it). Made when that bound times the compute dtype's eps exceeds 1e-5
        (M_TOLERANCE): a float64 GEMM of 2 n_samples n_features rank flops,
        measured +0.4-0.65 s against the float32 one's 0.2 s at M (n=2000,
        p=8000); the benchmark problems stay below it (S: bound 6.7 at alpha 5e3).
    alpha_min : float or None
        The fit's smallest alpha: with it, whether eigh resolves the spectrum well
        enough or the SVD of the design is needed (`SVD_LOSS`); None: as for alpha 0.
    test_rows : tensor of shape (n_test, n_features) or None
        Rows to predict without their weight in the fit (held out, or of weight 0):
        also make `Decomposition.test_coordinates`.

    Returns
    -------
    Decomposition
    """
    n_samples, n_features = X.shape
    work_dtype = X.dtype
    compute_dtype = compute_dtype or work_dtype
    device = X.device

    sqrt_sw = None
    if sample_weight is not None:
        sw = sample_weight.to(device=device, dtype=work_dtype)
        sqrt_sw = torch.sqrt(sw)
        weights = sw / sw.sum()
    if fit_intercept:
        if sample_weight is None:
            x_offset = X.mean(dim=0)
        else:
            x_offset = weights @ X
        # a constant column centred to exact zeros: a rounded mean would leave a
        # direction of rounding counted in the rank (a constant X with a sample of
        # weight 0 had rank 1 and GCV scores 7.6x off; a differential fuzz found it)
        x_offset = constant_columns_exact(X, x_offset, sample_weight)
        x_dot = None
        if x_dot_offset:
            # with x_offset as the model stores it (the compute dtype), from X itself
            x_off = x_offset.to(compute_dtype).to(work_dtype)
            x_dot = ((X @ x_off) - x_off @ x_off).to(compute_dtype)
        Xs = X.sub_(x_offset) if overwrite_x else X - x_offset
    else:
        if x_dot_offset:
            raise ValueError("x_dot_offset needs fit_intercept=True")
        x_dot = None
        x_offset = torch.zeros(n_features, dtype=work_dtype, device=device)
        Xs = X if overwrite_x else X.clone()
    if sqrt_sw is not None:
        Xs.mul_(sqrt_sw[:, None])

    form = choose_form(n_samples, n_features, fit_intercept, gcv_mode)
    design = None
    if form == "gram" and keep_design:
        # kept (before the reflection below, which works in place) for primal
        # coefficients from dual coefficients and for M
        design = Xs.to(compute_dtype, copy=True)

    q = None
    Z = Xs
    if fit_intercept:
        q = torch.full((n_samples,), n_samples**-0.5, dtype=work_dtype, device=device)
        if sqrt_sw is not None:
            q = sqrt_sw / torch.linalg.vector_norm(sqrt_sw)
        v = _householder_vector(q)
        # Row 0 of the reflected design is +-q^T Xs = 0 (Xs is centred): drop it.
        Z = _reflect(v, Xs)[1:]
    n_rows = Z.shape[0]

    if not eigen:
        if form != "gram":
            raise ValueError("decompose(eigen=False) needs the Gram form")
        G = _finite(mm(Z, Z.T), "Gram", Xs)  # (n_rows, n_rows), the work dtype
        return Decomposition(
            U=None,
            eigvals=None,
            design=design,
            basis_M=None,
            x_offset=x_offset.to(compute_dtype),
            sqrt_sw=None if sqrt_sw is None else sqrt_sw.to(compute_dtype),
            q=None if q is None else q.to(compute_dtype),
            leverage_rest=None,
            has_remainder=None,  # with the rank, from `gram_rank`
            form=form,
            n_samples=n_samples,
            n_features=n_features,
            fit_intercept=fit_intercept,
            gram=G,
            householder=v if fit_intercept else None,
            x_dot_offset=x_dot,
        )

    if form == "gram":
        eigvals, vecs = eigh(_finite(mm(Z, Z.T), "Gram", Xs))  # vecs: (n_rows, n_rows)
    else:
        # vecs: (n_features, n_features)
        eigvals, vecs = eigh(_finite(mm(Z.T, Z), "covariance", Xs))
    eps, compute_eps = torch.finfo(work_dtype).eps, torch.finfo(compute_dtype).eps
    rel_tol = max(n_samples, n_features) * eps
    svd_rows = None  # the covariance form's U rows, when the SVD gives them
    by_svd = not _eigh_resolves(eigvals, alpha_min, eps, compute_eps) or drops_resolvable(
        Z, eigvals, vecs, form, alpha_min, rel_tol, compute_eps
    )
    if by_svd:
        eigvals, vecs, svd_rows = svd_spectrum(Z, form)
    # Drop numerically-zero directions, then descending order. eigh's order is
    # ascending, so the kept ones are its last `kept`: one copy of the kept
    # eigenvectors (a flip, then a mask, made two: 55 ms of 1.9 at M, measured).
    # The tolerance is numpy.matrix_rank's, on the eigenvalues or, from the SVD,
    # on the singular values (so squared here); the same for LOW_FLOOR.
    top = float(eigvals[-1]) if eigvals.numel() else 0.0
    tol = rel_tol * top
    floor = LOW_FLOOR * eps * top
    if by_svd:  # (only where eigh found a spectrum: top > 0)
        tol, floor = tol * tol / top, floor * floor / top
    kept = int((eigvals > max(tol, 0.0)).sum()) if top > 0.0 else 0
    first = eigvals.shape[0] - kept
    null_rows = vecs[:, :first] if form == "gram" and first else None  # (n_rows, n_null)
    # the dropped directions still above rounding (`Decomposition.low`); eigh's order:
    # the last of the dropped
    positive = int((eigvals[:first] > floor).sum()) if top > 0.0 else 0
    low_vecs, low_eigvals = vecs[:, first - positive : first], eigvals[first - positive : first]
    low_rows = None if svd_rows is None else svd_rows[:, first - positive : first]
    eigvals, vecs = eigvals[first:].flip(0), vecs[:, first:].flip(1)
    s = torch.sqrt(eigvals)
    if eigvals.numel() and float(eigvals[0]) * torch.finfo(compute_dtype).tiny >= 1.0:
        # 1 / (eigval + alpha) underflows in the compute dtype (eigenvalues past its
        # largest value become inf): float32 X of values ~1e20 had all-zero coefficients
        top_weight = 1.0 if sqrt_sw is None else float(sqrt_sw.max()) ** 2
        what, fix = "X's scale", "rescale X (e.g. standardise its columns)"
        if top_weight > 1.0:  # (weights of 1e80 had been blamed on X alone)
            what = f"X's scale with sample weights up to {top_weight:.3g}"
            fix = "scale the weights and alphas down together (w / c with alpha / c: the same fit)"
        raise ValueError(
            f"{what} is beyond {str(compute_dtype)[6:]}: its Gram's largest eigenvalue is "
            f"{float(eigvals[0]):.3g} (the values it is made of reach {float(Xs.abs().max()):.3g});"
            f" {fix} or compute in float64"
        )

    basis_M = None
    if form == "gram":
        U_rows = vecs  # (n_rows, rank)
        if make_M is not None and eigvals.numel() and work_dtype != compute_dtype:
            bound = float(eigvals[0] / (eigvals[-1] + make_M)) ** 0.5
            if torch.finfo(compute_dtype).eps * bound > M_TOLERANCE:
                # Xs^T U = (H Xs)^T (H U) = Z^T U_rows (row 0 of H Xs is 0)
                basis_M = mm(Z.T, U_rows).to(compute_dtype).contiguous()
                design = None
    else:
        basis_M = (vecs * s).to(compute_dtype).contiguous()  # V diag(s)
        if svd_rows is not None:  # (from the SVD: orthonormal already)
            U_rows = svd_rows[:, first:].flip(1)
        else:
            U_rows = mm(Z, vecs) / s  # (n_rows, rank)
            # U = Z V / s is orthonormal only to ~eps lambda_max / (the eigenvalue gaps
            # eigh resolves) in its small columns, and what follows assumes it: dual
            # coefficients U (U^T y) / (eigval + alpha) pass its error on to the fitted
            # values times lambda_max / (lambda_j + alpha) (float64 ones of X = one
            # factor + noise 8e-6 were 0.4 off at alpha 1e-10 lambda_max), and the
            # scores' leverages 1 - q_i^2 - ||U_i||^2 and GCV's trace sum ||U_j||^2
            # read it at any alpha (float64 leave-one-out and GCV scores of X = one
            # factor + noise 1e-4 were 4.5e-5 off refits at 1e-2 to 3 lambda_max; a
            # differential fuzz found them). Below the compute dtype's rounding (e.g.
            # float32 from float64) there is no need.
            if s.numel() and eps * float(s[0] / s[-1]) > torch.finfo(compute_dtype).eps:
                U_rows = _orthonormalise(U_rows)

    def back(rows: torch.Tensor) -> torch.Tensor:
        """Columns in rotated coordinates back to samples: H [0; rows]."""
        if not fit_intercept:
            return rows
        out = torch.zeros((n_samples, rows.shape[1]), dtype=work_dtype, device=device)
        out[1:] = rows
        return _reflect(v, out)

    U = back(U_rows)
    null64 = None if null_rows is None else back(null_rows)
    low = None
    if positive:  # their U and M as for the kept directions (M = Z^T U_rows in Gram form)
        low_s = torch.sqrt(low_eigvals)
        if form == "gram":
            low_rows, low_M = low_vecs, mm(Z.T, low_vecs)
        else:
            if low_rows is None:
                low_rows = mm(Z, low_vecs) / low_s
            low_M = low_vecs * low_s
        low_basis = back(low_rows).to(compute_dtype).contiguous()
        low = (low_basis, low_M.to(compute_dtype).contiguous(), low_eigvals.to(torch.float64), tol)
    test_coordinates = None
    if test_rows is not None:
        # (X_test - x_offset) M in the work dtype (M = Z^T U_rows in Gram form): with
        # features far from zero and no intercept, float32 X_test @ coef cancels to
        # ~eps |X_test| |coef| (a ShuffleSplit fold's r2 was -142 for -47, features of
        # spread 2.4e-4 of their mean; a differential fuzz found it)
        centred = test_rows.to(work_dtype) - x_offset
        if form == "gram":
            centred = mm(centred, Z.T)  # (n_test, n_rows)
            M, M_low = vecs, low_vecs
        else:
            M, M_low = vecs * s, low_vecs * torch.sqrt(low_eigvals)
        test_coordinates = tuple(
            None if m is None else mm(centred, m).to(compute_dtype)
            for m in (M, M_low if positive else None)
        )
    basis64 = None
    if keep_basis64 and compute_dtype != torch.float64 and work_dtype == torch.float64:
        basis64 = U if null64 is None else torch.cat([U, null64], dim=1)
    null_basis = None if null64 is None else null64.to(compute_dtype).contiguous()

    # The leverage outside the kept span, 1 - q_i^2 - ||U_i||^2, is that difference's
    # rounding (~eps) where it is small, and leave-one-out divides by 1 - h_i =
    # leverage_rest_i + sum_j U_ij^2 alpha / (eigval_j + alpha), itself ~alpha / eigval:
    # without a remainder it is 0; where the remainder is the samples of weight 0
    # alone, 1 on them and 0 elsewhere; in Gram form ||N_i||^2 (no cancellation). A
    # rounding of 3.3e-16 in one sample's had put a float64 leave-one-out score 4e-2
    # off at alpha 2.5e-16 lambda_max (n=11, p=45: scikit-learn was exact).
    has_remainder = U.shape[1] < n_rows
    if not has_remainder:
        leverage_rest = torch.zeros(n_samples, dtype=work_dtype, device=device)
    elif sqrt_sw is not None and _spans_weighted(U.shape[1], sqrt_sw, n_samples, fit_intercept):
        # the kept span holds every weighted sample: the rest is the samples of
        # weight 0, each alone in its direction (1), and 0 for the others (a float64
        # leave-one-out score had been 2.6e-4 off at 2e-14 lambda_max, 48 x 46)
        leverage_rest = (sqrt_sw == 0).to(work_dtype)
    elif null64 is not None:
        leverage_rest = (null64 * null64).sum(dim=1)
    else:
        lev = (U * U).sum(dim=1)
        if q is not None:
            lev = lev + q * q
        leverage_rest = torch.clamp(1.0 - lev, min=0.0)

    return Decomposition(
        U=U.to(compute_dtype).contiguous(),
        eigvals=eigvals.to(torch.float64),
        design=design,
        basis_M=basis_M,
        x_offset=x_offset.to(compute_dtype),
        sqrt_sw=None if sqrt_sw is None else sqrt_sw.to(compute_dtype),
        q=None if q is None else q.to(compute_dtype),
        leverage_rest=leverage_rest.to(compute_dtype),
        has_remainder=bool(has_remainder),
        form=form,
        n_samples=n_samples,
        n_features=n_features,
        fit_intercept=fit_intercept,
        x_dot_offset=x_dot,
        null_basis=null_basis,
        basis64=basis64,
        low=low,
        by_svd=by_svd,
        test_coordinates=test_coordinates,
    )
