#!/usr/bin/env bash
# Set up (if needed) and run the default benchmark: bundled Whisper base on the embedded corpus,
# Hindi and English, writing reports/latest.json. Extra arguments go to `asrbench run`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/asrbench run "$@"
