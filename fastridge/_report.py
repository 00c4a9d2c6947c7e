"""Evaluation metrics (per target and per group of targets) and the PNG plots of a report.

Metrics are computed one target chunk at a time, in float64:

- per target: R^2 (scikit-learn's r2_score, force_finite rule for constant
  targets) and Pearson r (0 when either side is constant);
- per group, for a target shape of 2+ dims (groups = the leading target axis,
  e.g. 226 patches of 768-d vectors): mean squared error over samples and the
  group's trailing values, and the cosine similarity between the predicted and
  true vector of each sample, averaged over samples.

matplotlib is optional: without it the plots are skipped with one notice.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np


def target_metrics(pred: np.ndarray, true: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """R^2 and Pearson r of each target.

    Parameters
    ----------
    pred, true : arrays of shape (n_samples, n_targets)

    Returns
    -------
    r2, pearson : arrays of shape (n_targets,)
    """
    pred = np.asarray(pred, dtype=np.float64)
    true = np.asarray(true, dtype=np.float64)
    # Both are scale-free: each target's columns are scaled by a power of 2 (exact)
    # near their largest centred value, so that squares of ~1e160 do not overflow
    # (r read 0 and R^2 NaN for targets of that size; a CLI review found it).
    tc = true - true.mean(axis=0)
    scale = _power_of_two_near_max(tc, axis=0)
    tc /= scale
    resid = (true - pred) / scale
    ss_res = np.einsum("ij,ij->j", resid, resid)
    ss_tot = np.einsum("ij,ij->j", tc, tc)
    # scikit-learn's force_finite: a constant target scores 1 if predicted exactly, else 0
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        r2 = np.where(ss_tot > 0, 1.0 - ss_res / ss_tot, np.where(ss_res == 0, 1.0, 0.0))
        pc = pred - pred.mean(axis=0)
        pc /= _power_of_two_near_max(pc, axis=0)
        ss_pred = np.einsum("ij,ij->j", pc, pc)
        num = np.einsum("ij,ij->j", pc, tc)
        den = np.sqrt(ss_pred * ss_tot)
        r = np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)
    return r2, r


def _power_of_two_near_max(c: np.ndarray, axis: int) -> np.ndarray:
    """Along `axis` of c, a power of 2 within a factor 2 below max |c| (so dividing by
    it is exact and leaves values within +-2), c's shape with `axis` of length 1;
    0.5 where all are zero."""
    _, exponent = np.frexp(np.max(np.abs(c), axis=axis, initial=0.0, keepdims=True))
    return np.ldexp(1.0, exponent - 1)


def group_metrics(
    pred: np.ndarray, true: np.ndarray, group_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per-group MSE and sample-averaged cosine similarity.

    Parameters
    ----------
    pred, true : arrays of shape (n_samples, n_groups * group_size)
        Whole groups only (targets flattened in C order).
    group_size : int
        Targets per group (the product of the trailing target dims).

    Returns
    -------
    mse, cosine : arrays of shape (n_groups,)
    """
    m = pred.shape[0]
    p = np.asarray(pred, dtype=np.float64).reshape(m, -1, group_size)
    t = np.asarray(true, dtype=np.float64).reshape(m, -1, group_size)
    d = p - t
    with np.errstate(over="ignore"):  # (an MSE past float64 is inf: left out of summaries)
        mse = np.einsum("igk,igk->g", d, d) / (m * group_size)
    # the cosine is scale-free: each vector scaled by a power of 2 (exact) near its
    # largest value, so that squares of ~1e155 do not overflow (it had read 0)
    p = p / _power_of_two_near_max(p, axis=2)
    t = t / _power_of_two_near_max(t, axis=2)
    dot = np.einsum("igk,igk->ig", p, t)
    norm = np.sqrt(np.einsum("igk,igk->ig", p, p) * np.einsum("igk,igk->ig", t, t))
    with np.errstate(divide="ignore", invalid="ignore"):
        cos = np.where(norm > 0, dot / np.where(norm > 0, norm, 1.0), 0.0)
    return mse, cos.mean(axis=0)


def summary(values) -> dict:
    """mean, median, min, max and the 10/90% quantiles of finite values."""
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    if v.size == 0:
        return {"n": 0}
    q10, q50, q90 = np.quantile(v, [0.1, 0.5, 0.9])
    return {
        "n": int(v.size),
        "mean": float(v.mean()),
        "median": float(q50),
        "min": float(v.min()),
        "max": float(v.max()),
        "q10": float(q10),
        "q90": float(q90),
    }


def alpha_counts(alpha_index, alphas) -> dict:
    """{alpha as text: number of targets that chose it}, in the order of `alphas`."""
    counts = np.bincount(np.asarray(alpha_index).ravel(), minlength=len(alphas))
    out = {}
    for a, c in zip(alphas, counts, strict=True):  # (an alpha listed twice: one entry)
        out[f"{a:g}"] = out.get(f"{a:g}", 0) + int(c)
    return out


def have_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def write_plots(
    report_dir,
    *,
    alphas,
    alpha_index,
    cv_scores=None,
    r2=None,
    pearson=None,
    group_mse=None,
    group_cosine=None,
    stream=None,
) -> list[str]:
    """Write the report's PNG figures; returns their file names ([] without matplotlib).

    Parameters
    ----------
    report_dir : Path
    alphas : array of shape (n_alphas,)
    alpha_index : array of shape (n_targets,)
    cv_scores, r2, pearson : arrays of shape (n_targets,), optional
    group_mse, group_cosine : arrays of shape (n_groups,), optional
    """
    stream = stream or sys.stderr
    if not have_matplotlib():
        print(
            "fastridge: matplotlib is not installed; plots skipped (pip install matplotlib)",
            file=stream,
        )
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    report_dir = Path(report_dir)
    written = []

    def save(fig, name):
        fig.tight_layout()
        fig.savefig(report_dir / name, dpi=100)
        plt.close(fig)
        written.append(name)

    counts = np.bincount(np.asarray(alpha_index).ravel(), minlength=len(alphas))
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.bar([f"{a:g}" for a in alphas], counts)
    ax.set_xlabel("alpha")
    ax.set_ylabel("targets")
    ax.set_title("Chosen alphas")
    save(fig, "alphas.png")

    for name, values, label in (
        ("cv_scores.png", cv_scores, "held-out (CV) score of the chosen alpha"),
        ("test_r2.png", r2, "test R^2"),
        ("test_pearson.png", pearson, "test Pearson r"),
    ):
        if values is None:
            continue
        v = np.asarray(values, dtype=np.float64).ravel()
        v = v[np.isfinite(v)]
        if v.size == 0:
            continue
        fig, ax = plt.subplots(figsize=(5, 3.5))
        ax.hist(v, bins=min(100, max(10, v.size // 20)))
        ax.axvline(np.median(v), color="k", linestyle="--", label=f"median {np.median(v):.3g}")
        ax.set_xlabel(label)
        ax.set_ylabel("targets")
        ax.legend()
        save(fig, name)

    if group_mse is not None and group_cosine is not None:
        fig, axes = plt.subplots(2, 1, figsize=(7, 5), sharex=True)
        axes[0].plot(np.asarray(group_mse))
        axes[0].set_ylabel("MSE")
        axes[1].plot(np.asarray(group_cosine))
        axes[1].set_ylabel("cosine similarity")
        axes[1].set_xlabel("group (leading target axis)")
        axes[0].set_title("Per group, averaged over test samples")
        save(fig, "groups.png")
    return written
