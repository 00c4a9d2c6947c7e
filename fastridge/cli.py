"""The `fastridge` command line: a thin adapter over `fastridge.ridge_cv`.

Commands: demo, solve, predict, evaluate, info (``fastridge COMMAND --help``).
User errors print one line ``fastridge: error: ...`` and exit with code 2
(a traceback only with --debug).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from . import _io
from ._io import UserError

EXIT_USAGE = 2
EXIT_INTERNAL = 1
EXIT_INTERRUPTED = 130


# -- argument parsing ---------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit code 2) like every other error,
    and a value like -1e3, -inf or -1GB is a value to check, not an unknown option
    (argparse's own test takes -1 and -0.5 only: "--alphas -1e3" said "expected at
    least one argument" instead of naming the bad alpha)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # (no option of ours starts with a digit, '.', "inf" or "nan")
        self._negative_number_matcher = re.compile(r"^-(\d|\.\d|inf|nan)", re.IGNORECASE)

    def error(self, message):
        print(f"fastridge: error: {message} (see '{self.prog} --help')", file=sys.stderr)
        sys.exit(EXIT_USAGE)


def _common(p, reports: bool = True):
    """The output options; `reports` False for a command whose output is its only
    purpose (info: -q had been accepted and printed everything anyway)."""
    g = p.add_argument_group("output")
    if reports:
        g.add_argument(
            "-q", "--quiet", action="store_true", help="print nothing but warnings and errors"
        )
        g.add_argument(
            "--progress",
            action="store_true",
            help="report progress on stderr even when it is not a terminal",
        )
    g.add_argument("--debug", action="store_true", help="show tracebacks of errors")


def _add_chunking(p, default_budget: str = "1 GiB"):
    p.add_argument(
        "--target-chunk",
        default="auto",
        help="targets per chunk (default: auto, from --memory-budget)",
    )
    p.add_argument(
        "--memory-budget",
        default=None,
        help=f"bytes one target chunk may use, e.g. 2GB, 512MiB (default: {default_budget})",
    )


# what one thread setting covers: the BLAS pools (threadpoolctl) and torch's own threads
THREADS_HELP = "CPU threads of the BLAS and of torch (default: their own, one per core)"


def _add_compute(p):
    p.add_argument(
        "--device",
        default="auto",
        help="auto (CUDA if available, else CPU; default), cpu, cuda or cuda:K",
    )
    p.add_argument(
        "--dtype",
        choices=("float32", "float64"),
        default=None,
        help="compute and storage dtype (default: float32 for float16/32 X, else float64)",
    )
    p.add_argument("--threads", type=_positive_int, default=None, help=THREADS_HELP)


SOLVE_EPILOG = """\
examples:
  fastridge solve X.npy Y.npy --alphas 1e4 2e4 4e4 --out model/
  fastridge solve X.npy Y_flat.npy --alphas 1e4 2e4 4e4 --target-shape 226 768 \\
      --out model/ --x-test Xte.npy --y-test Yte.npy --memory-budget 2GB
  fastridge solve X.npy Y.npy --alphas 1e4 2e4 4e4 --out model/ --resume   # after a crash
  fastridge solve X.npy Y.npy --alphas 1e4 2e4 4e4 --out model/ --groups runs.npy
      # leave one run out (--cv 4 --groups runs.npy: GroupKFold(4))
  fastridge solve X.npy Y.npy --alphas 1e1:1e6:11 --out model/ --cv 5   # 11 log-spaced alphas

MODEL_DIR holds coef.npy (n_targets, n_features), intercept.npy, alpha.npy,
alpha_index.npy, best_score.npy, alpha_scores.npy (n_targets, n_alphas: every
alpha's CV score) and model.json; with --solution dual,
dual_coef.npy (n_targets, n_samples), x_fit.npy (a copy of X) and x_mean.npy
replace coef.npy (smaller and faster when n_features > n_samples; predict and
evaluate work the same). It is written in MODEL_DIR.tmp-<pid>
and renamed into place only when complete; --resume continues a killed solve from
its last finished target chunk.
"""

PREDICT_EPILOG = """\
examples:
  fastridge predict model/ Xtest.npy --out Yhat.npy
  fastridge predict model/ Xtest.npy --out Yhat.npy --memory-budget 512MiB

Yhat.npy has shape (n_test_samples, *target_shape) and the model's dtype; it is
written chunk by chunk to a temporary file, renamed to --out when complete.
"""

EVALUATE_EPILOG = """\
examples:
  fastridge evaluate model/ Xtest.npy Ytest.npy --out report/

Writes report.json (summaries, per-group curves, alpha counts), r2.npy and
pearson.npy (per target), group_mse.npy and group_cosine.npy (target shapes of 2+
dims: groups = the leading target axis) and PNG plots when matplotlib is installed.
"""

DEMO_EPILOG = """\
examples:
  fastridge demo              # 173,568 targets (226 x 768), ~25 s on 2 cores
  fastridge demo --quick      # a few seconds
  fastridge demo --n-samples 2000 --n-features 4000 --seed 1
"""

INFO_EPILOG = """\
examples:
  fastridge info
"""


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="fastridge",
        description="Ridge regression with cross-validated alphas for very many targets.",
        epilog="Run 'fastridge COMMAND --help' for the options and examples of a command.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from . import __version__

    parser.add_argument("--version", action="version", version=f"fastridge {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    fmt = argparse.RawDescriptionHelpFormatter

    p = sub.add_parser(
        "demo",
        help="solve a synthetic problem shaped like the headline one and check it",
        description="Build a synthetic problem with 226 x 768 targets, solve it with "
        "per-target alphas {1e4, 2e4, 4e4}, evaluate it on held-out samples and compare a "
        "random subset of targets with scikit-learn's RidgeCV.",
        epilog=DEMO_EPILOG,
        formatter_class=fmt,
    )
    p.add_argument("--seed", type=_seed, default=0)
    p.add_argument("--n-samples", type=int, default=None, help="default 1000 (--quick: 60)")
    p.add_argument("--n-features", type=int, default=None, help="default 2000 (--quick: 120)")
    p.add_argument(
        "--quick", action="store_true", help="a tiny problem (target shape 8 x 16), seconds"
    )
    p.add_argument("--threads", type=_positive_int, default=None, help=THREADS_HELP)
    _common(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser(
        "solve",
        help="fit ridge with cross-validated alphas and write a model directory",
        description="Fit ridge regression of every target of Y on X with cross-validated "
        "alphas, streaming the targets in chunks, and write a model directory.",
        epilog=SOLVE_EPILOG,
        formatter_class=fmt,
    )
    p.add_argument("X", help="features, .npy of shape (n_samples, n_features)")
    p.add_argument("Y", help="targets, .npy of shape (n_samples, *target_shape)")
    p.add_argument(
        "--alphas",
        nargs="+",
        required=True,
        metavar="ALPHA",
        help="positive penalties; START:STOP:NUM adds NUM log-spaced ones (1e1:1e6:11)",
    )
    p.add_argument("--out", required=True, metavar="MODEL_DIR", help="model directory to write")
    g = p.add_mutually_exclusive_group()
    g.add_argument(
        "--alpha-per-target",
        dest="alpha_per_target",
        action="store_true",
        default=True,
        help="choose an alpha for each target (default)",
    )
    g.add_argument(
        "--shared-alpha",
        dest="alpha_per_target",
        action="store_false",
        help="one alpha for all targets (best mean score)",
    )
    p.add_argument(
        "--cv",
        default=None,
        help="loo (exact leave-one-out, default), gcv, an integer K (K-fold; with "
        "--groups GroupKFold), or logo (leave one group out, the default with --groups)",
    )
    p.add_argument(
        "--groups",
        default=None,
        metavar="GROUPS",
        help="group label of each sample, .npy of shape (n_samples,) (integers or "
        "strings, e.g. the scanner run of each image): folds never split a group",
    )
    p.add_argument(
        "--sample-weight",
        default=None,
        metavar="WEIGHTS",
        help="non-negative weight of each sample, .npy of shape (n_samples,)",
    )
    p.add_argument("--no-intercept", action="store_true", help="do not fit an intercept")
    p.add_argument(
        "--solution",
        choices=["primal", "dual"],
        default="primal",
        help="primal: coef.npy (n_targets, n_features), default; dual: kernel-ridge "
        "dual_coef.npy (n_targets, n_samples) plus a copy of X, for n_features > n_samples",
    )
    p.add_argument(
        "--scoring",
        default=None,
        help="score used to choose alphas (default, as scikit-learn: neg. mean squared "
        "error for loo and gcv, r2 for folds); e.g. r2, correlation",
    )
    p.add_argument(
        "--target-shape",
        nargs="+",
        type=_positive_int,
        default=None,
        metavar="N",
        help="shape of the targets when Y is stored flat (n_samples, n_targets)",
    )
    _add_compute(p)
    _add_chunking(p, "min(1 GiB, half of free memory) on CPU, half of free device memory on CUDA")
    p.add_argument("--x-test", default=None, help="evaluate on these test features after fitting")
    p.add_argument("--y-test", default=None, help="test targets for --x-test")
    p.add_argument("--overwrite", action="store_true", help="replace an existing MODEL_DIR")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue a killed solve into the same MODEL_DIR from its last finished chunk",
    )
    _common(p)
    p.set_defaults(func=cmd_solve)

    p = sub.add_parser(
        "predict",
        help="predict targets for new samples",
        description="Predict the targets of new samples with a model directory, streamed "
        "over target chunks.",
        epilog=PREDICT_EPILOG,
        formatter_class=fmt,
    )
    p.add_argument("model", metavar="MODEL_DIR")
    p.add_argument("X", help="features, .npy of shape (n_test_samples, n_features)")
    p.add_argument("--out", required=True, help="predictions .npy to write")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    p.add_argument("--threads", type=_positive_int, default=None, help=THREADS_HELP)
    _add_chunking(p)
    _common(p)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser(
        "evaluate",
        help="score a model on test data (per target, per group) and plot",
        description="Per-target R^2 and Pearson r on test data; for target shapes of 2+ "
        "dims, per-group MSE and cosine similarity (averaged over test samples).",
        epilog=EVALUATE_EPILOG,
        formatter_class=fmt,
    )
    p.add_argument("model", metavar="MODEL_DIR")
    p.add_argument("X", help="test features .npy")
    p.add_argument("Y", help="test targets .npy, shape (n_test_samples, *target_shape) or flat")
    p.add_argument("--out", default=None, metavar="REPORT_DIR", help="write the report here")
    p.add_argument("--overwrite", action="store_true", help="replace an existing REPORT_DIR")
    p.add_argument("--no-plots", action="store_true", help="write the JSON and arrays only")
    p.add_argument("--threads", type=_positive_int, default=None, help=THREADS_HELP)
    _add_chunking(p)
    _common(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser(
        "info",
        help="versions, devices and thread settings",
        description="Versions of fastridge and its dependencies, the torch build, CUDA "
        "devices and BLAS/thread settings.",
        epilog=INFO_EPILOG,
        formatter_class=fmt,
    )
    _common(p, reports=False)
    p.set_defaults(func=cmd_info)
    parser.commands = sub.choices  # name -> its parser, for `main`'s usage errors
    return parser


# The library's advice in the command line's words (a dual PrecisionWarning had told
# CLI users about "a float64 coef_out, if one is passed" and solution='primal').
_CLI_WORDS = {
    "fit in float64 (and a float64 coef_out, if one is passed)": "solve with --dtype float64",
    "fit in float64": "solve with --dtype float64",
    "use solution='primal'": "use --solution primal",
    "score with 'neg_mean_squared_error'": "use --scoring neg_mean_squared_error",
}


def _show_warning(message, category, filename, lineno, file=None, line=None):
    """A warning as one line, like the errors (Python's format added the file and
    the source line of the call inside fastridge)."""
    text = str(message)
    for api, cli in _CLI_WORDS.items():
        text = text.replace(api, cli)
    print(f"fastridge: warning: {text}", file=sys.stderr)


def main(argv=None) -> int:
    """Entry point of the `fastridge` command; returns the exit code."""
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # (parse_args would point to the top-level help, not the command's)
        parser.commands[args.command].error(f"unrecognized arguments: {' '.join(unknown)}")
    if getattr(args, "out", None) == "":  # (an unset shell variable: evaluate had written nothing)
        print("fastridge: error: --out is empty", file=sys.stderr)
        return EXIT_USAGE
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("fastridge: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - every error ends as one line unless --debug
        if args.debug:
            raise
        code, text = _describe(exc)
        print(f"fastridge: error: {text}", file=sys.stderr)
        return code


# What the input caused (UserError is a ValueError; the library raises ValueError for
# NaN, shapes and ranges): exit code 2, and a resumable solve waits for a fixed input.
_INPUT_ERRORS = (ValueError, TypeError)


def _describe(exc: BaseException) -> tuple[int, str]:
    """(exit code, one-line message) for an exception."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if _io.is_disk_full(exc):
        where = f" ({exc.filename})" if exc.filename else ""
        return EXIT_USAGE, f"out of disk space: {exc.strerror}{where}"
    if isinstance(exc, MemoryError):
        return EXIT_USAGE, "out of memory: lower --memory-budget or --target-chunk"
    if isinstance(exc, _INPUT_ERRORS):
        return EXIT_USAGE, text
    if isinstance(exc, OSError):
        where = f" ({exc.filename})" if exc.filename else ""
        return EXIT_USAGE, f"{exc.strerror or text}{where}"
    if isinstance(exc, RuntimeError) and "out of memory" in text.lower():
        return EXIT_USAGE, f"out of memory ({text[:200]}): lower --memory-budget or --target-chunk"
    return EXIT_INTERNAL, f"internal error: {type(exc).__name__}: {text} (rerun with --debug)"


def _verbose(args) -> bool:
    if getattr(args, "quiet", False):
        return False
    return bool(getattr(args, "progress", False)) or sys.stderr.isatty()


def _say(args, text="") -> None:
    if not args.quiet:
        print(text, flush=True)


def _positive_int(text: str, least: int = 1) -> int:
    """argparse type: an integer >= `least`; for --threads >= 1 (0 had reached torch
    as an internal error; evaluate ignored it)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < least:
        raise argparse.ArgumentTypeError(f"must be >= {least}, got {value}")
    return value


def _seed(text: str) -> int:
    """argparse type of the demo's --seed: an integer >= 0 (numpy's generators take no
    negative seed; -1 ended as numpy's "expected non-negative integer")."""
    return _positive_int(text, least=0)


def _target_chunk(value):
    if value in (None, "auto"):
        return "auto"
    try:
        chunk = int(value)
    except ValueError:
        raise UserError(
            f"--target-chunk must be a positive integer or 'auto', got {value!r}"
        ) from None
    if chunk < 1:
        raise UserError(f"--target-chunk must be >= 1, got {chunk}")
    return chunk


def _memory_budget(value):
    if value is None:
        return None
    from ._chunks import parse_bytes

    try:
        return parse_bytes(value, "--memory-budget")
    except ValueError as exc:
        raise UserError(str(exc)) from None


# -- demo -----------------------------------------------------------------------------
def cmd_demo(args) -> int:
    from .demo import run

    if args.quick:
        n_samples, n_features, shape = args.n_samples or 60, args.n_features or 120, (8, 16)
    else:
        n_samples, n_features, shape = args.n_samples or 1000, args.n_features or 2000, None
    if n_samples < 10 or n_features < 2:
        raise UserError("--n-samples must be >= 10 and --n-features >= 2")
    kwargs = {} if shape is None else {"target_shape": shape, "n_compare": 50}
    stream = open(os.devnull, "w") if args.quiet else sys.stdout  # noqa: SIM115
    try:
        run(
            n_samples=n_samples,
            n_features=n_features,
            seed=args.seed,
            verbose=_verbose(args),
            stream=stream,
            n_threads=args.threads,
            **kwargs,
        )
    finally:
        if stream is not sys.stdout:
            stream.close()
    return 0


# -- solve ----------------------------------------------------------------------------
MAX_RANGE_ALPHAS = 1000  # a typo such as 1e1:1e3:100000000 is refused, not run


def _log_range(text: str) -> list[float]:
    """START:STOP:NUM -> NUM log-spaced values from START to STOP, both included,
    rounded to 12 significant digits (so 1e1:1e3:3 is exactly 10, 100, 1000)."""
    parts = text.split(":")
    if len(parts) != 3:
        raise UserError(f"--alphas: {text!r} is not a number nor a range START:STOP:NUM")
    try:
        start, stop, num = float(parts[0]), float(parts[1]), int(parts[2])
    except ValueError:
        raise UserError(
            f"--alphas: {text!r}: a range is START:STOP:NUM with positive START and STOP "
            "and an integer NUM"
        ) from None
    if not (start > 0 and stop > 0 and np.isfinite(start) and np.isfinite(stop)):
        raise UserError(f"--alphas: {text!r}: a log-spaced range needs START and STOP > 0")
    if num < 2:
        raise UserError(f"--alphas: {text!r}: a range needs NUM >= 2 values")
    if num > MAX_RANGE_ALPHAS:
        raise UserError(
            f"--alphas: {text!r}: NUM = {num} is more than {MAX_RANGE_ALPHAS} alphas "
            "(each costs a pass over every target)"
        )
    values = np.logspace(np.log10(start), np.log10(stop), num)
    return [float(f"{v:.12g}") for v in values]


def _parse_alphas(values) -> np.ndarray:
    from ._validation import check_alphas

    parsed = []
    for v in values:
        if ":" in v:
            parsed += _log_range(v)
            continue
        try:
            parsed.append(float(v))
        except ValueError:
            raise UserError(f"--alphas: {v!r} is not a number") from None
    values, counts = np.unique(parsed, return_counts=True)
    if (counts > 1).any():
        # (a range's ends and plain values meet easily; a repeated alpha scores twice)
        raise UserError(f"--alphas: {values[counts > 1][0]:g} is given more than once")
    try:
        return check_alphas(parsed)
    except (ValueError, TypeError) as exc:
        raise UserError(f"--alphas: {exc}") from None


def _parse_cv(value, grouped: bool):
    """The scheme --cv names: "loo", "gcv", "logo" or K (none given: "logo" with
    --groups, else "loo")."""
    if value is None:
        return "logo" if grouped else "loo"
    if value in ("loo", "gcv", "logo"):
        if grouped != (value == "logo"):
            raise UserError(
                f"--cv {value} takes no --groups: use --cv logo (leave one group out) or "
                "--cv K (GroupKFold) with them"
                if grouped
                else "--cv logo (leave one group out) needs --groups GROUPS.npy"
            )
        return value
    try:
        k = int(value)
    except ValueError:
        raise UserError(
            f"--cv must be loo, gcv, logo or an integer number of folds, got {value!r}"
        ) from None
    if k < 2:
        raise UserError(f"--cv {k}: K-fold needs K >= 2")
    return k


def _cv_text(cv, groups, weighted: bool) -> str:
    """The solve's cross-validation in words, for its summary."""
    n_groups = None if groups is None else np.unique(groups).size
    text = {
        "loo": "exact leave-one-out",
        "gcv": "generalized cross-validation",
        "logo": f"leave one group out ({n_groups} groups)",
    }.get(cv)
    if text is None:
        text = f"{cv}-fold" if groups is None else f"GroupKFold({cv}) over {n_groups} groups"
    return text + (", sample weights" if weighted else "")


def _load_groups(path, n_samples: int, cv) -> np.ndarray:
    """--groups as an in-memory array of shape (n_samples,), checked against --cv."""
    groups = np.asarray(_io.open_npy(path, "--groups", labels=True))
    if groups.ndim != 1 or groups.shape[0] != n_samples:
        raise UserError(
            f"--groups must have shape ({n_samples},), one label per sample of X; got "
            f"shape {groups.shape}"
        )
    if groups.dtype.kind == "f" and not np.isfinite(groups).all():
        raise UserError("--groups contains NaN or infinity")
    n_groups = np.unique(groups).size
    if n_groups < 2:
        raise UserError(f"--groups has {n_groups} distinct label(s): folds need at least 2")
    if isinstance(cv, int) and cv > n_groups:
        raise UserError(f"--cv {cv}: GroupKFold needs K <= the {n_groups} distinct groups")
    return groups


def _load_sample_weight(path, n_samples: int) -> np.ndarray:
    """--sample-weight as float64 of shape (n_samples,): finite, >= 0, not all 0."""
    from ._validation import check_sample_weight

    sw = _io.open_npy(path, "--sample-weight")
    if sw.ndim != 1:
        raise UserError(f"--sample-weight must be 1-D (n_samples,), got shape {sw.shape}")
    try:
        return check_sample_weight(np.array(sw, dtype=np.float64), n_samples)  # (a copy)
    except ValueError as exc:
        raise UserError(f"--sample-weight: {exc}") from None


def _load_inputs(args):
    """Open X and Y (memory-mapped), check shapes, dtypes and X's values."""
    X = _io.open_npy(args.X, "X")
    Y = _io.open_npy(args.Y, "Y")
    if X.ndim != 2:
        raise UserError(f"X must be 2-D (n_samples, n_features), got shape {X.shape}")
    n_samples, n_features = X.shape
    if n_samples < 2 or n_features < 1:
        raise UserError(f"X has shape {X.shape}: need >= 2 samples and >= 1 feature")
    if Y.ndim == 0 or Y.shape[0] != n_samples:
        raise UserError(
            f"X and Y have inconsistent numbers of samples: X has {n_samples} "
            f"(shape {X.shape}), Y has shape {Y.shape}"
        )
    stored = tuple(Y.shape[1:])
    n_targets = int(np.prod(stored, dtype=np.int64)) if stored else 1
    if n_targets == 0:
        raise UserError(f"Y has no targets (shape {Y.shape})")
    target_shape = stored
    if args.target_shape:
        target_shape = tuple(args.target_shape)
        if int(np.prod(target_shape)) != n_targets:  # (each >= 1: _positive_int)
            raise UserError(
                f"--target-shape {' '.join(map(str, target_shape))} has "
                f"{int(np.prod(target_shape))} targets, Y has {n_targets} (shape {Y.shape})"
            )
    X = _io.as_float(X, "X")
    _io.check_finite_blocks(X, "X")
    # integer/bool targets stay mapped: the solver casts each chunk as it reads it
    return X, Y, target_shape, n_targets


def _options(args, alphas, cv, out_dtype, target_shape, y_ndim):
    return {
        "alphas": alphas.tolist(),
        "alpha_per_target": bool(args.alpha_per_target),
        "cv": cv,
        "groups": args.groups is not None,  # cv "logo" or K: over these groups
        "sample_weight": args.sample_weight is not None,
        "fit_intercept": not args.no_intercept,
        "scoring": args.scoring,
        "dtype": out_dtype,
        "target_shape": list(target_shape),
        "y_ndim": y_ndim,
        "device": args.device,
        "target_chunk": _target_chunk(args.target_chunk),
        "memory_budget": args.memory_budget,
        "solution": args.solution,
    }


# options a resumed solve must share with the interrupted one (they change results)
_RESUME_KEYS = (
    "alphas",
    "alpha_per_target",
    "cv",
    "groups",
    "sample_weight",
    "fit_intercept",
    "scoring",
    "dtype",
    "target_shape",
    "solution",
)
_RESUME_DEFAULTS = {"groups": False, "sample_weight": False}


def _merge(intervals):
    out = []
    for a, b in sorted(intervals):
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return out


def _resumable(staging: Path) -> bool:
    """A killed solve's staging directory has per-target results to resume from."""
    try:
        manifest = _io.read_json(staging / _io.MANIFEST)
    except (OSError, ValueError):
        return False
    return bool(manifest.get("done")) and manifest["options"].get("alpha_per_target", True)


def _find_resumable(model_dir: Path):
    """The staging directory of a killed solve with the most finished targets, or None."""
    best, best_done = None, -1
    for d in _io.staging_dirs(model_dir):
        pid = _io.staging_pid(d)
        if pid is not None and _io.pid_alive(pid):
            raise UserError(
                f"another solve (pid {pid}) is writing {d}; wait for it or stop it first"
            )
        manifest = d / _io.MANIFEST
        if not manifest.exists():
            continue
        try:
            done = sum(b - a for a, b in _io.read_json(manifest).get("done", []))
        except (OSError, ValueError):
            continue
        if done > best_done:
            best, best_done = d, done
    return best


def _note_leftovers(model_dir: Path, quiet: bool) -> None:
    """One note per kind of what earlier solves left beside MODEL_DIR, all left alone:
    a solve still writing (it had been offered as one to resume), unfinished ones
    that --resume can or cannot continue, and complete models whose move into place
    failed (their manifest gone; no run had mentioned them)."""
    if quiet:
        return
    kinds = {"running": [], "resumable": [], "stale": [], "complete": []}
    for d in _io.staging_dirs(model_dir):
        pid = _io.staging_pid(d)
        if pid is not None and _io.pid_alive(pid):
            kinds["running"].append(d.name)
        elif (d / _io.MANIFEST).exists():  # (stale: a shared alpha, or killed before any chunk)
            kinds["resumable" if _resumable(d) else "stale"].append(d.name)
        elif (d / "model.json").exists():
            kinds["complete"].append(d.name)
    name = model_dir.name
    texts = {
        "running": f"another solve into {name} is running ({{}})",
        "resumable": "unfinished solve(s) found ({}); add --resume to continue one, or delete them",
        "stale": "unfinished solve(s) that cannot be resumed ({}): delete them",
        "complete": f"complete model(s) of an earlier solve never moved to {name} ({{}}): "
        f"delete them once this solve has written {name}",
    }
    for kind, names in kinds.items():
        if names:
            print(f"fastridge: note: {texts[kind].format(', '.join(names))}", file=sys.stderr)


def _staged_arrays(coef_name: str, n_targets, n_coef, n_alphas, dtype) -> dict:
    """{name: (shape, dtype)} of the result arrays of a staging directory: those
    `_prepare_staging` creates and a resume must find whole."""
    return {
        coef_name: ((n_targets, n_coef), np.dtype(dtype)),
        "intercept": ((n_targets,), np.dtype(dtype)),
        "alpha_index": ((n_targets,), np.dtype(np.int64)),
        "best_score": ((n_targets,), np.dtype(np.float64)),
        "alpha_scores": ((n_targets, n_alphas), np.dtype(np.float64)),
    }


def _check_staged_arrays(found: Path, arrays: dict) -> None:
    """UserError unless a staging directory to resume holds its result arrays
    (`_staged_arrays`) whole: a missing coef.npy had ended in an OS error plus a
    traceback, an intercept.npy of another length in a broadcasting error, each
    advising a resume that could never succeed."""
    for name, (shape, dt) in arrays.items():
        path = found / f"{name}.npy"
        if name == "alpha_scores" and not path.exists():
            continue  # (a run from before alpha_scores.npy: made anew)
        try:
            header, _ = _io.npy_header(path)
            ok = tuple(header["shape"]) == shape and np.dtype(header["dtype"]) == dt
        except (OSError, ValueError, SyntaxError):
            ok = False
        if not ok:
            raise UserError(
                f"cannot resume: {path} is missing or damaged (expected {dt} of shape "
                f"{shape}); run without --resume or delete {found}"
            )


def _prepare_staging(args, model_dir, manifest, Y, n_targets, n_alphas, n_coef, out_dtype, verbose):
    """Create (or, with --resume, reclaim) the staging directory; returns (path, manifest)."""
    staging = model_dir.with_name(f"{model_dir.name}.tmp-{os.getpid()}")
    from ._model import COEF_FILES

    arrays = _staged_arrays(COEF_FILES[args.solution], n_targets, n_coef, n_alphas, out_dtype)
    if args.resume:
        found = _find_resumable(model_dir)
        if found is None:
            if verbose:
                print("fastridge: nothing to resume; starting from the beginning", file=sys.stderr)
            _note_leftovers(model_dir, args.quiet)
        else:
            old = _io.read_json(found / _io.MANIFEST)
            for name in manifest["inputs"]:
                # (Y's finished targets are checked by their checksums below, where the
                # run has them: Y may then be fixed past them, e.g. a NaN that stopped it)
                layout = name == "Y" and "checksums" in old
                if name not in old["inputs"] or not _io.same_inputs(
                    old["inputs"][name], manifest["inputs"][name], layout_only=layout
                ):
                    was = old["inputs"].get(name, {}).get("path", "not given")
                    raise UserError(
                        f"cannot resume: {name} differs from the interrupted run's "
                        f"({was}); run without --resume or delete {found}"
                    )
            for key in _RESUME_KEYS:
                # (a run from before --groups and --sample-weight had neither)
                was = old["options"].get(key, _RESUME_DEFAULTS.get(key))
                if was != manifest["options"].get(key):
                    raise UserError(
                        f"cannot resume: option {key} was {was!r}, now "
                        f"{manifest['options'].get(key)!r}; use the same options or drop --resume"
                    )
            for start, (stop, crc) in old.get("checksums", {}).items():
                if _io.target_checksum(Y, int(start), stop) != crc:
                    raise UserError(
                        f"cannot resume: Y's targets {start}:{stop} differ from those the "
                        f"interrupted run solved; run without --resume or delete {found}"
                    )
            _check_staged_arrays(found, arrays)
            os.rename(found, staging)  # claim it: a concurrent resume now finds nothing
            for stray in staging.glob(".*.tmp-*"):  # a write killed half-way, never a result
                stray.unlink()
            if not (staging / "alpha_scores.npy").exists():
                # a run from before alpha_scores.npy: its finished chunks' scores are unknown
                scores = _io.open_new_npy(
                    staging / "alpha_scores.npy", (n_targets, n_alphas), np.float64
                )
                scores[:] = np.nan
                scores.flush()
                del scores
            manifest["done"] = old.get("done", [])
            manifest["checksums"] = old.get("checksums", {})
            manifest["target_chunk"] = old.get("target_chunk")
            manifest["resumed_from"] = found.name
            done = sum(b - a for a, b in manifest["done"])
            if verbose:
                print(
                    f"fastridge: resuming {found.name}: {done}/{n_targets} targets already done",
                    file=sys.stderr,
                )
            return staging, manifest
    else:
        _note_leftovers(model_dir, args.quiet)
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir()
    try:
        # the files' disk blocks are reserved here: a full disk fails now, and
        # leaves no staging directory behind
        for name, (shape, dtype) in arrays.items():
            _io.create_npy(staging / f"{name}.npy", shape, dtype)
        _io.write_json_atomic(staging / _io.MANIFEST, manifest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return staging, manifest


def cmd_solve(args) -> int:
    from . import __version__
    from ._backend import float_dtype_of
    from ._model import COEF_FILES, FORMAT, FORMAT_VERSION, cv_param
    from ._report import alpha_counts, summary
    from .solve import ridge_cv

    t_start = time.perf_counter()
    verbose = _verbose(args)
    alphas = _parse_alphas(args.alphas)
    grouped = args.groups is not None
    cv = _parse_cv(args.cv, grouped)
    target_chunk = _target_chunk(args.target_chunk)
    budget = _memory_budget(args.memory_budget)
    if (args.x_test is None) != (args.y_test is None):
        raise UserError("--x-test and --y-test go together")
    if args.resume and not args.alpha_per_target:
        raise UserError(
            "--resume needs per-target alphas (a shared alpha depends on every chunk); "
            "rerun without --resume"
        )
    model_dir = _io.check_output_dir(args.out, args.overwrite, "model.json", "model")
    _io.make_parent(model_dir, "the model")

    X, Y, target_shape, n_targets = _load_inputs(args)
    n_samples, n_features = X.shape
    if isinstance(cv, int) and cv > n_samples:
        raise UserError(f"--cv {cv}: K-fold needs K <= the {n_samples} samples of X")
    groups = _load_groups(args.groups, n_samples, cv) if grouped else None
    sample_weight = None
    if args.sample_weight is not None:
        sample_weight = _load_sample_weight(args.sample_weight, n_samples)
    y_ndim = 1 if Y.ndim == 1 and not args.target_shape else 1 + len(target_shape)
    out_dtype = args.dtype or float_dtype_of(X).name
    itemsize = np.dtype(out_dtype).itemsize
    if args.x_test is not None:
        # fail now, not after the solve (whose staging directory is then no longer
        # resumable: a bad test file had left it behind for good)
        _open_test_files(args.x_test, args.y_test, X.shape[1], target_shape, out_dtype)

    t = time.perf_counter()
    inputs = {"X": _io.fingerprint(args.X, full=True), "Y": _io.fingerprint(args.Y, full=False)}
    for name, path in (("groups", args.groups), ("sample_weight", args.sample_weight)):
        if path is not None:
            inputs[name] = _io.fingerprint(path, full=True)
    t_fingerprint = time.perf_counter() - t
    options = _options(args, alphas, cv, out_dtype, target_shape, y_ndim)
    manifest = {
        "format": "fastridge-solve-manifest",
        "inputs": inputs,
        "options": options,
        "n_targets": n_targets,
        "n_features": n_features,
        "target_chunk": None,
        "done": [],
        "checksums": {},  # per finished chunk: start -> [stop, crc32 of its targets]
    }
    dual = args.solution == "dual"
    n_coef = n_samples if dual else n_features  # values per target in the coefficient file
    need = n_targets * (n_coef * itemsize + itemsize + 8 + 8 + 8 + 8 * alphas.size) + (1 << 20)
    if dual:
        need += n_samples * n_features * itemsize  # x_fit.npy
    resumable = _io.staging_dirs(model_dir) if args.resume else []
    if not resumable:
        _io.check_free_space(model_dir.parent, need, f"the model ({n_targets:,} targets)")

    staging, manifest = _prepare_staging(
        args, model_dir, manifest, Y, n_targets, alphas.size, n_coef, out_dtype, verbose
    )
    chunk = manifest["target_chunk"] or target_chunk
    done = [list(iv) for iv in manifest["done"]]
    n_skipped = sum(b - a for a, b in done)
    writer = _io.RowWriter(staging / f"{COEF_FILES[args.solution]}.npy")
    small = {
        name: np.load(staging / f"{name}.npy", mmap_mode="r+")
        for name in ("intercept", "alpha_index", "best_score", "alpha_scores")
    }
    checksums = _io.TargetChecksums(Y) if args.alpha_per_target else None

    def skip_chunk(sl):
        return any(a <= sl.start and sl.stop <= b for a, b in done)

    def on_chunk(sl):
        # durable first, recorded second: a chunk listed as done is on disk
        writer.sync()
        for m in small.values():
            m.flush()
        if checksums is not None:
            # recorded with its targets' checksum, made in the background: a chunk
            # is listed as done (and skipped by --resume) once the next one finishes
            if manifest["target_chunk"] is None:
                manifest["target_chunk"] = sl.stop - sl.start
            checksums.submit(sl)
            settled = checksums.settled()
            for part, crc in settled:
                done.append([part.start, part.stop])
                manifest["checksums"][str(part.start)] = [part.stop, crc]
            if settled:
                done[:] = _merge(done)
                manifest["done"] = done
                _io.write_json_atomic(staging / _io.MANIFEST, manifest)
        _io.drop_pages(X, Y)

    try:
        res = ridge_cv(
            X,
            Y,
            alphas,
            fit_intercept=not args.no_intercept,
            cv=cv_param(cv, grouped),
            groups=groups,
            sample_weight=sample_weight,
            scoring=args.scoring,
            alpha_per_target=args.alpha_per_target,
            target_chunk=chunk,
            memory_budget=budget,
            device=args.device,
            dtype=out_dtype,
            n_threads=args.threads,
            coef_out=writer,
            out=small,
            skip_chunk=skip_chunk if args.alpha_per_target else None,
            on_chunk=on_chunk,
            solution=args.solution,
            verbose=verbose,
        )
        if checksums is not None:
            checksums.close()  # (complete: the last chunk needs no record)
        if dual:
            # the model must not depend on X staying where it is: keep a copy
            _io.save_npy_blocks(staging / "x_fit.npy", X, out_dtype)
            np.save(staging / "x_mean.npy", np.asarray(res.x_offset, dtype=np.float64))
        writer.sync()
        writer.close()
        alpha_index = np.array(small["alpha_index"])
        for m in small.values():
            m.flush()
        small.clear()
        np.save(staging / "alpha.npy", alphas[alpha_index])
        if not args.alpha_per_target:
            np.save(staging / "best_score.npy", np.float64(res.best_score))
        best_score = np.load(staging / "best_score.npy")
        counts = alpha_counts(alpha_index, alphas)
        timings = {"fingerprint": t_fingerprint, **res.timings}
        meta = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "versions": _versions(),
            "options": options,
            "n_samples": n_samples,
            "n_features": n_features,
            "n_targets": n_targets,
            "target_shape": list(target_shape),
            "y_ndim": y_ndim,
            "alphas": alphas.tolist(),
            "dtype": out_dtype,
            "solution": args.solution,
            "rank": res.rank,
            "form": res.form,
            "device": res.device,
            "target_chunk": res.target_chunk,
            "timings": timings,
            "alpha_counts": counts,
            "best_score": summary(best_score),
            "mean_scores": None if res.mean_scores is None else res.mean_scores.tolist(),
            "peak_rss_bytes": _peak_rss(),
            "resume": {"targets_skipped": n_skipped, "from": manifest.get("resumed_from")},
            "inputs": inputs,
            "fastridge_version": __version__,
        }
        _io.write_json_atomic(staging / "model.json", meta)
        report = None
        if args.x_test is not None:
            try:
                report = _evaluate(
                    staging, args.x_test, args.y_test, staging / "test_report", args, plots=True
                )
            except UserError as exc:  # (e.g. a NaN in Y test, found as it is read)
                # The solve is complete and no longer resumable: publish it without
                # the report rather than leave it in the staging directory.
                shutil.rmtree(staging / "test_report", ignore_errors=True)
                (staging / _io.MANIFEST).unlink()
                _io.publish(staging, model_dir, args.overwrite)
                raise UserError(
                    f"{exc} (the model was written to {model_dir}, without a test report)"
                ) from None
        # The manifest goes last: killed before, the directory is resumable and a
        # resume finishes it (killed after model.json with the manifest gone, a
        # complete model had been left behind with nothing pointing to it).
        (staging / _io.MANIFEST).unlink()
        _io.publish(staging, model_dir, args.overwrite)
    except BaseException as exc:
        writer.close()
        if checksums is not None:
            checksums.close()
        resumable = (staging / _io.MANIFEST).exists()
        keep = args.alpha_per_target and len(done) > 0 and resumable
        if keep:
            if not isinstance(exc, _INPUT_ERRORS):
                print(
                    f"fastridge: partial results kept in {staging}; rerun with --resume to "
                    "continue",
                    file=sys.stderr,
                )
            elif "cannot resume" not in str(exc):  # (bad input found in a later chunk)
                print(
                    f"fastridge: partial results kept in {staging}; once the input is "
                    "fixed, rerun with --resume to continue",
                    file=sys.stderr,
                )
        elif staging.exists() and (staging / "model.json").exists():
            # complete (its manifest gone) but not published: kept, not resumable
            print(f"fastridge: the complete model is kept in {staging}", file=sys.stderr)
        elif staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
        raise

    total = time.perf_counter() - t_start
    _say(
        args,
        f"fastridge: wrote {model_dir} ({n_targets:,} targets x {n_coef:,} "
        f"{'dual coefficients' if dual else 'features'}, {out_dtype}) in {total:.1f}s",
    )
    _say(args, "  time per stage: " + ", ".join(f"{k} {v:.2f}s" for k, v in timings.items()))
    _say(args, f"  peak resident memory: {_peak_rss() / 2**30:.2f} GiB")
    _say(args, f"  cross-validation: {_cv_text(cv, groups, sample_weight is not None)}")
    _say(args, "  chosen alphas: " + ", ".join(f"{a}: {c:,}" for a, c in counts.items()))
    # scikit-learn's defaults: RidgeCV's own criterion, or the estimator's score (R^2) on folds
    score_name = args.scoring or ("neg. mean squared error" if cv in ("loo", "gcv") else "r2")
    if args.alpha_per_target:
        _say(args, f"  median CV score ({score_name}): {np.median(best_score):.6g}")
    else:
        _say(args, f"  CV score of the shared alpha ({score_name}): {float(best_score):.6g}")
    if n_skipped:
        _say(args, f"  resumed: {n_skipped:,} targets were already done")
    if report is not None:
        _say_report(args, report)
    return 0


def _peak_rss() -> int:
    """Peak resident memory of this process in bytes (Linux reports KiB)."""
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def _versions() -> dict:
    import platform

    import sklearn
    import torch

    from . import __version__

    return {
        "fastridge": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": torch.__version__,
        "scikit-learn": sklearn.__version__,
    }


# -- predict and evaluate -------------------------------------------------------------
def _open_test_files(x_path, y_path, n_features: int, target_shape: tuple, dtype):
    """(X test, Y test), opened and checked against a model of `n_features` features,
    targets of `target_shape` and `dtype`: shapes and X's values (Y's are checked as
    they are read)."""
    X = _open_features(x_path, n_features, dtype, "X test")
    Y = _io.open_npy(y_path, "Y test")
    n_rows, n_targets = X.shape[0], int(np.prod(target_shape, dtype=np.int64))
    if Y.ndim == 0 or Y.shape[0] != n_rows:
        raise UserError(f"X test has {n_rows} samples but Y test has shape {Y.shape}")
    # the model's target shape or flat: the same number of targets in another shape
    # (e.g. (n, 4, 3) for (3, 4)) had been scored against the wrong targets, exit 0
    shapes = {tuple(target_shape), (n_targets,)} | ({()} if n_targets == 1 else set())
    if Y.shape[1:] not in shapes:
        raise UserError(
            f"Y test has shape {Y.shape}; the model's targets have shape {tuple(target_shape)}:"
            f" give Y test of shape {(n_rows, *target_shape)} or flat {(n_rows, n_targets)}"
        )
    if n_rows < 2:
        raise UserError("evaluation needs at least 2 test samples")
    return X, Y


def _open_features(path, n_features, dtype, name="X"):
    """X for a model of `n_features` features and `dtype` (its values in that dtype's
    range), opened and checked."""
    X = _io.as_float(_io.open_npy(path, name), name)
    if X.ndim != 2 or X.shape[1] != n_features:
        raise UserError(
            f"{name} must have shape (n_samples, {n_features}) to match the model, got {X.shape}"
        )
    _io.check_finite_blocks(X, name, dtype=dtype)
    return X


def _predict_chunk_size(args, files, n_rows, group_size=1, extra=0):
    """Targets per chunk: --target-chunk, or what fits in --memory-budget (default 1 GiB)."""
    chunk = _target_chunk(getattr(args, "target_chunk", "auto"))
    if chunk == "auto":
        budget = _memory_budget(getattr(args, "memory_budget", None)) or (1 << 30)
        per_target = files.coef.dtype.itemsize * (files.n_coef + 2 * n_rows) + extra * n_rows
        chunk = max(1, budget // per_target)
    if group_size > 1:
        chunk = max(group_size, chunk // group_size * group_size)
    return int(min(chunk, files.n_targets))


def _predictions(files, X, chunk, args, progress=None):
    """Yield (slice, predictions of shape (n_samples, len)) over target chunks, with
    --threads for the BLAS and torch alike (`cpu_threads`, as solve: it had set
    torch's threads only, and the GEMMs run in scipy's BLAS on some CPUs)."""
    from ._backend import cpu_threads

    with cpu_threads(getattr(args, "threads", None)):
        yield from _predictions_of_chunks(files, X, chunk, progress)


def _predictions_of_chunks(files, X, chunk, progress):
    import torch

    from ._backend import host_copy, mm
    from ._chunks import chunk_slices
    from ._refit import dual_kernel

    dtype = files.coef.dtype
    Xt = torch.from_numpy(host_copy(X, dtype))
    _io.drop_pages(X)
    x_dot = None
    if files.solution == "dual":
        # the kernel with the training samples, centred; x_fit.npy a block at a time
        def read(rows):
            block = torch.from_numpy(host_copy(rows, dtype))
            _io.drop_pages(files.x_fit)
            return block

        mean = torch.from_numpy(np.asarray(files.x_mean, dtype=np.float64))
        Xt, x_dot = dual_kernel(Xt, files.x_fit, mean, read)
    for sl in chunk_slices(files.n_targets, chunk):
        W = torch.from_numpy(_io.read_rows(files.path / f"{files.coef_name}.npy", sl))
        pred = mm(Xt, W.T)
        pred += torch.from_numpy(np.asarray(files.intercept[sl], dtype=dtype))
        if x_dot is not None:
            pred += W @ x_dot
        _check_predictions(pred, W, files, sl)
        yield sl, pred.numpy()
        if progress is not None:
            progress.advance(sl.stop - sl.start)


def _check_predictions(pred, W, files, sl: slice) -> None:
    """UserError unless the chunk's predictions (n_test_samples, n_chunk) are finite:
    an X test within the model's dtype can still overflow it (float32 X of ~1e38
    had written inf with exit 0), and a model file can hold NaN (copied or edited
    by hand: predict had written NaN with exit 0)."""
    import torch

    from ._validation import target_name

    finite = torch.isfinite(pred)
    if bool(finite.all()):
        return
    row, col = (int(i) for i in (~finite).nonzero()[0])
    where = f"test sample {row}, target {target_name(sl.start, col, files.target_shape)}"
    for name, values in ((files.coef_name, W[col]), ("intercept", files.intercept[sl][col])):
        if not np.isfinite(np.asarray(values)).all():
            raise UserError(
                f"{files.path / (name + '.npy')} holds NaN or infinity ({where}): the model "
                "files are damaged; solve again"
            )
    raise UserError(
        f"predictions overflow {str(pred.dtype)[6:]} at {where}: X test's values are too "
        "large for this model; rescale X test (and refit on X scaled alike)"
    )


def cmd_predict(args) -> int:
    from ._model import ModelFiles
    from ._progress import Progress

    t0 = time.perf_counter()
    files = ModelFiles(args.model)
    out = Path(args.out)
    # (with --overwrite a model's own coef.npy, or X test itself, had been replaced)
    if (out.resolve().parent / "model.json").exists():
        raise UserError(f"--out {out} is inside a model directory: choose a path outside it")
    if out.resolve() == Path(args.X).resolve():
        raise UserError(f"--out {out} is X test itself: choose another path")
    if out.is_dir():  # (with --overwrite it had failed after the work)
        raise UserError(f"--out {out} is a directory: give a file name ending in .npy")
    if out.exists() and not args.overwrite:
        raise UserError(f"{out} already exists (use --overwrite to replace it)")
    if not out.name.endswith(".npy") or out.name == ".npy":
        raise UserError(f"--out must be a file name ending in .npy, got {out}")
    X = _open_features(args.X, files.n_features, files.coef.dtype)
    n_rows = X.shape[0]
    chunk = _predict_chunk_size(args, files, n_rows)
    shape = (n_rows, *files.target_shape) if files.meta.get("y_ndim", 2) > 1 else (n_rows,)
    need = n_rows * files.n_targets * files.coef.dtype.itemsize
    _io.make_parent(out, "the predictions")
    _io.check_free_space(out.parent, need, f"{out.name}")
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    progress = Progress(_verbose(args))
    progress.start("predict", files.n_targets)
    try:
        mm = _io.open_new_npy(tmp, shape, files.coef.dtype)
        flat = mm.reshape(n_rows, files.n_targets)
        for sl, pred in _predictions(files, X, chunk, args, progress):
            flat[:, sl] = pred
            mm.flush()
            _io.drop_pages(mm)
        del flat, mm
        _io.publish_file(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _say(args, f"fastridge: wrote {out} {shape} in {time.perf_counter() - t0:.1f}s")
    return 0


def _evaluate(model_dir, x_path, y_path, report_dir, args, plots=True):
    """Test metrics of a model; writes a report directory when report_dir is given."""
    import torch

    from ._chunks import TargetReader
    from ._model import ModelFiles
    from ._progress import Progress
    from ._report import alpha_counts, group_metrics, summary, target_metrics, write_plots

    files = ModelFiles(model_dir)
    X, Y = _open_test_files(x_path, y_path, files.n_features, files.target_shape, files.coef.dtype)
    n_rows = X.shape[0]
    n_targets = files.n_targets
    ts = files.target_shape
    group_size = int(np.prod(ts[1:])) if len(ts) >= 2 else 1
    n_groups = ts[0] if len(ts) >= 2 else 0
    chunk = _predict_chunk_size(args, files, n_rows, group_size if n_groups else 1, extra=40)
    reader = TargetReader(Y, torch.device("cpu"), torch.float64)
    r2 = np.empty(n_targets)
    pearson = np.empty(n_targets)
    g_mse = np.empty(n_groups)
    g_cos = np.empty(n_groups)
    progress = Progress(_verbose(args))
    progress.start("evaluate", n_targets)
    for sl, pred in _predictions(files, X, chunk, args, progress):
        true = reader.read(sl).numpy()
        if not np.isfinite(true).all():
            raise UserError(f"Y test contains NaN or infinity (targets {sl.start}-{sl.stop - 1})")
        r2[sl], pearson[sl] = target_metrics(pred, true)
        if n_groups:
            g = slice(sl.start // group_size, sl.stop // group_size)
            g_mse[g], g_cos[g] = group_metrics(pred, true, group_size)
        _io.drop_pages(Y)
    report = {
        "format": "fastridge-evaluation",
        "model": str(model_dir),
        "n_test_samples": n_rows,
        "n_targets": n_targets,
        "target_shape": list(ts),
        "r2": summary(r2),
        "pearson": summary(pearson),
        "cv_score": summary(files.best_score),
        "alpha_counts": alpha_counts(files.alpha_index, files.alphas),
        "groups": None,
        "plots": [],
    }
    if n_groups:
        report["groups"] = {
            "axis": 0,
            "n_groups": n_groups,
            "group_size": group_size,
            "mse": g_mse.tolist(),
            "cosine": g_cos.tolist(),
            "mse_summary": summary(g_mse),
            "cosine_summary": summary(g_cos),
        }
    if report_dir is not None:
        report_dir = Path(report_dir)
        report_dir.mkdir(parents=True, exist_ok=True)
        np.save(report_dir / "r2.npy", r2.reshape(ts))
        np.save(report_dir / "pearson.npy", pearson.reshape(ts))
        if n_groups:
            np.save(report_dir / "group_mse.npy", g_mse)
            np.save(report_dir / "group_cosine.npy", g_cos)
        if plots:
            report["plots"] = write_plots(
                report_dir,
                alphas=files.alphas,
                alpha_index=files.alpha_index,
                cv_scores=files.best_score if files.best_score.ndim else None,
                r2=r2,
                pearson=pearson,
                group_mse=g_mse if n_groups else None,
                group_cosine=g_cos if n_groups else None,
                stream=open(os.devnull, "w") if args.quiet else sys.stderr,  # noqa: SIM115
            )
        _io.write_json_atomic(report_dir / "report.json", report)
    report["_arrays"] = {"r2": r2, "pearson": pearson}
    return report


def _stat(summary: dict, key: str, spec: str = ".4f") -> str:
    """One statistic of a `_report.summary`, or "n/a" where no value was finite (Y
    test of values ~1e160 overflows its squares: a KeyError had ended evaluate)."""
    return format(summary[key], spec) if summary.get("n") else "n/a"


def _say_report(args, report) -> None:
    r2, r = report["r2"], report["pearson"]
    _say(
        args,
        f"  test ({report['n_test_samples']} samples): R^2 median {_stat(r2, 'median')}, "
        f"mean {_stat(r2, 'mean')}; Pearson r median {_stat(r, 'median')}, mean "
        f"{_stat(r, 'mean')}",
    )
    if not r2.get("n"):
        warnings.warn(
            "no target has a finite R^2 (are Y test's values beyond range?)", stacklevel=2
        )
    elif r2["n"] < report["n_targets"]:  # (the summaries are of finite values only)
        warnings.warn(
            f"{report['n_targets'] - r2['n']:,} of {report['n_targets']:,} targets have no "
            "finite R^2 (predictions far beyond Y test's spread?): the summaries leave them out",
            stacklevel=2,
        )
    if report["groups"]:
        g = report["groups"]
        c, m = g["cosine_summary"], g["mse_summary"]
        _say(
            args,
            f"  per group ({g['n_groups']} x {g['group_size']}): cosine similarity mean "
            f"{_stat(c, 'mean')} (min {_stat(c, 'min')}, max {_stat(c, 'max')}); MSE mean "
            f"{_stat(m, 'mean', '.4g')}",
        )


def cmd_evaluate(args) -> int:
    t0 = time.perf_counter()
    report_dir = Path(args.out) if args.out else None
    staging = None
    if report_dir is not None:
        report_dir = _io.check_output_dir(report_dir, args.overwrite, "report.json", "report")
        _io.make_parent(report_dir, "the report")
        staging = report_dir.with_name(f"{report_dir.name}.tmp-{os.getpid()}")
    try:
        report = _evaluate(args.model, args.X, args.Y, staging, args, plots=not args.no_plots)
        if staging is not None:
            _io.publish(staging, report_dir, args.overwrite)
    except BaseException:
        if staging is not None and staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
        raise
    where = f", report in {report_dir}" if report_dir else ""
    _say(args, f"fastridge: evaluated {args.model} in {time.perf_counter() - t0:.1f}s{where}")
    _say_report(args, report)
    return 0


# -- info -----------------------------------------------------------------------------
def cmd_info(args) -> int:
    import platform

    import torch

    lines = [f"{k}: {v}" for k, v in _versions().items()]
    lines.append(f"platform: {platform.platform()}")
    lines.append(f"cpu count: {os.cpu_count()}")
    lines.append("torch build:")
    for ln in torch.__config__.show().strip().splitlines()[1:]:
        ln = ln.strip()
        if ln.startswith("- Build settings:"):
            # the full compiler flags are noise; keep the library and feature switches
            keep = (
                "BLAS_INFO",
                "LAPACK_INFO",
                "TORCH_VERSION",
                "USE_CUDA",
                "USE_MKL",
                "USE_OPENMP",
            )
            parts = [p.strip() for p in ln.split(":", 1)[1].split(",")]
            ln = "- " + ", ".join(p for p in parts if p.split("=")[0] in keep)
        lines.append("  " + ln)
    lines.append(f"torch CUDA build: {torch.version.cuda}")
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            lines.append(f"cuda:{i}: {p.name}, {p.total_memory / 2**30:.1f} GiB")
    else:
        lines.append("CUDA available: no")
    lines.append(
        f"torch threads: {torch.get_num_threads()} intra-op, "
        f"{torch.get_num_interop_threads()} inter-op"
    )
    lines.append("torch parallel info:")
    lines += ["  " + s for s in torch.__config__.parallel_info().strip().splitlines()]
    try:
        from threadpoolctl import threadpool_info

        lines.append("threadpoolctl:")
        for pool in threadpool_info():
            lines.append(
                f"  {pool.get('internal_api')} ({pool.get('user_api')}) "
                f"{pool.get('version')}, {pool.get('num_threads')} threads, "
                f"{os.path.basename(pool.get('filepath', ''))}"
            )
    except ImportError:
        lines.append("threadpoolctl: not installed")
    from ._backend import CPU_BLAS_ENV, blas_kernel_warning, cpu_blas, host_blas_architecture
    from ._report import have_matplotlib

    lines.append(f"fastridge CPU GEMMs and eigh: {cpu_blas()} ({CPU_BLAS_ENV} overrides)")
    lines.append(f"host OpenBLAS kernels (scipy's): {host_blas_architecture() or 'unknown'}")
    warning = blas_kernel_warning()
    if warning:
        lines.append(f"warning: {warning}")

    lines.append(f"matplotlib (plots): {'yes' if have_matplotlib() else 'not installed'}")
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OPENBLAS_CORETYPE"):
        if name in os.environ:
            lines.append(f"{name}={os.environ[name]}")
    print("\n".join(lines))
    return 0
