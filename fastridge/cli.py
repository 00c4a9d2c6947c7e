"""The `fastridge` command line: a thin adapter over `fastridge.ridge_cv`.

Commands: demo, solve, predict, evaluate, info (``fastridge COMMAND --help``).
User errors print one line ``fastridge: error: ...`` and exit with code 2
(a traceback only with --debug).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

from . import _io
from ._io import UserError

EXIT_USAGE = 2
EXIT_INTERNAL = 1
EXIT_INTERRUPTED = 130


# -- argument parsing ---------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit code 2) like every other error."""

    def error(self, message):
        print(f"fastridge: error: {message} (see '{self.prog} --help')", file=sys.stderr)
        sys.exit(EXIT_USAGE)


def _common(p):
    g = p.add_argument_group("output")
    g.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    g.add_argument(
        "--progress",
        action="store_true",
        help="report progress on stderr even when it is not a terminal",
    )
    g.add_argument("--debug", action="store_true", help="show tracebacks of errors")


def _add_chunking(p):
    p.add_argument(
        "--target-chunk",
        default="auto",
        help="targets per chunk (default: auto, from --memory-budget)",
    )
    p.add_argument(
        "--memory-budget",
        default=None,
        help="bytes one target chunk may use, e.g. 2GB, 512MiB (default: min(1 GiB, half "
        "of free memory))",
    )


def _add_compute(p):
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:K or auto (default: cpu)")
    p.add_argument(
        "--dtype",
        choices=("float32", "float64"),
        default=None,
        help="compute and storage dtype (default: float32 for float16/32 X, else float64)",
    )
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")


SOLVE_EPILOG = """\
examples:
  fastridge solve X.npy Y.npy --alphas 1e4 2e4 4e4 --out model/
  fastridge solve X.npy Y_flat.npy --alphas 1e4 2e4 4e4 --target-shape 226 768 \\
      --out model/ --x-test Xte.npy --y-test Yte.npy --memory-budget 2GB
  fastridge solve X.npy Y.npy --alphas 1e4 2e4 4e4 --out model/ --resume   # after a crash

MODEL_DIR holds coef.npy (n_targets, n_features), intercept.npy, alpha.npy,
alpha_index.npy, best_score.npy and model.json. It is written in MODEL_DIR.tmp-<pid>
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
  fastridge demo              # 173,568 targets (226 x 768), ~1 minute on 2 cores
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
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-samples", type=int, default=None, help="default 1000 (--quick: 60)")
    p.add_argument("--n-features", type=int, default=None, help="default 2000 (--quick: 120)")
    p.add_argument(
        "--quick", action="store_true", help="a tiny problem (target shape 8 x 16), seconds"
    )
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
    p.add_argument("--alphas", nargs="+", required=True, metavar="ALPHA", help="positive penalties")
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
        default="loo",
        help="loo (exact leave-one-out, default), gcv, or an integer K (K-fold)",
    )
    p.add_argument("--no-intercept", action="store_true", help="do not fit an intercept")
    p.add_argument(
        "--scoring",
        default=None,
        help="score used to choose alphas (default: neg. mean squared error); e.g. r2, correlation",
    )
    p.add_argument(
        "--target-shape",
        nargs="+",
        type=int,
        default=None,
        metavar="N",
        help="shape of the targets when Y is stored flat (n_samples, n_targets)",
    )
    _add_compute(p)
    _add_chunking(p)
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
    _common(p)
    p.set_defaults(func=cmd_info)
    return parser


def main(argv=None) -> int:
    """Entry point of the `fastridge` command; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
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


def _describe(exc: BaseException) -> tuple[int, str]:
    """(exit code, one-line message) for an exception."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if _io.is_disk_full(exc):
        return EXIT_USAGE, f"out of disk space: {exc.strerror} ({exc.filename or ''})"
    if isinstance(exc, MemoryError):
        return EXIT_USAGE, "out of memory: lower --memory-budget or --target-chunk"
    if isinstance(exc, (UserError, ValueError, TypeError)):
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


def _target_chunk(value):
    if value in (None, "auto"):
        return "auto"
    try:
        chunk = int(value)
    except ValueError:
        raise UserError(f"--target-chunk must be a positive integer or 'auto', got {value!r}")
    if chunk < 1:
        raise UserError(f"--target-chunk must be >= 1, got {chunk}")
    return chunk


def _memory_budget(value):
    if value is None:
        return None
    from ._chunks import parse_bytes

    try:
        budget = parse_bytes(value)
    except ValueError:
        raise UserError(f"--memory-budget must be a size like 2GB or 512MiB, got {value!r}")
    if budget <= 0:
        raise UserError(f"--memory-budget must be positive, got {value!r}")
    return budget


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
            **kwargs,
        )
    finally:
        if stream is not sys.stdout:
            stream.close()
    return 0


def cmd_solve(args) -> int:
    raise UserError("not implemented yet")


def cmd_predict(args) -> int:
    raise UserError("not implemented yet")


def cmd_evaluate(args) -> int:
    raise UserError("not implemented yet")


def cmd_info(args) -> int:
    raise UserError("not implemented yet")
