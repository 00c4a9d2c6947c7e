"""FastRidgeCV: a scikit-learn RidgeCV drop-in, a thin adapter over `solve.ridge_cv`."""

from __future__ import annotations

import warnings
from numbers import Integral, Real

import numpy as np
import torch
from scipy import sparse
from sklearn.base import BaseEstimator, MultiOutputMixin, RegressorMixin
from sklearn.metrics import get_scorer_names
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from ._backend import OutputKind, array_kind, as_tensor, float_dtype_of, mm, torch_dtype
from ._chunks import available_memory, parse_bytes
from ._refit import dual_kernel
from ._scoring import BUILTIN_SCORES, Scoring
from ._validation import check_finite_chunk, check_sample_weight, check_target_array
from .solve import ridge_cv

# Named cv schemes besides scikit-learn's cv objects (None, int, splitter, iterable).
_NAMED_CV = ("loo", "gcv")


def _check_features_tensor(X, estimator_name: str, name: str = "X"):
    """Checks for torch/cupy X (numpy-like input goes through scikit-learn),
    with scikit-learn's messages."""
    if X.ndim != 2:
        raise ValueError(
            f"Expected 2D array, got {X.ndim}D array instead: {name} has shape {tuple(X.shape)}"
        )
    for axis, what in ((0, "sample(s)"), (1, "feature(s)")):
        if X.shape[axis] < 1:
            raise ValueError(
                f"Found array with 0 {what} (shape={tuple(X.shape)}) while a minimum "
                f"of 1 is required by {estimator_name}."
            )
    t = torch.from_dlpack(X) if array_kind(X) == "cupy" else X.detach()
    if t.dtype.is_complex:
        raise ValueError("Complex data not supported")
    if not t.dtype.is_floating_point:
        t = t.to(torch.float64)
    check_finite_chunk(t, name)
    return t


def _one_flat_target(y_ndim: int, target_shape: tuple) -> bool:
    """y of shape (n_samples,) or (n_samples, 1): coef_ of shape (n_features,) and
    predictions of shape (n_samples,), as scikit-learn's."""
    return y_ndim == 1 or (y_ndim == 2 and tuple(target_shape) == (1,))


class FastRidgeCV(MultiOutputMixin, RegressorMixin, BaseEstimator):
    """Ridge regression with built-in cross-validation of alpha, for many targets.

    Same parameters, attributes and results as scikit-learn's RidgeCV with
    cv=None (exact leave-one-out), computed from one factorisation of X's Gram or
    covariance matrix (an eigendecomposition; with n_samples <= n_features and a
    few alphas, for leave-one-out and folds that partition the samples, one
    Cholesky inverse per alpha instead: README, "How it works") with the targets
    streamed in chunks, on CPU or CUDA through torch.

    Parameters
    ----------
    alphas : float or array-like of shape (n_alphas,), default=(0.1, 1.0, 10.0)
        Positive penalties to try.
    fit_intercept : bool, default=True
        Fit an unpenalised intercept (refit inside every held-out fold).
    scoring : None, str or callable, default=None
        None: negative mean squared held-out error (scikit-learn's default).
        Built-in and fast for every target: "neg_mean_squared_error",
        "neg_root_mean_squared_error", "neg_mean_absolute_error", "r2",
        "explained_variance", "correlation". Other scikit-learn scorer names
        and callables work as in scikit-learn, one target at a time.
    cv : None, "loo", "gcv", int, splitter or iterable, default=None
        None / "loo": exact leave-one-out. "gcv": generalized cross-validation,
        an approximation of leave-one-out (mean leverage instead of each
        sample's); cheaper per alpha. An int k: KFold(k) without shuffling; a
        scikit-learn splitter (GroupKFold, LeaveOneGroupOut, PredefinedSplit,
        ...; pass `groups` to fit) or (train, test) index pairs. Folds are
        scored per fold and averaged, exactly as refitting on each training set
        would, from the same single decomposition.
    gcv_mode : {None, "auto", "svd", "eigen", "gram", "covariance"}, default=None
        The first four are accepted for compatibility: the smaller of the Gram
        and covariance eigenproblems is chosen (scikit-learn's "auto"). "gram" or
        "covariance" forces that form.
    store_cv_results : bool, default=False
        Keep `cv_results_` (memory: n_samples * n_targets * n_alphas values).
    alpha_per_target : bool, default=False
        Choose alpha for each target separately.
    conservative : bool, default=False
        With fold-based cv: take the largest alpha whose fold-mean score is at
        least the best fold-mean score minus its standard deviation across
        folds (himalaya's option).
    device : "auto", "cpu", "cuda" or "cuda:k", default="auto"
        "auto": the device of torch/cupy GPU inputs, else CUDA if available.
    dtype : None, "float32" or "float64", default=None
        Compute dtype; None follows X (float32 stays float32).
    target_chunk : "auto", "all", int or None, default="auto"
        Targets per chunk; "auto" fits a chunk in `memory_budget`; "all" (or
        None) takes every target in one chunk.
    memory_budget : int, str or None, default=None
        Bytes one target chunk may use ("2GB"); None: min(1 GiB, half of free
        memory) on CPU, half the free memory on CUDA.
    decompose_dtype : "float64" or None, default="float64"
        dtype of the Gram/covariance eigendecomposition (None: compute dtype).
    n_threads : int or None, default=None
        BLAS CPU threads during fit (None: unchanged, one per core). See the
        README, "CPU threads": beside the host BLAS, torch runs on one thread.
    precision : {"highest", "high", "medium"}, default="highest"
        Precision of the cross-validation scoring GEMMs for float32 data:
        float32, TF32 ("high", tensor cores on CUDA) or bfloat16 ("medium").
        Decomposition, projection and coefficients keep full precision.
    solution : {"primal", "dual"}, default="primal"
        "primal": coef_, as scikit-learn. "dual": kernel-ridge coefficients
        dual_coef_ (one per training sample) and a reference to the training X
        instead; predictions are the same. For n_features > n_samples the last
        GEMM costs n_samples / n_features of the primal one and the stored
        coefficients are that much smaller (e.g. 6.2 GB instead of 13.9 GB for
        173,568 targets, 8,859 samples and 20,000 features in float32).
    verbose : bool, default=False
        Report progress on stderr.

    Attributes
    ----------
    alpha_ : float or ndarray of shape target_shape
        Chosen alpha (per target when alpha_per_target and more than one target).
    best_score_ : float or ndarray of shape target_shape
        Held-out score of the chosen alpha(s).
    alpha_scores_ : ndarray of shape (n_alphas,) or (*target_shape, n_alphas)
        Held-out score of every alpha for every target (averaged over folds),
        float64: the curve each alpha was chosen from, e.g. to see whether a
        target's best alpha lies at the edge of the grid. With per-target
        alphas best_score_ is its value at alpha_; with a shared alpha its
        mean over targets is what the alpha was chosen by (built-in scores).
        Not in scikit-learn (whose cv_results_ holds per-sample values).
    coef_ : array of shape (n_features,) or (*target_shape, n_features)
        Not set with solution="dual".
    dual_coef_ : array of shape (n_samples,) or (*target_shape, n_samples)
        Only with solution="dual": coef_ = dual_coef_ @ (X_fit_ - X_mean_).
    X_fit_ : array of shape (n_samples, n_features)
        Only with solution="dual": the training X (the array passed to fit,
        not a copy, when no conversion was needed).
    X_mean_ : array of shape (n_features,)
        Only with solution="dual": the (weighted) mean of X_fit_ removed before
        fitting (zeros without an intercept).
    intercept_ : float or array of shape target_shape
        0.0 when fit_intercept=False; for 1-D y a scalar of coef_'s dtype (a 0-d
        tensor for torch X); else numpy or torch like X.
    cv_results_ : ndarray of shape (n_samples, n_alphas) or (n_samples, *target_shape, n_alphas)
        Only with store_cv_results=True: held-out squared errors (scoring
        None) or predictions. With fold-based cv: per-fold scores, shape
        (n_folds, *target_shape, n_alphas).
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Only when X has string feature names.
    rank_ : int
        Numerical rank of the centred X: eigenvalues above max(n_samples,
        n_features) * eps * the largest, or on the Cholesky route the steps of a
        pivoted Cholesky of the Gram with that tolerance on its largest diagonal.
    timings_ : dict
        Seconds spent in each stage of the last fit.
    """

    # Checked at fit time, as scikit-learn's RidgeCV does (InvalidParameterError
    # is both a ValueError and a TypeError).
    _parameter_constraints: dict = {
        "alphas": ["array-like", Interval(Real, 0, None, closed="neither")],
        "fit_intercept": ["boolean"],
        "scoring": [StrOptions(set(get_scorer_names()) | set(BUILTIN_SCORES)), callable, None],
        "cv": [StrOptions(set(_NAMED_CV)), "cv_object"],
        "gcv_mode": [StrOptions({"auto", "svd", "eigen", "gram", "covariance"}), None],
        "store_cv_results": ["boolean"],
        "alpha_per_target": ["boolean"],
        "conservative": ["boolean"],
        "precision": [StrOptions({"highest", "high", "medium"})],
        "device": [str, torch.device, None],
        "dtype": [StrOptions({"float32", "float64"}), type, np.dtype, torch.dtype, None],
        "target_chunk": [
            StrOptions({"auto", "all"}),
            Interval(Integral, 1, None, closed="left"),
            None,
        ],
        "memory_budget": [Interval(Integral, 1, None, closed="left"), str, None],
        "decompose_dtype": [StrOptions({"float64"}), None],
        "n_threads": [Interval(Integral, 1, None, closed="left"), None],
        "solution": [StrOptions({"primal", "dual"})],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        alphas=(0.1, 1.0, 10.0),
        *,
        fit_intercept=True,
        scoring=None,
        cv=None,
        gcv_mode=None,
        store_cv_results=False,
        alpha_per_target=False,
        conservative=False,
        device="auto",
        dtype=None,
        target_chunk="auto",
        memory_budget=None,
        decompose_dtype="float64",
        n_threads=None,
        precision="highest",
        solution="primal",
        verbose=False,
    ):
        self.alphas = alphas
        self.fit_intercept = fit_intercept
        self.scoring = scoring
        self.cv = cv
        self.gcv_mode = gcv_mode
        self.store_cv_results = store_cv_results
        self.alpha_per_target = alpha_per_target
        self.conservative = conservative
        self.device = device
        self.dtype = dtype
        self.target_chunk = target_chunk
        self.memory_budget = memory_budget
        self.decompose_dtype = decompose_dtype
        self.n_threads = n_threads
        self.precision = precision
        self.solution = solution
        self.verbose = verbose

    # -- input handling -------------------------------------------------------
    def _validate_X(self, X, reset: bool):
        if array_kind(X) in ("torch", "cupy"):
            t = _check_features_tensor(X, type(self).__name__)
            if reset:
                self.n_features_in_ = int(X.shape[1])
                if hasattr(self, "feature_names_in_"):
                    del self.feature_names_in_
            elif X.shape[1] != self.n_features_in_:
                raise ValueError(
                    f"X has {X.shape[1]} features, but {type(self).__name__} is "
                    f"expecting {self.n_features_in_} features as input."
                )
            return t
        X = validate_data(
            self,
            X,
            reset=reset,
            accept_sparse=["csr", "csc", "coo"],
            dtype=[np.float64, np.float32],
        )
        if hasattr(X, "toarray"):
            X = self._densify(X)
        return X

    def _densify(self, X):
        need = X.shape[0] * X.shape[1] * X.dtype.itemsize
        budget = (
            parse_bytes(self.memory_budget)
            if self.memory_budget not in (None, "auto")
            else available_memory(torch.device("cpu")) // 2
        )
        if need > budget:
            raise ValueError(
                f"sparse X of shape {X.shape} needs {need / 2**30:.1f} GiB as a dense "
                f"array, more than the memory budget ({budget / 2**30:.1f} GiB); "
                "raise memory_budget or reduce X"
            )
        return X.toarray()

    # -- estimator API ----------------------------------------------------------
    def fit(self, X, y, sample_weight=None, groups=None, **params):
        """Fit ridge regression with cross-validated alpha(s).

        Parameters
        ----------
        X : array of shape (n_samples, n_features)
            numpy array (or anything scikit-learn accepts, sparse included),
            torch tensor or cupy array.
        y : array of shape (n_samples,) or (n_samples, *target_shape)
            Targets; a numpy memmap is read in chunks, never whole.
        sample_weight : float or array of shape (n_samples,), optional
        groups : array of shape (n_samples,), optional
            Group labels for a group splitter given as `cv` (GroupKFold, ...).
        **params : dict
            Extra arguments for a generic scorer.

        Returns
        -------
        self
        """
        self._validate_params()
        if y is None:
            raise ValueError(
                f"{type(self).__name__} requires y to be passed, but the target y is None."
            )
        if self.gcv_mode == "svd" and sparse.issparse(X):
            # Same warning as scikit-learn; the eigendecomposition is used either way.
            warnings.warn(
                "The 'svd' mode is not supported for sparse X, we fallback to "
                "`gcv_mode='eigen'`. Passing `gcv_mode='svd'` on sparse X will raise "
                "an error in 1.11, use the default or pass `gcv_mode='eigen'` to "
                "suppress this warning.",
                FutureWarning,
                stacklevel=2,
            )
        out = OutputKind.of(X)
        Xv = self._validate_X(X, reset=True)
        y, target_shape = check_target_array(y, Xv.shape[0])
        score_params = dict(params)
        if sample_weight is not None and self.scoring is not None:
            # scikit-learn passes sample_weight to the scorer
            score_params.setdefault(
                "sample_weight", check_sample_weight(sample_weight, Xv.shape[0])
            )
        res = ridge_cv(
            Xv,
            y,
            self.alphas,
            fit_intercept=self.fit_intercept,
            cv=self.cv,
            scoring=self.scoring,
            alpha_per_target=self.alpha_per_target,
            sample_weight=sample_weight,
            groups=groups,
            conservative=self.conservative,
            score_params=score_params,
            gcv_mode=self.gcv_mode,
            store_cv_results=self.store_cv_results,
            target_chunk=self.target_chunk,
            memory_budget=self.memory_budget,
            device=self.device,
            dtype=self.dtype,
            decompose_dtype=self.decompose_dtype,
            n_threads=self.n_threads,
            precision=self.precision,
            solution=self.solution,
            verbose=self.verbose,
        )
        self._set_results(res, y.ndim, target_shape, out)
        for name in ("coef_", "dual_coef_", "X_fit_", "X_mean_"):
            self.__dict__.pop(name, None)  # from an earlier fit with the other solution
        coef = self._result_layout(res.coef, y.ndim, target_shape, out)
        if self.solution == "primal":
            self.coef_ = coef
        else:
            self.dual_coef_ = coef
            self.X_fit_ = Xv
            self.X_mean_ = np.asarray(res.x_offset)
        return self

    def __getattr__(self, name):
        # Only reached when normal lookup fails: explain the missing coef_ of a
        # dual fit instead of a bare AttributeError.
        if name == "coef_" and "dual_coef_" in self.__dict__:
            raise AttributeError(
                "coef_ is not formed with solution='dual': predictions use dual_coef_ "
                "and X_fit_ (coef_ = dual_coef_ @ (X_fit_ - X_mean_)); fit with "
                "solution='primal' for coef_"
            )
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def _set_results(self, res, y_ndim: int, target_shape: tuple, out: OutputKind):
        """Lay results out with scikit-learn RidgeCV's shapes and types (its _RidgeGCV.fit):

        - coef_ (n_features,) for y of shape (n_samples,) or (n_samples, 1), else
          (*target_shape, n_features); numpy or torch like X;
        - intercept_ 0.0 without an intercept, a scalar of coef_'s dtype for 1-D y
          (a 0-d tensor for torch), else an array of shape target_shape;
        - alpha_ a float (np.float64 with folds), or an array of shape target_shape
          when chosen per target;
        - best_score_ np.float64 for scoring=None or with folds, the scorer's float
          otherwise, (1,) for one 2-D target scored per target, target_shape per
          target.
        """
        n_targets = int(np.prod(target_shape, dtype=np.int64)) if target_shape else 1
        per_target = self.alpha_per_target and n_targets > 1
        intercept = torch.from_numpy(np.asarray(res.intercept))
        if not self.fit_intercept:
            self.intercept_ = 0.0
        elif y_ndim == 1:
            self.intercept_ = out.wrap(intercept.reshape(()))
            if out.kind == "numpy":
                self.intercept_ = self.intercept_[()]  # numpy scalar, as scikit-learn
        else:
            self.intercept_ = out.wrap(intercept.reshape(target_shape))
        if per_target:
            self.alpha_ = np.asarray(res.alpha, dtype=np.float64).reshape(target_shape)
            self.best_score_ = np.asarray(res.best_score, dtype=np.float64).reshape(target_shape)
        else:
            # with folds scikit-learn's values come from GridSearchCV: numpy scalars
            grid = self.cv is not None and not isinstance(self.cv, str)
            self.alpha_ = (np.float64 if grid else float)(res.alpha[0])
            score = float(np.asarray(res.best_score).ravel()[0])
            if self.alpha_per_target and y_ndim == 2:
                self.best_score_ = np.asarray([score])
            elif self.scoring is None or grid:
                self.best_score_ = np.float64(score)
            else:
                self.best_score_ = score
        self.alpha_scores_ = self._alpha_scores_layout(res.alpha_scores, y_ndim, target_shape)
        if res.cv_results is not None:
            n_samples = res.cv_results.shape[0]
            shape = (n_samples, *target_shape, res.alphas.shape[0])
            self.cv_results_ = res.cv_results.reshape(shape)
        elif hasattr(self, "cv_results_"):
            del self.cv_results_  # from an earlier fit with store_cv_results=True
        self.rank_ = res.rank
        self.timings_ = dict(res.timings)
        self._target_shape = target_shape
        self._y_ndim = y_ndim

    @staticmethod
    def _alpha_scores_layout(scores, y_ndim: int, target_shape: tuple) -> np.ndarray:
        """(n_targets, n_alphas) scores as (n_alphas,) for 1-D y, else
        (*target_shape, n_alphas)."""
        scores = np.asarray(scores)
        n_alphas = scores.shape[-1]
        return scores.reshape((n_alphas,) if y_ndim == 1 else (*target_shape, n_alphas))

    @staticmethod
    def _result_layout(coef, y_ndim: int, target_shape: tuple, out: OutputKind):
        """(n_targets, k) coefficients as (k,) for one target, else (*target_shape, k)."""
        coef = torch.from_numpy(np.asarray(coef))
        k = coef.shape[1]
        if _one_flat_target(y_ndim, target_shape):
            return out.wrap(coef.reshape(k))
        return out.wrap(coef.reshape(*target_shape, k))

    def predict(self, X):
        """Predict targets.

        Parameters
        ----------
        X : array of shape (n_samples, n_features)

        Returns
        -------
        array of shape (n_samples,) or (n_samples, *target_shape)
            (n_samples,) for y of shape (n_samples, 1) too, as scikit-learn's. Same
            kind of array (numpy / torch / cupy) as X, on its device.
        """
        check_is_fitted(self)
        out = OutputKind.of(X)
        Xv = self._validate_X(X, reset=False)
        dual = "dual_coef_" in self.__dict__
        coef = self.dual_coef_ if dual else self.coef_
        device = coef.device if isinstance(coef, torch.Tensor) else out.device
        if array_kind(coef) == "cupy":
            coef = torch.from_dlpack(coef)
            device = coef.device
        # numpy's promotion, as X @ coef_.T: float32 coef_ with float64 X gives float64.
        dtype = torch.promote_types(
            torch_dtype(float_dtype_of(coef)), torch_dtype(float_dtype_of(Xv))
        )
        n_coef = self.X_fit_.shape[0] if dual else self.n_features_in_
        W = as_tensor(coef, device, dtype).reshape(-1, n_coef)
        b = as_tensor(
            np.asarray(self.intercept_)
            if not isinstance(self.intercept_, torch.Tensor)
            else self.intercept_,
            device,
            dtype,
        ).reshape(-1)
        Xt = as_tensor(Xv, device, dtype)
        if dual:
            mean = as_tensor(self.X_mean_, device, torch.float64)
            Xt, x_dot = dual_kernel(
                Xt, self.X_fit_, mean, read=lambda rows: as_tensor(rows, device, torch.float64)
            )
            b = b + W @ x_dot
        pred = mm(Xt, W.T) + b
        if _one_flat_target(self._y_ndim, self._target_shape):  # (as X @ coef_ + intercept_)
            pred = pred.reshape(-1)
        else:
            pred = pred.reshape(pred.shape[0], *self._target_shape)
        return out.wrap(pred)

    def score(self, X, y, sample_weight=None):
        """Mean over targets of the R^2 of `predict(X)` against y (any target shape).

        Parameters
        ----------
        X : array of shape (n_samples, n_features)
        y : array of shape (n_samples,) or (n_samples, *target_shape)
        sample_weight : array of shape (n_samples,), optional

        Returns
        -------
        float
        """
        pred = self.predict(X)
        p = as_tensor(pred, torch.device("cpu"), torch.float64)
        y, _ = check_target_array(y, p.shape[0])
        y = as_tensor(y, torch.device("cpu"), torch.float64)
        p, y = p.reshape(p.shape[0], -1), y.reshape(y.shape[0], -1)
        if y.shape[1] != p.shape[1]:
            raise ValueError(
                f"y has {y.shape[1]} targets per sample, the model predicts {p.shape[1]} "
                f"(target shape {tuple(self._target_shape) or '()'})"
            )
        check_finite_chunk(y, "y")
        sw = check_sample_weight(sample_weight, y.shape[0])
        sqrt_sw = None if sw is None else torch.sqrt(torch.from_numpy(sw))
        resid = y - p if sqrt_sw is None else (y - p) * sqrt_sw[:, None]
        return float(Scoring("r2")(resid, y, sqrt_sw).mean())

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.target_tags.required = True
        tags.target_tags.multi_output = True
        return tags
