"""`python -m fastridge ...` runs the command line (see fastridge.cli)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
