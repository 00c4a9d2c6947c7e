"""End-to-end tests of the `fastridge` command line.

The main paths run the real entry point (`python -m fastridge ...`) in a
subprocess with PYTHONPATH set to this repository; many small error cases call
`fastridge.cli.main` in-process (one interpreter start costs seconds).
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

ROOT = Path(__file__).resolve().parents[1]
# In-process calls must run the same code as the subprocesses: this repository's.
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from fastridge import FastRidgeCV  # noqa: E402
from fastridge._model import load  # noqa: E402
from fastridge.cli import main  # noqa: E402

ENV = {
    **os.environ,
    "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
}
ALPHAS = ["0.5", "5", "50"]


def cli(*args, timeout=300):
    """Run `python -m fastridge ARGS` in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "fastridge", *map(str, args)],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def one_error_line(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("fastridge: error: "), stderr
    assert "Traceback" not in stderr
    return lines[0]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A small problem with a (6, 8) target shape, float64, and a held-out set."""
    d = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    n, n_test, p = 60, 20, 30
    X = rng.standard_normal((n + n_test, p))
    W = rng.standard_normal((p, 48)) * np.exp(rng.uniform(-3, 0, 48))
    Y = (X @ W + rng.standard_normal((n + n_test, 48))).reshape(-1, 6, 8)
    files = {"X": X[:n], "Y": Y[:n], "Xt": X[n:], "Yt": Y[n:]}
    for name, a in files.items():
        np.save(d / f"{name}.npy", a)
    return d, files


def test_demo_quick():
    t = time.perf_counter()
    r = cli("demo", "--quick", "--threads", "1")
    assert r.returncode == 0, r.stderr
    assert "chosen alphas" in r.stdout and "scikit-learn RidgeCV" in r.stdout
    # scikit-learn agreement is part of the printed summary; it must be perfect here
    assert "same alpha for 100.0%" in r.stdout, r.stdout
    assert time.perf_counter() - t < 60


def test_demo_seed_must_be_non_negative(capsys):
    """(numpy's generators take no negative seed: -1 ended as its own message)"""
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--quick", "--seed", "-1"])
    assert exc.value.code == 2
    assert "argument --seed: must be >= 0, got -1" in one_error_line(capsys.readouterr().err)


def test_solve_load_predict_evaluate_match_estimator(data, tmp_path):
    d, f = data
    model = tmp_path / "model"
    r = cli(
        "solve",
        d / "X.npy",
        d / "Y.npy",
        "--alphas",
        *ALPHAS,
        "--out",
        model,
        "--target-chunk",
        "7",
        "--threads",
        "1",
        "--x-test",
        d / "Xt.npy",
        "--y-test",
        d / "Yt.npy",
    )
    assert r.returncode == 0, r.stderr
    assert "chosen alphas" in r.stdout and "median CV score" in r.stdout
    assert sorted(p.name for p in model.iterdir()) == [
        "alpha.npy",
        "alpha_index.npy",
        "alpha_scores.npy",
        "best_score.npy",
        "coef.npy",
        "intercept.npy",
        "model.json",
        "test_report",
    ]
    ref = FastRidgeCV(alphas=[float(a) for a in ALPHAS], alpha_per_target=True).fit(f["X"], f["Y"])
    assert len(np.unique(ref.alpha_)) > 1  # the test exercises per-target choice
    est = load(model)
    assert est.coef_.shape == (6, 8, 30) and est.coef_.dtype == np.float64
    assert_array_equal(est.alpha_, ref.alpha_)
    assert_allclose(est.coef_, ref.coef_, rtol=1e-10, atol=1e-12)
    assert_allclose(est.intercept_, ref.intercept_, rtol=1e-10, atol=1e-12)
    assert_allclose(est.best_score_, ref.best_score_, rtol=1e-10)
    assert est.alpha_scores_.shape == (6, 8, 3)
    assert_allclose(est.alpha_scores_, ref.alpha_scores_, rtol=1e-10)
    expected = ref.predict(f["Xt"])
    assert_allclose(est.predict(f["Xt"]), expected, rtol=1e-10, atol=1e-10)

    out = tmp_path / "yhat.npy"
    r = cli("predict", model, d / "Xt.npy", "--out", out, "--target-chunk", "5", "--threads", "1")
    assert r.returncode == 0, r.stderr
    yhat = np.load(out)
    assert yhat.shape == (20, 6, 8)
    assert_allclose(yhat, expected, rtol=1e-10, atol=1e-10)

    report = tmp_path / "report"
    r = cli(
        "evaluate",
        model,
        d / "Xt.npy",
        d / "Yt.npy",
        "--out",
        report,
        "--target-chunk",
        "9",
        "--threads",
        "1",
    )
    assert r.returncode == 0, r.stderr
    rep = json.loads((report / "report.json").read_text())
    from sklearn.metrics import r2_score

    yt = f["Yt"].reshape(20, -1)
    r2 = r2_score(yt, expected.reshape(20, -1), multioutput="raw_values")
    assert_allclose(np.load(report / "r2.npy").ravel(), r2, rtol=1e-9, atol=1e-12)
    pearson = [np.corrcoef(yt[:, j], expected.reshape(20, -1)[:, j])[0, 1] for j in range(48)]
    assert_allclose(np.load(report / "pearson.npy").ravel(), pearson, rtol=1e-9)
    p3, t3 = expected, f["Yt"]
    cos = (p3 * t3).sum(-1) / np.linalg.norm(p3, axis=-1) / np.linalg.norm(t3, axis=-1)
    assert_allclose(rep["groups"]["cosine"], cos.mean(0), rtol=1e-9)
    assert_allclose(rep["groups"]["mse"], ((p3 - t3) ** 2).mean(axis=(0, 2)), rtol=1e-9)
    assert_allclose(rep["r2"]["median"], np.median(r2), rtol=1e-9)
    # the report written by solve --x-test is the same evaluation
    assert_allclose(np.load(model / "test_report" / "r2.npy").ravel(), r2, rtol=1e-9)


def test_shared_alpha_flat_y_and_overwrite(data, tmp_path, capsys):
    d, f = data
    yflat = tmp_path / "Yflat.npy"
    np.save(yflat, f["Y"].reshape(60, -1).astype(np.float32))
    x32 = tmp_path / "X32.npy"
    np.save(x32, np.asfortranarray(f["X"].astype(np.float32)))  # Fortran order is fine
    model = tmp_path / "m"
    args = [
        "solve",
        x32,
        yflat,
        "--alphas",
        *ALPHAS,
        "--out",
        model,
        "--shared-alpha",
        "--target-shape",
        "6",
        "8",
        "-q",
    ]
    assert main(list(map(str, args))) == 0
    ref = FastRidgeCV(alphas=[float(a) for a in ALPHAS]).fit(
        f["X"].astype(np.float32), f["Y"].astype(np.float32)
    )
    est = load(model)
    assert est.coef_.dtype == np.float32 and est.coef_.shape == (6, 8, 30)
    assert est.alpha_ == ref.alpha_
    assert_allclose(est.best_score_, ref.best_score_, rtol=1e-4)
    assert_allclose(est.alpha_scores_, ref.alpha_scores_, rtol=1e-4)  # (written in pass 1)
    assert_allclose(est.coef_, ref.coef_, rtol=1e-4, atol=1e-5)
    # an existing model directory is left untouched without --overwrite ...
    (model / "sentinel").write_text("keep")
    capsys.readouterr()
    assert main(list(map(str, args))) == 2
    assert "already exists" in one_error_line(capsys.readouterr().err)
    assert (model / "sentinel").read_text() == "keep"
    # ... and replaced as a whole with it
    assert main(list(map(str, args)) + ["--overwrite"]) == 0
    assert not (model / "sentinel").exists() and (model / "model.json").exists()
    assert not list(tmp_path.glob("m.*"))  # no staging or old directories left


def test_overwrite_replaces_only_a_model_or_report(data, tmp_path, capsys, monkeypatch):
    """--overwrite replaces a directory as a whole: only one that holds a model
    (model.json) or a report (report.json), or an empty one. A data directory
    given as --out, with the inputs in it, had been deleted (a CLI fuzz found it);
    "." had given "has an empty name"."""
    d, f = data
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    for name in ("X", "Y"):
        np.save(inputs / f"{name}.npy", f[name])
    (inputs / "notes.txt").write_text("keep")
    solve = ["solve", inputs / "X.npy", inputs / "Y.npy", "--alphas", *ALPHAS, "-q"]
    capsys.readouterr()
    assert main(list(map(str, [*solve, "--out", inputs, "--overwrite"]))) == 2
    assert "not a fastridge model" in one_error_line(capsys.readouterr().err)
    assert sorted(p.name for p in inputs.iterdir()) == ["X.npy", "Y.npy", "notes.txt"]
    monkeypatch.chdir(inputs)
    assert main(list(map(str, [*solve, "--out", ".", "--overwrite"]))) == 2
    assert "current directory" in one_error_line(capsys.readouterr().err)
    monkeypatch.chdir(tmp_path)
    model, empty = tmp_path / "model", tmp_path / "empty"
    empty.mkdir()
    assert main(list(map(str, [*solve, "--out", empty, "--overwrite"]))) == 0
    assert main(list(map(str, [*solve, "--out", model]))) == 0
    assert main(list(map(str, [*solve, "--out", model, "--overwrite"]))) == 0
    evaluate = ["evaluate", model, d / "Xt.npy", d / "Yt.npy", "--no-plots", "-q", "--overwrite"]
    capsys.readouterr()
    assert main(list(map(str, [*evaluate, "--out", inputs]))) == 2
    assert "not a fastridge report" in one_error_line(capsys.readouterr().err)
    assert (inputs / "notes.txt").read_text() == "keep"
    assert main(list(map(str, [*evaluate, "--out", tmp_path / "report"]))) == 0
    assert main(list(map(str, [*evaluate, "--out", tmp_path / "report"]))) == 0


def _mount_tmpfs(where: Path) -> bool:
    where.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "none", str(where)], capture_output=True)
    return done.returncode == 0


@pytest.mark.parametrize("real", [False, True])
def test_overwrite_refuses_a_mount_point_before_any_work(data, tmp_path, capsys, monkeypatch, real):
    """--overwrite renames the old directory aside, which a mount point refuses: that
    had failed only after the whole solve, the complete model left in a staging
    directory. (real: a tmpfs mounted there, where this machine allows it; else the
    check alone, through os.path.ismount.)"""
    d, _ = data
    model = tmp_path / "model"
    if real:
        if not _mount_tmpfs(model):
            pytest.skip("mount not permitted here")
    else:
        model.mkdir()
        ismount = os.path.ismount
        monkeypatch.setattr(os.path, "ismount", lambda p: str(p) == str(model) or ismount(p))
    try:
        solve = ["solve", d / "X.npy", d / "Y.npy", "--alphas", *ALPHAS, "-q", "--overwrite"]
        capsys.readouterr()
        assert main(list(map(str, [*solve, "--out", model]))) == 2
        assert "is a mount point" in one_error_line(capsys.readouterr().err)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    finally:
        if real:
            subprocess.run(["umount", str(model)], check=True)


def test_dual_predictions_of_x_far_from_centred_through_the_command_line(tmp_path):
    """predict centres the kernel of a dual model (`_refit.dual_kernel`), from
    x_fit.npy in blocks: float32 predictions of X offset by 20 were 8e-4 off
    float64's, 4e-7 now (as FastRidgeCV.predict, test_dual)."""
    from test_dual import _offset_problem

    X, y, alpha, exact = _offset_problem()
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "Y.npy", y[:, None])
    model, out = tmp_path / "model", tmp_path / "yhat.npy"
    solve = ["solve", tmp_path / "X.npy", tmp_path / "Y.npy", "--alphas", alpha]
    assert main(list(map(str, [*solve, "--out", model, "--solution", "dual", "-q"]))) == 0
    assert main(list(map(str, ["predict", model, tmp_path / "X.npy", "--out", out, "-q"]))) == 0
    got = np.load(out)[:, 0]
    assert np.linalg.norm(got - exact) / np.linalg.norm(exact - exact.mean()) < 1e-5


@pytest.mark.parametrize("wide", [False, True], ids=["n>p", "n<p"])
def test_dual_solution_through_the_command_line(data, tmp_path, wide, capsys, monkeypatch):
    """solve --solution dual writes dual_coef.npy + x_fit.npy + x_mean.npy; load,
    predict and evaluate give the primal model's predictions."""
    d, f = data
    if wide:  # more features than samples: the case the dual form is for
        rng = np.random.default_rng(3)
        X, Xt = rng.standard_normal((25, 70)), rng.standard_normal((9, 70))
        Y = X @ rng.standard_normal((70, 12)) * 0.1 + rng.standard_normal((25, 12))
        d = tmp_path / "wide"
        d.mkdir()
        f = {"X": X, "Y": Y, "Xt": Xt, "Yt": Xt @ np.zeros((70, 12))}
        for name, a in f.items():
            np.save(d / f"{name}.npy", a)
    model = tmp_path / "dual"
    args = ["solve", d / "X.npy", d / "Y.npy", "--alphas", *ALPHAS, "--out", model]
    assert main(list(map(str, [*args, "--solution", "dual", "--target-chunk", "5"]))) == 0
    assert "dual coefficients" in capsys.readouterr().out
    names = sorted(p.name for p in model.iterdir())
    assert "coef.npy" not in names
    assert {"dual_coef.npy", "x_fit.npy", "x_mean.npy", "model.json"} <= set(names)
    n, p = f["X"].shape
    assert np.load(model / "dual_coef.npy").shape == (int(np.prod(f["Y"].shape[1:])), n)
    assert_array_equal(np.load(model / "x_fit.npy"), f["X"])
    ref = FastRidgeCV(alphas=[float(a) for a in ALPHAS], alpha_per_target=True).fit(f["X"], f["Y"])
    est = load(model)
    assert est.solution == "dual" and not hasattr(est, "coef_")
    assert est.dual_coef_.shape == (*f["Y"].shape[1:], n)
    assert_array_equal(est.alpha_, ref.alpha_)
    expected = ref.predict(f["Xt"])
    assert_allclose(est.predict(f["Xt"]), expected, rtol=1e-9, atol=1e-9)
    out = tmp_path / "yhat.npy"
    import fastridge._refit

    block_bytes = 7 * 8 * f["X"].shape[1] if wide else 1  # blocks of 7 rows, or of 1
    monkeypatch.setattr(fastridge._refit, "X_FIT_BLOCK_BYTES", block_bytes)
    assert main(["predict", str(model), str(d / "Xt.npy"), "--out", str(out), "-q"]) == 0
    assert_allclose(np.load(out), expected, rtol=1e-9, atol=1e-9)
    report = tmp_path / "report"
    evaluate = ["evaluate", model, d / "Xt.npy", d / "Yt.npy", "--out", report, "--no-plots", "-q"]
    assert main(list(map(str, evaluate))) == 0
    assert (report / "report.json").exists()
    capsys.readouterr()
    # a resumed solve must keep the solution of the interrupted one
    staging = model.with_name("dual.tmp-1")
    model.rename(staging)
    manifest = {
        "format": "fastridge-solve-manifest",
        "inputs": json.loads((staging / "model.json").read_text())["inputs"],
        "options": {**json.loads((staging / "model.json").read_text())["options"]},
        "done": [[0, 1]],
    }
    (staging / "manifest.json").write_text(json.dumps(manifest))
    code = main(list(map(str, [*args, "--resume"])))
    assert code == 2
    assert "option solution was 'dual', now 'primal'" in capsys.readouterr().err


def test_kfold_cv_through_the_command_line(data, tmp_path):
    d, f = data
    model = tmp_path / "kfold"
    args = [
        "solve",
        d / "X.npy",
        d / "Y.npy",
        "--alphas",
        "0.5:50:3",  # ALPHAS as a log-spaced range
        "--out",
        model,
        "--cv",
        "4",
        "--scoring",
        "r2",
        "-q",
    ]
    assert main(list(map(str, args))) == 0
    ref = FastRidgeCV(
        alphas=[float(a) for a in ALPHAS], cv=4, scoring="r2", alpha_per_target=True
    ).fit(f["X"], f["Y"])
    est = load(model)
    assert est.alphas == (0.5, 5.0, 50.0)
    assert_array_equal(est.alpha_, ref.alpha_)
    assert_allclose(est.coef_, ref.coef_, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize(
    "cv_args, labels",
    [([], "strings"), (["--cv", "logo"], "integers"), (["--cv", "3"], "strings")],
    ids=["default-logo", "logo", "groupkfold3"],
)
def test_groups_and_sample_weight_through_the_command_line(
    data, tmp_path, capsys, cv_args, labels, weighted
):
    from sklearn.model_selection import GroupKFold, KFold, LeaveOneGroupOut

    d, f = data
    rng = np.random.default_rng(3)
    runs = rng.permutation(np.repeat(np.arange(5), 12))  # 5 runs of 12 samples, interleaved
    groups = np.array([f"run-{r}" for r in runs]) if labels == "strings" else runs
    np.save(tmp_path / "groups.npy", groups)
    w = rng.uniform(0.2, 3.0, 60)
    np.save(tmp_path / "w.npy", w)
    model = tmp_path / "model"
    args = ["solve", d / "X.npy", d / "Y.npy", "--alphas", *ALPHAS, "--out", model]
    args += ["--groups", tmp_path / "groups.npy", *cv_args]
    if weighted:
        args += ["--sample-weight", tmp_path / "w.npy"]
    assert main(list(map(str, args))) == 0
    out = capsys.readouterr().out
    grouped = GroupKFold(n_splits=3) if "3" in cv_args else LeaveOneGroupOut()
    expected = "GroupKFold(3) over 5 groups" if "3" in cv_args else "leave one group out (5 groups)"
    assert f"cross-validation: {expected}" in out and "median CV score (r2)" in out
    kw = dict(alphas=[float(a) for a in ALPHAS], alpha_per_target=True)
    sw = w if weighted else None
    ref = FastRidgeCV(cv=grouped, **kw).fit(f["X"], f["Y"], groups=groups, sample_weight=sw)
    est = load(model)
    assert type(est.cv) is type(grouped)
    assert_array_equal(est.alpha_, ref.alpha_)
    assert_allclose(est.best_score_, ref.best_score_, rtol=1e-10)
    assert_allclose(est.coef_, ref.coef_, rtol=1e-10, atol=1e-12)
    assert_allclose(est.intercept_, ref.intercept_, rtol=1e-10, atol=1e-12)
    assert_allclose(est.alpha_scores_, ref.alpha_scores_, rtol=1e-10)
    # the groups and the weights were used: folds that ignore either score otherwise
    ungrouped = FastRidgeCV(cv=KFold(3), **kw).fit(f["X"], f["Y"], sample_weight=sw)
    assert not np.allclose(est.best_score_, ungrouped.best_score_, rtol=1e-3)
    if weighted:
        unweighted = FastRidgeCV(cv=grouped, **kw).fit(f["X"], f["Y"], groups=groups)
        assert not np.allclose(est.best_score_, unweighted.best_score_, rtol=1e-3)


def test_resume_of_a_run_from_before_alpha_scores(data, tmp_path, capsys):
    """A staging directory of an older fastridge (no alpha_scores.npy) resumes: the
    skipped chunks' alpha scores are NaN (unknown), every other result is whole."""
    import shutil

    d, f = data
    common = ["solve", d / "X.npy", d / "Y.npy", "--alphas", *ALPHAS, "--target-chunk", "16"]
    done = tmp_path / "done"
    assert main(list(map(str, [*common, "--out", done, "-q"]))) == 0
    meta = json.loads((done / "model.json").read_text())
    # what a run killed after its first chunk left behind, before alpha_scores.npy
    staging = tmp_path / "model.tmp-999999999"
    shutil.copytree(done, staging)
    for name in ("alpha_scores.npy", "model.json", "alpha.npy"):
        (staging / name).unlink()
    options = {k: v for k, v in meta["options"].items() if k not in ("groups", "sample_weight")}
    manifest = {
        "format": "fastridge-solve-manifest",
        "inputs": meta["inputs"],
        "options": options,
        "n_targets": 48,
        "n_features": 30,
        "target_chunk": 16,
        "done": [[0, 16]],
    }
    (staging / "manifest.json").write_text(json.dumps(manifest))
    model = tmp_path / "model"
    assert main(list(map(str, [*common, "--out", model, "--resume", "-q"]))) == 0
    scores, ref = np.load(model / "alpha_scores.npy"), np.load(done / "alpha_scores.npy")
    assert np.isnan(scores[:16]).all()
    assert_array_equal(scores[16:], ref[16:])
    for name in ("coef", "intercept", "alpha", "alpha_index", "best_score"):
        assert_array_equal(np.load(model / f"{name}.npy"), np.load(done / f"{name}.npy"), name)
    # a model directory without alpha_scores.npy (an older one) loads without them
    (done / "alpha_scores.npy").unlink()
    est = load(done)
    assert not hasattr(est, "alpha_scores_")
    assert_allclose(est.predict(f["Xt"]), load(model).predict(f["Xt"]), rtol=1e-12)


def test_leftover_staging_directories_are_named(data, tmp_path, capsys):
    """A solve names what earlier runs left beside its --out, one note per kind: a
    solve still running (it had been offered as one to resume), an unfinished solve
    it can resume, one it cannot, and a complete model that was never moved into
    place (its manifest gone: no run had mentioned it, also not with --resume)."""
    d, f = data
    model = tmp_path / "m"
    args = ["solve", str(d / "X.npy"), str(d / "Y.npy"), "--alphas", "1", "--out", str(model)]
    assert main([*args, "-q"]) == 0
    shutil.copytree(model, tmp_path / "m.tmp-999999991")  # complete, no manifest
    # a process whose command line names fastridge counts as a running solve
    running = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)", "fastridge"]
    )  # fmt: skip
    try:
        for pid, done in ((999999992, []), (999999993, [[0, 5]]), (running.pid, [[0, 5]])):
            staging = tmp_path / f"m.tmp-{pid}"
            staging.mkdir()
            manifest = {"done": done, "options": {"alpha_per_target": True}}
            (staging / "manifest.json").write_text(json.dumps(manifest))
        capsys.readouterr()
        assert main([*args, "--overwrite"]) == 0
        notes = [ln for ln in capsys.readouterr().err.splitlines() if "note:" in ln]
        assert len(notes) == 4, notes
        assert f"another solve into m is running (m.tmp-{running.pid})" in notes[0]
        assert "found (m.tmp-999999993); add --resume" in notes[1]
        assert "cannot be resumed (m.tmp-999999992)" in notes[2]
        assert "never moved to m (m.tmp-999999991)" in notes[3]
    finally:
        running.kill()
        running.wait()
    for pid in (999999992, 999999993, running.pid):
        shutil.rmtree(tmp_path / f"m.tmp-{pid}")
    assert main([*args, "--overwrite", "--resume", "--progress"]) == 0
    err = capsys.readouterr().err
    assert "nothing to resume" in err and "never moved to m (m.tmp-999999991)" in err


def test_output_where_no_file_can_be_made(data, tmp_path, capsys):
    """--out under a file, or on a file system that takes no files (/proc), is named
    before any work (they had said "File exists" and "out of disk space ... 0.00 GiB
    free"); a parent directory that does not exist yet is made."""
    d, f = data
    (tmp_path / "afile").write_text("")
    model = str(tmp_path / "m")
    solve = ["solve", str(d / "X.npy"), str(d / "Y.npy"), "--alphas", "1", "-q"]
    assert main([*solve, "--out", model]) == 0
    X = str(d / "Xt.npy")
    runs = {
        "the model": ["solve", *solve[1:], "--out"],
        "the predictions": ["predict", model, X, "--out"],
        "the report": ["evaluate", model, X, str(d / "Yt.npy"), "--out"],
    }
    for what, args in runs.items():
        name = "p.npy" if what == "the predictions" else "x"
        assert main([*args, str(tmp_path / "afile" / "sub" / name)]) == 2
        line = one_error_line(capsys.readouterr().err)
        assert f"cannot write {what}" in line and "afile is a file, not a directory" in line
        if Path("/proc/self").is_dir():  # Linux: no file can be created in /proc
            assert main([*args, f"/proc/{name}"]) == 2
            assert f"cannot write {what} in /proc" in one_error_line(capsys.readouterr().err)
    (tmp_path / "broken").symlink_to(tmp_path / "nowhere")
    assert main([*runs["the model"], str(tmp_path / "broken" / "m")]) == 2
    assert "broken is a broken symbolic link" in one_error_line(capsys.readouterr().err)
    (tmp_path / "broken").unlink()
    (tmp_path / "d.npy").mkdir()  # (with --overwrite it had failed after the work)
    assert main([*runs["the predictions"], str(tmp_path / "d.npy"), "--overwrite"]) == 2
    assert "d.npy is a directory" in one_error_line(capsys.readouterr().err)
    (tmp_path / "d.npy").rmdir()
    assert main(["predict", model, X, "--out", str(tmp_path / "new" / "dir" / "p.npy"), "-q"]) == 0
    assert np.load(tmp_path / "new" / "dir" / "p.npy").shape == (20, 6, 8)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "m", "new"]


def test_float16_x_integer_y_and_disk_full(data, tmp_path, capsys, monkeypatch):
    d, f = data
    x16 = f["X"].astype(np.float16)
    yint = np.round(f["Y"] * 10).astype(np.int32)
    np.save(tmp_path / "x16.npy", x16)
    np.save(tmp_path / "yint.npy", yint)
    args = ["solve", str(tmp_path / "x16.npy"), str(tmp_path / "yint.npy"), "--alphas", *ALPHAS]
    assert main([*args, "--out", str(tmp_path / "m"), "-q"]) == 0
    ref = FastRidgeCV(alphas=[float(a) for a in ALPHAS], alpha_per_target=True).fit(
        x16.astype(np.float32), yint.astype(np.float64)
    )
    est = load(tmp_path / "m")
    assert est.coef_.dtype == np.float32  # float16 X computes and stores in float32
    assert_allclose(est.coef_, ref.coef_, rtol=1e-4, atol=1e-4)
    # not enough disk space for coef.npy: refused before any work, nothing left behind
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 1000, 1000))
    assert main([*args, "--out", str(tmp_path / "m2")]) == 2
    assert "out of disk space" in one_error_line(capsys.readouterr().err)
    assert not list(tmp_path.glob("m2*"))


def _bad(tmp_path, f):
    rng = np.random.default_rng(1)
    np.save(tmp_path / "obj.npy", np.array([1, "a", None], dtype=object), allow_pickle=True)
    with open(tmp_path / "pickled.npy", "wb") as fh:
        pickle.dump(f["X"], fh)
    np.save(tmp_path / "short.npy", rng.standard_normal((59, 4)))
    np.save(tmp_path / "cplx.npy", np.zeros((60, 4), np.complex128))
    np.save(tmp_path / "x1d.npy", np.zeros(60))
    xnan = f["X"].copy()
    xnan[5, 3] = np.nan
    np.save(tmp_path / "xnan.npy", xnan)
    np.save(tmp_path / "g59.npy", np.arange(59) % 4)
    np.save(tmp_path / "g1.npy", np.zeros(60, np.int64))
    np.save(tmp_path / "gnan.npy", np.where(np.arange(60) == 7, np.nan, np.arange(60) % 4))
    np.save(tmp_path / "g4.npy", np.arange(60) % 4)
    np.save(tmp_path / "wneg.npy", np.where(np.arange(60) == 3, -1.0, 1.0))
    np.save(tmp_path / "w2d.npy", np.ones((60, 2)))
    np.save(tmp_path / "wnan.npy", np.where(np.arange(60) == 3, np.nan, 1.0))
    np.save(tmp_path / "wgroup0.npy", np.where(np.arange(60) % 4 == 2, 0.0, 1.0))
    np.save(tmp_path / "xwide.npy", rng.standard_normal((10, f["X"].shape[1] + 1)))
    ybig = f["Y"].copy()
    ybig[3, 0, 1] = 1e39  # finite in float64, inf in float32
    np.save(tmp_path / "ybig.npy", ybig)
    np.save(tmp_path / "xhuge.npy", (f["X"] * 1e20).astype(np.float32))
    np.save(tmp_path / "wtiny.npy", np.full(60, 1e-60))  # (0 in float32: had made NaN)
    np.save(tmp_path / "ytiny.npy", f["Y"] * 1e-25)  # (squares underflow in float32)
    np.save(tmp_path / "whuge.npy", np.full(60, 1e80))  # (sqrt(w) X beyond float32)


@pytest.mark.parametrize(
    "x, y, extra, message",
    [
        ("X", "missing", [], "Y file not found"),
        ("X", "obj", [], "pickled/object array"),
        ("pickled", "Y", [], "is a Python pickle"),
        ("X", "short", [], "inconsistent numbers of samples"),
        ("X", "cplx", [], "complex"),
        ("x1d", "Y", [], "X must be 2-D"),
        ("xnan", "Y", [], "X contains NaN"),
        ("X", "Y", ["--alphas", "1", "-1"], "alphas[1] == -1.0, must be > 0"),
        ("X", "Y", ["--alphas", "0"], "must be > 0"),
        # (argparse took these for options: "expected at least one argument")
        ("X", "Y", ["--alphas", "-1e3"], "--alphas: alphas == -1000.0, must be > 0"),
        ("X", "Y", ["--alphas", "1", "-inf"], "alphas[1] == -inf, must be > 0"),
        ("X", "Y", ["--memory-budget", "-1GB"], "--memory-budget must be a finite size of"),
        ("X", "Y", ["--alphas", "1:2"], "nor a range START:STOP:NUM"),
        ("X", "Y", ["--alphas", "0:10:3"], "needs START and STOP > 0"),
        ("X", "Y", ["--alphas", "1:10:1"], "needs NUM >= 2"),
        ("X", "Y", ["--alphas", "1:10:x"], "an integer NUM"),
        ("X", "Y", ["--cv", "one"], "--cv must be"),
        ("X", "Y", ["--target-shape", "5", "8"], "--target-shape 5 8 has 40 targets"),
        (
            "X",
            "ybig",
            ["--dtype", "float32"],
            "Input y overflows float32 (first at sample 3, target (0, 1))",
        ),
        ("xhuge", "Y", [], "X's scale is beyond float32"),
        (
            "X",
            "Y",
            ["--sample-weight", "whuge.npy", "--dtype", "float32"],
            "X's scale with sample weights up to 1e+80 is beyond float32",
        ),
        ("X", "Y", ["--sample-weight", "wtiny.npy", "--dtype", "float32"], "below float32's range"),
        ("X", "ytiny", ["--dtype", "float32"], "Input y is too small for float32: target (0, 0)"),
        ("X", "Y", ["--target-chunk", "0"], "--target-chunk must be >= 1"),
        ("X", "Y", ["--x-test", "X.npy"], "--x-test and --y-test go together"),
        ("X", "Y", ["--resume", "--shared-alpha"], "--resume needs per-target alphas"),
        ("X", "Y", ["--cv", "logo"], "--cv logo (leave one group out) needs --groups"),
        ("X", "Y", ["--groups", "g4.npy", "--cv", "loo"], "--cv loo takes no --groups"),
        ("X", "Y", ["--groups", "g4.npy", "--cv", "gcv"], "--cv gcv takes no --groups"),
        ("X", "Y", ["--groups", "g4.npy", "--cv", "5"], "GroupKFold needs K <= the 4 distinct"),
        ("X", "Y", ["--groups", "g59.npy"], "--groups must have shape (60,)"),
        ("X", "Y", ["--groups", "g1.npy"], "--groups has 1 distinct label(s)"),
        ("X", "Y", ["--groups", "gnan.npy"], "--groups contains NaN"),
        ("X", "Y", ["--groups", "pickled.npy"], "is a Python pickle"),
        ("X", "Y", ["--groups", "obj.npy"], "store integer or string labels"),
        ("X", "Y", ["--cv", "61"], "--cv 61: K-fold needs K <= the 60 samples"),
        ("X", "Y", ["--alphas", "1:100:3", "10"], "--alphas: 10 is given more than once"),
        ("X", "Y", ["--alphas", "1e1:1e3:100000000"], "NUM = 100000000 is more than 1000"),
        ("X", "Y", ["--groups", "missing.npy"], "--groups file not found"),
        ("X", "Y", ["--sample-weight", "wneg.npy"], "--sample-weight: Negative values"),
        ("X", "Y", ["--sample-weight", "w2d.npy"], "--sample-weight must be 1-D"),
        ("X", "Y", ["--sample-weight", "wnan.npy"], "--sample-weight: sample_weight contains NaN"),
        ("X", "Y", ["--sample-weight", "g59.npy"], "sample_weight.shape == (59,)"),
        (
            "X",
            "Y",
            ["--groups", "g4.npy", "--sample-weight", "wgroup0.npy"],
            "cv split 2: all 15 test samples have sample_weight 0",
        ),
        # test files checked before the solve (they were opened only, and a bad one
        # failed after it, leaving a staging directory that could not be resumed)
        ("X", "Y", ["--x-test", "xwide.npy", "--y-test", "Y.npy"], "X test must have shape"),
        ("X", "Y", ["--x-test", "X.npy", "--y-test", "short.npy"], "Y test has shape (59, 4)"),
    ],
)
def test_bad_inputs_one_line_exit_2(data, tmp_path, capsys, x, y, extra, message):
    d, f = data
    _bad(tmp_path, f)

    def path(name):
        p = tmp_path / f"{name}.npy"
        return p if p.exists() or name == "missing" else d / f"{name}.npy"

    args = ["solve", path(x), path(y), "--out", tmp_path / "m"]
    if "--alphas" not in extra:
        args += ["--alphas", "1", "10"]
    args += [str(path(e[:-4])) if e.endswith(".npy") else e for e in extra]
    assert main(list(map(str, args))) == 2
    assert message in one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "m").exists()
    assert not list(tmp_path.glob("m.tmp-*"))


def test_nan_in_y_through_entry_point(data, tmp_path):
    d, f = data
    y = f["Y"].copy()
    y[7, 2, 3] = np.nan
    np.save(tmp_path / "ynan.npy", y)
    r = cli("solve", d / "X.npy", tmp_path / "ynan.npy", "--alphas", "1", "--out", tmp_path / "m")
    assert r.returncode == 2
    assert "contains NaN" in one_error_line(r.stderr)
    assert not (tmp_path / "m").exists() and not list(tmp_path.glob("m.tmp-*"))


def test_nan_in_a_later_chunk_keeps_the_finished_ones_until_the_input_is_fixed(
    data, tmp_path, capsys
):
    """A NaN found in a later target chunk is the input's fault: the finished chunks
    are kept with advice to fix the input first (it had said only "rerun with
    --resume", which would stop at the same NaN)."""
    d, f = data
    y = f["Y"].reshape(60, 48).copy()
    y[5, 40] = np.nan  # (chunks of 8 targets: 0-39 finish first)
    np.save(tmp_path / "ynan.npy", y.reshape(f["Y"].shape))
    args = ["solve", d / "X.npy", tmp_path / "ynan.npy", "--alphas", *ALPHAS,
            "--target-chunk", "8", "--out", tmp_path / "m", "-q"]  # fmt: skip
    assert main(list(map(str, args))) == 2
    err = capsys.readouterr().err
    assert "contains NaN" in err
    assert "once the input is fixed, rerun with --resume" in err, err
    assert len(list(tmp_path.glob("m.tmp-*"))) == 1 and not (tmp_path / "m").exists()


def test_solve_publishes_the_model_when_its_test_evaluation_fails(data, tmp_path, capsys):
    """A NaN in Y test is found as it is read, after the solve: the model is written
    (without a test report) and the error names it, where the complete solve had
    stayed in a staging directory that --resume could not use."""
    d, f = data
    y = f["Y"].copy()
    y[3, 0, 0] = np.nan
    np.save(tmp_path / "ynan.npy", y)
    args = ["solve", d / "X.npy", d / "Y.npy", "--alphas", "1", "10", "--out", tmp_path / "m",
            "--x-test", d / "X.npy", "--y-test", tmp_path / "ynan.npy", "--quiet"]  # fmt: skip
    assert main(list(map(str, args))) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "Y test contains NaN" in line and "without a test report" in line
    assert (tmp_path / "m" / "model.json").exists()
    assert not (tmp_path / "m" / "test_report").exists()
    assert not list(tmp_path.glob("m.tmp-*"))
    model = load(tmp_path / "m")
    assert model.predict(f["X"]).shape == f["Y"].shape


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="one core: no thread count to limit")
@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_threads_limit_the_blas_of_predict_and_evaluate(data, tmp_path, monkeypatch, command):
    """--threads caps the BLAS pools and torch during predict and evaluate, as in solve
    (it had set torch's threads only: the GEMMs in scipy's BLAS, where `cpu_blas()`
    sends them on some CPUs, ran on every core)."""
    import torch
    from threadpoolctl import threadpool_info

    import fastridge._backend as backend

    d, _ = data
    model = tmp_path / "model"
    assert main(list(map(str, ["solve", d / "X.npy", d / "Y.npy", "--alphas", *ALPHAS,
                               "--out", model, "-q"]))) == 0  # fmt: skip
    seen, mm = [], backend.mm

    def counting_mm(*args, **kwargs):
        blas = [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]
        seen.append(max([torch.get_num_threads(), *blas]))
        return mm(*args, **kwargs)

    monkeypatch.setattr(backend, "mm", counting_mm)
    argv = [command, model, d / "Xt.npy"]
    argv += [d / "Yt.npy", "--no-plots"] if command == "evaluate" else ["--out", tmp_path / "p.npy"]
    assert main(list(map(str, [*argv, "--threads", "1", "-q"]))) == 0
    assert seen and set(seen) == {1}, seen


def test_predict_evaluate_errors_and_missing_matplotlib(data, tmp_path, capsys, monkeypatch):
    d, f = data
    model = tmp_path / "model"
    assert (
        main(
            [
                "solve",
                str(d / "X.npy"),
                str(d / "Y.npy"),
                "--alphas",
                *ALPHAS,
                "--out",
                str(model),
                "-q",
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert main(["predict", str(model), str(d / "Y.npy"), "--out", str(tmp_path / "p.npy")]) == 2
    assert "must have shape (n_samples, 30)" in one_error_line(capsys.readouterr().err)
    assert (
        main(
            ["predict", str(tmp_path / "nope"), str(d / "Xt.npy"), "--out", str(tmp_path / "p.npy")]
        )
        == 2
    )
    assert "model directory not found" in one_error_line(capsys.readouterr().err)
    assert main(["evaluate", str(model), str(d / "Xt.npy"), str(d / "Y.npy")]) == 2
    assert "Y test has shape" in one_error_line(capsys.readouterr().err)
    # without matplotlib: one notice, the JSON and arrays are still written
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    report = tmp_path / "rep"
    assert (
        main(["evaluate", str(model), str(d / "Xt.npy"), str(d / "Yt.npy"), "--out", str(report)])
        == 0
    )
    err = capsys.readouterr().err
    assert err.count("matplotlib is not installed") == 1
    assert (report / "report.json").exists() and not list(report.glob("*.png"))


@pytest.mark.parametrize("command", ["demo", "solve", "predict", "evaluate", "info"])
def test_help_has_examples(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out and f"fastridge {command}" in out


def test_usage_error_is_one_line(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["solve", "X.npy"])
    assert exc.value.code == 2
    assert "required" in one_error_line(capsys.readouterr().err)


@pytest.mark.parametrize(
    "argv",
    [["solve", "X.npy", "Y.npy", "--out", "m", "--threads", "0"],
     ["predict", "m", "X.npy", "--threads", "-1"],
     ["evaluate", "m", "X.npy", "Y.npy", "--threads", "0"],
     ["solve", "X.npy", "Y.npy", "--out", "m", "--target-shape", "-6", "-8"]],
)  # fmt: skip
def test_counts_must_be_positive(capsys, argv):
    """--threads 0 had reached torch as an internal error (exit 1); evaluate ignored it.
    --target-shape -6 -8 had been refused as having 48 targets where Y has 48."""
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    option = next(a for a in argv if a.startswith("--") and a != "--out")
    assert f"argument {option}: must be >= 1" in one_error_line(capsys.readouterr().err)


def test_info(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    for key in ("fastridge:", "torch:", "numpy:", "scikit-learn:", "torch parallel info:"):
        assert key in out, out


@pytest.mark.parametrize(
    "argv, extra",
    [(["info", "extra"], "extra"),
     (["info", "-q"], "-q"),  # (had been accepted, and printed everything)
     (["predict", "m", "X.npy", "--out", "p.npy", "--bogus"], "--bogus"),
     (["solve", "X.npy", "Y.npy", "Z.npy", "--out", "m", "--alphas", "1"], "Z.npy")],
)  # fmt: skip
def test_unknown_arguments_point_to_the_command_help(capsys, argv, extra):
    """An unrecognized argument of a command is named with that command's help (it had
    pointed to 'fastridge --help', which does not list the command's options)."""
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    line = one_error_line(capsys.readouterr().err)
    assert f"unrecognized arguments: {extra}" in line
    assert f"see 'fastridge {argv[0]} --help'" in line


def _wait_for(pred, timeout, proc=None):
    t = time.monotonic()
    while time.monotonic() - t < timeout:
        if pred():
            return True
        if proc is not None and proc.poll() is not None:
            return pred()
        time.sleep(0.005)
    return False


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    """80 chunks of 250 targets: long enough (seconds) to be killed half-way."""
    d = tmp_path_factory.mktemp("big")
    rng = np.random.default_rng(1)
    X = rng.standard_normal((200, 300))
    Y = X @ rng.standard_normal((300, 20000)) * 0.05 + rng.standard_normal((200, 20000))
    np.save(d / "X.npy", X)
    np.save(d / "Y.npy", Y)
    return d


def test_resume_after_fixing_y_past_the_finished_targets(data, tmp_path, capsys, monkeypatch):
    """Y's finished targets are checked by their checksums, so a Y fixed past them
    (e.g. the NaN that stopped the run) resumes, to the fresh solve's results; a
    change among them is refused. (Y's fingerprint, a hash of the whole of this
    small file, differs in both.)"""
    import fastridge._io as _io

    d, f = data
    solve = ["solve", d / "X.npy", "--alphas", *ALPHAS, "--target-chunk", "8", "-q"]
    checksum, calls = _io.target_checksum, []

    def interrupted(*a):  # Ctrl-C as the third chunk is recorded
        calls.append(a)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return checksum(*a)

    monkeypatch.setattr(_io, "target_checksum", interrupted)
    model = tmp_path / "model"
    assert main(list(map(str, [*solve[:2], d / "Y.npy", *solve[2:], "--out", model]))) == 130
    monkeypatch.setattr(_io, "target_checksum", checksum)
    assert "rerun with --resume" in capsys.readouterr().err
    for target, resumes in ((0, False), (47, True)):  # (finished: 0-15; 47 is not)
        y = f["Y"].reshape(60, 48).copy()
        y[5, target] += 1.0
        np.save(tmp_path / f"Y{target}.npy", y.reshape(f["Y"].shape))
        args = [*solve[:2], tmp_path / f"Y{target}.npy", *solve[2:]]
        code = main(list(map(str, [*args, "--out", model, "--resume"])))
        if not resumes:
            assert code == 2
            assert "Y's targets 0:8 differ" in one_error_line(capsys.readouterr().err)
            continue
        assert code == 0
        assert main(list(map(str, [*args, "--out", tmp_path / "fresh"]))) == 0
    assert json.loads((model / "model.json").read_text())["resume"]["targets_skipped"] == 16
    for name in ("coef", "intercept", "alpha", "alpha_scores"):
        fresh = np.load(tmp_path / "fresh" / f"{name}.npy")
        assert_array_equal(np.load(model / f"{name}.npy"), fresh, name)


@pytest.mark.parametrize("delay", [0.2, 0.6, 0.9, 1.1])
def test_ctrl_c_while_torch_loads_ends_in_one_line(delay):
    """The command imports torch (~1-2 s) inside its Ctrl-C handling
    (`fastridge.__main__.run`, `import fastridge` being light): a Ctrl-C then had
    ended in a KeyboardInterrupt traceback, exit -2 (a CLI fuzz found it); later, a
    handled one could still end the interpreter by SIGINT at exit (-2, 1 in 4 runs
    interrupted 0.7-1.3 s in)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "fastridge", "demo", "--quick", "--threads", "1"],
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and err.splitlines()[-1] == "fastridge: interrupted", err


def test_kill_then_resume_equals_uninterrupted(big, tmp_path, capsys):
    d = big
    model = tmp_path / "model"
    common = [
        "solve",
        d / "X.npy",
        d / "Y.npy",
        "--alphas",
        *ALPHAS,
        "--target-chunk",
        "250",
        "--threads",
        "1",
    ]
    args = [*common, "--out", model]
    proc = subprocess.Popen(
        [sys.executable, "-m", "fastridge", *map(str, args)],
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def manifest():
        for m in tmp_path.glob("model.tmp-*/manifest.json"):
            try:
                return json.loads(m.read_text())
            except (OSError, ValueError):
                return None  # replaced between glob and read
        return None

    try:
        started = _wait_for(lambda: (manifest() or {}).get("done"), 240, proc)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert started, "the solve finished no chunk"
    done = sum(b - a for a, b in manifest()["done"])
    assert 0 < done < 20000, f"killed too late ({done} targets done): test problem too small"
    # a crash never leaves a finished-looking model directory
    assert not model.exists()
    staging = list(tmp_path.glob("model.tmp-*"))
    assert len(staging) == 1 and not (staging[0] / "model.json").exists()

    # resuming with different inputs is refused and keeps the partial run
    y2 = tmp_path / "Y2.npy"
    y = np.load(d / "Y.npy")
    y[0, 0] += 1.0
    np.save(y2, y)
    bad = [str(a) for a in args]
    bad[2] = str(y2)
    assert main(bad + ["--resume"]) == 2
    assert "cannot resume: Y's targets 0:250 differ" in one_error_line(capsys.readouterr().err)
    assert list(tmp_path.glob("model.tmp-*"))
    # so is resuming with groups the interrupted run did not have
    np.save(tmp_path / "groups.npy", np.arange(y.shape[0]) % 3)
    grouped = [str(a) for a in args] + ["--resume", "--groups", str(tmp_path / "groups.npy")]
    assert main(grouped) == 2
    assert "cannot resume: groups differs" in one_error_line(capsys.readouterr().err)
    assert list(tmp_path.glob("model.tmp-*"))
    # so is a change the fingerprint's samples of Y miss, in a finished chunk: the
    # chunks' checksums catch it (it had been resumed, old results kept for it)
    from fastridge import _io

    y = np.load(d / "Y.npy")
    y[100, 10] += 1.0  # (16 MB into the 32 MB file, between two samples)
    np.save(y2, y)
    assert _io.same_inputs(_io.fingerprint(y2, full=False), _io.fingerprint(d / "Y.npy", False))
    assert main(bad + ["--resume"]) == 2
    assert "cannot resume: Y's targets 0:250 differ" in one_error_line(capsys.readouterr().err)
    assert list(tmp_path.glob("model.tmp-*"))
    # a write killed half-way leaves a temporary file: never published
    (staging[0] / ".manifest.json.tmp-1").write_text('{"do')

    r = cli(*args, "--resume")
    assert r.returncode == 0, r.stderr
    assert not list(model.glob(".*"))
    meta = json.loads((model / "model.json").read_text())
    assert meta["resume"]["targets_skipped"] >= done
    assert not list(tmp_path.glob("model.tmp-*"))

    ref = tmp_path / "ref"
    assert main([str(a) for a in common] + ["--out", str(ref), "-q"]) == 0
    for name in ("coef", "intercept", "alpha", "alpha_index", "best_score", "alpha_scores"):
        assert_array_equal(np.load(model / f"{name}.npy"), np.load(ref / f"{name}.npy"), name)


RSS_WRAPPER = """
import resource, subprocess, sys
r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)
print(r.stderr)
"""


def _peak_rss(*args):
    r = subprocess.run(
        [sys.executable, "-c", RSS_WRAPPER, sys.executable, "-m", "fastridge", *map(str, args)],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    code, peak = r.stdout.split("\n", 1)[0].split()
    assert code == "0", r.stdout
    return int(peak)


def test_peak_memory_is_bounded_by_chunks_not_y(tmp_path):
    """Y.npy is ~19x the chunk budget; peak RSS must not grow with Y (see docs/cli.md)."""
    rng = np.random.default_rng(2)
    n_samples, n_features, n_targets = 200, 50, 100_000
    np.save(tmp_path / "X.npy", rng.standard_normal((n_samples, n_features), dtype=np.float32))
    Y = np.lib.format.open_memmap(
        tmp_path / "Y.npy", mode="w+", dtype=np.float32, shape=(n_samples, n_targets)
    )
    for s in range(0, n_targets, 20_000):
        Y[:, s : s + 20_000] = rng.standard_normal((n_samples, 20_000), dtype=np.float32)
    Y.flush()
    del Y
    y_bytes = n_samples * n_targets * 4
    np.save(tmp_path / "Ysmall.npy", rng.standard_normal((n_samples, 10), dtype=np.float32))
    budget = 4 << 20
    base = _peak_rss(
        "solve",
        tmp_path / "X.npy",
        tmp_path / "Ysmall.npy",
        "--alphas",
        "1",
        "10",
        "--out",
        tmp_path / "m0",
        "--memory-budget",
        budget,
        "--threads",
        "1",  # one thread: torch's OpenMP crawls when other jobs share the 2 cores
    )
    peak = _peak_rss(
        "solve",
        tmp_path / "X.npy",
        tmp_path / "Y.npy",
        "--alphas",
        "1",
        "10",
        "--out",
        tmp_path / "m1",
        "--memory-budget",
        budget,
        "--threads",
        "1",  # one thread: torch's OpenMP crawls when other jobs share the 2 cores
    )
    # model: X as float64 and its centred copy + Gram/eigh work (n_samples^2) + ~8 chunk
    # budgets of temporaries + 20 bytes per target of per-target results + 16 MiB slack
    x_bytes = n_samples * n_features * 8
    bound = 4 * x_bytes + 6 * n_samples**2 * 8 + 8 * budget + 20 * n_targets + (16 << 20)
    print(
        f"baseline {base / 2**20:.0f} MiB, peak {peak / 2**20:.0f} MiB, "
        f"extra {(peak - base) / 2**20:.0f} MiB, bound {bound / 2**20:.0f} MiB, "
        f"Y {y_bytes / 2**20:.0f} MiB"
    )
    assert bound < 0.75 * y_bytes  # else the test could not tell Y held in memory
    assert peak - base < bound


def test_alpha_counts_sum_to_the_targets_with_a_repeated_alpha():
    """An alpha listed twice (possible through the Python API) has one entry, with
    both indices' counts: the summary never loses targets."""
    from fastridge._report import alpha_counts

    counts = alpha_counts(np.array([0, 1, 1, 2, 0]), [10.0, 10.0, 100.0])
    assert counts == {"10": 4, "100": 1}


def test_precision_warning_is_one_line(tmp_path, capsys):
    """A PrecisionWarning on the command line reads as the errors do, one line
    `fastridge: warning: ...` (Python's format had added a file and a source line)."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((68, 20)) @ rng.standard_normal((20, 52)) + 100
    Y = (X - 100) @ rng.standard_normal((52, 3)) / 10 + rng.standard_normal((68, 3))
    np.save(tmp_path / "X.npy", X.astype(np.float32))
    np.save(tmp_path / "Y.npy", Y.astype(np.float32))
    alpha = 1e-14 * np.linalg.norm(X - X.mean(0), 2) ** 2  # (float32 cannot carry it)
    args = ["solve", tmp_path / "X.npy", tmp_path / "Y.npy", "--alphas", alpha]
    assert main(list(map(str, [*args, "--out", tmp_path / "m", "-q"]))) == 0
    err = capsys.readouterr().err
    assert err.startswith("fastridge: warning: the coefficients, computed in float32"), err
    assert "solve with --dtype float64" in err  # (the CLI's words, not the library's)
    assert len(err.strip().splitlines()) == 1 and "cli.py" not in err


def test_predict_and_evaluate_past_the_models_range(tmp_path, capsys):
    """A float64 X test of values ~1e39 for a float32 model is refused (predict had
    written all-NaN output, exit 0). A Y test of values ~1e160, whose squares
    overflow, is scored like the same data scaled down (R^2 had been NaN and
    Pearson r 0); one of ~1e-160, whose residuals' squares relative to it
    overflow, leaves no finite R^2: evaluate says so in a warning (it had ended in
    an internal KeyError, exit 1, after publishing the report)."""
    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((40, 6)), rng.standard_normal((40, 3))
    arrays = {"X": X, "Y": Y, "Xt": X[:10], "Xbig": X[:10] * 1e39,
              "Yhuge": Y[:10] * 1e160, "Ytiny": Y[:10] * 1e-160}  # fmt: skip
    for name, arr in arrays.items():
        np.save(tmp_path / f"{name}.npy", arr)
    p = {name: str(tmp_path / f"{name}.npy") for name in arrays}
    model = str(tmp_path / "m")
    assert (
        main(["solve", p["X"], p["Y"], "--alphas", "1", "--dtype", "float32", "--out", model, "-q"])
        == 0
    )
    out = str(tmp_path / "pred.npy")
    assert main(["predict", model, p["Xbig"], "--out", out, "-q"]) == 2
    assert "beyond float32" in one_error_line(capsys.readouterr().err)
    assert not Path(out).exists()
    assert main(["predict", model, p["Xt"], "--out", out, "-q"]) == 0
    pred = np.load(out).astype(np.float64)
    report = tmp_path / "r"
    assert main(["evaluate", model, p["Xt"], p["Yhuge"], "--out", str(report), "--no-plots"]) == 0
    assert "warning" not in capsys.readouterr().err
    from sklearn.metrics import r2_score

    # the same scores as for the data scaled down by 1e160 (true and predicted alike)
    yt, scaled_pred = Y[:10], pred / 1e160
    r2 = r2_score(yt, scaled_pred, multioutput="raw_values")
    assert_allclose(np.load(report / "r2.npy"), r2, rtol=1e-12)
    r = [np.corrcoef(yt[:, j], pred[:, j])[0, 1] for j in range(3)]
    assert_allclose(np.load(report / "pearson.npy"), r, rtol=1e-12)
    assert np.all(np.abs(r) > 0.1)  # (not the 0 of an overflow)
    report = str(tmp_path / "r2")
    assert main(["evaluate", model, p["Xt"], p["Ytiny"], "--out", report, "--no-plots"]) == 0
    err = capsys.readouterr().err
    assert "fastridge: warning: no target has a finite R^2" in err and "Traceback" not in err


def test_evaluate_and_predict_refuse_what_they_would_get_wrong(data, tmp_path, capsys):
    """Found by a CLI review, each had exit 0 with a wrong or misleading result: a Y
    test of the model's number of targets in another shape was scored against the
    wrong targets; predictions past float32 were written as inf; a NaN in coef.npy
    gave NaN predictions; targets with R^2 of -inf were left out of the summary
    without a word; --out onto a model's own coef.npy or onto X test itself replaced
    it (with --overwrite); an empty --out wrote no report."""
    d, f = data
    model = str(tmp_path / "m")
    solve = ["solve", str(d / "X.npy"), str(d / "Y.npy"), "--alphas", *ALPHAS, "-q"]
    assert main([*solve, "--out", model]) == 0
    Xt = str(d / "Xt.npy")
    np.save(tmp_path / "Yt_T.npy", np.ascontiguousarray(f["Yt"].transpose(0, 2, 1)))
    np.save(tmp_path / "Yt_flat.npy", f["Yt"].reshape(20, 48))
    assert main(["evaluate", model, Xt, str(tmp_path / "Yt_T.npy"), "-q"]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "Y test has shape (20, 8, 6); the model's targets have shape (6, 8)" in line
    assert main(["evaluate", model, Xt, str(tmp_path / "Yt_flat.npy"), "-q"]) == 0
    # onto the model's own files or X test itself
    for out in (str(Path(model) / "coef.npy"), Xt):
        assert main(["predict", model, Xt, "--out", out, "--overwrite", "-q"]) == 2
        assert "choose" in one_error_line(capsys.readouterr().err)
    assert np.load(Path(model) / "coef.npy").shape == (48, 30)
    assert main(["evaluate", model, Xt, str(d / "Yt.npy"), "--out", ""]) == 2
    assert one_error_line(capsys.readouterr().err) == "fastridge: error: --out is empty"
    # float32: an X test within float32 whose predictions overflow it, then a NaN coef
    m32 = str(tmp_path / "m32")
    assert main([*solve, "--dtype", "float32", "--out", m32]) == 0
    big = f["Xt"] * (3e38 / np.abs(f["Xt"]).max())  # (within float32, its products not)
    np.save(tmp_path / "Xt_big.npy", big.astype(np.float32))
    out = tmp_path / "p.npy"
    assert main(["predict", m32, str(tmp_path / "Xt_big.npy"), "--out", str(out), "-q"]) == 2
    assert "predictions overflow float32 at test sample" in one_error_line(capsys.readouterr().err)
    assert not out.exists() and not list(tmp_path.glob(".p.npy.tmp-*"))
    coef = np.load(Path(m32) / "coef.npy")
    coef[5, 2] = np.nan
    np.save(Path(m32) / "coef.npy", coef)
    assert main(["predict", m32, Xt, "--out", str(out), "-q"]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "coef.npy holds NaN or infinity (test sample 0, target (0, 5))" in line
    # 47 of 48 targets far below their predictions' spread: R^2 of -inf, left out
    yt = f["Yt"].copy()
    yt.reshape(20, 48)[:, 1:] *= 1e-160
    np.save(tmp_path / "Yt_tiny.npy", yt)
    assert main(["evaluate", model, Xt, str(tmp_path / "Yt_tiny.npy"), "-q"]) == 0
    err = capsys.readouterr().err
    assert "warning: 47 of 48 targets have no finite R^2" in err


def test_group_cosine_is_scale_free():
    """Per-group cosine similarity of targets of ~1e155 or ~1e-160 (squares past
    float64's range) equals that of the same data at unit scale (it read 0)."""
    from fastridge._report import group_metrics

    rng = np.random.default_rng(0)
    true = rng.standard_normal((25, 12))
    pred = true + 0.3 * rng.standard_normal((25, 12))
    _, cos = group_metrics(pred, true, 4)
    expected = [
        np.mean([p @ t / np.linalg.norm(p) / np.linalg.norm(t) for p, t in zip(
            pred[:, g * 4 : g * 4 + 4], true[:, g * 4 : g * 4 + 4], strict=True)])
        for g in range(3)
    ]  # fmt: skip
    assert_allclose(cos, expected, rtol=1e-13)
    for scale in (1e155, 1e-160):
        assert_allclose(group_metrics(pred * scale, true * scale, 4)[1], cos, rtol=1e-13)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda m: (m / "model.json").write_text("[]"), "is not a fastridge model description"),
        (lambda m: (m / "model.json").write_text('{"format": "fastridge-model"}'), "damaged (no"),
        (lambda m: (m / "model.json").write_text("{"), "model.json cannot be read"),
        (lambda m: np.save(m / "intercept.npy", np.zeros(5)), "intercept.npy has shape (5,)"),
        (lambda m: np.save(m / "alpha_index.npy", np.full(48, 7)), "values outside 0..2"),
        (lambda m: (m / "coef.npy").write_bytes(b"\x93NUMPY\x01\x00garbage"), "coef.npy cannot"),
    ],
)
def test_damaged_model_files_are_named(data, tmp_path, capsys, damage, message):
    """A damaged model directory is named, one line, exit 2 (a model.json list, a
    missing key, a wrong-length intercept, an alpha_index out of range had ended
    as internal errors or numpy's words)."""
    d, f = data
    model = tmp_path / "m"
    solve = ["solve", str(d / "X.npy"), str(d / "Y.npy"), "--alphas", *ALPHAS, "-q"]
    assert main([*solve, "--out", str(model)]) == 0
    damage(model)
    assert main(["predict", str(model), str(d / "Xt.npy"), "--out", str(tmp_path / "p.npy")]) == 2
    assert message in one_error_line(capsys.readouterr().err)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--memory-budget", "inf"], "--memory-budget must be a finite size of at least 1 byte"),
        (["--device", "meta"], "device 'meta' is not supported"),
        (["--out", ""], "--out is empty"),
    ],
)
def test_more_bad_options_one_line(data, tmp_path, capsys, extra, message):
    d, f = data
    args = ["solve", str(d / "X.npy"), str(d / "Y.npy"), "--alphas", "1"]
    if "--out" not in extra:
        args += ["--out", str(tmp_path / "m")]
    assert main([*args, *extra]) == 2
    assert message in one_error_line(capsys.readouterr().err)
    assert not list(tmp_path.iterdir())


def test_damaged_header_is_not_called_a_pickle(data, tmp_path, capsys):
    d, f = data
    raw = (d / "X.npy").read_bytes()
    (tmp_path / "Xbad.npy").write_bytes(raw[:10] + b"{garbage" + raw[18:])
    args = ["solve", str(tmp_path / "Xbad.npy"), str(d / "Y.npy"), "--alphas", "1"]
    assert main([*args, "--out", str(tmp_path / "m")]) == 2
    assert "its .npy header is damaged" in one_error_line(capsys.readouterr().err)


def test_resume_finds_its_own_staging_only(data, tmp_path, capsys):
    """A --out name with glob characters resumes its own staging directory and no
    other model's (an unescaped glob had missed "run[1].tmp-*" and matched
    "run1.tmp-*" for "run[12]"); a staging directory missing coef.npy is refused by
    name (an OS error plus a traceback)."""
    d, f = data
    Y = f["Y"].copy()
    Y[7, 3, 2] = np.nan  # stops the solve in its third chunk of 10 targets
    np.save(tmp_path / "Ybad.npy", Y)
    base = ["solve", str(d / "X.npy"), "--alphas", *ALPHAS, "--target-chunk", "10"]
    for name in ("run[1]", "run1"):
        assert main([base[0], base[1], str(tmp_path / "Ybad.npy"), *base[2:],
                     "--out", str(tmp_path / name), "-q"]) == 2  # fmt: skip
    capsys.readouterr()
    good = [base[0], base[1], str(d / "Y.npy"), *base[2:], "--resume", "--progress"]
    assert main([*good, "--out", str(tmp_path / "run[12]")]) == 0
    assert "nothing to resume" in capsys.readouterr().err
    assert main([*good, "--out", str(tmp_path / "run[1]")]) == 0
    assert "resuming run[1].tmp-" in capsys.readouterr().err
    staging = list(tmp_path.glob("run1.tmp-*"))
    assert len(staging) == 1
    (staging[0] / "coef.npy").unlink()
    assert main([*good, "--out", str(tmp_path / "run1")]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "cannot resume:" in line and "coef.npy is missing or damaged" in line
    assert staging[0].exists()  # left as it was
