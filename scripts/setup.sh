#!/usr/bin/env bash
# Idempotent set-up of a fresh machine for asrbench on CPU: a virtual environment in .venv with
# torch 2.13.0 (CPU build), asrbench and its dev extra (pytest, the peers, optimum-habana for the
# emulated Gaudi); Debian's espeak-ng, ffmpeg and sox (only needed to regenerate the embedded
# corpus), chromium and chromium-driver (the HTML report's browser test) and postgresql (the
# history store's PostgreSQL tests start a throwaway server) when running as root. Re-running is
# cheap: the pip step is skipped while pyproject.toml is unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    missing=()
    for tool in espeak-ng ffmpeg sox; do command -v "$tool" >/dev/null 2>&1 || missing+=("$tool"); done
    command -v chromium >/dev/null 2>&1 || missing+=(chromium)
    command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
    compgen -G "/usr/lib/postgresql/*/bin/pg_ctl" >/dev/null || missing+=(postgresql)
    if [ ${#missing[@]} -gt 0 ]; then
        echo "setup: apt-get install ${missing[*]}" >&2
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
fi

if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv" >&2
    "${PYTHON:-python3}" -m venv .venv
fi
stamp=.venv/.asrbench-setup
want="$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "setup: installing torch==2.13.0 (CPU) and asrbench[dev] into .venv" >&2
    .venv/bin/python -m pip install -q --upgrade pip
    # torch is pinned here, not in pyproject: Gaudi and CUDA images bring their own build.
    .venv/bin/python -c "import torch" 2>/dev/null || .venv/bin/python -m pip install -q torch==2.13.0
    # constraints.txt keeps pip from backtracking for minutes over huggingface_hub releases.
    .venv/bin/python -m pip install -q -e ".[dev]" -c constraints.txt
    echo "$want" > "$stamp"
fi
# asrbench's own bytecode, written once here: where PYTHONDONTWRITEBYTECODE is set (as on these
# machines and many CI images) every process that imports asrbench (each test's and A/B round's
# child) would otherwise compile its ~75 modules again, 0.2-0.4 s each time on 2 cores.
# Up-to-date files are skipped; a file edited later is recompiled in memory, as without this.
# Not fatal: a read-only checkout runs as before (a syntax error fails the tests anyway).
.venv/bin/python -m compileall -q asrbench >/dev/null \
    || echo "setup: could not write all of asrbench's bytecode; continuing without it" >&2
