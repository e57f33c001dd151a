#!/usr/bin/env bash
# Smoke run on current transformers (5.x), as a CPU or CUDA team would install asrbench: a
# separate venv (.venv-tf5) with torch==2.13.0 (CPU) and `pip install -e . "transformers>=5"`,
# no constraints and no extras (optimum-habana, which needs transformers 4.55, is not there).
# It runs a short English benchmark there and in the main .venv (transformers 4.55) and fails
# unless both produce the same transcripts. Needs `bash scripts/setup.sh` first (the main venv).
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.venv-tf5
if [ ! -x "$venv/bin/python" ]; then "${PYTHON:-python3}" -m venv "$venv"; fi
stamp=$venv/.asrbench-setup
want="$(cat pyproject.toml | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "smoke: installing torch==2.13.0 (CPU) and asrbench with transformers>=5 into $venv" >&2
    "$venv/bin/python" -m pip install -q --upgrade pip
    "$venv/bin/python" -c "import torch" 2>/dev/null || "$venv/bin/python" -m pip install -q torch==2.13.0
    "$venv/bin/python" -m pip install -q -e . "transformers>=5"
    echo "$want" > "$stamp"
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
args=(run --dataset-config en --language english --limit 3 --batch-size 2 --passes 1
      --generation-max-length 40 --no-progress)
"$venv/bin/python" -c "import transformers; print('smoke: transformers', transformers.__version__)"
"$venv/bin/asrbench" "${args[@]}" --report "$out/tf5.json"
.venv/bin/asrbench "${args[@]}" --report "$out/tf455.json"
.venv/bin/python - "$out/tf5.json" "$out/tf455.json" <<'PY'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
pa = {u["id"]: u["prediction"] for u in a["runs"][0]["utterances"]}
pb = {u["id"]: u["prediction"] for u in b["runs"][0]["utterances"]}
versions = [d["environment"]["packages"]["transformers"] for d in (a, b)]
if versions[0].split(".")[0] != "5":
    sys.exit(f"smoke: expected transformers 5.x in the smoke venv, got {versions[0]}")
if pa != pb or not pa:
    sys.exit(f"smoke: transcripts differ between transformers {versions[0]} and {versions[1]}: {pa} vs {pb}")
print(f"smoke: {len(pa)} transcripts identical on transformers {versions[0]} and {versions[1]}")
PY
