"""`python -m asrbench` is the same as the `asrbench` console script."""

from asrbench.cli.main import entry

if __name__ == "__main__":
    entry()
