"""`fastridge demo`: a synthetic problem shaped like the headline one, solved and checked.

The headline problem predicts CLIP image embeddings (226 patches x 768 dims =
173,568 targets) from ~20,000 fMRI voxels with ~9,000 training images and a
per-target alpha from {1e4, 2e4, 4e4}. The demo keeps the full target width and
shrinks samples and features so that a 2-core CPU solves it in well under a
minute, with structure that makes different targets prefer different alphas:

- X: standardized features with shared latent factors (correlated, like voxels);
- Y = X @ W_true + noise with a low-rank W_true, each target scaled to its own
  signal-to-noise ratio (log-uniform, times a per-patch factor): a few strong
  targets choose the smallest alpha, many weak ones the largest.

It then compares a random subset of targets with scikit-learn's RidgeCV.
"""

from __future__ import annotations

import time

import numpy as np

ALPHAS = (1e4, 2e4, 4e4)
TARGET_SHAPE = (226, 768)


def make_problem(
    n_samples: int, n_features: int, target_shape=TARGET_SHAPE, seed: int = 0, n_latent: int = 40
):
    """Synthetic X (n_samples, n_features) float32 and Y (n_samples, *target_shape) float32.

    Returns
    -------
    X : array of shape (n_samples, n_features)
    Y : array of shape (n_samples, *target_shape)
    snr : array of shape target_shape
        Each target's signal-to-noise variance ratio.
    """
    rng = np.random.default_rng(seed)
    n_targets = int(np.prod(target_shape))
    Z = rng.standard_normal((n_samples, n_latent), dtype=np.float32)
    L = rng.standard_normal((n_latent, n_features), dtype=np.float32)
    X = 0.5 * (Z @ L) + rng.standard_normal((n_samples, n_features), dtype=np.float32)
    X -= X.mean(axis=0)
    X /= X.std(axis=0)

    rank = 16
    A = rng.standard_normal((n_features, rank), dtype=np.float32) / np.sqrt(n_features)
    XA = X @ A  # (n_samples, rank): the signal lives in a rank-16 subspace
    B = rng.standard_normal((rank, n_targets), dtype=np.float32)
    # log-uniform SNR in [0.02, 1] times a per-group factor in [0.5, 1.5]
    snr = np.exp(rng.uniform(np.log(0.02), 0.0, size=n_targets))
    if len(target_shape) > 1:
        group = np.exp(rng.uniform(np.log(0.5), np.log(1.5), size=target_shape[0]))
        snr = (snr.reshape(target_shape[0], -1) * group[:, None]).ravel()
    # scale each column of XA @ B to variance snr (noise has variance 1)
    C = np.cov(XA, rowvar=False).astype(np.float64)
    var = np.einsum("it,ij,jt->t", B, C, B)
    B *= np.sqrt(snr / var).astype(np.float32)

    Y = rng.standard_normal((n_samples, n_targets), dtype=np.float32)
    step = 16384
    for start in range(0, n_targets, step):
        Y[:, start : start + step] += XA @ B[:, start : start + step]
    return X, Y.reshape(n_samples, *target_shape), snr.reshape(target_shape)


def run(
    n_samples: int = 1500,
    n_features: int = 2500,
    target_shape=TARGET_SHAPE,
    seed: int = 0,
    n_compare: int = 200,
    test_fraction: float = 0.2,
    verbose: bool = False,
    stream=None,
    n_threads: int | None = None,
) -> dict:
    """Build, solve, evaluate and compare; print a summary to `stream`; return the numbers."""
    import sys

    from sklearn.linear_model import RidgeCV

    from ._report import alpha_counts, group_metrics, target_metrics
    from .estimator import FastRidgeCV

    out = stream or sys.stdout

    def say(text=""):
        print(text, file=out, flush=True)

    t = time.perf_counter()
    X, Y, _ = make_problem(n_samples, n_features, target_shape, seed)
    t_make = time.perf_counter() - t
    n_test = max(2, int(round(n_samples * test_fraction)))
    perm = np.random.default_rng(seed + 1).permutation(n_samples)
    test, train = np.sort(perm[:n_test]), np.sort(perm[n_test:])
    X_train, X_test = X[train], X[test]
    Y_train, Y_test = Y[train], Y[test]
    del Y
    n_targets = int(np.prod(target_shape))
    say(
        f"fastridge demo: X_train {X_train.shape}, Y_train {Y_train.shape} "
        f"({n_targets:,} targets, {Y_train.nbytes / 2**30:.2f} GiB float32), "
        f"{n_test} test samples, alphas {', '.join(f'{a:g}' for a in ALPHAS)}; "
        f"data made in {t_make:.1f}s"
    )

    t = time.perf_counter()
    model = FastRidgeCV(
        alphas=ALPHAS,
        alpha_per_target=True,
        fit_intercept=True,
        n_threads=n_threads,
        verbose=verbose,
    )
    model.fit(X_train, Y_train)
    t_fit = time.perf_counter() - t

    alpha_index = np.searchsorted(np.asarray(ALPHAS), np.asarray(model.alpha_).ravel())
    counts = alpha_counts(alpha_index, ALPHAS)
    cv_median = float(np.median(model.best_score_))

    t = time.perf_counter()
    pred = model.predict(X_test).reshape(n_test, -1)
    r2, _ = target_metrics(pred, Y_test.reshape(n_test, -1))
    if len(target_shape) > 1:
        _, cosine = group_metrics(pred, Y_test.reshape(n_test, -1), int(np.prod(target_shape[1:])))
    else:
        cosine = None
    t_eval = time.perf_counter() - t

    # scikit-learn on a random subset of targets, same data, float64
    t = time.perf_counter()
    rng = np.random.default_rng(seed + 2)
    idx = np.sort(rng.choice(n_targets, size=min(n_compare, n_targets), replace=False))
    Ysub = Y_train.reshape(Y_train.shape[0], -1)[:, idx].astype(np.float64)
    ref = RidgeCV(alphas=ALPHAS, alpha_per_target=True).fit(X_train.astype(np.float64), Ysub)
    t_sk = time.perf_counter() - t
    ours_alpha = np.asarray(model.alpha_).ravel()[idx]
    same_alpha = float(np.mean(ours_alpha == np.asarray(ref.alpha_)))
    ours_coef = np.asarray(model.coef_).reshape(n_targets, -1)[idx].astype(np.float64)
    same = ours_alpha == np.asarray(ref.alpha_)
    scale = np.abs(ref.coef_).max(axis=1)
    rel = np.abs(ours_coef - ref.coef_).max(axis=1) / np.where(scale > 0, scale, 1.0)
    max_rel_same = float(rel[same].max()) if same.any() else float("nan")

    timings = dict(model.timings_)
    say(f"fastridge fit: {t_fit:.1f}s on {model.rank_}-rank X ({model.coef_.dtype})")
    say("  " + ", ".join(f"{k} {v:.2f}s" for k, v in timings.items()))
    say(
        "  chosen alphas: "
        + ", ".join(f"{a}: {c:,} ({100 * c / n_targets:.0f}%)" for a, c in counts.items())
    )
    say(f"  median CV score (neg. MSE, leave-one-out): {cv_median:.4f}")
    say(
        f"test ({n_test} samples): median R^2 {np.median(r2):.4f}, mean R^2 {np.mean(r2):.4f}"
        + (
            ""
            if cosine is None
            else f"; per-patch cosine similarity (mean over samples): mean {cosine.mean():.4f}"
            f", min {cosine.min():.4f}, max {cosine.max():.4f} over {cosine.size} patches"
        )
    )
    say(
        f"scikit-learn RidgeCV on {idx.size} random targets ({t_sk:.1f}s): same alpha for "
        f"{100 * same_alpha:.1f}%, max relative coef difference {max_rel_same:.2e} "
        "(targets with the same alpha; fastridge in float32, scikit-learn in float64)"
    )
    return {
        "n_samples": n_samples,
        "n_features": n_features,
        "target_shape": list(target_shape),
        "fit_seconds": t_fit,
        "eval_seconds": t_eval,
        "timings": timings,
        "alpha_counts": counts,
        "median_cv_score": cv_median,
        "median_test_r2": float(np.median(r2)),
        "mean_patch_cosine": None if cosine is None else float(cosine.mean()),
        "sklearn_same_alpha": same_alpha,
        "sklearn_max_rel_coef_diff": max_rel_same,
    }
