"""Step 5: per-target scores of held-out residuals, and the choice of alpha.

Built-in scores are computed for all targets of a chunk at once on the device:

- None: scikit-learn RidgeCV(cv=None)'s default, minus the mean squared
  held-out error in the weighted space: -sum_i w_i e_i^2 / n_samples.
- "neg_mean_squared_error", "neg_root_mean_squared_error",
  "neg_mean_absolute_error", "r2", "explained_variance": as scikit-learn's
  metrics of the same names, weighted by `sample_weight` when given (scikit-learn
  passes sample_weight to the scorer), one value per target; R^2 and explained
  variance of a constant target follow scikit-learn's force_finite rule (1 if
  predicted perfectly, else 0).
- "correlation": Pearson correlation between the held-out predictions and the
  targets, per target (himalaya's correlation_score); 0 for a constant target
  or prediction, rather than NaN.

With one alpha shared by all targets, the score of an alpha is the mean of the
per-target scores, which is what scikit-learn's scorers give with
multioutput="uniform_average" and what its scoring=None computes.

Any other scikit-learn scorer name, or a callable scorer(estimator, y_pred, y),
is applied as scikit-learn's _RidgeGCV does: to an identity estimator whose
"X" is the held-out prediction, one target at a time. That runs on the host
and is slow for many targets.

Ties between alphas go to the alpha listed first in `alphas`, as in
scikit-learn (it only replaces the best alpha on a strictly better score).
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.metrics import get_scorer

from ._backend import (
    centre_columns,
    column_sq_sums,
    column_sums,
    constant_columns_exact,
    reused_buffer,
)

BUILTIN_SCORES = (
    "neg_mean_squared_error",
    "neg_root_mean_squared_error",
    "neg_mean_absolute_error",
    "r2",
    "explained_variance",
    "correlation",
)
_NEEDS_Y = ("r2", "explained_variance", "correlation")
# Built-in scores that need the held-out residuals only through their sum of squares.
FROM_SQUARES = (None, "neg_mean_squared_error", "neg_root_mean_squared_error", "r2")
# For every built-in score, what the fold dual route of `_cv.DualRoute` sums over
# each fold instead of keeping a value per sample (`Scoring.from_sums`): of the
# held-out residuals e ("sq": e^2, "sum": e, "abs": |e|), or for the scores of
# `FOLD_PREDICTS` of the held-out predictions centred on their mean over the fold,
# p ("sq": p^2, "y_dot": y p with the targets y).
FOLD_SUMS = {
    **{name: ("sq",) for name in FROM_SQUARES},
    "neg_mean_absolute_error": ("abs",),
    "explained_variance": ("sq", "sum"),
    "correlation": ("sq", "y_dot"),
}
FOLD_PREDICTS = ("correlation",)


class _IdentityRegressor(RegressorMixin, BaseEstimator):
    """Fake estimator whose prediction is its input (how _RidgeGCV scores)."""

    def predict(self, y_pred):
        return y_pred


class Scoring:
    """What to score held-out residuals with.

    Parameters
    ----------
    scoring : None, str or callable
        See the module docstring.
    score_params : dict or None
        Extra keyword arguments for a generic scorer (e.g. sample_weight).
    """

    def __init__(self, scoring=None, score_params=None):
        self.scoring = scoring
        self.score_params = dict(score_params or {})
        self._work = {}  # scratch blocks, reused
        if scoring is None or scoring in BUILTIN_SCORES:
            self.builtin = True
            self.scorer = None
        else:
            self.builtin = False
            if isinstance(scoring, str):
                try:
                    self.scorer = get_scorer(scoring)
                except ValueError as exc:
                    raise ValueError(f"scoring={scoring!r} is not a known score: {exc}") from None
            elif callable(scoring):
                self.scorer = scoring
            else:
                raise ValueError(f"scoring must be None, a string or a callable, got {scoring!r}")

    @property
    def needs_y(self) -> bool:
        """Whether scoring needs the raw targets (not only residuals)."""
        return not self.builtin or self.scoring in _NEEDS_Y

    @property
    def shift_invariant(self) -> bool:
        """Whether the targets enter the score only through their deviations from
        their (weighted) mean over the scored rows, so that y + c scores as y for
        any constant c per target (r2, explained_variance, correlation)."""
        return self.builtin and self.scoring in _NEEDS_Y

    def __call__(
        self,
        resid: torch.Tensor,
        y: torch.Tensor | None,
        sqrt_sw: torch.Tensor | None,
        rows=None,
        *,
        predicted: bool = False,
        ss_tot: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Per-target scores, shape (n_chunk,), float64.

        Parameters
        ----------
        resid : tensor of shape (n_rows, n_chunk)
            Held-out residuals in the weighted space, sqrt(w) * (y - y_pred); with
            `predicted`, held-out predictions there instead, sqrt(w) * (y_pred + c)
            for any constant c per target (scores of `FOLD_PREDICTS` only).
        y : tensor of shape (n_rows, n_chunk) or None
            Raw targets (needed when `needs_y`).
        sqrt_sw : tensor of shape (n_rows,) or None
            Square roots of the sample weights.
        rows : slice, index tensor or None
            Which samples these are (a fold), to slice a generic scorer's
            per-sample parameters such as sample_weight.
        predicted : bool
            Whether `resid` holds predictions (above). They are overwritten.
        ss_tot : tensor of shape (n_chunk,) or None
            `total_squares` of these targets, if known (found once for all alphas).
        """
        if predicted and self.scoring not in FOLD_PREDICTS:
            raise ValueError(f"scoring={self.scoring!r} is not scored from predictions")
        if not self.builtin:
            return self._generic(resid, y, sqrt_sw, rows)
        n_rows = resid.shape[0]
        name = self.scoring
        if ss_tot is None and (predicted or name != "correlation"):  # (else from _spread)
            ss_tot = self.total_squares(y, sqrt_sw)
        if predicted:
            return self._predicted_correlation(resid, y, sqrt_sw, ss_tot)
        sq = column_sq_sums(resid)  # sum w e^2 (resid is in the weighted space)
        if name in FROM_SQUARES:
            return self.from_squares(sq, n_rows, ss_tot, sqrt_sw)
        w_total = _w_total(n_rows, sqrt_sw)
        if name == "neg_mean_absolute_error":
            return -_wsum(resid.abs(), sqrt_sw) / w_total
        e_mean = (_wsum(resid, sqrt_sw) / w_total).to(resid.dtype)  # sum w e / sum w
        if name == "explained_variance":
            # sum w (e - mean e)^2 from the centred residuals: sum w e^2 - W mean(e)^2 lost
            # its digits for residuals nearly constant (a constant test fold at a large
            # alpha scored 1 where scikit-learn gives 0, and that alpha won; measured)
            shift = e_mean[None, :] if sqrt_sw is None else sqrt_sw[:, None] * e_mean[None, :]
            if sqrt_sw is not None and int((sqrt_sw > 0).sum()) < 2:
                # one weighted sample is its own mean: 0, not the rounding of e - (w e) / w
                # (which had scored such a fold 0 where scikit-learn gives 1)
                return _force_finite(torch.zeros_like(ss_tot), ss_tot)
            return _force_finite(column_sq_sums(resid - shift), ss_tot)
        # correlation between y and the prediction p = y - e, weighted
        w, yc, ss_tot = _spread(y, sqrt_sw)
        e = resid if sqrt_sw is None else _unscale(resid, sqrt_sw)
        return _correlation(yc, yc - (e - e_mean), w, ss_tot)

    def _predicted_correlation(self, pred, y, sqrt_sw, ss_tot) -> torch.Tensor:
        """The correlation of predictions sqrt(w) (p + c), overwritten (`__call__`'s
        `predicted`), with the targets' `ss_tot`: sums in blocks by thin GEMMs
        (`_backend.column_sums`), both centred. (With p centred alone, sum w y p
        kept mean(y) times the rounding of sum w p: targets of spread 1e-3 around
        1000 scored -0.99995 for -1, and +1 at a spread of 1e-7; a differential
        fuzz found it.)"""
        weights = None
        if sqrt_sw is not None:
            weights = sqrt_sw * sqrt_sw
            pred.div_(torch.where(sqrt_sw > 0, sqrt_sw, 1.0)[:, None])  # (0 where w == 0)
        w_total = _w_total(pred.shape[0], sqrt_sw)
        centre_columns(pred, (column_sums(pred, weights) / w_total).to(pred.dtype), weights, pred)
        product = reused_buffer(self._work, "product", pred.shape, pred.dtype, pred.device)
        cov = column_sums(_centred(y, weights, sqrt_sw, product).mul_(pred), weights)
        var_p = column_sums(torch.mul(pred, pred, out=product), weights)
        return _cov_over(cov, torch.sqrt(ss_tot * var_p))

    def from_squares(
        self,
        sq: torch.Tensor,
        n_rows: int,
        ss_tot: torch.Tensor | None = None,
        sqrt_sw: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """A built-in score of `FROM_SQUARES` from the held-out residuals' sum of
        squares alone, sq = sum_i w_i e_i^2 per target (float64, (n_chunk,)), over
        `n_rows` samples, with "r2"'s `ss_tot` (`total_squares` of their targets):
        what `__call__` gives for those residuals (the fold dual route of
        `_cv.DualRoute` forms no residual per sample)."""
        name = self.scoring
        if name is None:
            return -sq / n_rows
        w_total = _w_total(n_rows, sqrt_sw)
        if name == "neg_mean_squared_error":
            return -sq / w_total
        if name == "neg_root_mean_squared_error":
            return -torch.sqrt(sq / w_total)
        if n_rows < 2:  # r2, as scikit-learn: undefined for one sample
            return torch.full_like(sq, torch.nan)
        return _force_finite(sq, ss_tot)

    def from_sums(self, sums: dict, n_rows: int, y_stats: dict | None = None) -> torch.Tensor:
        """A built-in score, unweighted, of `n_rows` held-out samples from their sums
        `FOLD_SUMS[scoring]` (each float64, (n_chunk,); `_backend.row_block_sums`)
        and `y_stats` (`target_stats` of their targets): what `__call__` gives for
        them, up to rounding.

        Explained variance is 1 - (sum e^2 - (sum e)^2 / n) / ss_tot, as `__call__`
        forms it. The correlation is sum y p / sqrt(ss_tot sum p^2) for the
        predictions p centred over the fold (so sum (y - mean y) p = sum y p): no
        difference of large sums, so that a prediction shrunk far below the spread
        of the targets keeps its digits.
        """
        name = self.scoring
        if name in FROM_SQUARES:
            ss_tot = None if y_stats is None else y_stats["ss_tot"]
            return self.from_squares(sums["sq"], n_rows, ss_tot)
        if name == "neg_mean_absolute_error":
            return -sums["abs"] / n_rows
        ss_tot = y_stats["ss_tot"]
        if name == "explained_variance":
            if n_rows < 2:
                # one sample is its own mean: 0, not the rounding of sq - sum^2 (squares
                # summed in float32 had scored such folds 0 where scikit-learn gives 1)
                return _force_finite(torch.zeros_like(ss_tot), ss_tot)
            num = sums["sq"] - sums["sum"] ** 2 / n_rows
            return _force_finite(torch.clamp(num, min=0.0), ss_tot)
        return _cov_over(sums["y_dot"], torch.sqrt(ss_tot * sums["sq"]))  # correlation

    def target_stats(self, y: torch.Tensor) -> dict | None:
        """What `from_sums` needs of the (unweighted) targets y (n_rows, n_chunk), found
        once a chunk: "ss_tot", their sum of squares about their mean (n_chunk,),
        float64; None if nothing."""
        if not self.shift_invariant:
            return None
        return {"ss_tot": self.total_squares(y, None)}

    def total_squares(self, y, sqrt_sw) -> torch.Tensor | None:
        """What `__call__` and `from_squares` need of the targets y (n_rows, n_chunk):
        their weighted sum of squares about their weighted mean (n_chunk,) for a
        score of `_NEEDS_Y` (the shift-invariant ones), else None."""
        if not self.builtin or self.scoring not in _NEEDS_Y:
            return None
        weights = None if sqrt_sw is None else sqrt_sw * sqrt_sw
        # into a block reused across calls: fresh memory's first touch cost more than
        # the arithmetic (0.31 s against 0.06 for 800 x 10,000, measured)
        centred = reused_buffer(self._work, "product", y.shape, y.dtype, y.device)
        return column_sums(_centred(y, weights, sqrt_sw, centred).square_(), weights)

    def _params(self, rows) -> dict:
        """Score parameters, with per-sample ones (sample_weight) sliced to `rows`."""
        if rows is None or "sample_weight" not in self.score_params:
            return self.score_params
        sw = self.score_params["sample_weight"]
        index = rows if isinstance(rows, slice) else rows.cpu().numpy()
        return dict(self.score_params, sample_weight=np.asarray(sw)[index])

    def _generic(self, resid, y, sqrt_sw, rows=None):
        e = resid if sqrt_sw is None else _unscale(resid, sqrt_sw)
        pred = (y - e).cpu().numpy()
        y_np = y.cpu().numpy()
        est = _IdentityRegressor()
        params = self._params(rows)
        return torch.as_tensor(
            [self._apply(est, pred[:, j], y_np[:, j], params) for j in range(pred.shape[1])],
            dtype=torch.float64,
        )

    def _apply(self, est, pred, y, params) -> float:
        """The generic scorer of held-out predictions `pred` against `y`, its errors
        named as ours (a classification score said only "continuous is not
        supported")."""
        try:
            return float(self.scorer(est, pred, y, **params))
        except (ValueError, TypeError) as exc:
            raise ValueError(
                f"scoring={self.scoring!r} failed on the held-out predictions of "
                f"continuous targets: {exc}"
            ) from exc

    def joint(
        self, resid: torch.Tensor, y: torch.Tensor, sqrt_sw, y_was_1d: bool, rows=None
    ) -> float:
        """A generic scorer applied to all targets at once (shared alpha)."""
        e = resid if sqrt_sw is None else _unscale(resid, sqrt_sw)
        pred = (y - e).cpu().numpy()
        y_np = y.cpu().numpy()
        if y_was_1d:
            pred, y_np = pred[:, 0], y_np[:, 0]
        return self._apply(_IdentityRegressor(), pred, y_np, self._params(rows))


def _unscale(resid: torch.Tensor, sqrt_sw: torch.Tensor) -> torch.Tensor:
    """resid / sqrt(w), with 0 where w == 0 (such samples carry no weight)."""
    safe = torch.where(sqrt_sw > 0, sqrt_sw, 1.0)
    return torch.where(sqrt_sw[:, None] > 0, resid / safe[:, None], 0.0)


def _wsum(a: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """Column sums of `a` of shape (n_rows, n_chunk), each row times `weights`, float64."""
    if weights is None:
        return a.sum(dim=0).double()
    return (weights.to(a.dtype) @ a).double()


def _w_total(n_rows: int, sqrt_sw: torch.Tensor | None) -> float:
    """The total weight of `n_rows` samples: n_rows unweighted, else sum w."""
    return float(n_rows) if sqrt_sw is None else float((sqrt_sw.double() ** 2).sum())


def _spread(y: torch.Tensor, sqrt_sw: torch.Tensor | None):
    """(w, yc, ss_tot): the weights (n_rows, 1) or None, the targets centred on their
    weighted mean (n_rows, n_chunk), and their weighted sum of squares (n_chunk,)."""
    w = None if sqrt_sw is None else (sqrt_sw * sqrt_sw)[:, None]
    weights = None if w is None else w[:, 0]
    yc = _centred(y, weights, sqrt_sw)
    return w, yc, column_sums(yc * yc, weights)


def _centred(y: torch.Tensor, weights, sqrt_sw, out=None) -> torch.Tensor:
    """y (n_rows, n_chunk) less its (weighted) column means, into `out` if given, in
    two passes (`_backend.centre_columns`), a constant column exactly 0."""
    return centre_columns(y, _column_means(y, weights, sqrt_sw), weights, out)[0]


def _column_means(y: torch.Tensor, weights, sqrt_sw) -> torch.Tensor:
    """The (weighted) means of y's columns (n_chunk,), in y's dtype, a constant
    column's exactly its value (so its spread is 0, not rounding)."""
    # (sums by thin GEMMs: a strided sum over the rows ran several times slower)
    y_mean = (column_sums(y, weights) / _w_total(y.shape[0], sqrt_sw)).to(y.dtype)
    return constant_columns_exact(y, y_mean, weights)


def _correlation(yc, pc, w, ss_tot) -> torch.Tensor:
    """Weighted correlations (n_chunk,) of the centred targets and predictions yc, pc
    (n_rows, n_chunk), with the weights w (n_rows, 1) or None and sum w yc^2; 0 for a
    constant target or prediction."""
    if w is None:
        cov = (yc * pc).sum(dim=0).double()
        var_p = (pc * pc).sum(dim=0).double()
    else:
        cov = (w * yc * pc).sum(dim=0).double()
        var_p = (w * pc * pc).sum(dim=0).double()
    return _cov_over(cov, torch.sqrt(ss_tot * var_p))


def _cov_over(cov: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """The correlation cov / den, 0 where den is 0, within [-1, 1]: a prediction
    that is constant but for rounding (a fold of repeated samples) has its
    covariance from sums that cancel, and scored 4.6, measured."""
    return torch.where(den > 0, cov / torch.where(den > 0, den, 1.0), 0.0).clamp(-1.0, 1.0)


def _force_finite(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """1 - num / den, with scikit-learn's rule for den == 0 (1 if num == 0 else 0)."""
    safe = torch.where(den > 0, den, 1.0)
    return torch.where(den > 0, 1.0 - num / safe, torch.where(num == 0, 1.0, 0.0))


def select(scores: torch.Tensor) -> torch.Tensor:
    """Index of the best alpha per target, shape (n_chunk,), from (n_alphas, n_chunk).

    torch.argmax returns the first maximum, so ties go to the alpha listed first.
    NaN scores (a generic scorer can return them) never win.
    """
    clean = torch.where(torch.isnan(scores), -torch.inf, scores)
    return torch.argmax(clean, dim=0)
