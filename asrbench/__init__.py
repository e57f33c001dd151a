"""asrbench: a regression benchmark suite for sequence-to-sequence speech recognition."""

from asrbench.errors import AsrbenchError

__version__ = "0.1.0"
__all__ = ["AsrbenchError", "__version__"]
