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
# pytest: the transformers-5-specific test below (tests/test_transformers_compat.py)
packages=(-e . "transformers>=5" "pytest>=8")
want="$( (cat pyproject.toml; echo "${packages[*]}") | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "smoke: installing torch==2.13.0 (CPU) and asrbench with transformers>=5 into $venv" >&2
    "$venv/bin/python" -m pip install -q --upgrade pip
    "$venv/bin/python" -c "import torch" 2>/dev/null || "$venv/bin/python" -m pip install -q torch==2.13.0
    "$venv/bin/python" -m pip install -q "${packages[@]}"
    echo "$want" > "$stamp"
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# One run per venv, capped at 12 decoder tokens so that clips reach the cap (where transformers
# 5 changed what generate()'s max_length counts): bf16 through asrbench's own greedy loop, with a
# reference check of 3 clips (stock generate() in fp32 on CPU in a child process). The fp32 run
# that used to come first proved nothing this one does not (same loop, same cap) and cost CI two
# more whisper-base processes.
common=(run --dataset-config en --language english --limit 3 --batch-size 2 --passes 1
        --generation-max-length 12 --no-progress)
"$venv/bin/python" -c "import transformers; print('smoke: transformers', transformers.__version__)"
# The static decoder must allocate its cache before a graph wrapper sees a step (transformers 5
# allocates static caches lazily; found with CUDA graphs on an H200).
"$venv/bin/python" -m pytest -p no:cacheprovider -q \
    tests/test_transformers_compat.py -k allocates
extra=(--precision bf16 --reference-utterances 3)
"$venv/bin/asrbench" "${common[@]}" "${extra[@]}" --report "$out/tf5.json"
.venv/bin/asrbench "${common[@]}" "${extra[@]}" --report "$out/tf455.json"
.venv/bin/python - "$out" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
a, b = (json.loads((out / f"{v}.json").read_text()) for v in ("tf5", "tf455"))
ra, rb = a["runs"][0], b["runs"][0]
pa = {u["id"]: u["prediction"] for u in ra["utterances"]}
pb = {u["id"]: u["prediction"] for u in rb["utterances"]}
versions = [d["environment"]["packages"]["transformers"] for d in (a, b)]
if versions[0].split(".")[0] != "5":
    sys.exit(f"smoke: expected transformers 5.x in the smoke venv, got {versions[0]}")
if pa != pb or not pa:
    sys.exit(f"smoke: transcripts differ between transformers {versions[0]} and "
             f"{versions[1]}: {pa} vs {pb}")
keys = ("utterances", "identical", "wer")
ga, gb = ({k: r["reference"][k] for k in keys} for r in (ra, rb))
if ga != gb or ga["utterances"] != 3:
    sys.exit(f"smoke: the reference check differs between transformers {versions[0]} and "
             f"{versions[1]}: {ga} vs {gb}")
print(f"smoke: reference check identical on both: {ga}")
print(f"smoke: {len(pa)} transcripts identical on transformers {versions[0]} and {versions[1]}")
PY
