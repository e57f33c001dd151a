"""Where a number came from: package versions, machine, device, commit, command line."""

from __future__ import annotations

import datetime as dt
import os
import platform
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

#: a URL's password (scheme://user:PASSWORD@host): everything from the user's ":" to the last
#: "@" of the word, so a password holding "@" or "/" (unencoded) is hidden whole
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@?#]*):[^\s]*@")
#: password=... and sslpassword=... (URL query parameters, libpq key=value strings)
_PASSWORD_PARAMETER = re.compile(r"(?i)(?P<head>\b(?:ssl)?password\s*=\s*)"
                                 r"(?:'(?:[^'\\]|\\.)*'?|[^\s&#;]+)")
REDACTED = "***"

PACKAGES = ("asrbench", "torch", "transformers", "datasets", "jiwer", "soundfile", "soxr",
            "numpy", "optimum-habana", "habana-torch-plugin", "ctranslate2")


def redact_secrets(text: str) -> str:
    """Text with the credentials of any URL or connection string in it masked: a URL's
    password (postgresql://user:***@host/db) and password= / sslpassword= parameters."""
    text = _URL_PASSWORD.sub(lambda m: f"{m.group('head')}:{REDACTED}@", str(text))
    return _PASSWORD_PARAMETER.sub(lambda m: f"{m.group('head')}{REDACTED}", text)


def redact_argv(argv: list[Any]) -> list[str]:
    """A command line fit to be recorded: every argument through redact_secrets (a
    `--history postgresql://user:PASSWORD@host/db` keeps its host, loses its password)."""
    return [redact_secrets(str(arg)) for arg in argv]


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
