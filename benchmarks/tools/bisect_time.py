"""How long `asrbench bisect` takes to name the commit that changed the counters in an 8-commit
history (issue 29: goal 120 s on the CPU; each step is an `asrbench run --counters-only`).

Clones this checkout's HEAD into a scratch repository and adds 7 commits on top: commits 2-5 and
7-8 touch a text file only; commit 6 adds one op per decode step to asrbench's own CPU decoder
(`scores = scores + 0` after the vocabulary projection: the transcripts are unchanged). Then
times `asrbench bisect <commit 1> <commit 8> --repo <scratch> --run-args <workload>` and checks
that it names commit 6.

    .venv/bin/python benchmarks/tools/bisect_time.py [--run-args "--dataset-config en ..."]

Research tool, not a test: the time depends on the machine and its load (docs/performance.md).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WORKLOAD = ("--device cpu --dataset-config en --language english --limit 2 --batch-size 2 "
            "--generation-max-length 30 --reference-utterances 0")
DECODER = Path("asrbench") / "measure" / "decoding.py"
ANCHOR = "            scores = model.proj_out(state[:, -1]).float()\n"
GIT_ENV = {"GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@example.com",
           "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@example.com",
           "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True,
                          env={**os.environ, **GIT_ENV}).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run-args", default=WORKLOAD, help=f"default: {WORKLOAD}")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="asrbench-bisect-time-") as tmp:
        repo = Path(tmp) / "repo"
        subprocess.run(["git", "clone", "-q", str(ROOT), str(repo)], check=True)
        commits = [git(repo, "rev-parse", "HEAD")]
        for number in range(2, 9):
            (repo / "BISECT_NOTE.txt").write_text(f"commit {number}\n")
            if number == 6:
                source = (repo / DECODER).read_text()
                if ANCHOR not in source:
                    sys.exit(f"bisect_time: {DECODER} has changed: no line {ANCHOR.strip()!r}")
                (repo / DECODER).write_text(source.replace(
                    ANCHOR, ANCHOR + "            scores = scores + 0  # one more op per step\n"))
            git(repo, "add", "-A")
            git(repo, "commit", "-q", "-m", f"commit {number}")
            commits.append(git(repo, "rev-parse", "HEAD"))
        command = [sys.executable, "-m", "asrbench", "bisect", commits[0], commits[-1],
                   "--repo", str(repo), "--run-args", args.run_args]
        load_before = "/".join(f"{x:.1f}" for x in os.getloadavg())
        start = time.perf_counter()
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
        wall = time.perf_counter() - start
        print(done.stdout[-3000:])
        if done.returncode not in (0, 1):
            sys.exit(f"bisect_time: bisect exited {done.returncode}:\n{done.stderr[-2000:]}")
        named = commits[5][:12] in done.stdout
        print(f"8 commits, the change in commit 6: bisect took {wall:.1f} s "
              f"({'named commit 6' if named else 'DID NOT name commit 6'}; goal <= 120 s) "
              f"[load average before {load_before}, after "
              f"{'/'.join(f'{x:.1f}' for x in os.getloadavg())}]")


if __name__ == "__main__":
    main()
