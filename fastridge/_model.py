"""A fitted model on disk: plain .npy arrays plus model.json, and `load` back to FastRidgeCV.

Layout of a model directory (written by ``fastridge solve``)::

    coef.npy         (n_targets, n_features)   compute dtype (float32 or float64)
    intercept.npy    (n_targets,)              same dtype
    alpha.npy        (n_targets,)              float64, the chosen alpha of each target
    alpha_index.npy  (n_targets,)              int64, index into model.json "alphas"
    best_score.npy   (n_targets,) float64 per-target held-out score, or a 0-d array
                     (the shared alpha's mean score)
    alpha_scores.npy (n_targets, n_alphas)     float64, every alpha's held-out score
                     (averaged over folds); models before it lack this file
    model.json       options, shapes, target_shape, alphas, versions, timings,
                     input fingerprints

With ``solve --solution dual`` (model.json "solution": "dual"), coef.npy is
replaced by the kernel-ridge form, from which predictions are
X_new (X_fit - x_mean)^T dual_coef^T + intercept (formed centred,
`_refit.dual_kernel`)::

    dual_coef.npy    (n_targets, n_samples)    compute dtype
    x_fit.npy        (n_samples, n_features)   the training X, compute dtype
    x_mean.npy       (n_features,)             float64, the mean of X removed

Targets are flattened in C order; model.json "target_shape" restores their shape.
No pickles: every file can be read with numpy and a JSON parser alone.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

FORMAT = "fastridge-model"
# solution -> the coefficient file (without .npy): (n_targets, n_features) primal,
# (n_targets, n_samples) dual
COEF_FILES = {"primal": "coef", "dual": "dual_coef"}
FORMAT_VERSION = 1
ARRAYS = ("coef", "intercept", "alpha", "alpha_index", "best_score")
DUAL_ARRAYS = ("dual_coef", "x_fit", "x_mean", "intercept", "alpha", "alpha_index", "best_score")


class ModelFiles:
    """The arrays and metadata of a model directory (coef memory-mapped by default).

    Parameters
    ----------
    model_dir : str or Path
    mmap_mode : "r" or None
        How coef.npy is opened: "r" maps it (nothing read until used), None reads it.
    """

    def __init__(self, model_dir, mmap_mode="r"):
        from ._io import UserError, read_json

        self.path = Path(model_dir)
        meta_path = self.path / "model.json"
        if not self.path.is_dir():
            raise UserError(f"model directory not found: {self.path}")
        if not meta_path.exists():
            raise UserError(f"{self.path} is not a fastridge model directory (no model.json)")
        try:
            meta = read_json(meta_path)
        except (OSError, ValueError) as exc:
            raise UserError(f"{meta_path} cannot be read ({exc}): the model is damaged") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise UserError(f"{meta_path} is not a fastridge model description")
        if meta.get("format_version", 0) > FORMAT_VERSION:
            raise UserError(
                f"{self.path} was written by a newer fastridge (format "
                f"{meta['format_version']}); upgrade fastridge to read it"
            )
        self.meta = meta
        try:
            self.target_shape = tuple(int(d) for d in meta["target_shape"])
            self.n_targets = int(meta["n_targets"])
            self.n_features = int(meta["n_features"])
            self.alphas = np.asarray(meta["alphas"], dtype=np.float64).reshape(-1)
            self.solution = meta.get("solution", "primal")
            n_samples = int(meta["n_samples"]) if self.solution == "dual" else None
        except (KeyError, TypeError, ValueError) as exc:
            # (a key missing or of the wrong type had ended in an internal error)
            what = f"no {exc}" if isinstance(exc, KeyError) else str(exc)
            raise UserError(f"{meta_path} is damaged ({what})") from None
        if int(np.prod(self.target_shape, dtype=np.int64)) != self.n_targets:
            raise UserError(
                f"{meta_path} is damaged: target_shape {self.target_shape} does not hold "
                f"{self.n_targets} targets"
            )
        if self.solution not in ("primal", "dual"):
            raise UserError(f"{meta_path}: unknown solution {self.solution!r}")
        dual = self.solution == "dual"
        self.coef_name = COEF_FILES[self.solution]
        self.n_coef = n_samples if dual else self.n_features
        t = self.n_targets
        shapes = {  # what each file must hold; best_score is 0-d for a shared alpha
            self.coef_name: [(t, self.n_coef)],
            "x_fit": [(self.n_coef, self.n_features)],
            "x_mean": [(self.n_features,)],
            "intercept": [(t,)],
            "alpha": [(t,)],
            "alpha_index": [(t,)],
            "best_score": [(t,), ()],
        }
        arrays = {}
        for name in DUAL_ARRAYS if dual else ARRAYS:
            p = self.path / f"{name}.npy"
            if not p.exists():
                raise UserError(f"{self.path} is incomplete: {p.name} is missing")
            big = name in (self.coef_name, "x_fit")
            try:
                arrays[name] = np.load(p, mmap_mode=mmap_mode if big else None, allow_pickle=False)
            except (OSError, ValueError) as exc:
                raise UserError(f"{p} cannot be read ({exc}): the model is damaged") from None
            if arrays[name].shape not in shapes[name]:
                raise UserError(
                    f"{p} has shape {arrays[name].shape}, model.json says {shapes[name][0]}"
                )
        index = arrays["alpha_index"]
        if index.size and (index.min() < 0 or index.max() >= self.alphas.size):
            raise UserError(
                f"{self.path / 'alpha_index.npy'} has values outside 0..{self.alphas.size - 1} "
                f"(model.json lists {self.alphas.size} alphas): the model is damaged"
            )
        self.coef = arrays[self.coef_name]
        self.x_fit = arrays.get("x_fit")
        self.x_mean = arrays.get("x_mean")
        self.intercept = arrays["intercept"]
        self.alpha = arrays["alpha"]
        self.alpha_index = arrays["alpha_index"]
        self.best_score = arrays["best_score"]

    def alpha_scores(self):
        """alpha_scores.npy (n_targets, n_alphas), or None for a model written before
        it existed. Read on demand: predict and evaluate do not need it."""
        from ._io import UserError

        p = self.path / "alpha_scores.npy"
        if not p.exists():
            return None
        scores = np.load(p, allow_pickle=False)
        if scores.shape != (self.n_targets, self.alphas.size):
            raise UserError(
                f"{p} has shape {scores.shape}, model.json says "
                f"{(self.n_targets, self.alphas.size)}"
            )
        return scores


def cv_param(cv, grouped: bool):
    """FastRidgeCV's / ridge_cv's `cv` for a solve's options "cv" ("loo", "gcv",
    "logo" or K) and "groups" (whether the samples had group labels): with
    groups, LeaveOneGroupOut or GroupKFold(K)."""
    if not grouped:
        return cv
    from sklearn.model_selection import GroupKFold, LeaveOneGroupOut

    return LeaveOneGroupOut() if cv == "logo" else GroupKFold(n_splits=cv)


def load(model_dir, mmap_mode=None):
    """Load a model directory written by ``fastridge solve`` as a fitted FastRidgeCV.

    Parameters
    ----------
    model_dir : str or Path
    mmap_mode : None or "r", default=None
        None reads coef.npy into memory; "r" memory-maps it (coef_ is then a
        read-only np.memmap; predict still needs the coefficients in memory).

    Returns
    -------
    FastRidgeCV
        With coef_ of shape (*target_shape, n_features) (or (n_features,) for a
        1-D y), intercept_, alpha_, best_score_, n_features_in_, rank_, timings_
        as after ``fit``; for a dual model dual_coef_ (*target_shape, n_samples),
        X_fit_ and X_mean_ instead of coef_ (as ``fit`` with solution="dual").
    """
    from .estimator import FastRidgeCV

    files = ModelFiles(model_dir, mmap_mode=mmap_mode)
    meta = files.meta
    opts = meta["options"]
    est = FastRidgeCV(
        alphas=tuple(files.alphas.tolist()),
        fit_intercept=opts["fit_intercept"],
        scoring=opts["scoring"],
        cv=cv_param(opts["cv"], opts.get("groups", False)),
        alpha_per_target=opts["alpha_per_target"],
        device=opts.get("device", "auto"),
        dtype=opts.get("dtype"),
        target_chunk=opts.get("target_chunk", "auto"),
        memory_budget=opts.get("memory_budget"),
        solution=files.solution,
    )
    target_shape = files.target_shape
    y_ndim = int(meta.get("y_ndim", 1 + len(target_shape)))
    n_features = files.n_features
    if y_ndim == 1 or (y_ndim == 2 and files.n_targets == 1):
        coef = files.coef.reshape(files.n_coef)
    else:
        coef = files.coef.reshape(*target_shape, files.n_coef)
    if files.solution == "dual":
        est.dual_coef_ = coef
        est.X_fit_ = files.x_fit
        est.X_mean_ = np.asarray(files.x_mean, dtype=np.float64)
    else:
        est.coef_ = coef
    if y_ndim == 1:
        est.intercept_ = float(files.intercept[0]) if opts["fit_intercept"] else 0.0
    else:
        est.intercept_ = files.intercept.reshape(target_shape)
    per_target = opts["alpha_per_target"] and files.n_targets > 1
    if per_target:
        est.alpha_ = files.alpha.reshape(target_shape)
        est.best_score_ = np.asarray(files.best_score).reshape(target_shape)
    else:
        est.alpha_ = float(files.alpha[0])
        score = np.float64(np.asarray(files.best_score).ravel()[0])
        est.best_score_ = score.reshape(1) if (opts["alpha_per_target"] and y_ndim == 2) else score
    alpha_scores = files.alpha_scores()
    if alpha_scores is not None:
        est.alpha_scores_ = est._alpha_scores_layout(alpha_scores, y_ndim, target_shape)
    est.n_features_in_ = n_features
    est.rank_ = int(meta.get("rank", -1))
    est.timings_ = dict(meta.get("timings", {}))
    est._target_shape = target_shape
    est._y_ndim = y_ndim
    return est
