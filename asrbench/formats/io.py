"""JSON I/O for every asrbench file: reads that name the file in one line, writes that are
atomic (temp file + fsync + rename), and the report's load and write."""

from __future__ import annotations

import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any

from asrbench.errors import AsrbenchError
from asrbench.formats.model import Report, dump, json_schemas, parse_report

def check_writable(path: Path) -> None:
    """Refuse, before any work, a report path that is a directory or in a directory that cannot
    be created or written."""
    path = Path(path)
    if path.is_dir():
        raise AsrbenchError(f"--report {path} is a directory: name a file, e.g. {path / 'report.json'}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=path.parent, prefix=".asrbench-probe-", delete=True)
        probe.close()
    except OSError as exc:
        raise AsrbenchError(f"--report {path}: its directory cannot be written "
                            f"({exc.strerror or exc})") from None


def write_report(path: Path, report: Report) -> None:
    """Write a report atomically (temp file + rename)."""
    write_json_atomic(path, dump(report))


def write_json_atomic(path: Path, document: Any) -> None:
    """Write JSON to a temp file in the target directory, then rename over the target."""
    text = json.dumps(document, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    write_text_atomic(path, text)


def write_text_atomic(path: Path, text: str) -> None:
    """Write text to a temp file in the target directory (fsynced), then rename over the
    target: a reader sees the old file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp makes the file private (0600); a report or baseline is read by others (CI
        # artifact upload, reviewers): keep an existing file's mode, else the umask's default.
        if path.exists():
            os.chmod(tmp, stat.S_IMODE(path.stat().st_mode))
        else:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def read_json(path: Path, what: str) -> Any:
    """Parse a JSON file; a missing or malformed file is a user error naming it."""
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise AsrbenchError(f"{what} {path} not found") from None
    except UnicodeDecodeError:
        raise AsrbenchError(f"invalid {what} {path}: not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise AsrbenchError(f"invalid {what} {path}: not valid JSON ({exc})") from None
    except (OSError, RecursionError) as exc:  # a directory, no permission, nested too deep
        raise AsrbenchError(f"{what} {path} cannot be read ({getattr(exc, 'strerror', None) or exc})") from None


def load_report(path: str | Path) -> Report:
    """Load a report and validate it (results.Report); errors name the file and the field."""
    path = Path(path)
    return parse_report(read_json(path, "report"), path)


def write_schemas(directory: str | Path) -> list[str]:
    """Write the published JSON Schemas into `directory` (schemas/ in the repository)."""
    written = []
    for name, schema in json_schemas().items():
        path = Path(directory) / name
        write_json_atomic(path, schema)
        written.append(str(path))
    return written


if __name__ == "__main__":  # python -m asrbench.formats.io [DIR]: regenerate schemas/
    import sys

    for path in write_schemas(sys.argv[1] if len(sys.argv) > 1 else "schemas"):
        print(f"written {path}")
