"""This repository's own pytest set-up: the asrbench plugin (also installed as a pytest11 entry
point, so any repository gets it with `pip install asrbench`), plus the short option names
(--device, --precision, ...) that the README's commands use here. The plugin itself registers
only --asrbench-* names, which cannot clash with another plugin's or conftest's options."""

pytest_plugins = ["asrbench.plugin"]


def pytest_addoption(parser):
    from asrbench.config.options import add_short_aliases

    add_short_aliases(parser)
