"""`python -m fastridge ...` and the `fastridge` command: the command line
(fastridge.cli), imported here so that a Ctrl-C while torch loads ends as any other
interrupt does (one line, exit 130) instead of in a traceback."""

import sys


def run() -> int:
    try:
        from .cli import main
    except KeyboardInterrupt:
        print("fastridge: interrupted", file=sys.stderr)
        return 130  # (cli.EXIT_INTERRUPTED, not importable yet)
    return main()


if __name__ == "__main__":
    sys.exit(run())
