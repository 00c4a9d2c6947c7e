"""K-fold and grouped CV from the shared decomposition, against brute-force refits,
scikit-learn's RidgeCV(cv=...) (GridSearchCV) and himalaya's RidgeCV."""

import numpy as np
import pytest
from conftest import DEVICES, make_problem
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.linear_model import Ridge, RidgeCV
from sklearn.metrics import explained_variance_score, r2_score
from sklearn.model_selection import (
    GroupKFold,
    KFold,
    LeaveOneGroupOut,
    PredefinedSplit,
    ShuffleSplit,
    TimeSeriesSplit,
)

from fastridge import FastRidgeCV, PrecisionWarning, ridge_cv
from fastridge._cv import DualRoute

ALPHAS = np.logspace(-2, 3, 6)


def _groups(n_samples):
    """Uneven groups (runs of different lengths)."""
    sizes = [3, 7, 5, 9, 4, 6, 8]
    labels = np.repeat(np.arange(len(sizes)), sizes)
    return np.resize(labels, n_samples)


SPLITTERS = {
    "kfold5": lambda n: (KFold(5), None),
    "kfold_shuffled": lambda n: (KFold(4, shuffle=True, random_state=0), None),
    "groupkfold": lambda n: (GroupKFold(3), _groups(n)),
    "logo": lambda n: (LeaveOneGroupOut(), _groups(n)),
    "predefined": lambda n: (PredefinedSplit(np.resize([0, 1, -1, 2, 1, 0], n)), None),
    "shufflesplit": lambda n: (ShuffleSplit(4, test_size=0.3, random_state=1), None),
    # training set is not the complement of the test set: per-fold refit fallback
    "timeseries": lambda n: (TimeSeriesSplit(3), None),
    "shufflesplit_train_size": lambda n: (
        ShuffleSplit(3, test_size=0.2, train_size=0.5, random_state=2),
        None,
    ),
}


def brute_force_fold_scores(X, Y, alphas, splits, fit_intercept, sample_weight=None, score=None):
    """Per-fold, per-alpha, per-target scores from scikit-learn Ridge refits.

    Returns an array of shape (n_folds, n_targets, n_alphas).
    """
    score = score or (lambda y, p, w: r2_score(y, p, sample_weight=w, multioutput="raw_values"))
    out = np.empty((len(splits), Y.shape[1], len(alphas)))
    for f, (train, test) in enumerate(splits):
        for a, alpha in enumerate(alphas):
            sw = None if sample_weight is None else sample_weight[train]
            model = Ridge(alpha=alpha, fit_intercept=fit_intercept, solver="svd")
            model.fit(X[train], Y[train], sample_weight=sw)
            w_test = None if sample_weight is None else sample_weight[test]
            # scikit-learn's GridSearchCV weights the test scores too
            out[f, :, a] = score(Y[test], model.predict(X[test]), w_test)
    return out


@pytest.mark.parametrize("splitter", list(SPLITTERS))
@pytest.mark.parametrize("shape", [(40, 60), (60, 15)], ids=["n<p", "n>p"])
@pytest.mark.parametrize("fit_intercept", [True, False])
def test_fold_scores_equal_brute_force_refits(splitter, shape, fit_intercept):
    X, Y = make_problem(*shape, 3, seed=shape[0] + 3)
    cv, groups = SPLITTERS[splitter](shape[0])
    splits = list(cv.split(X, Y, groups))
    m = FastRidgeCV(
        alphas=ALPHAS,
        cv=cv,
        fit_intercept=fit_intercept,
        alpha_per_target=True,
        store_cv_results=True,
    ).fit(X, Y, groups=groups)
    ref = brute_force_fold_scores(X, Y, ALPHAS, splits, fit_intercept)
    assert m.cv_results_.shape == ref.shape
    assert_allclose(m.cv_results_, ref, rtol=1e-7, atol=1e-9)
    mean = ref.mean(axis=0)  # (n_targets, n_alphas)
    assert_array_equal(m.alpha_, ALPHAS[mean.argmax(axis=1)])
    assert_allclose(m.best_score_, mean.max(axis=1), rtol=1e-8)
    assert_allclose(m.alpha_scores_, mean, rtol=1e-7, atol=1e-9)  # every alpha's, not only the best


@pytest.mark.parametrize("splitter", ["kfold5", "groupkfold", "timeseries"])
@pytest.mark.parametrize("zeros", [False, True], ids=["positive", "some_zero"])
def test_weighted_fold_scores_equal_weighted_refits(splitter, zeros):
    X, Y = make_problem(36, 20, 2, seed=4)
    sw = np.random.default_rng(0).uniform(0.3, 3.0, 36)
    if zeros:
        sw[[3, 17, 30]] = 0.0  # weightless samples: no influence on fits or scores
    cv, groups = SPLITTERS[splitter](36)
    m = FastRidgeCV(alphas=ALPHAS, cv=cv, alpha_per_target=True, store_cv_results=True).fit(
        X, Y, sample_weight=sw, groups=groups
    )
    ref = brute_force_fold_scores(X, Y, ALPHAS, list(cv.split(X, Y, groups)), True, sw)
    assert_allclose(m.cv_results_, ref, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("part", ["test", "train"])
def test_fold_with_no_weight_is_refused(part):
    """A fold whose held-out samples all weigh 0 has no score (scikit-learn's RidgeCV
    scores it NaN, so every alpha's mean is NaN and it returns the first alpha), and
    a fit on training samples that all weigh 0 none: both are named, not scored."""
    X, Y = make_problem(40, 12, 3, seed=2)
    groups = np.repeat(np.arange(4), 10)
    sw = np.random.default_rng(3).uniform(0.5, 2.0, 40)
    if part == "test":
        sw[groups == 1] = 0.0
        cv, where = LeaveOneGroupOut(), "cv split 1: all 10 test samples"
    else:
        sw[groups != 3] = 0.0  # split 0 trains on groups 1-3 only, split 3 on 0-2
        cv, where = [(np.flatnonzero(groups != 3), np.flatnonzero(groups == 3))], "all 30 train"
    for alpha_per_target in (True, False):
        with pytest.raises(ValueError, match=where):
            FastRidgeCV(alphas=ALPHAS, cv=cv, alpha_per_target=alpha_per_target).fit(
                X, Y, sample_weight=sw, groups=groups
            )
    sw[sw == 0] = 1e-3  # a little weight is a valid fit and score
    FastRidgeCV(alphas=ALPHAS, cv=cv).fit(X, Y, sample_weight=sw, groups=groups)


@pytest.mark.parametrize("cv", [5, KFold(3)])
@pytest.mark.parametrize("shape", [(30, 50), (50, 12)])
def test_shared_alpha_matches_sklearn_gridsearch(cv, shape):
    X, Y = make_problem(*shape, 4, seed=9)
    for y in (Y, Y[:, 0]):
        ref = RidgeCV(alphas=ALPHAS, cv=cv).fit(X, y)
        got = FastRidgeCV(alphas=ALPHAS, cv=cv).fit(X, y)
        assert got.alpha_ == ref.alpha_
        assert_allclose(got.best_score_, ref.best_score_, rtol=1e-8)
        assert_allclose(got.coef_, ref.coef_, rtol=1e-8, atol=1e-10)
        assert_allclose(got.intercept_, ref.intercept_, rtol=1e-8, atol=1e-10)


def test_scoring_names_with_folds_match_sklearn():
    X, Y = make_problem(30, 20, 3, seed=10)
    for scoring in ("neg_mean_squared_error", "neg_mean_absolute_error", "explained_variance"):
        ref = RidgeCV(alphas=ALPHAS, cv=4, scoring=scoring).fit(X, Y)
        got = FastRidgeCV(alphas=ALPHAS, cv=4, scoring=scoring).fit(X, Y)
        assert got.alpha_ == ref.alpha_
        assert_allclose(got.best_score_, ref.best_score_, rtol=1e-8)


def test_iterable_of_splits_and_chunking():
    X, Y = make_problem(30, 40, 17, seed=11)
    splits = list(KFold(5).split(X))
    a = FastRidgeCV(alphas=ALPHAS, cv=splits, alpha_per_target=True, target_chunk=4).fit(X, Y)
    b = FastRidgeCV(alphas=ALPHAS, cv=KFold(5), alpha_per_target=True).fit(X, Y)
    assert_array_equal(a.alpha_, b.alpha_)
    assert_allclose(a.coef_, b.coef_, rtol=1e-12, atol=1e-14)
    assert_allclose(a.best_score_, b.best_score_, rtol=1e-12)


def test_conservative_takes_largest_alpha_within_one_std():
    X, Y = make_problem(40, 30, 6, seed=12, noise=2.0)
    m = FastRidgeCV(
        alphas=ALPHAS, cv=5, alpha_per_target=True, conservative=True, store_cv_results=True
    ).fit(X, Y)
    scores = m.cv_results_  # (n_folds, n_targets, n_alphas)
    mean, std = scores.mean(0), scores.std(0)
    for t in range(Y.shape[1]):
        best = mean[t].argmax()
        ok = mean[t] >= mean[t, best] - std[t, best]
        assert m.alpha_[t] == ALPHAS[ok].max()
    plain = FastRidgeCV(alphas=ALPHAS, cv=5, alpha_per_target=True).fit(X, Y)
    assert np.all(m.alpha_ >= plain.alpha_)
    assert np.any(m.alpha_ > plain.alpha_)
    with pytest.raises(ValueError, match="conservative"):
        FastRidgeCV(conservative=True).fit(X, Y)


def test_fold_errors():
    X, Y = make_problem(20, 10, 2)
    with pytest.raises(ValueError, match="empty train or test set"):
        # one fold holding every sample: nothing left to fit on
        FastRidgeCV(cv=[(np.arange(0), np.arange(20))]).fit(X, Y)
    with pytest.raises(ValueError, match="not a known scheme"):
        ridge_cv(X, Y, cv="kfold")
    with pytest.raises(ValueError, match="'cv' parameter"):
        FastRidgeCV(cv="kfold").fit(X, Y)


def test_himalaya_selects_the_same_alphas():
    """The headline setup: standardized X, no intercept, alphas {1e4, 2e4, 4e4}, cv=5."""
    himalaya = pytest.importorskip("himalaya")
    from himalaya.backend import set_backend
    from himalaya.ridge import RidgeCV as HRidgeCV
    from himalaya.scoring import r2_score as h_r2

    set_backend("numpy", on_error="raise")
    X, Y = make_problem(150, 500, 60, seed=13, standardize=True, noise=3.0)
    Y = Y - Y.mean(0)
    alphas = np.array([1e4, 2e4, 4e4])
    for scoring, score_func in [("neg_mean_squared_error", None), ("r2", h_r2)]:
        params = dict(local_alpha=True, warn=False)
        if score_func is not None:
            params["score_func"] = score_func
        ref = HRidgeCV(alphas=alphas, fit_intercept=False, cv=5, solver_params=params).fit(X, Y)
        got = FastRidgeCV(
            alphas=alphas, fit_intercept=False, cv=5, scoring=scoring, alpha_per_target=True
        ).fit(X, Y)
        assert len(np.unique(got.alpha_)) > 1
        # himalaya returns exp(-log(alpha)): the same grid value to rounding
        assert_allclose(got.alpha_, np.asarray(ref.best_alphas_), rtol=1e-12)
        assert_allclose(got.best_score_, np.asarray(ref.cv_scores_).ravel(), rtol=1e-6)
        assert_allclose(got.coef_, np.asarray(ref.coef_).T, rtol=1e-6, atol=1e-10)
    del himalaya


@pytest.mark.parametrize(
    "cv, scoring",
    [(5, None), (5, "explained_variance"), (GroupKFold(4), "correlation"), (None, "r2")],
)
def test_shift_invariant_scores_use_the_centred_targets(monkeypatch, cv, scoring):
    """r2 and its kin score the centred chunk (no copy of the raw targets is kept)
    exactly as they score the raw targets, even far from zero."""
    import fastridge.solve as solve_module
    from fastridge._scoring import Scoring

    X, Y = make_problem(40, 30, 9, seed=21)
    Y = Y + 1e3  # a large common offset
    groups = _groups(40)
    kept = []
    real = solve_module.project

    def spy(decomp, Yc, **kw):
        kept.append(kw.get("keep_y", False))
        return real(decomp, Yc, **kw)

    monkeypatch.setattr(solve_module, "project", spy)
    kw = dict(cv=cv, scoring=scoring, alpha_per_target=True, target_chunk=4)
    if isinstance(cv, GroupKFold):
        kw["groups"] = groups
    got = ridge_cv(X, Y, ALPHAS, store_cv_results=cv is not None, **kw)
    assert kept and not any(kept)
    kept.clear()
    monkeypatch.setattr(Scoring, "shift_invariant", property(lambda self: False))
    ref = ridge_cv(X, Y, ALPHAS, store_cv_results=cv is not None, **kw)
    assert all(kept)  # the raw targets were kept for the reference
    assert_array_equal(got.alpha_index, ref.alpha_index)
    assert_allclose(got.best_score, ref.best_score, rtol=1e-9, atol=1e-12)
    if cv is not None:
        assert_allclose(got.cv_results, ref.cv_results, rtol=1e-9, atol=1e-12)
    # with sample weights the raw targets are still kept
    kept.clear()
    ridge_cv(X, Y, ALPHAS, sample_weight=np.linspace(0.5, 2.0, 40), **kw)
    assert all(kept)


def test_alpha_groups():
    from fastridge._cv import _alpha_groups

    assert _alpha_groups(6, 10, budget=100) == [[0, 1, 2, 3, 4, 5]]
    assert _alpha_groups(6, 40, budget=100) == [[0, 1], [2, 3], [4, 5]]
    assert _alpha_groups(5, 40, budget=100) == [[0, 1], [2, 3], [4]]
    assert _alpha_groups(3, 10**9, budget=100) == [[0], [1], [2]]  # at least one a group
    assert _alpha_groups(1, 0) == [[0]]


@pytest.mark.parametrize("budget", [1, 3])
@pytest.mark.parametrize("shape", [(40, 60), (60, 15)], ids=["n<p", "n>p"])
def test_fold_scores_with_alphas_in_small_groups(monkeypatch, budget, shape):
    """Large folds build their inverses and stacked bases a few alphas per GEMM
    (`_cv._alpha_groups` under its memory budget): one and two alphas at a time
    here, still equal to brute-force refits and to the one-group build."""
    import fastridge._cv as cv_module

    X, Y = make_problem(*shape, 3, seed=8)
    kw = dict(alphas=ALPHAS[:5], cv=KFold(4), alpha_per_target=True, store_cv_results=True)
    whole = FastRidgeCV(**kw).fit(X, Y)
    real, sizes = cv_module._alpha_groups, set()

    def small(n_alphas, per_alpha):
        groups = real(n_alphas, per_alpha, budget=max(1, per_alpha * budget - 1))
        sizes.update(len(g) for g in groups)
        return groups

    monkeypatch.setattr(cv_module, "_alpha_groups", small)
    grouped = FastRidgeCV(**kw).fit(X, Y)
    assert sizes == ({1} if budget == 1 else {1, 2})  # 5 alphas: 2 + 2 + 1
    ref = brute_force_fold_scores(X, Y, ALPHAS[:5], list(KFold(4).split(X)), True)
    assert_allclose(grouped.cv_results_, ref, rtol=1e-7, atol=1e-9)
    assert_allclose(grouped.cv_results_, whole.cv_results_, rtol=1e-12, atol=1e-14)
    assert_allclose(grouped.coef_, whole.coef_, rtol=1e-12, atol=1e-14)


# --- the fold dual route (_cv.FoldDualRoute): folds that partition the samples,
# per-target alphas, a built-in score (from sums over each fold), no sample weights --


def _mse(y, p, w):
    return -((y - p) ** 2).mean(axis=0)


def _correlation(y, p, w):
    """Pearson correlation per target (himalaya's correlation_score), 0 if constant."""
    yc, pc = y - y.mean(axis=0), p - p.mean(axis=0)
    den = np.sqrt((yc**2).sum(axis=0) * (pc**2).sum(axis=0))
    return np.where(den > 0, (yc * pc).sum(axis=0) / np.where(den > 0, den, 1.0), 0.0)


FOLD_ROUTE_SCORES = {
    None: None,  # r2, scikit-learn's default with cv given
    "r2": None,
    "neg_mean_squared_error": _mse,
    "neg_root_mean_squared_error": lambda y, p, w: -np.sqrt(-_mse(y, p, w)),
    "neg_mean_absolute_error": lambda y, p, w: -np.abs(y - p).mean(axis=0),
    "explained_variance": lambda y, p, w: explained_variance_score(y, p, multioutput="raw_values"),
    "correlation": _correlation,
}


def _schemes(monkeypatch):
    """The CV schemes a fit builds, recorded."""
    import fastridge.solve as solve_module

    made, real = [], solve_module._cv_scheme

    def scheme(*a, **k):
        made.append(real(*a, **k))
        return made[-1]

    monkeypatch.setattr(solve_module, "_cv_scheme", scheme)
    return made


REFIT_CASES = {
    # case: (shape, FastRidgeCV keywords, fit keywords' maker)
    "kfold5": ((60, 15), {}, None),
    "no_intercept": ((60, 15), {"fit_intercept": False}, None),
    "rank_deficient": ((60, 15), {}, None),  # 15 columns of rank 9
    "weights_some_zero": ((60, 15), {}, "weights"),
    "groups_weights": ((60, 15), {"cv": GroupKFold(4)}, "groups_weights"),
    "logo": ((60, 15), {"cv": LeaveOneGroupOut()}, "groups"),
    "shuffled_mse": ((60, 15), {"cv": KFold(4, shuffle=True, random_state=0),
                                "scoring": "neg_mean_squared_error"}, None),
    "explained_variance": ((60, 15), {"scoring": "explained_variance"}, "weights"),
    "shared_alpha": ((60, 15), {"alpha_per_target": False}, None),
    "chunked_dual": ((60, 15), {"target_chunk": 2, "solution": "dual"}, "weights"),
    "n_near_p": ((40, 30), {"cv": 2}, None),  # 20 training rows < 30 features
    "constant_x": ((60, 15), {}, None),  # rank 0: the intercept alone
    # rows 20-39 repeat rows 0-19 with 1e-7 noise, so training folds have fewer
    # distinct rows than features: their covariances have eigenvalues below what
    # eigh of the downdate resolves, which the small alphas feel (scores 1.7e-5 and
    # 5.7e-5 off with them dropped; session 30's fuzz)
    "near_duplicate_rows": ((40, 17), {"fit_intercept": False,
                                       "cv": KFold(2, shuffle=True, random_state=0)}, None),
    "near_duplicate_rows_intercept": ((40, 25), {"cv": KFold(3, shuffle=True,
                                                             random_state=0)}, None),
}  # fmt: skip


@pytest.mark.parametrize("case", list(REFIT_CASES))
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_fold_refits_equal_brute_force_refits(monkeypatch, case, dtype):
    """Folds that partition the samples of X with more samples than rank, refit in
    the shared basis (`FoldRefits`, its flop rule forced): every fold's score of
    every alpha as scikit-learn Ridge refits on the training rows give, the
    chosen alphas and the coefficients as `LeaveGroupOut` (forced) gives."""
    import fastridge.solve as solve_module
    from fastridge._cv import FoldRefits, LeaveGroupOut

    shape, kw, extra = REFIT_CASES[case]
    X, Y = make_problem(*shape, 5, seed=41)
    if case == "rank_deficient":
        X[:, 9:] = X[:, :6] @ np.random.default_rng(2).standard_normal((6, 6))
    elif case == "constant_x":
        X[:] = 3.0
    elif case.startswith("near_duplicate_rows"):
        X[20:] = X[:20] + 1e-7 * np.random.default_rng(2).standard_normal((20, shape[1]))
    kw = {"alphas": ALPHAS, "cv": 5, "alpha_per_target": True, "store_cv_results": True, **kw}
    fit = {}
    groups = np.arange(shape[0]) % 6
    if extra and "weights" in extra:
        fit["sample_weight"] = np.random.default_rng(3).uniform(0.2, 3.0, shape[0])
        fit["sample_weight"][[4, 11, 30]] = 0.0
    if extra and "groups" in extra:
        fit["groups"] = groups
    got = {}
    for pays in (True, False):
        monkeypatch.setattr(solve_module, "_fold_refits_pay", lambda *a, pays=pays, **k: pays)
        schemes = _schemes(monkeypatch)
        got[pays] = FastRidgeCV(**kw).fit(X.astype(dtype), Y.astype(dtype), **fit)
        assert [type(s) for s in schemes] == [FoldRefits if pays else LeaveGroupOut]
        monkeypatch.undo()
    m, lgo = got[True], got[False]
    cv = kw["cv"]
    cv = KFold(cv) if isinstance(cv, int) else cv
    splits = list(cv.split(X, Y, groups))
    sw = fit.get("sample_weight")
    score = {
        "neg_mean_squared_error": lambda y, p, w: -(np.average((y - p) ** 2, axis=0, weights=w)),
        "explained_variance": lambda y, p, w: explained_variance_score(
            y, p, sample_weight=w, multioutput="raw_values"
        ),
    }.get(kw.get("scoring"))
    ref = brute_force_fold_scores(X, Y, ALPHAS, splits, kw.get("fit_intercept", True), sw, score)
    if dtype == np.float64:
        assert_allclose(m.cv_results_, ref, rtol=1e-7, atol=1e-9)
        assert_allclose(m.alpha_scores_, ref.mean(0), rtol=1e-7, atol=1e-9)
    else:  # float32: as close as LeaveGroupOut (4e-4 both at n_near_p's alpha 0.01)
        err = np.abs(m.cv_results_ - ref).max()
        assert err <= max(2e-5, 1.5 * np.abs(lgo.cv_results_ - ref).max())
        assert np.abs(m.alpha_scores_ - ref.mean(0)).max() <= err
    if dtype == np.float64:  # the same model as the other scheme
        assert_array_equal(m.alpha_, lgo.alpha_)
        for name in ("dual_coef_", "coef_") if kw.get("solution") == "dual" else ("coef_",):
            if hasattr(m, name):
                assert_allclose(getattr(m, name), getattr(lgo, name), rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("noise", [1e-3, 1e-2, 1e-1])
def test_fold_refits_choose_float32_alphas_as_well_as_leave_group_out(monkeypatch, noise):
    """In float32, with targets nearly fitted (noise far below the signal) and
    alphas 1e-6-1e4, FoldRefits' alphas score (mean squared error, in float64) no
    further below the best than LeaveGroupOut's: its residuals are the smallest
    alpha's less a difference, so their rounding is common to all alphas. With a
    maker per alpha they had scored up to 1.7e-3 below the best where
    LeaveGroupOut's were 3e-4 (and 1.3e-3 against 0 at noise 1e-2)."""
    import fastridge.solve as solve_module

    rng = np.random.default_rng(int(-np.log10(noise)))
    X = rng.standard_normal((400, 50))
    X[:, :5] *= 100
    Y = X @ rng.standard_normal((50, 40)) + noise * rng.standard_normal((400, 40)) + 5
    alphas = np.logspace(-6, 4, 11)
    kw = dict(alphas=alphas, alpha_per_target=True, cv=5, scoring="neg_mean_squared_error")
    ref = FastRidgeCV(**kw).fit(X, Y).alpha_scores_  # float64, (n_targets, n_alphas)
    regret = {}
    for pays in (True, False):
        monkeypatch.setattr(solve_module, "_fold_refits_pay", lambda *a, pays=pays, **k: pays)
        got = FastRidgeCV(**kw).fit(X.astype(np.float32), Y.astype(np.float32))
        chosen = ref[np.arange(40), np.searchsorted(alphas, got.alpha_)]
        regret[pays] = ((ref.max(axis=1) - chosen) / np.abs(ref.max(axis=1))).max()
    assert regret[True] <= 2 * regret[False] + 1e-6, regret


def test_fold_refits_float32_with_near_singular_fold_grams(monkeypatch):
    """Folds of 30 training rows for 40 features and alphas from 1e-5: the smallest
    alpha's maker is huge, so differences from it would carry its rounding into
    every alpha (float32 scores 70x off and most alphas moved, found in review);
    each alpha's scores are as close to float64 as LeaveGroupOut's."""
    import fastridge.solve as solve_module

    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 40)) * 2 + 2
    Y = X @ rng.standard_normal((40, 200)) + 3 * rng.standard_normal((60, 200))
    kw = dict(alphas=np.logspace(-5, 4, 10), cv=2, alpha_per_target=True,
              scoring="neg_mean_squared_error")  # fmt: skip
    ref = FastRidgeCV(**kw).fit(X, Y)
    err, same = {}, {}
    for pays in (True, False):
        monkeypatch.setattr(solve_module, "_fold_refits_pay", lambda *a, pays=pays, **k: pays)
        got = FastRidgeCV(**kw).fit(X.astype(np.float32), Y.astype(np.float32))
        err[pays] = (np.abs(got.alpha_scores_ - ref.alpha_scores_) / np.abs(ref.alpha_scores_)).max(
            0
        )
        same[pays] = (got.alpha_ == ref.alpha_).mean()
    assert (err[True] <= 2 * err[False] + 1e-6).all(), err
    assert same[True] >= same[False] - 0.02, same


def test_fold_refits_chosen_by_their_flops(monkeypatch, capsys):
    """`FoldRefits` where its flops are fewer (many samples per feature, many
    targets), `LeaveGroupOut` where they are not (few targets to spread its eigh
    per fold over) or where LeaveGroupOut needs no remainder (n < p; weighted, so
    off the fold dual route)."""
    from fastridge._cv import FoldRefits, LeaveGroupOut

    cases = [((600, 40), 200, FoldRefits), ((120, 30), 6, LeaveGroupOut),
             ((60, 100), 200, LeaveGroupOut)]  # fmt: skip
    for (n, p), n_targets, expected in cases:
        X, Y = make_problem(n, p, n_targets, seed=5)
        schemes = _schemes(monkeypatch)
        sw = np.linspace(0.5, 2.0, n)
        kw = dict(alphas=ALPHAS, cv=5, alpha_per_target=True, verbose=True)
        FastRidgeCV(**kw).fit(X, Y, sample_weight=sw)
        assert [type(s) for s in schemes] == [expected], (n, p, n_targets)
        monkeypatch.undo()
        # the progress line names the route
        text = {FoldRefits: "5 folds refit in the shared basis",
                LeaveGroupOut: "5 folds from the shared decomposition"}[expected]  # fmt: skip
        assert text in capsys.readouterr().err


@pytest.mark.parametrize("splitter", ["kfold5", "kfold_shuffled", "groupkfold", "logo"])
@pytest.mark.parametrize("scoring", list(FOLD_ROUTE_SCORES))
@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("rank", [None, 12], ids=["full_rank", "rank_deficient"])
def test_fold_dual_route_equals_brute_force_refits(
    monkeypatch, blas, splitter, scoring, fit_intercept, rank
):
    """Per-target alphas, scores and coefficients of the fold dual route equal
    scikit-learn Ridge refits without each fold (n_samples < n_features, where
    the route runs), on both CPU BLAS paths."""
    from fastridge._cv import FoldDualRoute

    X, Y = make_problem(40, 70, 6, rank=rank, seed=31)
    cv, groups = SPLITTERS[splitter](40)
    schemes = _schemes(monkeypatch)
    m = FastRidgeCV(
        alphas=ALPHAS, cv=cv, scoring=scoring, fit_intercept=fit_intercept, alpha_per_target=True
    ).fit(X, Y, groups=groups)
    assert [type(s) for s in schemes] == [FoldDualRoute]
    splits = list(cv.split(X, Y, groups))
    ref = brute_force_fold_scores(
        X, Y, ALPHAS, splits, fit_intercept, score=FOLD_ROUTE_SCORES[scoring]
    ).mean(axis=0)  # (n_targets, n_alphas)
    best = ref.argmax(axis=1)
    assert len(set(best)) > 1  # the targets pick different alphas
    assert_array_equal(m.alpha_, ALPHAS[best])
    assert_allclose(m.best_score_, ref.max(axis=1), rtol=1e-8, atol=1e-12)
    assert_allclose(m.alpha_scores_, ref, rtol=1e-7, atol=1e-10)  # (non-best ones too)
    intercepts = np.broadcast_to(m.intercept_, Y.shape[1:])  # (0.0 without an intercept)
    for t in range(Y.shape[1]):
        r = Ridge(alpha=ALPHAS[best[t]], fit_intercept=fit_intercept, solver="svd").fit(X, Y[:, t])
        assert_allclose(m.coef_[t], r.coef_, rtol=1e-8, atol=1e-10)
        assert_allclose(intercepts[t], r.intercept_, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("cv", ["kfold_n", "kfold_uneven", "logo_singletons"])
@pytest.mark.parametrize("fit_intercept", [True, False])
def test_fold_dual_route_with_folds_of_one_sample(monkeypatch, cv, fit_intercept):
    """Folds of one sample on the route (KFold(n_samples), as scikit-learn's own
    tests write leave-one-out; uneven KFold; groups of one sample) give the
    brute-force refits' alphas, scores and coefficients. A 1 x 1 block R_bb had
    been factorised in R itself (a view that counts as contiguous), corrupting
    every later fold: scores 0.4-6x off (measured)."""
    from fastridge._cv import FoldDualRoute

    X, Y = make_problem(21, 40, 5, seed=35)
    groups = None
    if cv == "logo_singletons":
        groups = np.concatenate([[0, 1, 2], 3 + _groups(18)])
        splitter = LeaveOneGroupOut()
    else:
        splitter = KFold(21 if cv == "kfold_n" else 15)
    schemes = _schemes(monkeypatch)
    m = FastRidgeCV(
        alphas=ALPHAS, cv=splitter, scoring="neg_mean_squared_error",
        fit_intercept=fit_intercept, alpha_per_target=True,
    ).fit(X, Y, groups=groups)  # fmt: skip
    assert [type(s) for s in schemes] == [FoldDualRoute]
    splits = list(splitter.split(X, Y, groups))
    assert min(len(te) for _, te in splits) == 1
    ref = brute_force_fold_scores(X, Y, ALPHAS, splits, fit_intercept, score=_mse).mean(axis=0)
    best = ref.argmax(axis=1)
    assert_array_equal(m.alpha_, ALPHAS[best])
    assert_allclose(m.best_score_, ref.max(axis=1), rtol=1e-8, atol=1e-12)
    for t in range(Y.shape[1]):
        r = Ridge(alpha=ALPHAS[best[t]], fit_intercept=fit_intercept, solver="svd").fit(X, Y[:, t])
        assert_allclose(m.coef_[t], r.coef_, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("solution", ["primal", "dual"])
def test_fold_dual_route_float32_agrees_with_the_eigen_route(monkeypatch, solution):
    """In float32 the route and `LeaveGroupOut` (eigendecomposition) pick the same
    alphas, with scores at float32's rounding of float64's. (Which of the two is
    the closer depends on the BLAS: the route was 1.68e-7 off, the eigen route
    1.54e-7, on an AMD EPYC, and the route the closer on an Intel Xeon.)"""
    import fastridge.solve as solve_module

    X, Y = make_problem(60, 150, 40, seed=32)
    kw = dict(alphas=ALPHAS, cv=5, alpha_per_target=True, solution=solution)
    ref = FastRidgeCV(**kw).fit(X, Y)
    route = FastRidgeCV(**kw).fit(X.astype(np.float32), Y.astype(np.float32))
    monkeypatch.setattr(solve_module, "FOLD_ROUTE_MAX_FOLDS", 0)
    eigen = FastRidgeCV(**kw).fit(X.astype(np.float32), Y.astype(np.float32))
    assert_array_equal(route.alpha_, ref.alpha_)
    assert_array_equal(eigen.alpha_, ref.alpha_)
    assert np.abs(route.best_score_ - ref.best_score_).max() < 1e-6
    assert np.abs(eigen.best_score_ - ref.best_score_).max() < 1e-6
    X_new = make_problem(7, 150, 1, seed=33)[0]
    assert_allclose(route.predict(X_new), ref.predict(X_new), rtol=1e-4, atol=1e-4)


def brute_force_loo_scores(X, Y, alphas, fit_intercept, score):
    """Scores (n_targets, n_alphas) of the leave-one-out predictions of scikit-learn
    Ridge refits without each sample, over all samples together (as RidgeCV's)."""
    out = np.empty((Y.shape[1], len(alphas)))
    for a, alpha in enumerate(alphas):
        pred = np.empty_like(Y)
        for i in range(X.shape[0]):
            keep = np.arange(X.shape[0]) != i
            model = Ridge(alpha=alpha, fit_intercept=fit_intercept, solver="svd")
            pred[i] = model.fit(X[keep], Y[keep]).predict(X[i : i + 1])[0]
        out[:, a] = score(Y, pred, None)
    return out


@pytest.mark.parametrize("scoring", [s for s in FOLD_ROUTE_SCORES if s is not None])
@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("rank", [None, 9], ids=["full_rank", "rank_deficient"])
def test_scored_leave_one_out_dual_route_equals_brute_force_refits(
    monkeypatch, blas, scoring, fit_intercept, rank
):
    """Leave-one-out with any built-in score takes the dual route (scored over all
    samples' leave-one-out residuals, or for the correlation their centred
    predictions): per-target alphas, scores and coefficients equal Ridge refits
    without each sample, and scikit-learn's RidgeCV where it has the score."""
    X, Y = make_problem(24, 40, 6, rank=rank, seed=36)
    schemes = _schemes(monkeypatch)
    kw = dict(alphas=ALPHAS, scoring=scoring, fit_intercept=fit_intercept, alpha_per_target=True)
    m = FastRidgeCV(**kw).fit(X, Y)
    assert [type(s.dual_route) for s in schemes] == [DualRoute]
    assert schemes[0].dual_route.score_folds is not None
    score = FOLD_ROUTE_SCORES[scoring] or (lambda y, p, w: r2_score(y, p, multioutput="raw_values"))
    ref = brute_force_loo_scores(X, Y, ALPHAS, fit_intercept, score)
    best = ref.argmax(axis=1)
    assert len(set(best)) > 1  # the targets pick different alphas
    assert_array_equal(m.alpha_, ALPHAS[best])
    assert_allclose(m.best_score_, ref.max(axis=1), rtol=1e-8, atol=1e-12)
    assert_allclose(m.alpha_scores_, ref, rtol=1e-7, atol=1e-10)  # (non-best ones too)
    for t in range(Y.shape[1]):
        r = Ridge(alpha=ALPHAS[best[t]], fit_intercept=fit_intercept, solver="svd").fit(X, Y[:, t])
        assert_allclose(m.coef_[t], r.coef_, rtol=1e-8, atol=1e-10)
    if scoring != "correlation":
        sk = RidgeCV(**kw).fit(X, Y)
        assert_array_equal(m.alpha_, sk.alpha_)
        assert_allclose(m.coef_, sk.coef_, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("scoring", ["r2", "correlation"])
@pytest.mark.parametrize("solution", ["primal", "dual"])
def test_scored_leave_one_out_float32_at_heavy_shrinkage(monkeypatch, scoring, solution):
    """float32 on the scored leave-one-out route picks float64's alphas where the
    alphas shrink the predictions far below the targets' spread."""
    X, Y = make_problem(60, 150, 40, seed=32)
    kw = dict(alphas=ALPHAS * 1e4, alpha_per_target=True, scoring=scoring, solution=solution)
    ref = FastRidgeCV(**kw).fit(X, Y)
    schemes = _schemes(monkeypatch)
    got = FastRidgeCV(**kw).fit(X.astype(np.float32), Y.astype(np.float32))
    assert [type(s.dual_route) for s in schemes] == [DualRoute]
    assert_array_equal(got.alpha_, ref.alpha_)
    assert np.abs(got.best_score_ - ref.best_score_).max() < 1e-5
    X_new = make_problem(7, 150, 1, seed=33)[0]
    assert_allclose(got.predict(X_new), ref.predict(X_new), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("scoring", list(FOLD_ROUTE_SCORES))
@pytest.mark.parametrize("shrink", ["moderate", "heavy"])
@pytest.mark.parametrize("folds", ["kfold", "shuffled", "groups"])
def test_fold_dual_route_float32_agrees_with_float64(monkeypatch, scoring, shrink, folds):
    """Every score in float32 picks float64's alphas, within 1e-5 of its scores, also
    where the alphas shrink the predictions far below the spread of the targets:
    the correlation there, from residuals as `LeaveGroupOut` forms it, was 6e-3 off
    and picked other alphas for 28% of the targets (measured); the route takes it
    from the fold-centred predictions themselves. Folds that are not contiguous
    (shuffled, grouped: index tensors, not slices) once crashed in float32."""
    from fastridge._cv import FoldDualRoute

    X, Y = make_problem(60, 150, 40, seed=32)
    alphas = ALPHAS * (1e4 if shrink == "heavy" else 1.0)
    cv = {
        "kfold": 5,
        "shuffled": KFold(5, shuffle=True, random_state=0),
        "groups": GroupKFold(4),
    }[folds]
    groups = _groups(X.shape[0]) if folds == "groups" else None
    kw = dict(alphas=alphas, cv=cv, alpha_per_target=True, scoring=scoring)
    ref = FastRidgeCV(**kw).fit(X, Y, groups=groups)
    schemes = _schemes(monkeypatch)
    got = FastRidgeCV(**kw).fit(X.astype(np.float32), Y.astype(np.float32), groups=groups)
    assert [type(s) for s in schemes] == [FoldDualRoute]
    tol = 1e-5 * max(1.0, np.abs(ref.best_score_).max())
    if folds == "kfold":
        assert_array_equal(got.alpha_, ref.alpha_)
    else:  # (one target's two best alphas tie to 2e-8 in float64 on the groups' folds)
        chosen = np.searchsorted(alphas, got.alpha_)
        assert (ref.alpha_scores_[np.arange(Y.shape[1]), chosen] >= ref.best_score_ - tol).all()
        assert np.mean(got.alpha_ == ref.alpha_) >= 0.95
    assert np.abs(got.best_score_ - ref.best_score_).max() < tol
    X_new = make_problem(7, 150, 1, seed=33)[0]
    same = got.alpha_ == ref.alpha_
    assert_allclose(got.predict(X_new)[:, same], ref.predict(X_new)[:, same], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("fit_intercept", [True, False])
def test_leave_group_out_at_a_tiny_alpha(monkeypatch, weighted, fit_intercept):
    """An alpha ~5e-9 of the largest eigenvalue with folds and n_samples <
    n_features (off the fold dual route, which refuses alphas below eps *
    trace(Gram)): `LeaveGroupOut` takes I - H_bb = U_b diag(shrink) U_b^T, not 1 -
    H_bb formed from U, whose rounding outweighed it: float32 refused the fold
    as not positive definite, and float64's scores were 5e-8 to 1.2e-7 off
    brute-force refits (measured). Now to 1e-10 in float64; float32 fits and picks
    float64's alphas."""
    import fastridge.solve as solve_module
    from fastridge._cv import LeaveGroupOut

    monkeypatch.setattr(solve_module, "FOLD_ROUTE_MAX_FOLDS", 0)  # (float64 would take it)
    X, Y = make_problem(40, 60, 5, seed=41)
    cv = KFold(4, shuffle=True, random_state=0)
    alphas = np.array([1e-6, 1.0, 100.0])
    sw = np.random.default_rng(3).uniform(0.5, 2.0, 40) if weighted else None
    kw = dict(alphas=alphas, cv=cv, alpha_per_target=True, fit_intercept=fit_intercept)
    schemes = _schemes(monkeypatch)
    ref = FastRidgeCV(**kw).fit(X, Y, sample_weight=sw)
    got = FastRidgeCV(**kw).fit(X.astype(np.float32), Y.astype(np.float32), sample_weight=sw)
    assert [type(s) for s in schemes] == [LeaveGroupOut, LeaveGroupOut]
    assert not schemes[0].decomp.has_remainder
    splits = list(cv.split(X))
    brute = brute_force_fold_scores(X, Y, alphas, splits, fit_intercept, sw).mean(axis=0)
    assert_allclose(ref.alpha_scores_, brute, rtol=1e-10, atol=1e-10)
    assert_array_equal(got.alpha_, ref.alpha_)
    assert np.abs(got.best_score_ - ref.best_score_).max() < 1e-4


@pytest.mark.parametrize("scoring", [None, "correlation"])
@pytest.mark.parametrize("shape", [(19, 79), (40, 60), (80, 30)])
def test_leave_group_out_float32_from_tiny_to_large_alphas(monkeypatch, scoring, shape):
    """`LeaveGroupOut` in float32 (weighted, off the dual route) keeps float64's
    scores to 1e-5 for alphas 1e-9 to 10 times the largest eigenvalue, residuals
    and predictions alike. Predictions took I - H_bb with the bracket I - q_b
    q_b^T - U_b U_b^T at every alpha, and float32 at alpha / lambda_max ~1e-6
    scored the correlation 0.03-0.12 off and chose the wrong alphas (a
    differential fuzz found it)."""
    from fastridge._cv import LeaveGroupOut

    rng = np.random.default_rng(shape[0])
    X = rng.standard_normal(shape)
    scale = 10 ** rng.uniform(-2, 0.5, 6) / np.sqrt(shape[1])
    Y = X @ rng.standard_normal((shape[1], 6)) * scale + rng.standard_normal((shape[0], 6))
    Xc = X - X.mean(axis=0)
    top = np.linalg.eigvalsh(Xc.T @ Xc).max()
    alphas = top * np.logspace(-9, 1, 11)
    sw = rng.uniform(0.5, 2.0, shape[0])  # (so no fold takes the dual route)
    kw = dict(alphas=alphas, cv=KFold(5), scoring=scoring, alpha_per_target=True)
    schemes = _schemes(monkeypatch)
    ref = FastRidgeCV(**kw).fit(X, Y, sample_weight=sw)
    got = FastRidgeCV(**kw).fit(X.astype(np.float32), Y.astype(np.float32), sample_weight=sw)
    assert [type(s) for s in schemes] == [LeaveGroupOut, LeaveGroupOut]
    assert_allclose(got.alpha_scores_, ref.alpha_scores_, rtol=1e-5, atol=1e-5)
    # the alpha chosen scores within that of the best (the tiniest alphas tie)
    chosen = np.searchsorted(alphas, got.alpha_)
    assert (ref.alpha_scores_[np.arange(6), chosen] >= ref.best_score_ - 1e-5).all()


@pytest.mark.parametrize("cv", ["loo", 5])
def test_wide_alpha_grid_correlation_in_float32(monkeypatch, cv):
    """12 alphas up to 1e10 (more than CHOLESKY_MAX_ALPHAS; the limit of an
    infinitely shrunk prediction is a correlation too): float32 on the route
    picks the brute-force refits' alphas, within 1e-6 of their scores. The
    eigendecomposition route's float32 (`LeaveGroupOut`) was 0.28 off there at
    cv=5, its alphas scoring up to 0.064 below the best (measured; its
    leave-one-out was within 5e-8)."""
    X, Y = make_problem(40, 70, 6, seed=31)
    alphas = np.logspace(0, 10, 12)
    schemes = _schemes(monkeypatch)
    got = FastRidgeCV(
        alphas=alphas, cv=None if cv == "loo" else cv, scoring="correlation", alpha_per_target=True
    ).fit(X.astype(np.float32), Y.astype(np.float32))
    assert [type(s.dual_route) for s in schemes] == [DualRoute]
    if cv == "loo":
        ref = brute_force_loo_scores(X, Y, alphas, True, _correlation)
    else:
        splits = list(KFold(cv).split(X))
        ref = brute_force_fold_scores(X, Y, alphas, splits, True, score=_correlation).mean(axis=0)
    assert np.abs(got.best_score_ - ref.max(axis=1)).max() < 1e-6
    # the alpha chosen scores within 1e-6 of the best (large alphas nearly tie)
    chosen = ref[np.arange(Y.shape[1]), np.searchsorted(alphas, got.alpha_)]
    assert (chosen >= ref.max(axis=1) - 1e-6).all()


@pytest.mark.parametrize("cv", ["loo", 5, "groups"])
@pytest.mark.parametrize("scoring", [None, "r2", "correlation", "neg_mean_absolute_error"])
@pytest.mark.parametrize("solution", ["primal", "dual"])
def test_shared_alpha_on_the_dual_route(monkeypatch, cv, scoring, solution):
    """One alpha for all targets (scikit-learn's default) runs on the dual route:
    its scores, then each chunk's residuals of the chosen alpha by one more GEMM.
    The same alpha, scores and coefficients as the eigendecomposition route, in
    one chunk (kept from the scores) and in several (read again), 2-D and 1-D."""
    import fastridge.solve as solve_module

    X, Y = make_problem(36, 60, 7, seed=41)
    kw = dict(alphas=ALPHAS, scoring=scoring, solution=solution)
    kw["cv"] = None if cv == "loo" else GroupKFold(4) if cv == "groups" else cv
    fit = {"groups": _groups(36)} if cv == "groups" else {}
    for y, chunk in ((Y, None), (Y, 3), (Y[:, 0], None)):
        schemes = _schemes(monkeypatch)
        got = FastRidgeCV(target_chunk=chunk, **kw).fit(X, y, **fit)
        assert [s.dual_route is not None for s in schemes] == [True]
        with monkeypatch.context() as m:
            m.setattr(solve_module, "_use_dual_route", lambda *a, **k: None)
            ref = FastRidgeCV(target_chunk=chunk, **kw).fit(X, y, **fit)
        assert got.alpha_ == ref.alpha_
        assert_allclose(got.best_score_, ref.best_score_, rtol=1e-9, atol=1e-12)
        name = "coef_" if solution == "primal" else "dual_coef_"
        assert_allclose(getattr(got, name), getattr(ref, name), rtol=1e-8, atol=1e-10)
        assert_allclose(got.intercept_, ref.intercept_, rtol=1e-8, atol=1e-10)


def _weighted_correlation(y, p, w):
    """Pearson correlation per target weighted by `w` (None: `_correlation`)."""
    if w is None:
        return _correlation(y, p, w)
    w = w[:, None] / w.sum()
    yc, pc = y - (w * y).sum(axis=0), p - (w * p).sum(axis=0)
    return (w * yc * pc).sum(axis=0) / np.sqrt((w * yc**2).sum(axis=0) * (w * pc**2).sum(axis=0))


EIGEN_ROUTE_CORRELATION = {
    # case: (shape, cv, scheme, how y_b's own part is taken out, FastRidgeCV keywords)
    "n>p": ((200, 20), 5, "LeaveGroupOut", "kept", {}),  # 5 folds x rank 20 <= 200
    "n>p_own_makers": ((120, 30), 5, "LeaveGroupOut", "own", {}),  # 150 > 120
    "no_intercept": ((120, 30), 5, "LeaveGroupOut", "own", {"fit_intercept": False}),
    "sample_weight": ((40, 70), 5, "LeaveGroupOut", "own", {}),
    "shared_alpha": ((120, 30), 5, "LeaveGroupOut", "own", {"alpha_per_target": False}),
    "many_alphas": ((40, 70), 5, "LeaveGroupOut", "own", {"alphas": np.logspace(0, 10, 40)}),
    "no_bases": ((120, 30), 5, "LeaveGroupOut", "refound", {}),  # the bases do not fit
    "no_bases_kept": ((200, 20), 5, "LeaveGroupOut", "kept", {}),
    "overlapping_folds": ((120, 30), ShuffleSplit(3, test_size=0.3, random_state=1),
                          "LeaveGroupOut", "kept", {}),  # 3 folds x 30 <= 120
    "timeseries": ((120, 30), TimeSeriesSplit(3), "RefitPerFold", None, {}),
    # n > p, folds that partition the samples: refits in the shared basis (FoldRefits);
    # the cases above force LeaveGroupOut there
    "refits": ((200, 20), 5, "FoldRefits", None, {}),
    "refits_wide_folds": ((120, 30), 3, "FoldRefits", None, {}),
    "refits_no_intercept": ((120, 30), 5, "FoldRefits", None, {"fit_intercept": False}),
    "refits_sample_weight": ((120, 30), 5, "FoldRefits", None, {}),
    "refits_shared_alpha": ((120, 30), 5, "FoldRefits", None, {"alpha_per_target": False}),
    "refits_groups": ((120, 30), GroupKFold(4), "FoldRefits", None, {}),
}  # fmt: skip


def _remainders_formed(monkeypatch) -> list:
    """Whether each chunk `project` made (in solve and in the fold schemes) holds a
    remainder, in order."""
    import fastridge._cv as cv_module
    import fastridge.solve as solve_module

    formed = []
    original = cv_module.project

    def spy(*args, **kwargs):
        chunk = original(*args, **kwargs)
        formed.append(chunk.remainder is not None)
        return chunk

    monkeypatch.setattr(cv_module, "project", spy)
    monkeypatch.setattr(solve_module, "project", spy)
    return formed


@pytest.mark.parametrize("case", list(EIGEN_ROUTE_CORRELATION))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fold_correlation_off_the_route_from_predictions(monkeypatch, case, dtype):
    """The correlation on the fold schemes off the dual route (n_samples >
    n_features, sample weights, a shared alpha, many alphas, refits per fold) comes
    from held-out predictions formed directly: with 12 alphas up to 1e10, the
    scores of brute-force refits to 1e-5 in float32 (1e-8 in float64) and alphas
    scoring within that of the best. From y - residuals, float32 was 0.09-0.66
    off there and picked alphas up to 0.16 below the best (measured)."""
    import fastridge._cv as cv_module

    shape, cv, scheme_name, parts, kw = EIGEN_ROUTE_CORRELATION[case]
    X, Y = make_problem(*shape, 6, seed=31)
    kw = {"alphas": np.logspace(0, 10, 12), "alpha_per_target": True, **kw}
    fit, sw, groups = {}, None, None
    if case.endswith("sample_weight"):
        sw = np.linspace(0.5, 2.0, X.shape[0])
        sw[::7] = 0.0
        fit["sample_weight"] = sw
    if case.endswith("groups"):
        groups = fit["groups"] = np.arange(X.shape[0]) % 9
    if case.startswith("no_bases"):
        monkeypatch.setattr(cv_module, "_bases_fit", lambda *a, **k: False)
    if scheme_name in ("LeaveGroupOut", "FoldRefits"):  # (its flop rule weighs them)
        import fastridge.solve as solve_module

        pays = scheme_name == "FoldRefits"
        monkeypatch.setattr(solve_module, "_fold_refits_pay", lambda *a, **k: pays)
    schemes = _schemes(monkeypatch)
    remainders = _remainders_formed(monkeypatch)
    X_in = X.astype(dtype)
    got = FastRidgeCV(cv=cv, scoring="correlation", **kw).fit(X_in, Y.astype(dtype), **fit)
    assert_array_equal(X_in, X.astype(dtype))  # (the test rows are centred in a copy)
    assert [type(s).__name__ for s in schemes] == [scheme_name]
    assert schemes[0].predictions
    # predictions (and a refit per fold) read no remainder Yc - U UtY: none is formed
    # (a GEMM of 2 n_samples rank flops a target, for the chunk and for every fold)
    assert remainders and not any(remainders)
    assert getattr(schemes[0], "_parts", None) == parts
    splits = list(cv.split(X, groups=groups) if hasattr(cv, "split") else KFold(cv).split(X))
    ref = brute_force_fold_scores(
        X, Y, kw["alphas"], splits, kw.get("fit_intercept", True), sw, _weighted_correlation
    ).mean(axis=0)  # (n_targets, n_alphas)
    tol = 1e-5 if dtype == np.float32 else 1e-8
    chosen = np.searchsorted(kw["alphas"], np.atleast_1d(got.alpha_))
    if kw["alpha_per_target"]:
        assert np.abs(got.best_score_ - ref.max(axis=1)).max() < tol
        assert (ref[np.arange(Y.shape[1]), chosen] >= ref.max(axis=1) - tol).all()
    else:
        assert abs(got.best_score_ - ref.mean(axis=0).max()) < tol
        assert ref.mean(axis=0)[chosen[0]] >= ref.mean(axis=0).max() - tol


@pytest.mark.parametrize(
    "case",
    ["sample_weight", "conservative", "generic_scorer", "store_cv_results", "many_alphas",
     "too_many_folds", "n>p", "overlapping_folds"],
)  # fmt: skip
def test_fold_dual_route_only_where_it_applies(monkeypatch, case):
    """Everything the route does not cover falls back to `LeaveGroupOut`."""
    import fastridge.solve as solve_module
    from fastridge._cv import FoldDualRoute, LeaveGroupOut

    X, Y = make_problem(*((50, 12) if case == "n>p" else (30, 50)), 3, seed=34)
    kw = dict(alphas=ALPHAS, cv=5, alpha_per_target=True)
    fit = {}
    if case == "sample_weight":
        fit["sample_weight"] = np.linspace(0.5, 2.0, X.shape[0])
    elif case == "conservative":
        kw["conservative"] = True
    elif case == "generic_scorer":
        kw["scoring"] = "neg_median_absolute_error"  # scikit-learn's, not a built-in
    elif case == "store_cv_results":
        kw["store_cv_results"] = True
    elif case == "many_alphas":
        kw["alphas"] = np.logspace(-2, 3, solve_module.SCORED_MAX_ALPHAS + 1)
    elif case == "too_many_folds":
        monkeypatch.setattr(solve_module, "FOLD_ROUTE_MAX_FOLDS", 4)
    elif case == "overlapping_folds":
        kw["cv"] = ShuffleSplit(3, test_size=0.4, random_state=0)
    schemes = _schemes(monkeypatch)
    FastRidgeCV(**kw).fit(X, Y, **fit)
    assert [type(s) for s in schemes] == [LeaveGroupOut]
    if case in ("sample_weight", "store_cv_results"):  # the same fit without it: the route
        fit.pop("sample_weight", None)
        kw.pop("store_cv_results", None)
        FastRidgeCV(**kw).fit(X, Y, **fit)
        assert type(schemes[-1]) is FoldDualRoute


@pytest.mark.parametrize("device", DEVICES)
def test_fold_dual_route_on_each_device(monkeypatch, device):
    """The same route on CUDA (the torch path throughout) as on the CPU: against
    Ridge refits without each fold, grouped folds of uneven sizes."""
    from fastridge._cv import FoldDualRoute

    X, Y = make_problem(40, 70, 5, seed=35)
    groups = _groups(40)
    schemes = _schemes(monkeypatch)
    got = ridge_cv(X, Y, ALPHAS, cv=GroupKFold(3), groups=groups, alpha_per_target=True,
                   scoring="neg_mean_squared_error", device=device)  # fmt: skip
    assert [type(s) for s in schemes] == [FoldDualRoute]
    splits = list(GroupKFold(3).split(X, Y, groups))
    ref = brute_force_fold_scores(X, Y, ALPHAS, splits, True, score=_mse).mean(axis=0)
    assert_array_equal(got.alpha_index, ref.argmax(axis=1))
    for t in range(Y.shape[1]):
        r = Ridge(alpha=ALPHAS[ref[t].argmax()], solver="svd").fit(X, Y[:, t])
        assert_allclose(got.coef[t], r.coef_, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("device", DEVICES)
def test_scored_leave_one_out_on_each_device(monkeypatch, device):
    """The scored leave-one-out route on CUDA (the torch path throughout) as on the
    CPU: the correlation, against Ridge refits without each sample."""
    X, Y = make_problem(24, 40, 5, seed=37)
    schemes = _schemes(monkeypatch)
    got = ridge_cv(X, Y, ALPHAS, alpha_per_target=True, scoring="correlation", device=device)
    assert [type(s.dual_route) for s in schemes] == [DualRoute]
    ref = brute_force_loo_scores(X, Y, ALPHAS, True, _correlation)
    assert_array_equal(got.alpha_index, ref.argmax(axis=1))
    for t in range(Y.shape[1]):
        r = Ridge(alpha=ALPHAS[ref[t].argmax()], solver="svd").fit(X, Y[:, t])
        assert_allclose(got.coef[t], r.coef_, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize(
    "scoring, cv",
    [(s, cv) for s in ("r2", "explained_variance", "correlation") for cv in (None, 5)]
    + [("correlation", "one_sample_folds")],
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_constant_target_with_sample_weights(scoring, cv, dtype):
    """A constant target with sample weights scores as scikit-learn's rule has it
    (r2 and explained variance 1: the intercept predicts it exactly; the
    correlation 0), for every alpha, and so does the correlation of folds of one
    sample: the weighted mean of n copies of c was not always c, and its rounding
    over a spread of rounding made r2 of -247, and 3e14 for the correlation of
    one-sample folds (found by a differential fuzz). The other targets are
    scikit-learn's."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((30, 20))
    y = X @ rng.standard_normal(20) + rng.standard_normal(30)
    Y = np.c_[np.full(30, 1.5), y, np.full(30, 0.1)].astype(dtype)
    sw = rng.integers(1, 4, 30).astype(float)
    splitter = KFold(30) if cv == "one_sample_folds" else cv
    kw = dict(alphas=[0.1, 1.0, 10.0], scoring=scoring, cv=splitter, alpha_per_target=True)
    got = FastRidgeCV(**kw).fit(X.astype(dtype), Y, sample_weight=sw)
    constant = {"r2": 1.0, "explained_variance": 1.0, "correlation": 0.0}[scoring]
    if cv == "one_sample_folds":  # every target is constant within each fold
        assert_array_equal(got.alpha_scores_, 0.0)
        return
    assert_array_equal(got.alpha_scores_[[0, 2]], constant)
    if scoring != "correlation":
        ref = RidgeCV(alphas=kw["alphas"], scoring=scoring, cv=cv).fit(X, y, sample_weight=sw)
        rtol = 1e-8 if dtype == np.float64 else 1e-4
        assert_allclose(got.best_score_[1], ref.best_score_, rtol=rtol)


def test_float32_folds_of_repeated_samples_at_a_tiny_alpha(monkeypatch):
    """Every sample shown twice, both in the same group (X of rank n_samples / 2),
    an alpha of 1e-7 lambda_max, float32: the eigendecomposition route had scored
    -2.53 where refits give -1.20 (found by a differential fuzz). Its folds now
    work in [U N] (`test_float32_weighted_folds_of_rank_deficient_x`); the fold
    dual route, which served this fit for a while, would make coefficients from
    c = E / alpha, whose float32 rounding of E's null-space part outweighs the
    range part at this alpha (`test_float32_coefficients_of_rank_deficient_x`)."""
    from fastridge._cv import LeaveGroupOut

    rng = np.random.default_rng(1)
    X = rng.standard_normal((24, 60))
    X[12:] = X[:12]
    y = X @ rng.standard_normal(60) / np.sqrt(60) + 0.3 * rng.standard_normal(24)
    groups = np.arange(24) % 4
    Xc = X - X.mean(axis=0)
    top = np.linalg.eigvalsh(Xc @ Xc.T).max()
    alphas = [1e-7 * top, top]
    kw = dict(alphas=alphas, cv=GroupKFold(4), scoring="neg_mean_squared_error")
    ref = FastRidgeCV(**kw).fit(X, y, groups=groups)
    schemes = _schemes(monkeypatch)
    got = FastRidgeCV(**kw).fit(X.astype(np.float32), y.astype(np.float32), groups=groups)
    assert [type(s) for s in schemes] == [LeaveGroupOut] and schemes[0].projects_null
    splits = list(GroupKFold(4).split(X, groups=groups))
    score = lambda y, p, w: -((y - p.reshape(y.shape)) ** 2).mean(axis=0)  # noqa: E731
    brute = brute_force_fold_scores(X, y[:, None], alphas, splits, True, score=score)
    assert_allclose(ref.alpha_scores_, brute.mean(axis=0)[0], rtol=1e-8)
    assert_allclose(got.alpha_scores_, ref.alpha_scores_, rtol=1e-5)
    coef = Ridge(alpha=alphas[int(np.argmax(brute.mean(axis=0)[0]))], solver="svd").fit(X, y).coef_
    assert np.abs(got.coef_ - coef).max() < 1e-5 * np.abs(coef).max()


@pytest.mark.parametrize("scoring", ["r2", "explained_variance"])
def test_fold_with_one_weighted_test_sample_scores_as_scikit_learn(scoring):
    """A test fold with a single sample of positive weight has no spread: r2 0 and
    explained variance 1, as scikit-learn scores it (r2: its mean was not taken
    exactly where the fold's y was not constant over its zero-weight rows, -1.9e31;
    explained variance: the residual's own mean was not, scored 0; differential
    fuzzes found both). scikit-learn's own explained variance is 1 there only
    where w e / w rounds back to e (unit weights): the reference takes the exact 1."""
    rng = np.random.default_rng(4)
    X = rng.standard_normal((12, 4))
    Y = X @ rng.standard_normal((4, 3)) + rng.standard_normal((12, 3)) * 3.0
    sw = rng.uniform(0.5, 2.0, 12)
    sw[[1, 2]] = 0.0  # fold 0 = samples 0-2: one weighted test sample
    splits = list(KFold(4).split(X))
    alphas = [0.1, 10.0]
    got = FastRidgeCV(alphas=alphas, cv=splits, alpha_per_target=True, scoring=scoring)
    got.fit(X, Y, sample_weight=sw)
    metric = {"r2": r2_score, "explained_variance": explained_variance_score}[scoring]
    score = lambda y, p, w: metric(y, p, sample_weight=w, multioutput="raw_values")  # noqa: E731
    ref = brute_force_fold_scores(X, Y, alphas, splits, True, sw, score)  # (folds, targets, alphas)
    if scoring == "r2":
        assert_array_equal(ref[0], 0.0)
    ref[0] = 0.0 if scoring == "r2" else 1.0
    assert_allclose(got.alpha_scores_, ref.mean(axis=0), rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("store", [False, True])
def test_explained_variance_of_a_constant_test_fold(store):
    """A test fold whose targets are constant, a huge alpha: the residuals are nearly
    constant, and their spread is scikit-learn's (explained variance 0 for that
    fold), not 1 from sum w e^2 - W mean(e)^2 losing its digits, which had made
    alpha 1e12 win (found by a differential fuzz)."""
    rng = np.random.default_rng(1)
    X = rng.standard_normal((30, 5))
    y = X @ rng.standard_normal(5) + rng.standard_normal(30)
    y[:10] = -2.0  # constant on KFold(3)'s first test fold
    alphas = np.array([1.0, 1e6, 1e12])
    splits = list(KFold(3).split(X))
    score = lambda y, p, w: explained_variance_score(y, p, multioutput="raw_values")  # noqa: E731
    ref = brute_force_fold_scores(X, y[:, None], alphas, splits, True, score=score)[:, 0]
    got = FastRidgeCV(alphas=alphas, cv=KFold(3), scoring="explained_variance",
                      store_cv_results=store).fit(X, y)  # fmt: skip
    assert_allclose(got.alpha_scores_, ref.mean(axis=0), rtol=1e-6, atol=1e-9)
    assert got.alpha_ == alphas[np.argmax(ref.mean(axis=0))]


def _rank_deficient(kind, rng, n=30, p=45):
    """X of rank below n_samples - 1: every sample shown twice ("repeats") or
    columns copied from a few ("copies")."""
    if kind == "repeats":
        base = rng.standard_normal((n // 2, p))
        return base[rng.permutation(np.arange(n) % (n // 2))]
    return rng.standard_normal((n, 8))[:, rng.integers(0, 8, p)]


@pytest.mark.parametrize("kind", ["repeats", "copies"])
@pytest.mark.parametrize("scoring", [None, "neg_mean_squared_error", "correlation"])
@pytest.mark.parametrize("alpha_per_target", [True, False])
def test_float32_weighted_folds_of_rank_deficient_x(monkeypatch, kind, scoring, alpha_per_target):
    """X of rank below n_samples - 1 and n_samples <= n_features (a remainder in the
    Gram form), sample weights (off the fold dual route), float32, alphas from
    1e-9 to 1 times lambda_max: the folds work in [U N], N the Gram's null
    eigenvectors, with (I - H_bb)^-1 made from the float64 basis, and keep the
    refits' scores to 1e-5. From the remainder (with shuffled folds of repeated
    samples, r2 0.80 for 0.85 at 4e-9 lambda_max; -17.5 for -17.4 at 1e-7) or
    from the float32-rounded basis they lost them (a differential fuzz found it)."""
    from fastridge._cv import LeaveGroupOut

    rng = np.random.default_rng(7)
    X = _rank_deficient(kind, rng) * 3 + 1
    Y = X @ rng.standard_normal((X.shape[1], 4)) * 0.1 + rng.standard_normal((X.shape[0], 4))
    sw = rng.uniform(0.3, 3.0, X.shape[0])
    Xc = X - np.average(X, axis=0, weights=sw)
    top = np.linalg.eigvalsh((Xc * sw[:, None]) @ Xc.T).max()
    alphas = top * np.array([1e-9, 1e-7, 1e-5, 1e-3, 1.0])
    cv = KFold(5, shuffle=True, random_state=0)
    kw = dict(alphas=alphas, cv=cv, scoring=scoring, alpha_per_target=alpha_per_target)
    schemes = _schemes(monkeypatch)
    got = FastRidgeCV(**kw).fit(X.astype(np.float32), Y.astype(np.float32), sample_weight=sw)
    assert [type(s) for s in schemes] == [LeaveGroupOut]
    assert schemes[0].projects_null and schemes[0].decomp.has_remainder is False
    score = {
        "neg_mean_squared_error": lambda y, p, w: -np.average((y - p) ** 2, axis=0, weights=w),
        "correlation": _weighted_correlation,
    }.get(scoring)
    splits = list(cv.split(X))
    brute = brute_force_fold_scores(X, Y, alphas, splits, True, sw, score).mean(axis=0)
    if alpha_per_target:
        assert_allclose(got.alpha_scores_, brute, rtol=1e-5, atol=1e-5)
    else:  # the best mean over targets
        assert_allclose(got.best_score_, brute.mean(axis=0).max(), rtol=1e-5, atol=1e-5)


def test_null_basis_completes_the_decomposition():
    """In the Gram form with a remainder, [q U N] is orthonormal and spans every
    sample direction, N's columns are null directions of the scaled, centred X,
    and `basis64` is [U N] before rounding."""
    import torch

    from fastridge._decompose import decompose

    rng = np.random.default_rng(3)
    X = _rank_deficient("repeats", rng, n=20, p=30)
    sw = rng.uniform(0.5, 2.0, 20)
    for weights in (None, sw):
        for fit_intercept in (True, False):
            d = decompose(
                torch.tensor(X.astype(np.float32)).double(),
                fit_intercept=fit_intercept,
                sample_weight=None if weights is None else torch.tensor(weights),
                compute_dtype=torch.float32,
                keep_basis64=True,
            )
            assert d.has_remainder and d.null_basis is not None
            full = d.basis64.numpy()
            assert full.shape == (20, 20 - fit_intercept)
            s = np.ones(20) if weights is None else np.sqrt(weights)
            cols = full if not fit_intercept else np.column_stack([s / np.linalg.norm(s), full])
            assert_allclose(cols.T @ cols, np.eye(20), atol=1e-12)
            assert_allclose(d.full_basis.numpy(), full, rtol=1e-6, atol=1e-7)
            Xc = X - (np.average(X, axis=0, weights=weights) if fit_intercept else 0.0)
            null = full[:, d.rank :]
            assert np.abs(null.T @ (s[:, None] * Xc)).max() < 1e-9 * np.abs(Xc).max()


def _tiny_alpha_problem():
    """n_samples > n_features with training folds smaller than n_features, and an
    alpha of 1e-7 lambda_max."""
    rng = np.random.default_rng(1)
    X = rng.standard_normal((7, 5))
    Y = rng.standard_normal((7, 3))
    Xc = X - X.mean(axis=0)
    return X, Y, np.linalg.eigvalsh(Xc.T @ Xc).max() * np.array([1e-7, 1.0])


@pytest.mark.parametrize("store", [False, True])
def test_float32_folds_that_would_lose_digits_are_solved_in_float64(monkeypatch, store, capsys):
    """n=7, p=5, 3 folds (training sets of 4 or 5 samples), alpha 1e-7 lambda_max:
    each fold's refit amplifies float32's rounding ~2e7-fold, and float32 scored
    -10.4 where refits give -4.26 (a differential fuzz found it). The fit is
    redone in float64, says so, asks the splitter once, and returns float32."""
    X, Y, alphas = _tiny_alpha_problem()
    calls = []

    class Counted(KFold):
        def split(self, *a, **k):
            calls.append(1)
            return super().split(*a, **k)

    kw = dict(alphas=alphas, cv=Counted(3), scoring="neg_mean_squared_error",
              alpha_per_target=True, store_cv_results=store, verbose=True)  # fmt: skip
    got = FastRidgeCV(**kw).fit(X.astype(np.float32), Y.astype(np.float32))
    assert "solving in float64" in capsys.readouterr().err
    assert len(calls) == 1
    assert got.coef_.dtype == got.intercept_.dtype == np.float32
    if store:
        assert got.cv_results_.dtype == np.float32
    splits = list(KFold(3).split(X))
    score = lambda y, p, w: -((y - p) ** 2).mean(axis=0)  # noqa: E731
    brute = brute_force_fold_scores(X, Y, alphas, splits, True, score=score).mean(axis=0)
    assert_allclose(got.alpha_scores_, brute, rtol=1e-6)
    ref = FastRidgeCV(**{**kw, "verbose": False, "cv": 3}).fit(X, Y)
    assert_allclose(got.coef_, ref.coef_, rtol=1e-5, atol=1e-6)
    dual = FastRidgeCV(**{**kw, "cv": 3, "solution": "dual"})
    # (its float32 dual coefficients cannot carry the float64 fit: predictions from
    # them were 4e-3 off float64's, measured; test_core has the warning's tests)
    with pytest.warns(PrecisionWarning, match="rounded to float32"):
        dual.fit(X.astype(np.float32), Y.astype(np.float32))
    assert "solving in float64" in capsys.readouterr().err
    assert dual.dual_coef_.dtype == dual.X_mean_.dtype == np.float32  # (X_mean_ was float64)


def test_float64_redo_writes_into_coef_out():
    """ridge_cv's float64 redo (above) writes the coefficients into the caller's
    float32 `coef_out`, as the command line's output file."""
    X, Y, alphas = _tiny_alpha_problem()
    coef = np.full((3, 5), np.nan, dtype=np.float32)
    res = ridge_cv(X.astype(np.float32), Y.astype(np.float32), alphas, cv=3,
                   alpha_per_target=True, coef_out=coef)  # fmt: skip
    assert res.coef is coef and np.isfinite(coef).all()
    ref = ridge_cv(X, Y, alphas, cv=3, alpha_per_target=True)
    assert_allclose(res.alpha_scores, ref.alpha_scores, rtol=1e-6)  # (float32's were off)
    assert_allclose(coef, ref.coef, rtol=1e-5, atol=1e-6)


def test_fold_refits_that_would_lose_digits_are_solved_in_float64(monkeypatch):
    """FoldRefits (forced) on samples repeated with 1e-5 noise, n_samples >
    n_features, float32, alphas down to 1e-9 lambda_max: its makers amplify the
    float32 difference UtY - U_b^T Yc_b in the training folds' small directions
    (singular values ~1e-5 s_max, kept), so the fit is redone in float64 and keeps
    the refits' scores (the smallest alphas' r2 had been 0.4 off). Exact repeats
    are fitted in float32: their training folds' null directions are dropped."""
    import torch

    import fastridge.solve as solve_module
    from fastridge._cv import FoldRefits

    monkeypatch.setattr(solve_module, "_fold_refits_pay", lambda *a, **k: True)
    for noise, redone in ((1e-5, True), (0.0, False)):
        rng = np.random.default_rng(5)
        X = rng.standard_normal((15, 14))[np.arange(30) % 15]
        X = (X + noise * rng.standard_normal(X.shape)).astype(np.float32)
        Y = (X @ rng.standard_normal((14, 4)) * 0.3 + rng.standard_normal((30, 4))).astype(
            np.float32
        )
        Xc = X - X.mean(axis=0, dtype=np.float64)
        alphas = np.linalg.eigvalsh(Xc.T @ Xc).max() * np.logspace(-9, 0, 4)
        cv = KFold(3, shuffle=True, random_state=0)
        schemes = _schemes(monkeypatch)
        got = FastRidgeCV(alphas=alphas, cv=cv, alpha_per_target=True).fit(X, Y)
        assert [type(s) for s in schemes] == [FoldRefits]
        assert schemes[0].decomp.dtype == (torch.float64 if redone else torch.float32)
        monkeypatch.undo()
        monkeypatch.setattr(solve_module, "_fold_refits_pay", lambda *a, **k: True)
        # (the refits of the float32 data, in float64)
        X, Y = X.astype(np.float64), Y.astype(np.float64)
        brute = brute_force_fold_scores(X, Y, alphas, list(cv.split(X)), True).mean(axis=0)
        assert_allclose(got.alpha_scores_, brute, rtol=1e-5 if redone else 2e-5)


def test_correlation_of_a_fold_of_repeated_samples_stays_within_one():
    """A test fold of two copies of one sample: its predictions are constant but for
    rounding, and their correlation, a ratio of cancelling sums, had scored 4.6
    (the mean over folds 1.9). Every score is now within [-1, 1]."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((4, 9))[[0, 1, 2, 3, 0, 1, 2, 3]]
    y = X @ rng.standard_normal(9) + rng.standard_normal(8)
    folds = [(np.setdiff1d(np.arange(8), te), te) for te in ([0, 4], [1, 2], [3, 5], [6, 7])]
    for dtype in (np.float64, np.float32):
        m = FastRidgeCV(alphas=[1e-3, 1e-1, 1e3], cv=folds, scoring="correlation",
                        store_cv_results=True).fit(X.astype(dtype), y.astype(dtype))  # fmt: skip
        assert (np.abs(m.cv_results_) <= 1.0).all(), m.cv_results_


@pytest.mark.parametrize("cv", [None, 3])
@pytest.mark.parametrize("rel", [1e-4, 1e-6])
def test_float32_coefficients_of_rank_deficient_x(cv, rel):
    """Every sample twice (X of rank n_samples / 2), float32, alpha 1e-4 and 1e-6
    lambda_max: on the dual route the coefficients came from c = E / alpha, whose
    float32 rounding of E's null-space part (the targets' own) swamped the range
    part: 1.3e-2 off scikit-learn at 1e-6 (a differential fuzz found it). Such fits
    now take the eigendecomposition route, which makes them from the range alone."""
    rng = np.random.default_rng(4)
    X = rng.standard_normal((13, 32))[np.arange(26) % 13] * 2 + 1
    y = X @ rng.standard_normal(32) * 0.1 + rng.standard_normal(26)
    Xc = X - X.mean(axis=0)
    alpha = rel * np.linalg.eigvalsh(Xc @ Xc.T).max()
    ref = Ridge(alpha=alpha, solver="svd").fit(X, y)
    got = FastRidgeCV(alphas=[alpha], cv=cv).fit(X.astype(np.float32), y.astype(np.float32))
    assert np.abs(got.coef_ - ref.coef_).max() < 1e-5 * np.abs(ref.coef_).max()


def test_fold_dual_route_coefficients_with_a_training_set_missing_a_direction():
    """float64, no intercept, X of rank 10 (n_samples 27 < n_features 33) and two
    groups whose training sets have rank 9, alpha 4.4e-9 lambda_max: the
    fold dual route turned held-out residuals back into E through (R_a)_bb, whose
    eigenvalues span 1 to ~alpha / lambda_max, and the coefficients were 5e-3 off
    scikit-learn's (1.3 at 4.4e-10; a differential fuzz found it)."""
    rng = np.random.default_rng(1100)
    n, p = 27, 33
    X = rng.standard_normal((n, 9)) @ rng.standard_normal((9, p))
    X = X * 3.0 + rng.standard_normal(p)
    Y = X @ rng.standard_normal((p, 3)) * 0.1 + rng.standard_normal((n, 3))
    groups = np.zeros(n, dtype=int)
    groups[[7, 11, 15, 16, 18, 21, 24, 25, 26]] = 1
    first = X[groups == 1][0]  # group 0's rows made orthogonal to it
    X[groups == 0] -= np.outer(X[groups == 0] @ first, first) / (first @ first)
    ranks = [np.linalg.matrix_rank(X[groups != g]) for g in (0, 1)]
    alpha = 4.4e-9 * np.linalg.eigvalsh(X @ X.T).max()
    ref = Ridge(alpha=alpha, fit_intercept=False, solver="svd").fit(X, Y)
    got = FastRidgeCV(alphas=[alpha], cv=LeaveOneGroupOut(), fit_intercept=False)
    got.fit(X, Y, groups=groups)
    assert min(ranks) < np.linalg.matrix_rank(X), ranks
    assert np.abs(got.coef_ - ref.coef_).max() < 1e-7 * np.abs(ref.coef_).max()


def test_float32_leave_one_out_of_a_sample_alone_in_a_direction(capsys):
    """n_samples > n_features and a feature seen in one sample only: that sample's
    1 - h is ~alpha / eigval, and E / (1 - h) amplified the float32 rounding of
    the remainder Yc - U UtY (1.3e-2 off scikit-learn at alpha 1e-7 lambda_max,
    12x at 1e-9, measured). The fit is redone in float64."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 10))
    X[:, 0] = 0.0
    X[5, 0] = 3.0
    Y = X @ rng.standard_normal((10, 4)) + rng.standard_normal((60, 4))
    Xc = X - X.mean(axis=0)
    alphas = np.linalg.eigvalsh(Xc.T @ Xc).max() * np.array([1e-9, 1e-7, 1.0])
    ref = RidgeCV(alphas=alphas, alpha_per_target=True, store_cv_results=True).fit(X, Y)
    got = FastRidgeCV(alphas=alphas, alpha_per_target=True, verbose=True)
    got.fit(X.astype(np.float32), Y.astype(np.float32))
    assert "solving in float64" in capsys.readouterr().err
    assert got.coef_.dtype == np.float32
    assert_allclose(-got.alpha_scores_, ref.cv_results_.mean(axis=0), rtol=1e-6)


def test_float32_fold_singular_from_rounding_is_solved_in_float64(capsys):
    """107 x 84, 53 samples of weight 0 (so fewer weighted samples than features),
    alpha 1e-10 lambda_max, 5 folds: in float32 a fold's refit came out singular
    and the fit was refused as "cannot be held out", which float64 fits (a
    differential fuzz found it). It is redone in float64 now (where a fold that
    truly cannot be held out is still refused), float32 outputs within 1e-6 of
    the float64 fit."""
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((107, 84)), rng.standard_normal(107)
    sw = np.ones(107)
    sw[rng.choice(107, 53, replace=False)] = 0.0
    kept = X[sw > 0] - X[sw > 0].mean(0)
    alpha = 1e-10 * np.linalg.eigvalsh(kept @ kept.T)[-1]
    ref = FastRidgeCV(alphas=[alpha], cv=5).fit(X, y, sample_weight=sw)
    got = FastRidgeCV(alphas=[alpha], cv=5, verbose=True).fit(
        X.astype(np.float32), y.astype(np.float32), sample_weight=sw.astype(np.float32)
    )
    assert "singular in float32: solving in float64" in capsys.readouterr().err
    assert got.coef_.dtype == np.float32
    assert np.linalg.norm(got.coef_ - ref.coef_) < 1e-6 * np.linalg.norm(ref.coef_)


@pytest.mark.parametrize("scoring", [None, "r2", "correlation"])
@pytest.mark.parametrize("splitter", ["shufflesplit_train_size", "timeseries"])
@pytest.mark.parametrize("fit_intercept", [False, True])
@pytest.mark.parametrize("shape", [(30, 12), (24, 40)], ids=["n>p", "n<p"])
def test_refit_per_fold_float32_features_far_from_zero(monkeypatch, scoring, splitter,
                                                       fit_intercept, shape):  # fmt: skip
    """Folds decomposed on their own (`RefitPerFold`) of features 10-1000 from zero
    with a spread of 1: float32 scores within 1e-5 of float64's, which equal
    brute-force refits. The test rows' predictions were float32 X_test @ coef,
    which cancels to ~eps |X_test| |coef|: up to 0.2 off without an intercept and
    1.5e-4 with one (a ShuffleSplit fold's r2 was -142 for -47 in a differential
    fuzz); now from the rows' coordinates in the fold's basis, made in float64."""
    from fastridge._cv import RefitPerFold

    rng = np.random.default_rng(7)
    noise = rng.standard_normal(shape)
    X = noise + rng.uniform(10, 1000, shape[1]) * rng.choice([-1, 1], shape[1])
    Y = noise @ rng.standard_normal((shape[1], 5)) + 0.3 * rng.standard_normal((shape[0], 5))
    X, Y = X.astype(np.float32), Y.astype(np.float32)  # (both fits see the same data)
    alphas = np.linalg.eigvalsh(noise.T @ noise).max() * np.logspace(-6, 1, 8)
    cv, _ = SPLITTERS[splitter](shape[0])
    kw = dict(alphas=alphas, cv=cv, scoring=scoring, alpha_per_target=True,
              fit_intercept=fit_intercept)  # fmt: skip
    schemes = _schemes(monkeypatch)
    ref = FastRidgeCV(**kw).fit(X.astype(np.float64), Y.astype(np.float64))
    got = FastRidgeCV(**kw).fit(X, Y)
    assert [type(s) for s in schemes] == [RefitPerFold, RefitPerFold]
    if scoring == "r2":
        X64, Y64 = X.astype(np.float64), Y.astype(np.float64)
        brute = brute_force_fold_scores(X64, Y64, alphas, list(cv.split(X)), fit_intercept)
        assert_allclose(ref.alpha_scores_, brute.mean(axis=0), rtol=1e-8, atol=1e-8)
    assert_allclose(got.alpha_scores_, ref.alpha_scores_, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("alpha_per_target", [True, False])
def test_every_alpha_nan_warns_and_takes_the_first_like_scikit_learn(alpha_per_target):
    """R^2 on test folds of one sample is NaN for every alpha: the first alpha is
    taken, as by scikit-learn's search, and now with an UndefinedMetricWarning
    naming the score (it had passed silently; a CLI review found it)."""
    import warnings

    from sklearn.exceptions import UndefinedMetricWarning
    from sklearn.model_selection import LeaveOneOut

    X, Y = make_problem(20, 6, 3, seed=3)
    alphas = (0.1, 1.0, 10.0)
    with pytest.warns(UndefinedMetricWarning, match="3 of 3 targets scored NaN for every"):
        est = FastRidgeCV(alphas=alphas, cv=LeaveOneOut(), scoring="r2",
                          alpha_per_target=alpha_per_target).fit(X, Y)  # fmt: skip
    with warnings.catch_warnings():  # (scikit-learn has no per-target alphas with cv)
        warnings.simplefilter("ignore")
        ref = RidgeCV(alphas=alphas, cv=LeaveOneOut(), scoring="r2").fit(X, Y)
    assert ref.alpha_ == alphas[0]
    assert_array_equal(est.alpha_, np.full(3, alphas[0]) if alpha_per_target else alphas[0])
    assert_allclose(est.coef_, Ridge(alpha=alphas[0]).fit(X, Y).coef_, rtol=1e-10)
    # a score that is defined there: no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error", UndefinedMetricWarning)
        FastRidgeCV(alphas=alphas, cv=LeaveOneOut(), scoring="neg_mean_squared_error").fit(X, Y)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_explained_variance_of_one_sample_folds_is_one(monkeypatch, dtype):
    """A test fold of one sample is its own mean: its explained variance is 1 (0 / 0,
    scikit-learn's rule), as for refits. On the fold dual route (n_samples <=
    n_features) float32 had scored some such folds 0 from the rounding of
    sum e^2 - (sum e)^2 (a differential fuzz found it)."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((8, 20)).astype(np.float32)
    y = rng.standard_normal(8)
    alphas = [0.1, 1.0, 10.0, 100.0]
    schemes = _schemes(monkeypatch)
    fit = FastRidgeCV(alphas=alphas, cv=KFold(8), scoring="explained_variance", dtype=dtype)
    fit.fit(X, y)
    assert [type(s).__name__ for s in schemes] == ["FoldDualRoute"]
    want = [
        np.mean(
            [
                explained_variance_score(y[te], Ridge(alpha=a).fit(X[tr], y[tr]).predict(X[te]))
                for tr, te in KFold(8).split(X)
            ]
        )
        for a in alphas
    ]
    assert_allclose(fit.alpha_scores_, want)


CONSTANT_FOLD_CASES = {
    # case: (n_samples, n_features, scheme, sample weights)
    "dual_route": (30, 50, "FoldDualRoute", False),  # (dual coefficients: see below)
    "leave_group_out": (40, 10, "LeaveGroupOut", False),
    "fold_refits": (40, 10, "FoldRefits", False),
    "weighted": (40, 10, "LeaveGroupOut", True),
    "refit_per_fold": (40, 10, "RefitPerFold", False),
}


@pytest.mark.parametrize("case", list(CONSTANT_FOLD_CASES))
@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_correlation_of_a_fold_of_repeated_samples_is_zero(monkeypatch, case, fit_intercept, dtype):
    """A test fold whose samples (of weight > 0) are copies of one row of X has a
    constant prediction, whose correlation is 0 (README, the built-in scores), on
    every fold scheme; it had been scored from rounding, up to +-1, and moved the
    fold means by up to 0.25 (a differential fuzz found it)."""
    import fastridge.solve as solve_module

    n, p, scheme_name, weighted = CONSTANT_FOLD_CASES[case]
    X, Y = make_problem(n, p, 3, seed=n + p)
    groups = np.arange(n) % 4
    copies = np.flatnonzero(groups == 2)
    groups[copies[3:]] = 0
    copies = copies[:3]
    X[copies] = X[copies[0]]  # fold 2: one sample, three times
    sw = None
    if weighted:
        sw = np.random.default_rng(0).uniform(0.5, 2.0, n)
        X[copies[-1]] += 1.0  # a different row, of weight 0: the weighted fold is constant
        sw[copies[-1]] = 0.0
    cv = LeaveOneGroupOut()
    if scheme_name == "RefitPerFold":  # training sets that leave a sample out
        cv = []
        for g, left_out in enumerate([1, 0, 0, 0]):  # (a sample of another fold)
            train = np.flatnonzero((groups != g) & (np.arange(n) != left_out))
            cv.append((train, np.flatnonzero(groups == g)))
    if scheme_name in ("LeaveGroupOut", "FoldRefits"):  # (its flop rule weighs them)
        pays = scheme_name == "FoldRefits"
        monkeypatch.setattr(solve_module, "_fold_refits_pay", lambda *a, **k: pays)
    schemes = _schemes(monkeypatch)
    alphas = np.logspace(1, 4, 4)  # (float32's dual route refuses alphas near 1 here)
    # (float32 primal coefficients of repeated rows leave the dual route: DualRoute)
    solution = "dual" if scheme_name == "FoldDualRoute" else "primal"
    got = FastRidgeCV(
        alphas=alphas, cv=cv, scoring="correlation", fit_intercept=fit_intercept,
        alpha_per_target=True, solution=solution,
    ).fit(X.astype(dtype), Y.astype(dtype), groups=groups, sample_weight=sw)  # fmt: skip
    assert [type(s).__name__ for s in schemes] == [scheme_name]
    splits = list(cv.split(X, groups=groups)) if hasattr(cv, "split") else cv
    with np.errstate(invalid="ignore"):  # (fold 2's 0 / 0: its correlation is 0)
        ref = brute_force_fold_scores(
            X, Y, alphas, splits, fit_intercept, sw, _weighted_correlation
        )
    ref[2] = 0.0  # (refits' numpy correlations of the constant are rounding there too)
    assert_allclose(got.alpha_scores_, ref.mean(axis=0), atol=1e-4 if dtype == np.float32 else 1e-8)


TRAINED_ON_ONE_ROW = {
    # case: (n_samples, n_features, splits, sample weights, the folds trained on one row)
    "one_row": (3, 1, [([1, 2], [0]), ([0], [1, 2])], None, [1]),
    "copies": (6, 2, [([0, 1, 2], [3, 4, 5]), ([3, 4, 5], [0, 1, 2])], None, [0]),
    "weighted": (4, 3, [([0, 1], [2, 3]), ([2, 3], [0, 1])], [1.0, 0.0, 1.0, 1.0], [0]),
}


@pytest.mark.parametrize("case", list(TRAINED_ON_ONE_ROW))
@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_correlation_of_a_fold_trained_on_one_row_is_zero(case, fit_intercept, dtype):
    """With an intercept, a training fold whose samples (of weight > 0) are copies of
    one row of X gives the training mean as every prediction: correlation 0. It had
    been scored from rounding, +-1 (a differential fuzz found the three cases).
    Without an intercept the predictions vary with X and are scored."""
    n, p, splits, sw, constant = TRAINED_ON_ONE_ROW[case]
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((n, p)), rng.standard_normal(n)
    if case == "copies":
        X[:3] = X[0]
    sw = None if sw is None else np.asarray(sw)
    splits = [(np.asarray(tr), np.asarray(te)) for tr, te in splits]
    alphas = [1e-3, 1.0]
    got = FastRidgeCV(
        alphas=alphas, cv=splits, scoring="correlation", fit_intercept=fit_intercept
    ).fit(X.astype(dtype), y.astype(dtype), sample_weight=sw)
    w = np.ones(n) if sw is None else sw
    want = np.zeros((len(splits), len(alphas)))
    for f, (train, test) in enumerate(splits):
        test = test[w[test] > 0]
        if (fit_intercept and f in constant) or len(test) < 2:
            continue  # a constant prediction (the refits' correlations are rounding): 0
        for a, alpha in enumerate(alphas):
            model = Ridge(alpha=alpha, fit_intercept=fit_intercept, solver="svd")
            pred = model.fit(X[train], y[train], sample_weight=w[train]).predict(X[test])
            if np.ptp(pred) > 0:  # (copies of one row predict bit-identical values)
                want[f, a] = np.corrcoef(pred, y[test])[0, 1]  # (test weights 1 here)
    assert_allclose(
        got.alpha_scores_, want.mean(axis=0), atol=1e-4 if dtype == np.float32 else 1e-8
    )
