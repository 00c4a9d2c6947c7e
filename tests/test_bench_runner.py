"""bench/run.py's rounds (solvers in turn, ratios paired by round); profile_fit's stages."""

import sys
from pathlib import Path

import pytest

import fastridge._backend
import fastridge._cv

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import profile_fit  # noqa: E402
import run  # noqa: E402
from _targets import speed_ratio  # noqa: E402


def _round(walls, wall, peak, probe, stage):
    return {
        "ok": True,
        "walls": walls,
        "wall": wall,
        "timings": {"cv": stage},
        "timings_wall": wall,
        "peak_rss": peak,
        "rss_inputs": 1,
        "gemm_samples": [probe],
        "load_start": [wall],
    }


def test_merge_rounds():
    rounds = [
        _round([1.0, 1.2, 1.1], 1.1, 5, {"float32": 1}, "first"),
        _round([2.0, 2.2, 2.1], 2.1, 7, {"float32": 2}, "second"),
        _round([1.3, 1.4, 1.5], 1.4, 6, {"float32": 3}, "third"),
    ]
    merged = run.merge_rounds(rounds)
    assert merged["wall"] == 1.4  # the median of all nine fits
    assert merged["walls"] == [1.0, 1.2, 1.1, 2.0, 2.2, 2.1, 1.3, 1.4, 1.5]
    assert merged["round_walls"] == [1.1, 2.1, 1.4] and merged["rounds"] == 3
    assert merged["timings"] == {"cv": "third"}  # the round nearest the median
    assert merged["peak_rss"] == 7 and len(merged["gemm_samples"]) == 3
    assert merged["load_start"] == [1.1]
    assert run.merge_rounds(rounds[:1]) is rounds[0]
    failed = run.merge_rounds([rounds[0], {"ok": False, "error": "timeout"}])
    assert not failed["ok"] and failed["error"] == "timeout"


def test_speed_ratio_pairs_rounds():
    slow = {"wall": 10.0, "round_walls": [10.0, 30.0, 10.0]}
    fast = {"wall": 6.0, "round_walls": [5.0, 10.0, 6.0]}
    # per round 2, 3 and 1.67: a slow minute in round 2 touched both sides
    assert speed_ratio(slow, fast) == pytest.approx(2.0)
    # without rounds on both sides: the ratio of the medians
    assert speed_ratio({"wall": 10.0}, fast) == pytest.approx(10.0 / 6.0)
    assert speed_ratio(slow, {"wall": 5.0}) == pytest.approx(2.0)


def test_profile_fit_puts_each_call_in_its_stage():
    """bench/profile_fit.py: the dual route's Cholesky inverses (one per alpha) fall
    in decompose, its residual GEMMs (one per alpha) in cv, the primal coefficients'
    GEMM in refit; the replaced functions are put back."""
    original = fastridge._cv.cholesky_inverse
    n, p, t = 40, 120, 50
    res = profile_fit.profile("fastridge-loo-f32", n, p, t, alphas=(1.0, 10.0, 100.0))
    assert fastridge._cv.cholesky_inverse is original
    assert fastridge._backend.mm.__name__ == "mm"

    def calls(stage, call, shapes):
        return sum(
            g["calls"]
            for g in res["groups"]
            if (g["stage"], g["call"], g["shapes"]) == (stage, call, shapes)
        )

    rows = n - 1  # the intercept's reflection
    assert calls("decompose", "cholesky_inverse", ((rows, rows),)) == 3
    assert calls("cv", "mm", ((t, n), (n, n))) == 3
    assert calls("refit", "mm", ((t, n), (n, p))) == 1
    assert all(g["stage"] in profile_fit.STAGES for g in res["groups"])
    text = profile_fit.markdown(res)
    assert "| decompose | cholesky_inverse | 39x39 | float64 | 3 |" in text


def test_profile_fit_counts_fold_residuals_in_refit():
    """K-fold by the dual route: each fold's held-out residuals turned back into
    in-sample ones (`residuals_of_best`, timed by solve with the refit) land in refit."""
    n, p, t = 40, 120, 50
    res = profile_fit.profile("fastridge-kfold5-f32-dual", n, p, t, alphas=(1.0, 10.0, 100.0))
    fold = n // 5
    # (float32: the compute dtype's products; the folds' float64 makers are decompose's)
    products = [g for g in res["groups"] if g["call"] == "mm" and g["dtype"] == "float32"]
    stages = {g["stage"] for g in products if g["shapes"][1:] == ((fold, fold),)}
    assert stages == {"refit"}


def test_busy_machine_fits_the_checkout_it_is_given(tmp_path, monkeypatch):
    """bench/busy_machine.py measures the checkout named, not the working directory's
    fastridge: its fits run as `python -c`, which puts the working directory first
    on sys.path, and run from a checkout's root every "checkout" had been that one
    (session 31's A/B tables)."""
    import shutil

    import busy_machine

    root = Path(__file__).resolve().parent.parent
    shutil.copytree(root / "fastridge", tmp_path / "fastridge")
    monkeypatch.chdir(root)  # (a checkout's root, with its own fastridge)
    res = busy_machine.fit_seconds(str(tmp_path), 30, 10, 2, "None", None, 0, "primal")
    assert Path(res["fastridge"]).resolve() == tmp_path.resolve() / "fastridge" / "__init__.py"
    assert busy_machine._cv_code("timeseries5") == "TimeSeriesSplit(5)"
    assert busy_machine._cv_code("loo") == "None" and busy_machine._cv_code("5") == "5"


def test_splitters_fits_both_solvers_on_the_same_folds(tmp_path, monkeypatch):
    """bench/splitters.py: fastridge (from the checkout named, whatever the working
    directory) and himalaya fit the same problem and splitter, and their alphas are
    saved for the agreement column; on a small problem they are the same."""
    pytest.importorskip("himalaya")
    import numpy as np
    import splitters

    root = Path(__file__).resolve().parent.parent
    monkeypatch.chdir(tmp_path)
    files = {s: str(tmp_path / f"{s}.npy") for s in ("fastridge", "himalaya")}
    res = {s: splitters.fit(s, str(root), 60, 30, 8, "timeseries5", files[s]) for s in files}
    assert Path(res["fastridge"]["fastridge"]).resolve().is_relative_to(root)
    assert res["himalaya"]["fastridge"] is None
    chosen = [np.load(f) for f in files.values()]
    assert chosen[0].shape == (8,)
    np.testing.assert_array_equal(chosen[0], chosen[1])
