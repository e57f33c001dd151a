"""Where a number came from: package versions, machine, device, commit, command line."""

from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from asrbench.formats.redact import REDACTED, redact_argv  # noqa: F401 (the one redaction helper)
from asrbench.formats.redact import redact as redact_secrets  # noqa: F401


PACKAGES = ("asrbench", "torch", "transformers", "datasets", "jiwer", "soundfile", "soxr",
            "numpy", "optimum-habana", "habana-torch-plugin", "ctranslate2")


def git_commit() -> dict[str, Any]:
    """Commit of the working directory's repository (and whether it has local changes)."""
    cwd = Path.cwd()
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                                    cwd=cwd, capture_output=True, text=True, timeout=10).stdout.strip())
        return {"commit": commit, "dirty": dirty}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def environment(device_info: dict[str, Any] | None = None) -> dict[str, Any]:
    """Where a number came from: versions, machine, device, commit."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "hostname": platform.node(),
        "cpu_count": os.cpu_count(),
        "packages": versions,
        "device": device_info or {},
        "git": git_commit(),
        # Reports are uploaded, stored and rendered: no password from the command line.
        "argv": redact_argv(sys.argv),
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
