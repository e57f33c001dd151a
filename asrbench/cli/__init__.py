"""The `asrbench` command: one module per command, parsing only; the work is in the other
packages."""
