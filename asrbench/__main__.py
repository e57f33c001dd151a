"""`python -m asrbench` is the same as the `asrbench` console script."""

import sys

from asrbench.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
