"""`python -m asrbench` is the same as the `asrbench` console script."""

import sys

from asrbench.cli import main

if __name__ == "__main__":
    sys.exit(main())
