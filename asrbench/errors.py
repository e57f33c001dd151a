"""The one exception type for errors a user can cause and fix."""

from __future__ import annotations

import importlib
from typing import Any


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name if empty), for one-line errors."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class AsrbenchError(Exception):
    """A problem the user can fix (bad path, bad audio, unknown model, missing baseline).

    The message says what was wrong and what to do; the CLI prints it on one line, without
    a traceback, and exits with status 2.
    """


def require(module: str, extra: str, what: str | None = None) -> Any:
    """Import an optional dependency; missing, it is one line naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError:
        raise AsrbenchError(f"{what or 'asrbench ' + extra} needs the {extra!r} extra: "
                            f"pip install 'asrbench[{extra}]'") from None
