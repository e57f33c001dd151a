"""JSON I/O for every asrbench file: reads that name the file in one line, writes that are
atomic (temp file + fsync + rename), and the report's load and write."""

from __future__ import annotations

import errno
import json
import os
import re
import stat
import tempfile
from pathlib import Path
from typing import Any

from asrbench.errors import AsrbenchError
from asrbench.formats.model import Report, dump, json_schemas, parse_report

#: where files live by default (relative to the working directory): one place for every door
DEFAULT_REPORT = Path("reports") / "latest.json"
DEFAULT_BASELINE_DIR = Path("baselines")

#: deepest nesting of objects and lists a file may have; asrbench's own files are under 10
#: deep. Deeper input (hostile or broken) is refused where it is read, before any recursive
#: code (validation, json.dumps, the store, the HTML) can hit Python's recursion limit.
MAX_DEPTH = 64
#: the longest integer literal a file may hold (digits): a report's counts fit in 16 digits
#: (formats.model.MAX_COUNT); a longer one is refused where it is read, before int() refuses
#: it with Python's "Exceeds the limit (4300 digits)" or float() overflows on it
MAX_INTEGER_DIGITS = 40
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
LONE_SURROGATE = re.compile("[\ud800-\udfff]")


class _HugeInteger:
    """An integer literal too long to be a number asrbench reads (refused by check_document,
    which names its place)."""

    def __init__(self, text: str) -> None:
        self.digits = len(text.lstrip("-"))


def _parse_int(text: str) -> Any:
    return _HugeInteger(text) if len(text) > MAX_INTEGER_DIGITS else int(text)


def _location(parts: list[Any]) -> str:
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _IDENTIFIER.fullmatch(part):
            out += f".{part}" if out else part
        else:
            out += f"[{json.dumps(part, ensure_ascii=True)}]"
    return out or "(top level)"


def check_document(document: Any, what: str, path: Any) -> Any:
    """Refuse a parsed JSON document nested deeper than MAX_DEPTH or holding a lone UTF-16
    surrogate ("\\ud800" is valid JSON but no text: it cannot be written as UTF-8, so the
    store, the HTML and the terminal would fail on it later). One line naming the place."""
    stack: list[tuple[Any, list[Any]]] = [(document, [])]
    while stack:
        value, where = stack.pop()
        if isinstance(value, _HugeInteger):
            raise AsrbenchError(f"invalid {what} {path}: {_location(where)}: an integer of "
                                f"{value.digits} digits (more than {MAX_INTEGER_DIGITS}: no "
                                "count is that large)")
        if isinstance(value, str):
            if LONE_SURROGATE.search(value):
                raise AsrbenchError(f"invalid {what} {path}: {_location(where)}: lone surrogate "
                                    "(a \\ud800-\\udfff escape that is not a character)")
            continue
        if not isinstance(value, (dict, list)):
            continue
        if len(where) >= MAX_DEPTH:
            raise AsrbenchError(f"invalid {what} {path}: {_location(where[:3])}...: nested "
                                f"deeper than {MAX_DEPTH} levels")
        if isinstance(value, dict):
            for key, item in value.items():
                if LONE_SURROGATE.search(key):
                    raise AsrbenchError(f"invalid {what} {path}: {_location(where)}: a key "
                                        "holds a lone surrogate")
                stack.append((item, where + [key]))
        else:
            stack.extend((item, where + [i]) for i, item in enumerate(value))
    return document


def loads_checked(text: str | bytes, what: str, path: Any) -> Any:
    """Parse JSON text (e.g. a stored row) with the same checks as read_json."""
    try:
        document = json.loads(text, parse_int=_parse_int)
    except RecursionError:
        raise AsrbenchError(f"invalid {what} {path}: nested deeper than {MAX_DEPTH} "
                            "levels") from None
    except (TypeError, ValueError) as exc:
        raise AsrbenchError(f"invalid {what} {path}: not valid JSON "
                            f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
                            ) from None
    return check_document(document, what, path)


def check_writable(path: Path, option: str = "--report") -> None:
    """Refuse, before any work, an output path that is a directory or in a directory that
    cannot be created or written; the message names the option it came from."""
    path = Path(path)
    if path.is_dir():
        raise AsrbenchError(f"{option} {path} is a directory: name a file, e.g. "
                            f"{path / ('report.json' if option == '--report' else 'result.json')}")
    kind = not_regular(path)
    if kind:
        raise AsrbenchError(f"{option} {path} is {kind}, which a write would replace: name a "
                            "regular file")
    try:
        # the nearest folder that exists is probed; the missing ones are made by the write
        # itself (write_text_atomic), so a command refused later leaves no empty folders
        ancestor = path.parent
        while not ancestor.exists() and ancestor.parent != ancestor:
            ancestor = ancestor.parent
        if not ancestor.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, f"{ancestor} is not a directory")
        probe = tempfile.NamedTemporaryFile(dir=ancestor, prefix=".asrbench-probe-", delete=True)
        probe.close()
    except OSError as exc:
        raise AsrbenchError(f"{option} {path}: its directory cannot be written "
                            f"({exc.strerror or exc})") from None


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether two paths name one file (another name, a link, a hard link included); a path
    that does not exist yet, a link loop or a name too long compares by its real path, never
    as a traceback."""
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):
        return os.path.realpath(a) == os.path.realpath(b)


def not_regular(path: Path) -> str:
    """What an existing output path is when it is neither a regular file nor a directory
    ("a character device", "a FIFO", ...; links followed); "" for a regular file, a directory
    or nothing. An atomic write renames a new file over its target, which would replace
    /dev/null itself for a root user who names it as a report."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return ""
    for test, name in ((stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return ""


def write_report(path: Path, report: Report) -> None:
    """Write a report atomically (temp file + rename)."""
    write_json_atomic(path, dump(report))


def write_json_atomic(path: Path, document: Any) -> None:
    """Write JSON to a temp file in the target directory, then rename over the target."""
    text = json.dumps(document, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    write_text_atomic(path, text)


def write_text_atomic(path: Path, text: str) -> None:
    """Write text to a temp file in the target directory (fsynced), then rename over the
    target: a reader sees the old file or the new one, never half of one. A symbolic link is
    written through: its target is replaced (atomically, in the target's directory) and the
    link stays a link, so a baseline kept elsewhere and linked in is the file that changes."""
    path = Path(path)
    if path.is_symlink():
        path = Path(os.path.realpath(path))
    kind = not_regular(path)
    if kind:  # the rename would put a regular file where a device, FIFO or socket was
        raise OSError(errno.EINVAL, f"{kind}, not a regular file", str(path))
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
            document = json.load(fh, parse_int=_parse_int)
    except FileNotFoundError:
        if Path(path).is_symlink():  # a link whose target is gone (not mounted, moved)
            raise AsrbenchError(f"{what} {path} is a link to {os.readlink(path)}, which does "
                                "not exist") from None
        raise AsrbenchError(f"{what} {path} not found") from None
    except UnicodeDecodeError:
        raise AsrbenchError(f"invalid {what} {path}: not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise AsrbenchError(f"invalid {what} {path}: not valid JSON ({exc})") from None
    except RecursionError:
        raise AsrbenchError(f"invalid {what} {path}: nested deeper than {MAX_DEPTH} "
                            "levels") from None
    except OSError as exc:  # a directory, no permission
        raise AsrbenchError(f"{what} {path} cannot be read ({exc.strerror or exc})") from None
    return check_document(document, what, path)


def load_report(path: str | os.PathLike[str]) -> Report:
    """Load a report and validate it (model.Report); errors name the file and the field."""
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
