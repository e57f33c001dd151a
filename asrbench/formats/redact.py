"""The one redaction helper: every secret masked before anything is printed, stored or rendered.

Everything asrbench shows or keeps that a user typed or the environment gave (the recorded
command line, `--history`, `--html-url` / $ASRBENCH_HTML_URL, the commands of `ab` and `bisect`,
driver messages) goes through `redact` (free text), `redact_argv` (a command line) or
`redact_url` (a history URL for messages). What is masked:

- a URL's password: `scheme://user:PASSWORD@host` (a password holding "@", "/" or a space is
  hidden whole: everything up to the "@" that is followed by the host);
- a token used as a URL's user: `https://hf_TOKEN@host`;
- `password=` / `sslpassword=` parameters (URL queries, libpq keyword strings such as
  `host=h dbname=db password=...`, quoted values included);
- assignments and options whose name ends in a secret word: `PGPASSWORD=...`,
  `HF_TOKEN=...` (also inside a command: `env HF_TOKEN=... asrbench`), `--token=...`,
  `--api-key ...` (the next argument of a command line);
- well-known token shapes wherever they stand: `hf_...` (Hugging Face), `ghp_` / `gho_` /
  `ghu_` / `ghs_` / `ghr_...` and `github_pat_...` (GitHub), `glpat-...` (GitLab),
  `Bearer ...` credentials.

Masking errs on the side of hiding: a false positive costs a `***` in a message.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote, unquote_plus, urlsplit, urlunsplit

REDACTED = "***"

#: a URL's password: from the user's ":" to the "@" that is followed by the host (the last "@"
#: of the address), spaces allowed, so `user:p@ss w/rd@host` is hidden whole
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@?#]*):(?P<secret>[^\n]*?)"
                           r"@(?=[^\s@/?#]*(?:[/?#\s'\"]|$))")
#: a name that says "secret": password, passwd, token, secret, api key, access key, credential
_SECRET_NAME = (r"[A-Za-z0-9_.-]*?"
                r"(?:pass(?:word|wd)|token|secret|api[-_]?key|access[-_]?key|credentials?)")
#: NAME=value, --name=value, name: value (quoted values whole)
_ASSIGNMENT = re.compile(rf"(?i)(?P<head>(?<![A-Za-z0-9]){_SECRET_NAME}\s*=\s*)"
                         r"(?P<secret>'(?:[^'\\]|\\.)*'?|\"(?:[^\"\\]|\\.)*\"?|[^\s&#;,]+)")
#: a command-line option whose next argument is a secret (`--token X`, `--password X`)
_SECRET_OPTION = re.compile(rf"(?i)^--?{_SECRET_NAME}$")
#: well-known token shapes
_TOKEN = re.compile(r"(?<![A-Za-z0-9])(?:hf_[A-Za-z0-9]{8,}|gh[pousr]_[A-Za-z0-9]{8,}"
                    r"|github_pat_[A-Za-z0-9_]{8,}|glpat-[A-Za-z0-9_-]{8,}"
                    r"|xox[abprs]-[A-Za-z0-9-]{8,})")
#: a long token used as a URL's user (`https://TOKEN@host`)
_URL_TOKEN_USER = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://)[A-Za-z0-9_-]{20,}@")
_BEARER = re.compile(r"(?i)(?P<head>\b(?:bearer|basic)\s+)[A-Za-z0-9._~+/=-]{8,}")


def redact(text: Any) -> str:
    """Text with every secret in it masked (see the module's docstring)."""
    text = _URL_PASSWORD.sub(lambda m: f"{m.group('head')}:{REDACTED}@", str(text))
    text = _ASSIGNMENT.sub(lambda m: f"{m.group('head')}{REDACTED}", text)
    text = _URL_TOKEN_USER.sub(lambda m: f"{m.group('head')}{REDACTED}@", text)
    text = _TOKEN.sub(REDACTED, text)
    return _BEARER.sub(lambda m: f"{m.group('head')}{REDACTED}", text)


def redact_argv(argv: Iterable[Any]) -> list[str]:
    """A command line fit to be shown or recorded: every argument through `redact`, and the
    argument after an option named like a secret (`--token X`) masked whole."""
    out: list[str] = []
    hide_next = False
    for arg in argv:
        text = str(arg)
        out.append(REDACTED if hide_next else redact(text))
        hide_next = bool(_SECRET_OPTION.match(text))
    return out


def redact_command(command: Any) -> str:
    """A command (a list, or a shell string) fit for a message."""
    if isinstance(command, (list, tuple)):
        return shlex.join(redact_argv(command))
    return redact(command)


def redact_usage(message: str) -> str:
    """An argparse usage error fit for a message: it quotes what the user typed (`unrecognized
    arguments: --token hf_...`), so its words are masked as a command line's, then the text."""
    return redact(" ".join(redact_argv(message.split(" "))))


def secrets_in(text: str) -> list[str]:
    """The secret values `redact` would mask in `text` (as written and percent-decoded),
    longest first, so a driver message quoting one of them in another form can be cleaned."""
    found = [m.group("secret") for m in _URL_PASSWORD.finditer(text)]
    found += [m.group("secret").strip("'\"") for m in _ASSIGNMENT.finditer(text)]
    found += [m.group(0) for m in _TOKEN.finditer(text)]
    found += [unquote(v) for v in found] + [unquote_plus(v) for v in found]
    return sorted({v for v in found if v}, key=len, reverse=True)


#: libpq's connection keywords (`host=... dbname=...`): a string made of such pairs is a
#: PostgreSQL connection string, never a file name
LIBPQ_KEYWORDS = frozenset((
    "host", "hostaddr", "port", "dbname", "user", "password", "passfile", "service",
    "connect_timeout", "client_encoding", "options", "application_name", "sslmode",
    "sslcert", "sslkey", "sslrootcert", "sslpassword", "target_session_attrs", "channel_binding",
    "gssencmode", "krbsrvname", "require_auth", "load_balance_hosts", "sslcrl", "sslcrldir",
    "sslsni", "requiressl", "keepalives", "keepalives_idle", "keepalives_interval",
    "keepalives_count", "tcp_user_timeout", "fallback_application_name", "replication",
))
_LIBPQ_PAIR = re.compile(r"\s*([A-Za-z_]+)\s*=\s*(?:'(?:[^'\\]|\\.)*'|[^\s']*)\s*")


def is_keyword_connection_string(text: str) -> bool:
    """Whether `text` is a libpq keyword/value connection string (`host=h dbname=db ...`):
    only key=value pairs, at least one key libpq knows."""
    text = str(text).strip()
    if "=" not in text:
        return False
    keys, pos = [], 0
    while pos < len(text):
        match = _LIBPQ_PAIR.match(text, pos)
        if not match or match.end() == pos:
            return False
        keys.append(match.group(1).lower())
        pos = match.end()
    return any(key in LIBPQ_KEYWORDS for key in keys)


def looks_like_a_connection_string(text: str) -> bool:
    """Whether `text` holds what only a connection string does (a password= parameter, a
    libpq keyword pair, a URL with credentials): never to be used as a file name."""
    text = str(text)
    return (is_keyword_connection_string(text) or bool(_ASSIGNMENT.search(text))
            or bool(_URL_PASSWORD.search(text)) or redact(text) != text)


def redact_url(url: str) -> str:
    """A history URL fit for messages: no password (neither the user's nor a password= /
    sslpassword= parameter; the query is dropped). A libpq keyword string keeps its keys
    with the password masked."""
    if is_keyword_connection_string(url):
        return redact(url)
    try:
        parts = urlsplit(url)
        port = parts.port  # ValueError: not a number, out of range
    except ValueError:
        # Unparsable (a bad bracket, a bad port): mask what looks like a secret, keep the rest
        # so the user sees which URL is meant.
        return redact(url)
    if parts.password is None and "@" not in parts.netloc:
        return redact(urlunsplit((parts.scheme, parts.netloc, parts.path, "", "")))
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 address goes back into brackets
        host = f"[{host}]"
    if port:
        host += f":{port}"
    user = parts.username
    netloc = f"{user}@{host}" if user else host
    return redact(urlunsplit((parts.scheme, netloc, parts.path, "", "")))


def redact_link(url: str) -> str:
    """A URL fit to be linked (a PR summary): its user and password dropped (a link holds no
    credentials), every other secret in it masked."""
    match = re.match(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<rest>.*)", str(url), re.S)
    if match:
        rest = match.group("rest")
        authority_end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
        at = rest.rfind("@", 0, authority_end)
        password = _URL_PASSWORD.match(url) if at < 0 else None
        if password:  # a password holding "/": up to the host's "@"
            at = password.end() - len(match.group("scheme")) - 1
        if at >= 0:
            url = match.group("scheme") + rest[at + 1:]
    return redact(url)
