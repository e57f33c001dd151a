"""Root conftest: registers the asrbench pytest plugin for tests/ and benchmarks/."""

pytest_plugins = ["asrbench.plugin"]
