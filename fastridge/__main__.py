"""`python -m fastridge ...` and the `fastridge` command: the command line
(fastridge.cli), imported here so that a Ctrl-C while torch loads ends as any other
interrupt does (one line, exit 130) instead of in a traceback."""

import os
import sys

EXIT_INTERRUPTED = 130  # (cli.EXIT_INTERRUPTED; cli is not importable yet)


def run() -> int:
    try:
        from .cli import main
    except KeyboardInterrupt:
        print("fastridge: interrupted", file=sys.stderr)
        code = EXIT_INTERRUPTED
    else:
        code = main()
    if code == EXIT_INTERRUPTED:
        # A handled Ctrl-C could still end the interpreter by SIGINT at its exit
        # (exit -2 instead of 130 in 4-6 of 24 runs interrupted 0.3-1.4 s in, measured):
        # the process ends here, its output flushed, as nothing is left to clean up.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(EXIT_INTERRUPTED)
    return code


if __name__ == "__main__":
    sys.exit(run())
