"""ridge_cv(): the whole pipeline, in order, and the only loop over target chunks.

    validate -> decompose X -> for each target chunk: project Y, score every
    alpha, select, refit -> write

The decomposition is done once; every later step is a function of
(decomposition, one chunk of targets). Results are written into host arrays
(or a caller-supplied array such as a memmap for the coefficients), so neither
Y nor the coefficients need to fit in device memory.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch

from ._backend import (
    SUM_BLOCK,
    as_tensor,
    blas_kernel_warning,
    cpu_blas,
    cpu_threads,
    float_dtype_of,
    host_empty,
    release_free_heap,
    resolve_device,
    reused_buffer,
    shares_memory,
    synchronize,
    torch_dtype,
)
from ._chunks import (
    ResultWriter,
    TargetReader,
    auto_target_chunk,
    available_memory,
    bytes_per_target,
    parse_bytes,
)
from ._cv import (
    PRECISION_TOLERANCE,
    DualRouteUnavailable,
    FoldDualRoute,
    FoldRefits,
    GeneralizedCV,
    LeaveGroupOut,
    LeaveOneOut,
    LostPrecision,
    PrecisionWarning,
    RefitFolds,
    RefitPerFold,
    _bases_fit,
    project,
)
from ._decompose import choose_form, decompose
from ._kernels import loo_epilogue
from ._progress import Progress
from ._refit import coefficients, coordinate_predictions, dual_coefficients, from_residuals
from ._scoring import FOLD_PREDICTS, FOLD_SUMS, Scoring, _unscale, select
from ._validation import check_alphas, check_finite_chunk, check_sample_weight, check_target_array

# Defer each chunk's host writes by one chunk (None: on CUDA only, where the
# copy-back then overlaps the next chunk's compute); tests set True on CPU.
_DEFER_RESULTS = None


@dataclass
class RidgeCVResult:
    """What ridge_cv returns (host numpy arrays; targets flattened).

    Attributes
    ----------
    alphas : array of shape (n_alphas,)
    alpha_index : array of shape (n_targets,) (int)
        Index into `alphas` of each target's alpha (all equal when shared).
    alpha : array of shape (n_targets,)
    best_score : array of shape (n_targets,) or float
        Per-target best score, or the shared alpha's mean score.
    coef : array of shape (n_targets, n_features), or (n_targets, n_samples)
        Primal coefficients, or with solution="dual" the dual coefficients.
    intercept : array of shape (n_targets,)
    cv_results : array of shape (n_samples, n_targets, n_alphas) or None
        Squared held-out errors (scoring=None) or held-out predictions.
    mean_scores : array of shape (n_alphas,) or None
        Mean score over targets of each alpha (shared alpha only).
    alpha_scores : array of shape (n_targets, n_alphas), float64
        Every alpha's held-out score for every target (averaged over folds):
        the curve each target's alpha was chosen from.
    """

    alphas: np.ndarray
    alpha_index: np.ndarray
    alpha: np.ndarray
    best_score: np.ndarray | float
    coef: np.ndarray
    intercept: np.ndarray
    cv_results: np.ndarray | None
    mean_scores: np.ndarray | None
    target_shape: tuple
    form: str
    rank: int
    target_chunk: int
    device: str
    timings: dict = field(default_factory=dict)
    solution: str = "primal"
    x_offset: np.ndarray | None = None  # (n_features,) the (weighted) mean of X removed
    alpha_scores: np.ndarray | None = None


def _splits(cv, n_samples: int, groups):
    """(train, test) index pairs of a scikit-learn splitter, int k or iterable."""
    from sklearn.model_selection import check_cv

    splitter = check_cv(cv, classifier=False)
    placeholder = np.zeros((n_samples, 1))  # splitters only need the sample count
    splits = [
        (np.asarray(tr), np.asarray(te)) for tr, te in splitter.split(placeholder, None, groups)
    ]
    if not splits:
        raise ValueError(f"cv={cv!r} produced no splits")
    for i, (tr, te) in enumerate(splits):
        if te.size == 0 or tr.size == 0:
            raise ValueError(f"cv split {i} has an empty train or test set")
        for part, idx in (("train", tr), ("test", te)):
            if idx.dtype.kind not in "iu":
                raise ValueError(
                    f"cv split {i}: its {part} indices have dtype {idx.dtype}; give integer "
                    "sample indices"
                )
            if idx.min() < 0 or idx.max() >= n_samples:
                raise ValueError(
                    f"cv split {i}: a {part} index is out of range for {n_samples} samples "
                    f"(min {idx.min()}, max {idx.max()})"
                )
    return splits


def _check_fold_weights(splits, sample_weight: np.ndarray) -> None:
    """Refuse a split whose train or test samples all have weight 0: a fit on no
    weight is undefined, and so is a weighted score on no weight (scikit-learn's
    RidgeCV scores such a fold NaN, so every alpha's mean is NaN and it picks the
    first alpha; here the score would be 0/0 as well)."""
    for i, (tr, te) in enumerate(splits):
        for part, idx in (("test", te), ("train", tr)):
            if not sample_weight[idx].any():
                raise ValueError(
                    f"cv split {i}: all {idx.size} {part} samples have sample_weight 0, "
                    f"so its {'score' if part == 'test' else 'fit'} is undefined; drop "
                    "those samples or give them weight"
                )


def _is_complement(train: np.ndarray, test: np.ndarray, n_samples: int) -> bool:
    """Whether train and test are disjoint and together hold every sample once."""
    if train.size + test.size != n_samples:
        return False
    seen = np.zeros(n_samples, dtype=np.int64)
    np.add.at(seen, train, 1)
    np.add.at(seen, test, 1)
    return bool((seen == 1).all())


def _partitions(splits, n_samples: int) -> bool:
    """Whether every split's train set is the complement of its test set."""
    return all(_is_complement(tr, te, n_samples) for tr, te in splits)


def _constant_prediction_folds(Xt: torch.Tensor, splits, sw, fit_intercept: bool):
    """Which folds every model predicts a constant, as a bool tensor (n_folds,) on
    Xt's device, or None if none: a test fold whose samples (of weight > 0) are
    copies of one sample of X, or with an intercept a training fold whose samples
    are (the model is then the training targets' mean). The correlation of a
    constant is 0; computed, it is a ratio of roundings, and had been scored up to
    +-1 (differential fuzzes found both: nothing in a fold's sums tells a constant
    prediction from one shrunk far below the targets' spread). Costs a row
    comparison or two per fold where the rows differ."""

    def copies_of_one_row(rows) -> bool:
        rows = rows if sw is None else rows[sw[rows] > 0]
        return all(torch.equal(Xt[int(r)], Xt[int(rows[0])]) for r in rows[1:])

    flags = [
        copies_of_one_row(test) or (fit_intercept and copies_of_one_row(train))
        for train, test in splits
    ]
    return torch.tensor(flags, device=Xt.device) if any(flags) else None


def _is_loo(cv) -> bool:
    return cv is None or (isinstance(cv, str) and cv == "loo")


# Up to this many alphas, the dual route builds its makers by Cholesky without any
# eigendecomposition; above, from an eigh plus one symmetric product per alpha
# (see _cv.DualRoute). One float64 Cholesky inverse (potrf + potri) cost 1/7 to
# 1/10 of an eigh of the same matrix, measured on the Zen 5 VM at n = 1000, 2000
# and 4000 (e.g. 0.40 s against 3.56 s at 4000), and 1/8 at the headline size on
# the Zen 4 VM (12 s against ~100 s). With 6 alphas the Cholesky route's whole
# decomposition took 7.4-7.9 s against 9.4-9.7 s at n_samples=4000 (L) and the
# same ~1.0 s at 2000 (M) on the Zen 5 VM (the Zen 4 VM had measured the eigh
# route 20% faster at 2000). Break-even is near 10 alphas.
CHOLESKY_MAX_ALPHAS = 8
# With a score other than leave-one-out's own (and for folds), beyond
# CHOLESKY_MAX_ALPHAS the makers still come by Cholesky (the eigendecomposition
# route is the alternative there, not eigh-made makers), up to this many alphas:
# its cross-validation GEMMs cost the same per alpha, it skips the projection, and
# its correlation keeps float32's digits at large alphas where that route's K-fold
# loses them (tests/test_folds.py, 12 alphas up to 1e10, cv=5: 0.28 off).
SCORED_MAX_ALPHAS = 32


# Up to this many folds the fold dual route (`_cv.FoldDualRoute`) runs; with more
# (e.g. a LeaveOneOut splitter) its per-fold inverses and score sums grow.
FOLD_ROUTE_MAX_FOLDS = 64


def _use_dual_route(cv, scoring, store_cv_results, precision, shape,
                    fit_intercept, gcv_mode, n_alphas, itemsize, device,
                    folds=None, weighted=False, conservative=False):  # fmt: skip
    """How leave-one-out, or folds that partition the samples, run `_cv.DualRoute`:
    "cholesky" (no eigendecomposition), "eigen" (makers from an eigh; leave-one-out
    only), or None (not at all). For per-target and shared alphas alike, it needs
    leave-one-out's own score (scoring None) or any built-in one
    (`_scoring.FOLD_SUMS`) without sample weights and with at most
    SCORED_MAX_ALPHAS alphas (folds: always so, not `conservative`, at most
    FOLD_ROUTE_MAX_FOLDS test folds partitioning the samples, given in `folds`),
    nothing stored per sample, "highest" precision, the Gram form, and its
    n_alphas n_samples x n_samples makers in a quarter of the free memory (with
    room for the float64 work of building one)."""
    n_samples, n_features = shape
    gram = choose_form(n_samples, n_features, fit_intercept, gcv_mode) == "gram"
    if not gram or store_cv_results or precision != "highest":
        return None
    loo = _is_loo(cv)
    if not loo and (folds is None or conservative or len(folds) > FOLD_ROUTE_MAX_FOLDS):
        return None
    scored = scoring is not None or not loo  # a score from sums over the samples or folds
    if scored:
        if weighted or not (scoring is None or isinstance(scoring, str) and scoring in FOLD_SUMS):
            return None  # (None is r2 with folds; a callable may not even be hashable)
        if n_alphas > SCORED_MAX_ALPHAS:
            return None
    # the makers, the Gram, its factorisation and an inverse (float64); scored also
    # each maker's float64 R_a
    need = n_samples * n_samples * (n_alphas * itemsize + (4 if scored else 3) * 8)
    if need > available_memory(device) // 4:
        return None
    return "cholesky" if scored or n_alphas <= CHOLESKY_MAX_ALPHAS else "eigen"


def _partition_folds(splits, n_samples: int):
    """The test folds when they partition the samples (disjoint, covering each
    sample once), else None; for splits whose train sets are the complements
    of their test sets (`_partitions`)."""
    tests = [te for _, te in splits]
    seen = np.zeros(n_samples, dtype=np.int64)
    for te in tests:
        np.add.at(seen, te, 1)
    return tests if (seen == 1).all() else None


def _cv_scheme(
    cv,
    decomp,
    alphas,
    *,
    X,
    splits,
    partitions,
    sample_weight,
    fit_intercept,
    compute_dtype,
    gcv_mode,
    precision="highest",
    dual_route=False,
    workspace=None,
    scoring=None,
    n_targets=1,
    dual=False,
    constant_folds=None,
):
    """The held-out residual scheme for `cv` (see fastridge._cv); `splits` are
    `_splits`' (train, test) pairs of a fold-based `cv` (None otherwise), and
    `partitions` whether they do (`_partitions`, found once by the caller: it is
    O(n_samples) a split); `workspace`, a buffer no longer needed, may hold the dual
    route's makers; `scoring` is the fold dual route's, and a score of
    `FOLD_PREDICTS` has the other fold schemes yield held-out predictions; n_targets
    and `dual` (dual coefficients) weigh `FoldRefits` against `LeaveGroupOut`;
    `constant_folds` (`_constant_prediction_folds`) are the fold dual route's
    folds scored 0."""
    predictions = scoring in FOLD_PREDICTS
    if _is_loo(cv):
        scorer = None if scoring is None or not dual_route else Scoring(scoring)
        return LeaveOneOut(
            decomp, alphas, precision, dual_route=dual_route, workspace=workspace, scorer=scorer,
            primal=not dual, predictions=predictions,
        )  # fmt: skip
    if isinstance(cv, str):
        if cv == "gcv":
            return GeneralizedCV(decomp, alphas, precision, predictions=predictions)
        raise ValueError(
            f"cv={cv!r} is not a known scheme: use None or 'loo' (exact leave-one-out), "
            "'gcv', an int (KFold), a scikit-learn splitter or (train, test) pairs"
        )
    if partitions and dual_route:  # (only offered folds that partition the samples)
        scorer = Scoring("r2" if scoring is None else scoring)
        tests = [te for _, te in splits]
        return FoldDualRoute(
            decomp, alphas, tests, scorer, workspace, primal=not dual, constant_folds=constant_folds
        )
    if partitions:
        tests = [te for _, te in splits]
        predictions = predictions and precision == "highest"
        refits = (
            precision == "highest"
            and _partition_folds(splits, decomp.n_samples) is not None  # (not ShuffleSplit)
        )
        if refits and _fold_refits_pay(decomp, tests, len(alphas), n_targets, dual, predictions):
            return FoldRefits(decomp, alphas, tests, predictions=predictions)
        try:
            return LeaveGroupOut(
                decomp, alphas, tests, precision, predictions=predictions, refit_folds=refits
            )
        except RefitFolds:  # (its rounding amplified past SVD_LOSS: see LeaveGroupOut)
            return FoldRefits(decomp, alphas, tests, predictions=predictions)
    return RefitPerFold(
        X,
        alphas,
        splits,
        fit_intercept=fit_intercept,
        sample_weight=sample_weight,
        compute_dtype=compute_dtype,
        gcv_mode=gcv_mode,
        predictions=predictions,
    )


def _scheme_text(scheme) -> str:
    """How the held-out residuals are found, for the progress line (which route)."""
    n_folds = 0 if scheme.folds is None else len(scheme.folds)
    route = " on the dual route" if getattr(scheme, "dual_route", None) is not None else ""
    return {
        "LeaveOneOut": f"exact leave-one-out{route}",
        "GeneralizedCV": "generalized cross-validation",
        "FoldDualRoute": f"{n_folds} folds on the dual route",
        "LeaveGroupOut": f"{n_folds} folds from the shared decomposition",
        "FoldRefits": f"{n_folds} folds refit in the shared basis",
        "RefitPerFold": f"{n_folds} folds, each decomposed on its own",
    }.get(type(scheme).__name__, type(scheme).__name__)


def _fold_refits_pay(
    decomp, tests, n_alphas: int, n_targets: int, dual: bool, predictions: bool = False
) -> bool:
    """Whether `_cv.FoldRefits` costs fewer flops than `_cv.LeaveGroupOut` for folds
    that partition the samples, with their makers in a quarter of the free memory.
    Only with a remainder (more samples than rank) and no null basis: without, LeaveGroupOut's
    stacked bases take one GEMM per alpha from UtY, as FoldRefits' folds do. Per
    target both make UtY (FoldRefits from its folds' products) and one GEMM an
    alpha (2 n rank); FoldRefits saves the remainder (2 n rank, unless dual
    coefficients need it) and LeaveGroupOut's n_b x n_b GEMMs (2 sum_b n_b^2 an
    alpha), or with `predictions` its training rows' projection (2 n rank). Per
    fit, its eigh per fold (counted as 8 rank^3, eigh runs well below the GEMM
    rate) and makers (2 (n_alphas + 3) n rank^2) against LeaveGroupOut's per fold
    and alpha U_b diag U_b^T and Cholesky inverse (2 n_b^2 rank + n_b^3)."""
    if decomp.U is None or not decomp.has_remainder or decomp.null_basis is not None:
        return False  # (with a null basis, LeaveGroupOut works without a remainder)
    n, rank = decomp.n_samples, decomp.rank
    intercept = decomp.q is not None
    if not _bases_fit(decomp, n_alphas, n, rank + intercept):
        return False
    sizes = np.array([len(te) for te in tests], dtype=np.float64)
    per_target = 0.0 if dual else 2.0 * n * rank
    per_target += 2.0 * n * rank if predictions else n_alphas * 2.0 * float((sizes**2).sum())
    saved = n_targets * per_target + n_alphas * float((2 * sizes**2 * rank + sizes**3).sum())
    cost = len(tests) * 8.0 * rank**3 + 2.0 * (n_alphas + 3) * n * rank**2
    return cost < saved


def _select_conservative(fold_scores: torch.Tensor, alphas: torch.Tensor) -> torch.Tensor:
    """Per column, the largest alpha whose fold-mean score is at least the best
    fold-mean score minus that best alpha's standard deviation across folds.

    fold_scores: (n_folds, n_alphas, n_cols) -> indices of shape (n_cols,).
    """
    mean = fold_scores.mean(dim=0)
    std = fold_scores.std(dim=0, correction=0)
    best = select(mean)
    threshold = (mean - std).gather(0, best[None, :])[0]
    ok = mean >= threshold[None, :]
    log_alpha = torch.log(alphas)[:, None].expand_as(mean)
    return torch.argmax(torch.where(ok, log_alpha, -torch.inf), dim=0)


def ridge_cv(
    X,
    Y,
    alphas=(0.1, 1.0, 10.0),
    *,
    fit_intercept: bool = True,
    cv=None,
    scoring=None,
    alpha_per_target: bool = False,
    sample_weight=None,
    score_params: dict | None = None,
    gcv_mode: str | None = None,
    store_cv_results: bool = False,
    target_chunk="auto",
    memory_budget=None,
    device="auto",
    dtype=None,
    decompose_dtype="float64",
    n_threads: int | None = None,
    precision: str = "highest",
    coef_out=None,
    groups=None,
    conservative: bool = False,
    out: dict | None = None,
    skip_chunk=None,
    on_chunk=None,
    solution: str = "primal",
    verbose: bool = False,
) -> RidgeCVResult:
    """Ridge regression with cross-validated alphas for many targets.

    Parameters
    ----------
    X : array of shape (n_samples, n_features)
        numpy array, torch tensor or cupy array; float (or castable), finite.
    Y : array of shape (n_samples,) or (n_samples, *target_shape)
        numpy array or memmap (read in column chunks), torch tensor or cupy array.
    alphas : float or array of shape (n_alphas,)
        Positive, finite penalties.
    fit_intercept : bool
        Fit an unpenalised intercept (refit inside every CV fold).
    cv : None, "loo", "gcv", int, scikit-learn splitter or iterable of (train, test)
        None / "loo": exact leave-one-out; "gcv": generalized CV; an int k:
        KFold(k) without shuffling; a splitter (GroupKFold, LeaveOneGroupOut,
        PredefinedSplit, ...) or (train, test) index pairs. Folds whose training
        set is the complement of the test set use the shared decomposition;
        others (e.g. TimeSeriesSplit) fall back to one exact refit per fold.
    scoring : None, str or callable
        See fastridge._scoring. With folds, None means "r2" (as scikit-learn's
        RidgeCV with cv given), computed per fold and averaged over folds.
    alpha_per_target : bool
        One alpha per target, or one alpha shared by all targets.
    sample_weight : array of shape (n_samples,) or float, optional
    score_params : dict, optional
        Extra arguments for a generic scorer.
    gcv_mode : {None, "auto", "eigen", "svd", "gram", "covariance"}
        Accepted for compatibility; the smaller eigenproblem is chosen unless
        "gram" or "covariance" forces one.
    store_cv_results : bool
        Keep held-out squared errors (scoring None) or predictions per sample
        and alpha, shape (n_samples, n_targets, n_alphas); with folds, the
        per-fold scores, shape (n_folds, n_targets, n_alphas).
    target_chunk : "auto" or int
        Targets per chunk; "auto" sizes chunks from `memory_budget`.
    memory_budget : int, str or None
        Bytes a chunk may use on the device ("2GB", "512MiB", ...).
    device : "auto", "cpu", "cuda", "cuda:k" or torch.device
    dtype : None, "float32" or "float64"
        Compute dtype; None follows X (float32 stays float32, others float64).
    decompose_dtype : "float64" or None
        dtype of the Gram/covariance and its eigh; None uses the compute dtype.
    n_threads : int or None
        BLAS CPU threads during the call (None leaves them); see `_backend.cpu_threads`.
    precision : {"highest", "high", "medium"}
        Precision of the CV scoring GEMMs only (float32 compute): "highest"
        float32, "high" TF32 inputs (10-bit mantissa), "medium" bfloat16. The
        projection, the eigendecomposition and the coefficients keep full precision.
    groups : array of shape (n_samples,), optional
        Group labels passed to the splitter (GroupKFold, LeaveOneGroupOut, ...).
    conservative : bool
        With folds: choose the largest alpha whose fold-mean score is within one
        standard deviation (across folds) of the best (himalaya's option).
    coef_out : array of shape (n_targets, n_features), optional
        Where to write coefficients: a writable array (e.g. np.memmap) or any
        object with a `.shape` and `__setitem__(slice, rows)` (e.g. a writer
        that puts rows at file offsets).
    out : dict, optional
        Preallocated host arrays to write results into (e.g. memmaps), by name:
        "intercept" (n_targets,), "alpha_index" (n_targets,) int64,
        "best_score" (n_targets,) float64, "alpha_scores" (n_targets, n_alphas)
        float64. Missing names are allocated.
    skip_chunk : callable(slice) -> bool, optional
        With alpha_per_target: chunks for which it returns True are not
        computed; their results must already be in `coef_out` and `out`
        (resuming an interrupted run).
    on_chunk : callable(slice), optional
        Called after a chunk's results are written (e.g. to record progress).
    solution : {"primal", "dual"}
        "primal": coefficients of shape (n_targets, n_features). "dual": kernel
        ridge coefficients of shape (n_targets, n_samples), with predictions
        X_new (X - x_offset)^T dual + intercept; the final GEMM costs
        n_samples / n_features of the primal one and the output is that much
        smaller (for n_features > n_samples). `coef_out` then has that shape.
    verbose : bool
        Report stages and chunk progress on stderr.

    Returns
    -------
    RidgeCVResult
    """
    call = dict(locals())  # (the arguments, for a redo in float64: `_cv.LostPrecision`)
    timings = {}
    progress = Progress(verbose)
    if solution not in ("primal", "dual"):
        raise ValueError(f"solution must be 'primal' or 'dual', got {solution!r}")
    alphas = check_alphas(alphas)
    n_alphas = alphas.shape[0]
    if memory_budget not in (None, "auto"):
        parse_bytes(memory_budget)  # (a bad size fails now, not after the decomposition)
    dev = resolve_device(device, X, Y)
    cdtype = torch_dtype(dtype) if dtype is not None else torch_dtype(float_dtype_of(X))
    ddtype = torch.float64 if decompose_dtype in ("float64", torch.float64) else cdtype

    if conservative and (cv is None or isinstance(cv, str)):
        # checked before any work: the rule needs a spread of scores across folds
        raise ValueError("conservative=True needs fold-based cv (an int or a splitter)")
    n_samples, n_features = X.shape
    if n_samples < 2:
        raise ValueError(f"n_samples={n_samples}: cross-validation needs at least 2 samples")
    Y, target_shape = check_target_array(Y, n_samples)
    sw = check_sample_weight(sample_weight, n_samples, cdtype)
    scorer = Scoring(scoring, score_params)
    reader = TargetReader(Y, dev, cdtype)
    n_targets = reader.n_targets

    # (closing: a background reader's thread and file, also on errors)
    with cpu_threads(n_threads, dev), contextlib.closing(reader):
        t0 = time.perf_counter()
        if verbose and dev.type == "cpu" and cpu_blas() == "numpy":
            warning = blas_kernel_warning()
            if warning:
                progress.message(f"warning: {warning}")
        progress.message(
            f"decomposing X ({n_samples} x {n_features}) on {dev} in {str(ddtype)[6:]}"
        )
        Xt = as_tensor(X, dev, ddtype)
        swt = None if sw is None else torch.as_tensor(sw, dtype=ddtype, device=dev)
        # The splits once, before any work: a splitter that shuffles without a seed
        # must not be asked twice, and a bad one fails before the decomposition.
        splits = None if _is_loo(cv) or isinstance(cv, str) else _splits(cv, n_samples, groups)
        if splits is not None and sw is not None:
            _check_fold_weights(splits, sw)
        elif sw is not None and np.count_nonzero(sw) < 2:
            # leave-one-out (or GCV) without the one weighted sample fits on no weight
            raise ValueError(
                f"{np.count_nonzero(sw)} sample(s) have sample_weight > 0: leave-one-out "
                "needs at least 2 (without one, the fit has no weight)"
            )
        partitions = splits is not None and _partitions(splits, n_samples)
        constant_folds = None  # (X centred in place later: found now)
        if splits is not None and scoring == "correlation":
            constant_folds = _constant_prediction_folds(Xt, splits, sw, fit_intercept)
        # leave-one-out (or folds) from dual coefficients, with no eigendecomposition
        # or from one
        route = _use_dual_route(
            cv, scoring, store_cv_results, precision, tuple(Xt.shape),
            fit_intercept, gcv_mode, n_alphas, torch.finfo(cdtype).bits // 8, dev,
            folds=_partition_folds(splits, n_samples) if partitions else None,
            weighted=sw is not None, conservative=conservative,
        )  # fmt: skip
        # Leave-one-out, GCV and folds that partition the samples (`_cv.LeaveGroupOut`)
        # need X only to decompose it; only refits per fold need it again (dual
        # intercepts take (X - x_offset) @ x_offset, from the decomposition). A
        # private copy of X (e.g. float32 input solved in float64) is then centred
        # in place.
        x_later = splits is not None and not partitions
        overwrite_x = not x_later and not shares_memory(Xt, X)

        decompose_x = functools.partial(
            decompose,
            fit_intercept=fit_intercept,
            sample_weight=swt,
            compute_dtype=cdtype,
            gcv_mode=gcv_mode,
            overwrite_x=overwrite_x,
            x_dot_offset=solution == "dual" and fit_intercept,
            keep_basis64=bool(partitions),  # (for folds from the decomposition)
            alpha_min=float(alphas.min()),
            # (splits None: leave-one-out or GCV, which store per-sample predictions)
            test_rows=_zero_weight_rows(Xt, swt, scoring, store_cv_results and splits is None),
        )
        # Primal coefficients come from the design on the dual route (Xs^T c), off it
        # from M = Xs^T U (made from the design, or in float64 with the decomposition
        # where float32 would lose its digits); dual ones need neither.
        primal = solution == "primal"
        alpha_min = float(alphas.min()) if primal else None
        scheme_of = functools.partial(
            _cv_scheme,
            cv,
            alphas=alphas,
            X=Xt if x_later else None,  # (refits per fold only: the rest take the decomposition)
            splits=splits,
            partitions=partitions,
            sample_weight=swt,
            fit_intercept=fit_intercept,
            compute_dtype=cdtype,
            gcv_mode=gcv_mode,
            precision=precision,
            scoring=scoring,
            n_targets=n_targets,
            dual=solution == "dual",
            constant_folds=constant_folds,
        )
        decomp = decompose_x(
            Xt,
            eigen=route != "cholesky",
            keep_design=primal,
            make_M=alpha_min if route is None else None,
        )
        workspace = None
        if not x_later:
            # Not needed any more. A private copy, centred in place, becomes the
            # workspace of the leave-one-out makers by Cholesky (its pages are
            # touched already); anything else is freed before the scheme is built,
            # the process's peak at the headline size (the float64 copy of X is
            # 1.3 GiB there).
            workspace = Xt if overwrite_x and route == "cholesky" else None
            Xt = None
        try:
            try:
                scheme = scheme_of(decomp=decomp, dual_route=route is not None, workspace=workspace)
            except DualRouteUnavailable as exc:
                progress.message(f"dual route unavailable ({exc}): projecting")
                workspace = None
                # (decomposed again also for a primal fit without M: the eigh made the
                # dual route's makers, and M may need the float64 design, gone by now)
                if decomp.U is None or (primal and decomp.basis_M is None):
                    if Xt is None or overwrite_x:  # freed, or centred by the first decomposition
                        Xt = as_tensor(X, dev, ddtype)
                    decomp = decompose_x(Xt, eigen=True, keep_design=primal, make_M=alpha_min)
                scheme = scheme_of(decomp=decomp)
        except LostPrecision as exc:
            progress.message(f"{exc}: solving in float64")
            del Xt, workspace, decomp
            return _redo_in_float64(call, splits, cdtype, n_targets, n_features, n_samples)
        dual_route = getattr(scheme, "dual_route", None)
        decomp = scheme.decomp if dual_route is not None else decomp  # without the Gram
        if decomp.basis64 is not None:  # (the folds' set-up only: not kept through the targets)
            decomp = dataclasses.replace(decomp, basis64=None)
        x_dot_offset = decomp.x_dot_offset  # for dual intercepts (None otherwise)
        # the float64 copy of X is not needed any more (but for the makers in it)
        del Xt, workspace, decompose_x, scheme_of
        release_free_heap()  # the decomposition's freed temporaries, off the peak
        folds = scheme.folds
        predicted = getattr(scheme, "predictions", False)  # blocks of predictions
        # the alpha-free remainder of the projection, for the schemes that read it and
        # for dual coefficients of the covariance form
        remainder = getattr(scheme, "reads_remainder", True) or solution == "dual"
        if folds is not None and scoring is None:
            scorer = Scoring("r2", score_params)  # scikit-learn's default with cv given
        synchronize(dev)
        timings["decompose"] = time.perf_counter() - t0
        progress.message(
            f"{decomp.form} form{' by SVD' if decomp.by_svd else ''}, rank {decomp.rank}, "
            f"{timings['decompose']:.2f}s; "
            f"{_scheme_text(scheme)}"
        )

        itemsize = torch.finfo(cdtype).bits // 8
        per_target = bytes_per_target(n_samples, decomp.rank, n_features, n_alphas, itemsize)
        per_target += itemsize * getattr(scheme, "extra_per_target", 0)  # a scheme's own
        # The raw targets are kept when a score or the per-fold refit needs them,
        # or to store held-out predictions. Unweighted, y - mean(y over any rows) =
        # Yc - mean(Yc over them): r2 and its kin (K-fold's default) take the
        # centred chunk instead, and no second chunk-sized buffer is needed.
        y_from_centred = scorer.shift_invariant and sw is None and scheme.name != "refit"
        keep_y = (
            (scorer.needs_y and not y_from_centred)
            or scheme.name == "refit"
            or (store_cv_results and scoring is not None and folds is None)
        )
        if keep_y:
            per_target += itemsize * n_samples
        joint = not scorer.builtin and not alpha_per_target
        if joint or target_chunk is None or target_chunk == "all":
            chunk = n_targets  # a generic scorer of a shared alpha sees all targets at once
        elif target_chunk == "auto":
            chunk = auto_target_chunk(n_targets, per_target, dev, memory_budget)
        else:
            chunk = int(target_chunk)
            if chunk < 1:
                raise ValueError(f"target_chunk must be >= 1 or 'auto', got {target_chunk!r}")
            chunk = min(chunk, n_targets)

        n_coef = n_features if solution == "primal" else n_samples
        if coef_out is None:
            coef = host_empty((n_targets, n_coef), cdtype)
        else:
            coef = coef_out
            if tuple(coef.shape) != (n_targets, n_coef):
                raise ValueError(f"coef_out has shape {coef.shape}, expected {(n_targets, n_coef)}")
        out = dict(out or {})
        intercept = out.get("intercept")
        if intercept is None:
            intercept = np.empty(n_targets, dtype=coef.dtype)
        alpha_index = out.get("alpha_index")
        if alpha_index is None:
            alpha_index = np.zeros(n_targets, dtype=np.int64)
        best_score = out.get("best_score")
        if best_score is None:
            best_score = np.empty(n_targets, dtype=np.float64)
        alpha_scores = out.get("alpha_scores")
        if alpha_scores is None:
            alpha_scores = np.empty((n_targets, n_alphas), dtype=np.float64)
        elif tuple(alpha_scores.shape) != (n_targets, n_alphas):
            raise ValueError(
                f"out['alpha_scores'] has shape {alpha_scores.shape}, expected "
                f"{(n_targets, n_alphas)}"
            )
        if skip_chunk is not None and not alpha_per_target:
            raise ValueError(
                "skip_chunk needs alpha_per_target=True (a shared alpha depends on every chunk)"
            )
        n_blocks = 1 if folds is None else len(folds)
        # Per block (fold) and alpha: the sum over targets of the scores (or, for a
        # generic scorer of a shared alpha, its joint score).
        block_sums = np.zeros((n_blocks, n_alphas), dtype=np.float64)
        cv_results = None
        if store_cv_results:
            first = n_samples if folds is None else n_blocks
            cv_results = host_empty((first, n_targets, n_alphas), coef.dtype)

        timings.update(project=0.0, cv=0.0, refit=0.0, read=0.0)
        alphas_t = torch.as_tensor(alphas, dtype=torch.float64, device=dev)
        gcv_fast = scheme.name == "gcv" and scoring is None and not store_cv_results
        # The fused leave-one-out epilogue (a CUDA kernel with cupy, else its torch
        # twin, bit-identical to scoring + select) covers the default scoring.
        fused = scheme.name == "loo" and scoring is None and cv_results is None
        # the centred targets, the residuals, a single chunk's projection
        work = {"y": None, "buf": None, "cached": None}
        # Coefficients that cannot be written straight into `coef` (a file writer)
        # go through one buffer reused by every chunk: a fresh (n_chunk, n_coef)
        # tensor per chunk costs its page faults each time. CPU only: on CUDA the
        # copy-back of a chunk may still be reading its buffer during the next one.
        coef_scratch = None
        if dev.type == "cpu" and not isinstance(coef, np.ndarray):
            coef_scratch = _Scratch((n_coef,), cdtype)

        def read(sl, out=None):
            t = time.perf_counter()
            Yc = reader.read(sl, out)
            check_finite_chunk(Yc, "y", sl.start, target_shape, source_dtype=Y.dtype)
            timings["read"] += time.perf_counter() - t
            return Yc

        def release_work():
            """Drop the buffers reused from chunk to chunk."""
            work["y"] = work["buf"] = work["kept"] = work["squares"] = None

        def release():
            """Drop this chunk's device buffers (before retrying a smaller chunk)."""
            release_work()
            work["cached"] = None
            if hasattr(scheme, "release"):  # what a scheme holds between alphas
                scheme.release()
            reader.drop_prefetch()
            if dev.type == "cuda":
                torch.cuda.empty_cache()

        def cross_validate(sl, nxt):
            """Pass 1 for one chunk: every alpha's scores; per-target selection and refit.

            Outputs are only written at the end, so an out-of-memory error part-way
            leaves nothing half-counted and the chunk can simply be redone smaller.
            """
            if skip_chunk is not None and skip_chunk(sl):
                return
            if nxt is not None and skip_chunk is not None and skip_chunk(nxt):
                nxt = None
            t = time.perf_counter()
            width = sl.stop - sl.start
            proj = _project_into(
                work, decomp, read, sl, keep_y, on_basis=dual_route is None, remainder=remainder,
                folds=folds if getattr(scheme, "projects_folds", False) else None,
                null=getattr(scheme, "projects_null", False),
            )  # fmt: skip
            if reader.in_background:  # the next chunk is read while this one's GEMMs run
                reader.prefetch(nxt)
            synchronize(dev)
            timings["project"] += time.perf_counter() - t

            t = time.perf_counter()
            # (the dual route stores residuals one target per row: see DualRoute.score)
            buf_shape = (width, n_samples) if dual_route is not None else (n_samples, width)
            buf = reused_buffer(work, "buf", buf_shape, cdtype, dev)
            block_scores = torch.empty((n_blocks, n_alphas, width), dtype=torch.float64, device=dev)
            joint_sums = np.zeros((n_blocks, n_alphas))
            ss_tots = [None] * n_blocks  # [block] -> Scoring.total_squares of its targets
            if fused or dual_route is not None:  # running best per target
                run_score = torch.empty(width, dtype=torch.float64, device=dev)
                run_index = torch.zeros(width, dtype=torch.int64, device=dev)
            if dual_route is not None:  # the best alpha's residuals, and squares
                kept = reused_buffer(work, "kept", buf_shape, cdtype, dev)
                sq_rows = min(SUM_BLOCK, width)  # squares go through it a row block at a time
                squares = reused_buffer(work, "squares", (sq_rows, n_samples), cdtype, dev)
            for a in range(n_alphas):
                if dual_route is not None:
                    scores, kept, buf = dual_route.score(
                        proj, a, kept, buf, squares, run_score, run_index, alpha_per_target
                    )
                    block_scores[:, a] = scores
                    work["kept"], work["buf"] = kept, buf  # (they may have traded places)
                    continue
                if gcv_fast:  # no GEMM: O(rank * width) per alpha
                    if a == 0:
                        gcv_sums = scheme.squared_error_sums(proj)
                    block_scores[0, a] = -gcv_sums[a].double() / n_samples
                    continue
                if fused:  # one pass over E: scale, square, reduce, keep the best
                    E, w = scheme.residuals(proj, a, buf)
                    loo_epilogue(
                        E,
                        w,
                        a,
                        n_samples,
                        run_score,
                        run_index,
                        scores=block_scores[0],
                        overwrite=True,
                    )
                    continue
                for i, (rows, resid, sqrt_sw) in enumerate(scheme.blocks(proj, a, buf)):
                    y = proj.Yc if y_from_centred else proj.y
                    y = y if y is None or rows is None else y[rows]
                    if a == 0:  # what the score needs of a block's targets, once a chunk
                        ss_tots[i] = scorer.total_squares(y, sqrt_sw)
                    if cv_results is not None and folds is None:  # (before the score,
                        # which overwrites predictions)
                        cv_results[:, sl, a] = _cv_values(
                            resid, proj, decomp, scoring, float(alphas[a]), predicted
                        )
                    block_scores[i, a] = scorer(
                        resid, y, sqrt_sw, rows, predicted=predicted, ss_tot=ss_tots[i]
                    )
                    if joint:
                        joint_sums[i, a] = scorer.joint(resid, y, sqrt_sw, Y.ndim == 1, rows)
                if constant_folds is not None:  # (correlations of constant predictions)
                    block_scores[constant_folds, a] = 0.0
            # Everything for this chunk is queued on the device: read the next chunk
            # meanwhile (the first host sync comes after).
            reader.prefetch(nxt)
            results.finish_pending()  # the previous chunk's copy-back, while this one runs
            if cv_results is not None and folds is not None:
                cv_results[:, sl, :] = block_scores.permute(0, 2, 1).cpu().numpy()
            chunk_sums = joint_sums if joint else block_scores.sum(dim=2).cpu().numpy()
            # squares that overflowed: every alpha would tie at -inf (or r2 at NaN, from
            # the targets' infinite spread), and the first be chosen
            overflow = np.isinf(chunk_sums).any() or any(
                bool(torch.isinf(s).any()) for s in ss_tots if s is not None
            )
            if scorer.builtin and overflow:
                raise ValueError(
                    f"the held-out scores of targets {sl.start}-{sl.stop - 1} are infinite: "
                    f"Y's values are too large for {str(cdtype)[6:]} arithmetic; rescale Y"
                )
            scores = block_scores.mean(dim=0)  # averaged over folds, (n_alphas, width)
            if not alpha_per_target:  # (per target, they are written with the chunk)
                alpha_scores[sl] = scores.T.cpu().numpy()
            synchronize(dev)
            timings["cv"] += time.perf_counter() - t

            if alpha_per_target:
                t = time.perf_counter()
                if nxt is None:
                    # The last chunk: nothing reuses the CV's work buffers, and the
                    # process's peak comes now, with every coefficient row written.
                    work["y"] = work["buf"] = work["squares"] = proj.Yc = buf = squares = None
                    release_free_heap()  # (freed into the heap, they would stay resident)
                if conservative:
                    best = _select_conservative(block_scores, alphas_t)
                elif fused or dual_route is not None:
                    best = run_index  # the epilogue (or dual route) applied select()'s rule
                else:
                    best = select(scores)
                w, b = _refit_into(
                    coef,
                    sl,
                    decomp,
                    proj,
                    alphas_t[best],
                    solution,
                    x_dot_offset,
                    coef_scratch,
                    kept=None if dual_route is None else dual_route.residuals_of_best(kept, best),
                )
                chunk_out = {
                    "alpha_index": best,
                    "best_score": scores.gather(0, best[None, :])[0],
                    "alpha_scores": scores.T.contiguous(),  # (width, n_alphas)
                    "intercept": b,
                }
                if w is not None:
                    chunk_out["coef"] = w
                results.submit(chunk_out, functools.partial(write_chunk, sl))
                timings["refit"] += time.perf_counter() - t
            elif width == n_targets:
                work["cached"] = proj
            block_sums[...] += chunk_sums  # last: counted once the chunk is complete

        def write_chunk(sl, host):
            """A chunk's results, now on the host, into the output arrays; then it is done."""
            if "coef" in host:
                coef[sl] = host["coef"].numpy()
            if "alpha_index" in host:
                alpha_index[sl] = host["alpha_index"].numpy()
                best_score[sl] = host["best_score"].numpy()
                undefined[0] += int(np.isnan(best_score[sl]).sum())
                alpha_scores[sl] = host["alpha_scores"].numpy()
            intercept[sl] = host["intercept"].numpy()
            if on_chunk is not None:
                on_chunk(sl)

        undefined = [0]  # targets whose every alpha scored NaN (see _warn_undefined)
        # Device -> host copies of finished chunks (overlapped with the next chunk on CUDA).
        results = ResultWriter(dev, defer=_DEFER_RESULTS)

        # Pass 1: scores of every alpha for every target; per-target refit at once.
        progress.start("cross-validation", n_targets)
        chunk = _for_each_chunk(n_targets, chunk, cross_validate, progress, release)
        results.close()

        mean_scores = None
        if not alpha_per_target:
            # One alpha for all targets: the best mean score (first on ties).
            per_block = block_sums if joint else block_sums / n_targets  # (n_blocks, n_alphas)
            mean_scores = per_block.mean(axis=0)
            if conservative:
                best = int(
                    _select_conservative(
                        torch.from_numpy(per_block)[:, :, None], torch.from_numpy(alphas)
                    )[0]
                )
            else:
                best = int(select(torch.from_numpy(mean_scores)[:, None])[0])
            alpha_index[:] = best
            shared_score = float(mean_scores[best])

            def refit(sl, nxt):
                """Pass 2 for one chunk: coefficients of the shared alpha (on the dual
                route from its residuals, one more GEMM with the alpha's maker)."""
                cached = work["cached"]
                if cached is not None:
                    proj = cached
                else:
                    on_basis = dual_route is None
                    # (the coefficients need UtY, and the remainder only when dual)
                    proj = _project_into(
                        work, decomp, read, sl, on_basis=on_basis, remainder=solution == "dual"
                    )
                    reader.prefetch(nxt)
                width = sl.stop - sl.start
                kept = None
                if dual_route is not None:
                    kept = reused_buffer(work, "kept", (width, n_samples), cdtype, dev)
                    kept = dual_route.residuals(proj, best, kept)
                w, b = _refit_into(
                    coef,
                    sl,
                    decomp,
                    proj,
                    alphas_t[best].expand(width),
                    solution,
                    x_dot_offset,
                    coef_scratch,
                    kept=kept,
                )
                chunk_out = {"intercept": b} if w is None else {"intercept": b, "coef": w}
                results.submit(chunk_out, functools.partial(write_chunk, sl))

            t = time.perf_counter()
            progress.start("coefficients", n_targets)
            chunk = _for_each_chunk(n_targets, chunk, refit, progress, release)
            results.close()
            timings["refit"] += time.perf_counter() - t

    if not alpha_per_target and np.isnan(shared_score):
        undefined[0] = n_targets
    _warn_undefined(undefined[0], n_targets, scoring)
    if n_targets:
        chosen = float(alphas[np.asarray(alpha_index)].min())
        _warn_lost_precision(decomp, dual_route, solution, coef.dtype, cdtype, chosen)
    return RidgeCVResult(
        alphas=alphas,
        alpha_index=alpha_index,
        alpha=alphas[np.asarray(alpha_index)],
        best_score=best_score if alpha_per_target else shared_score,
        coef=coef,
        intercept=intercept,
        cv_results=cv_results,
        mean_scores=mean_scores,
        target_shape=target_shape,
        form=decomp.form,
        rank=decomp.rank,
        target_chunk=chunk,
        device=str(dev),
        timings=timings,
        solution=solution,
        x_offset=decomp.x_offset.cpu().numpy(),
        alpha_scores=alpha_scores,
    )


def _warn_undefined(n_undefined: int, n_targets: int, scoring) -> None:
    """UndefinedMetricWarning when some targets scored NaN for every alpha and so took
    the first (as scikit-learn's search does): R^2 on a test fold of one sample, for
    instance (a group of one sample, K = n_samples). It had passed silently."""
    if not n_undefined:
        return
    from sklearn.exceptions import UndefinedMetricWarning

    name = scoring if isinstance(scoring, str) else "the score"
    if scoring is None:
        name = "R^2 (the default score of folds)"
    warnings.warn(
        f"{n_undefined:,} of {n_targets:,} targets scored NaN for every alpha and took the "
        f"first: {name} is undefined on some test folds (e.g. R^2 on a fold of one sample); "
        "score with 'neg_mean_squared_error', or use folds of 2 samples or more",
        UndefinedMetricWarning,
        stacklevel=3,  # (at ridge_cv's caller)
    )


def _warn_lost_precision(decomp, dual_route, solution, out_dtype, cdtype, alpha: float):
    """PrecisionWarning (shown with or without verbose) where the coefficients cannot
    carry the fit at `alpha`, the smallest alpha any target chose, in the rounding of
    the computation (cdtype) or of the coefficients' array (out_dtype, e.g. float32
    after a redo in float64): `dual_precision_loss`, `primal_precision_loss`."""
    out_dtype = str(out_dtype).replace("torch.", "")
    eps = (torch.finfo(cdtype).eps, float(np.finfo(out_dtype).eps))
    name = str(cdtype)[6:] if eps[0] >= eps[1] else out_dtype
    if solution == "dual":
        loss = dual_precision_loss(decomp, dual_route, alpha, eps)
        if loss <= PRECISION_TOLERANCE:
            return
        text = (
            f"the dual coefficients, rounded to {name}, can make predictions off by "
            f"~{loss:.1g} relative at alpha {alpha:g} (eps * max eigval / (min eigval "
            "+ alpha) of X's Gram, its null space counting as eigval 0: a worst case "
            "over the targets, within a small factor): fit in float64 (and a float64 "
            "coef_out, if one is passed), use solution='primal', or larger alphas"
        )
    else:
        loss = primal_precision_loss(decomp, alpha, max(eps)) if dual_route is None else 0.0
        if loss <= PRIMAL_PRECISION_TOLERANCE:
            return
        text = (
            f"the coefficients, computed in {name}, can be off by ~{loss:.1g} relative "
            f"at alpha {alpha:g} (eps * sqrt(max eigval / (min eigval + alpha)) of X's "
            "kept spectrum, a worst case over the targets): fit in float64 or use "
            "larger alphas"
        )
    warnings.warn(text, PrecisionWarning, stacklevel=3)  # (at ridge_cv's caller)


def dual_precision_loss(decomp, dual_route, alpha: float, eps: tuple) -> float:
    """What predictions from dual coefficients c = (K + alpha I)^-1 y lose, relative:
    eps * lambda_max / (lambda_min + alpha), the eigenvalues of the Gram K, for the
    rounding eps = (the computation's, the output's). c is ~y / (lambda + alpha)
    along each eigenvector and K_test c cancels its large parts, so their rounding
    reaches the predictions scaled by up to lambda_max. (Measured in float32,
    repeated samples, against float64: at 4.6 the predictions were 0.68 off, at
    4.6e-2 6.9e-3, at 4.6e-6 4.8e-7; a differential fuzz of 1,100 fits found the
    loss 0.5 times the bound at the median, up to 3 times with n_samples >
    n_features.)

    lambda_min is 0 for a Gram of rank below its rows, but samples of weight 0 do
    not count (`Decomposition.full_rank_where_weighted`): their dual coefficients
    are 0 and no route mixes them with the others (`_cv.DualRoute` keeps them
    apart exactly, `Decomposition.remainder_is_rounding` drops their remainder
    below float64). The eigenvalues come from the decomposition, or on the dual route
    by Cholesky from its estimates (`_cv.DualRoute.spectrum`, which leave those
    samples out); 0.0 without either."""
    eigvals = decomp.eigvals
    if eigvals is not None and eigvals.numel():
        top = float(eigvals.max())
        bottom = float(eigvals.min()) if decomp.full_rank_where_weighted else 0.0
    elif getattr(dual_route, "spectrum", None) is not None:
        top, bottom = dual_route.spectrum
    else:
        return 0.0
    return max(eps) * top / (bottom + alpha)


# `primal_precision_loss` past this warns (PrecisionWarning). Over a helper's fuzz of
# 731 ill-conditioned float32 primal fits (rank-deficient and near-duplicate columns,
# offsets, alpha down to 1e-15 lambda_max), the 23 whose coefficients, intercepts or
# predictions were more than 1e-3 off float64 refits all had a loss above 1e-2
# (218 fits had); below it the largest error was 8.4e-4.
PRIMAL_PRECISION_TOLERANCE = 1e-2


def primal_precision_loss(decomp, alpha: float, eps: float) -> float:
    """What primal coefficients M diag(1 / (eigval + alpha)) Ũ lose to the rounding
    eps of the computation or the output: eps * sqrt(lambda_max / (lambda_min +
    alpha)) over the kept eigenvalues (the null directions add nothing). Ũ's rounding
    along a small eigen-direction is ~eps |y|, which s / (eigval + alpha) scales by
    up to s_max / sqrt(eigval + alpha) against the coefficients' own scale. 0.0
    without an eigendecomposition (the dual route leaves itself past its bound,
    `_cv.DualRoute._refuse_primal`)."""
    eigvals = decomp.eigvals
    if eigvals is None or not eigvals.numel():
        return 0.0
    return eps * (float(eigvals.max()) / (float(eigvals.min()) + alpha)) ** 0.5


def _redo_in_float64(call: dict, splits, cdtype, n_targets, n_features, n_samples):
    """`ridge_cv` again with the arguments `call`, computing in float64, when the
    compute dtype `cdtype` would lose the folds' digits (`_cv.LostPrecision`). Its
    outputs keep `cdtype`: the coefficients go into `coef_out`, or a new array of
    that dtype (intercepts and stored cv values follow it). The folds are `splits`,
    as found once: a splitter that shuffles without a seed must not be asked twice."""
    call = dict(call)
    if call["coef_out"] is None:
        n_coef = n_features if call["solution"] == "primal" else n_samples
        call["coef_out"] = host_empty((n_targets, n_coef), cdtype)
    call.update(cv=splits, groups=None, dtype=torch.float64)
    res = ridge_cv(**call)
    res.x_offset = res.x_offset.astype(str(cdtype)[6:])  # (X's mean, as a float32 fit keeps it)
    return res


def _project_into(work: dict, decomp, read, sl: slice, keep_y=False, **kw):
    """`project` of chunk `sl` (keywords `on_basis`, `remainder`, `folds`, `null`), read and
    centred in one buffer, work["y"], reused by every chunk (a separate centred
    copy when the raw targets are kept)."""
    if keep_y:
        return project(decomp, read(sl), keep_y=True, **kw)
    n_samples = decomp.n_samples
    ybuf = reused_buffer(work, "y", (n_samples, sl.stop - sl.start), decomp.dtype, decomp.device)
    return project(decomp, read(sl, ybuf), out=ybuf, **kw)


def _for_each_chunk(n_targets: int, chunk: int, process, progress, release) -> int:
    """Run process(slice, next_slice) over all targets in chunks of `chunk` columns.

    `next_slice` (None at the end) lets the step prefetch the following chunk.
    On a device out-of-memory error the failed chunk is retried with half the
    width (finished chunks are kept); the chunk size that worked is returned.
    """
    start = 0
    while start < n_targets:
        sl = slice(start, min(start + chunk, n_targets))
        nxt = slice(sl.stop, min(sl.stop + chunk, n_targets)) if sl.stop < n_targets else None
        try:
            process(sl, nxt)
        except torch.OutOfMemoryError:
            if chunk == 1:
                raise
            release()
            chunk = max(1, chunk // 2)
            progress.message(
                f"out of memory at targets {sl.start}-{sl.stop - 1}: "
                f"retrying with {chunk} targets per chunk"
            )
            continue
        progress.advance(sl.stop - sl.start)
        start = sl.stop
    return chunk


class _Scratch:
    """A CPU buffer of shape (n_rows, *row_shape), grown when a chunk needs more rows;
    `rows(n)` is a contiguous view of its first n rows."""

    def __init__(self, row_shape: tuple, dtype: torch.dtype):
        self.row_shape, self.dtype, self.buf = row_shape, dtype, None

    def rows(self, n: int) -> torch.Tensor:
        if self.buf is None or self.buf.shape[0] < n:
            self.buf = None  # free before allocating
            self.buf = torch.empty((n, *self.row_shape), dtype=self.dtype)
        return self.buf[:n]


def _refit_into(
    coef,
    sl: slice,
    decomp,
    proj,
    alphas: torch.Tensor,
    solution,
    x_dot_offset,
    scratch=None,
    kept=None,
):
    """The chunk's coefficients for rows `sl` of the host array `coef`: primal, or
    with solution="dual" dual (`x_dot_offset` is then (X - x_offset) @ x_offset,
    or None without an intercept). Written here only when the GEMM can write
    into `coef` directly; otherwise returned, for the ResultWriter to copy, in
    `scratch` (a `_Scratch`, CPU) when given. With `kept`, the residuals of each
    target's alpha (`_cv.DualRoute`), they come from those (and overwrite them).

    On CPU the GEMM writes straight into the caller's array (no extra copy of
    the largest output) when its rows are contiguous and of the compute dtype.
    Returns (coefficients still to be written, or None when written directly;
    intercepts), tensors of shape (n_chunk, n_coef) and (n_chunk,).
    """
    rows = coef[sl] if isinstance(coef, np.ndarray) else None
    direct = (
        rows is not None
        and decomp.device.type == "cpu"
        and rows.flags.c_contiguous
        and rows.flags.writeable
        and rows.dtype == np.dtype(str(decomp.dtype)[6:])
    )
    if kept is not None:
        solve = functools.partial(
            from_residuals, residuals=kept, solution=solution, x_dot_offset=x_dot_offset
        )
    elif solution == "dual":
        solve = functools.partial(dual_coefficients, x_dot_offset=x_dot_offset)
    else:
        solve = coefficients
    if direct:
        _, b = solve(decomp, proj, alphas, out=torch.from_numpy(rows))
        return None, b
    if scratch is not None:
        return solve(decomp, proj, alphas, out=scratch.rows(sl.stop - sl.start))
    return solve(decomp, proj, alphas)


def _cv_values(resid, proj, decomp, scoring, alpha, predicted=False):
    """What cv_results_ stores, as scikit-learn: squared held-out errors in the
    weighted space (scoring None) or held-out predictions, shape (n_samples, n_chunk).
    `resid` holds residuals sqrt(w) (y - p), or if `predicted` the predictions
    sqrt(w) (p - y_offset) (`LeaveOneOut`'s), of `alpha` (a float). A sample
    of weight 0 has neither (its rows are 0); left out, the fit is the same, so
    its held-out prediction is the fit's own, from its coordinates in the basis
    (`_zero_weight_rows`; scikit-learn divides by its weight 0 there)."""
    if scoring is None:
        return (resid * resid).cpu().numpy()
    sqrt_sw = decomp.sqrt_sw
    values = resid if sqrt_sw is None else _unscale(resid, sqrt_sw)
    values = values + proj.y_offset if predicted else proj.y - values
    if sqrt_sw is not None:
        zero = (sqrt_sw == 0).nonzero()[:, 0]
        if zero.numel():
            values[zero] = coordinate_predictions(decomp, proj, alpha) + proj.y_offset
    return values.cpu().numpy()


def _zero_weight_rows(X, sample_weight, scoring, stores_samples):
    """The rows of X of weight 0, (n_zero, n_features), when cv_results_ stores each
    sample's held-out prediction (`stores_samples`, leave-one-out or GCV, and a
    score; `_cv_values`: a positive weight's square root is positive in the
    compute dtype, whose range the weights were checked against); else None."""
    if not stores_samples or scoring is None or sample_weight is None:
        return None
    zero = (sample_weight == 0).nonzero()[:, 0]
    return X[zero] if zero.numel() else None
