"""Structural regressions written outside the project, judged by the real CLI (issue 29).

Each case is what a user or a pull request would do, written where asrbench cannot see it:

- a *plugin*: a `sitecustomize.py` in a folder put on PYTHONPATH, which patches transformers'
  Whisper classes when Python imports them (an instance-level `forward`, a forward hook);
- a *patched checkout*: a copy of this checkout (`git archive HEAD`) in a scratch git repository
  with one line of asrbench changed and committed, run from there.

For each device configuration a case needs, a clean timed run (`asrbench run --passes 1`) is
recorded as the baseline (`asrbench baseline update`); then every case runs `asrbench run
--counters-only` under its regression and `asrbench compare` judges the report against that
baseline. A case is caught when compare fails (exit 1) and its output names what the case
expects (the op, the bytes, the call site, the captured module and shapes). Then `--reruns`
clean counters-only runs are compared with the baseline: their counters must not differ in
any field (the report's `counters` less `seconds` and `first_calls`), and compare must pass.

    .venv/bin/python benchmarks/tools/out_of_tree.py [--cases all] [--reruns 10]
        [--model DIR] [--keep DIR]

Without --model a tiny random Whisper is built (tests/helpers.py's): the cases are about what
runs around the model, and a clip then costs milliseconds. Prints, per case, the compare
verdict line and the lines that name the regression; then the reruns' counter differences.
Research tool (tests/test_out_of_tree.py runs two cases and three reruns through it).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

#: the device configurations the cases run on, as `asrbench run` options (tiny Whisper sized)
CONFIGS = {
    # 3 clips in batches of 2: a full batch and a partial last batch of 1 row
    "cpu": ["--device", "cpu", "--batch-size", "2", "--limit", "3"],
    "cpu-bf16": ["--device", "cpu", "--precision", "bf16", "--batch-size", "2", "--limit", "3"],
    # the emulated Gaudi with HPU graphs: static shapes, captures gated
    "hpu-emulated": ["--device", "hpu-emulated", "--graphs", "--batch-size", "2", "--limit", "2"],
}
COMMON = ["--dataset-config", "en", "--language", "english", "--generation-max-length", "16",
          "--reference-utterances", "0", "--no-progress"]

#: Shared by every plugin: run `patch(module)` once Python has imported `module`'s name.
ON_IMPORT = '''
import importlib.abc
import importlib.util
import sys


def on_import(name, patch):
    class Finder(importlib.abc.MetaPathFinder):
        def find_spec(self, fullname, path, target=None):
            if fullname != name:
                return None
            sys.meta_path.remove(self)
            spec = importlib.util.find_spec(fullname)
            load = spec.loader.exec_module

            def exec_module(module):
                load(module)
                patch(module)

            spec.loader.exec_module = exec_module
            return spec

    sys.meta_path.insert(0, Finder())
'''

WHISPER = "transformers.models.whisper.modeling_whisper"


@dataclass
class Case:
    """One out-of-tree regression: where it is written and what compare must name."""

    name: str
    config: str  # a CONFIGS key
    expect: list[str]  # substrings compare's output must contain
    plugin: str = ""  # a sitecustomize.py body (after ON_IMPORT), or
    patch: tuple[str, str, str] = ("", "", "")  # (file, old line, new line) in a checkout copy
    about: str = ""
    found: list[str] = field(default_factory=list)


CASES = [
    Case("instance-level patch", "cpu-bf16",
         ["aten.addmm f32 +1 (new)", "decode step: "], about=(
             "a user's instance-level forward on every decoder fc1: fp32 matmul under bf16"),
         plugin=f'''
import torch


def fp32_fc1(module):
    init = module.WhisperDecoderLayer.__init__

    def __init__(self, *args, **kwargs):
        init(self, *args, **kwargs)
        fc1 = self.fc1

        def forward(x):  # an instance-level forward, as accelerate hooks and user patches set
            with torch.autocast(x.device.type, enabled=False):  # fp32 whatever autocast says
                out = torch.nn.functional.linear(x.float(), fc1.weight.float(),
                                                 fc1.bias.float())
            return out.to(x.dtype)

        fc1.forward = forward

    module.WhisperDecoderLayer.__init__ = __init__


on_import("{WHISPER}", fp32_fc1)
'''),
    Case("tolist per decode step", "cpu",
         ["host reads: Tensor.tolist @ ", "sitecustomize.py:", "(new)"], about=(
             "a forward hook that reads the decoder's output back with .tolist() every step "
             "(no aten op)"),
         plugin=f'''
TRACE = []


def trace_tokens(module):
    init = module.WhisperDecoder.__init__

    def __init__(self, *args, **kwargs):
        init(self, *args, **kwargs)

        def read_back(decoder, args, output):  # no aten op: only the read
            TRACE.append(output.last_hidden_state.tolist())

        self.register_forward_hook(read_back)

    module.WhisperDecoder.__init__ = __init__


on_import("{WHISPER}", trace_tokens)
'''),
    Case("partial last batch only", "cpu",
         ["batch 2/2", "aten.mm f32", "(new)"], about=(
             "an extra matmul per decoder layer only when a batch has one row (the last batch)"),
         plugin=f'''
import torch


def single_row_matmul(module):
    init = module.WhisperDecoderLayer.__init__

    def __init__(self, *args, **kwargs):
        init(self, *args, **kwargs)

        def extra(layer, args, output):
            hidden = output[0] if isinstance(output, tuple) else output
            if hidden.shape[0] == 1:
                torch.mm(hidden.reshape(-1, hidden.shape[-1]), hidden.new_ones(hidden.shape[-1], 4))

        self.register_forward_hook(extra)

    module.WhisperDecoderLayer.__init__ = __init__


on_import("{WHISPER}", single_row_matmul)
'''),
    Case("outputs kept alive", "cpu",
         ["bytes still alive after the batch 0 -> "], about=(
             "a forward hook that keeps every decoder layer's output (a leak)"),
         plugin=f'''
KEPT = []


def keep_outputs(module):
    init = module.WhisperDecoderLayer.__init__

    def __init__(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self.register_forward_hook(lambda layer, args, output: KEPT.append(output))

    module.WhisperDecoderLayer.__init__ = __init__


on_import("{WHISPER}", keep_outputs)
'''),
    Case("mark_step per decoder layer", "hpu-emulated",
         ["device syncs: htcore.mark_step @ ", "sitecustomize.py:", "(new)"], about=(
             "a forward hook that ends the lazy-mode graph after every decoder layer "
             "(htcore.mark_step(): no aten op; on Gaudi a graph split per layer)"),
         plugin=f'''
def mark_per_layer(module):
    init = module.WhisperDecoderLayer.__init__

    def __init__(self, *args, **kwargs):
        init(self, *args, **kwargs)

        def mark(layer, args, output):
            import habana_frameworks.torch.core as htcore  # as Gaudi code calls it
            htcore.mark_step()

        self.register_forward_hook(mark)

    module.WhisperDecoderLayer.__init__ = __init__


on_import("{WHISPER}", mark_per_layer)
'''),
    Case("recapture per shape", "hpu-emulated",
         ["graph compilations/captures 3 -> ", "_Step(2x5 i64, 5 i64) +1 (new)"], about=(
             "a patched checkout whose static decoder feeds every step the whole token history "
             "(same tokens, a new input shape per step: a recapture per step)"),
         patch=("asrbench/measure/decoding.py",
                "            chosen = self.step(chosen[:, None], self.cursor)",
                "            chosen = self.step(self.out[:, :length].clone(), "
                "torch.arange(length, device=self.out.device))")),
]


#: another checkout whose asrbench every run uses (--asrbench: an older commit, to see what it
#: said), and the mode of the regressed runs and reruns (--mode)
OTHER: list[Path] = []
MODE = ["--counters-only"]
COMPARE: list[str] = []  # more `asrbench compare` options (--compare-args)


def asrbench(argv: list[str], *, pythonpath: str = "", cwd: Path = ROOT,
             check: bool = True) -> subprocess.CompletedProcess:
    """`python -m asrbench ...` in a fresh process (PYTHONPATH first: a plugin, a checkout)."""
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    paths = [p for p in (pythonpath, *map(str, OTHER)) if p]
    if OTHER and cwd == ROOT:
        cwd = OTHER[0]
    if paths:
        env["PYTHONPATH"] = os.pathsep.join(paths)
    done = subprocess.run([sys.executable, "-m", "asrbench", *argv], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=1800)
    if check and done.returncode != 0:
        sys.exit(f"out_of_tree: asrbench {' '.join(argv[:3])} ... exited {done.returncode}:\n"
                 f"{done.stderr[-3000:]}{done.stdout[-2000:]}")
    return done


def run_options(model: Path, config: str, report: Path) -> list[str]:
    return ["run", "--model", str(model), *CONFIGS[config], *COMMON, "--report", str(report)]


def record_baselines(model: Path, configs: set[str], work: Path, baselines: Path) -> None:
    """A clean timed run per configuration, recorded as its baseline entry."""
    for config in sorted(configs):
        report = work / f"baseline-{config}.json"
        asrbench([*run_options(model, config, report), "--passes", "1"])
        asrbench(["baseline", "update", "--report", str(report), "--baseline-dir",
                  str(baselines)])


def checkout_copy(work: Path, patch: tuple[str, str, str]) -> Path:
    """This checkout's HEAD in a scratch git repository, one line of it changed and
    committed (what a pull request's branch is)."""
    copy = work / "checkout"
    if copy.exists():
        shutil.rmtree(copy)
    copy.mkdir()
    archive = subprocess.run(["git", "-C", str(OTHER[0] if OTHER else ROOT), "archive", "HEAD"],
                             check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(copy)], input=archive, check=True)
    path, old, new = patch
    text = (copy / path).read_text()
    if text.count(old + "\n") != 1:
        sys.exit(f"out_of_tree: {path} no longer has the line the case patches:\n{old}")
    (copy / path).write_text(text.replace(old + "\n", new + "\n"))
    git = ["git", "-C", str(copy), "-c", "user.name=pr", "-c", "user.email=pr@example.invalid"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "the pull request"], check=True)
    return copy


def run_case(case: Case, model: Path, work: Path, baselines: Path) -> tuple[bool, str, float]:
    """The case's counters-only run and compare: (caught, compare's output, seconds)."""
    start = time.perf_counter()
    report = work / f"case-{case.name.replace(' ', '-')}.json"
    if case.plugin:
        plugin = work / f"plugin-{case.name.replace(' ', '-')}"
        plugin.mkdir(exist_ok=True)
        (plugin / "sitecustomize.py").write_text(ON_IMPORT + case.plugin)
        pythonpath, cwd = str(plugin), ROOT
    else:
        cwd = checkout_copy(work, case.patch)
        pythonpath = str(cwd)
    asrbench([*run_options(model, case.config, report), *MODE], pythonpath=pythonpath, cwd=cwd)
    done = asrbench(["compare", "--report", str(report), "--baseline-dir", str(baselines),
                     *COMPARE], check=False)
    out = done.stdout + done.stderr
    case.found = [e for e in case.expect if e in out]
    return done.returncode == 1 and len(case.found) == len(case.expect), out, \
        time.perf_counter() - start


def naming_lines(out: str, case: Case, most: int = 4) -> list[str]:
    """compare's failing lines that name the regression (its first expected text; the first
    `most` of them), and its result line."""
    lines = [line.strip() for line in out.splitlines()]
    named = [line for line in lines if line.startswith("FAIL") and case.expect[0] in line]
    return named[:most] + [line for line in lines if line.startswith("result:")]


def counters_of(report: Path) -> dict:
    (run,) = json.loads(report.read_text())["runs"]
    counters = run["counters"] or {}
    for how in ("seconds", "first_calls"):  # how long and how the run counted, not what
        counters.pop(how, None)
    return counters


def differences(a: object, b: object, where: str = "") -> list[str]:
    """The paths at which two JSON values differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for key in sorted(set(a) | set(b))
                for d in differences(a.get(key), b.get(key), f"{where}.{key}")]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{where}[{i}]")]
    return [] if a == b else [where or "."]


def clean_reruns(model: Path, work: Path, baselines: Path, reruns: int
                 ) -> tuple[int, list[str]]:
    """`reruns` clean counters-only runs of the CPU configuration, each compared with the
    baseline by `asrbench compare` (must pass) and field by field with the baseline's
    counters: (compares that did not pass, counter differences)."""
    reference = counters_of(work / "baseline-cpu.json")
    failed, found = 0, []
    for number in range(reruns):
        report = work / f"rerun-{number}.json"
        asrbench([*run_options(model, "cpu", report), *MODE])
        done = asrbench(["compare", "--report", str(report), "--baseline-dir", str(baselines)],
                        check=False)
        failed += done.returncode != 0
        found += [f"rerun {number + 1}: {d}" for d in differences(reference, counters_of(report))]
    return failed, found


def tiny_model(work: Path) -> Path:
    sys.path.insert(0, str(ROOT / "tests"))
    from factories import write_tiny_whisper

    return write_tiny_whisper(work / "tiny-whisper")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    names = [c.name.replace(" ", "-") for c in CASES]
    parser.add_argument("--cases", nargs="+", default=["all"], choices=["all", "none", *names])
    parser.add_argument("--reruns", type=int, default=10, help="clean counters-only reruns")
    parser.add_argument("--model", type=Path, help="a Whisper model folder (default: tiny)")
    parser.add_argument("--keep", type=Path, help="work here and keep the reports")
    parser.add_argument("--asrbench", type=Path, help="run this checkout's asrbench instead "
                        "(e.g. a `git worktree` of an older commit)")
    parser.add_argument("--mode", default="--counters-only",
                        help="the regressed runs' mode (default --counters-only; an older "
                             "asrbench: '--passes 1')")
    parser.add_argument("--compare-args", default="",
                        help="more compare options (timed runs on a loaded machine: "
                             "'--throughput warn', so that the counters decide)")
    args = parser.parse_args(argv)
    COMPARE[:] = args.compare_args.split()
    OTHER[:] = [args.asrbench.resolve()] if args.asrbench else []
    MODE[:] = args.mode.split()
    wanted = (CASES if "all" in args.cases else
              [c for c in CASES if c.name.replace(" ", "-") in args.cases])
    work = args.keep or Path(tempfile.mkdtemp(prefix="asrbench-out-of-tree-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        model = args.model or tiny_model(work)
        baselines = work / "baselines"
        record_baselines(model, {c.config for c in wanted} | ({"cpu"} if args.reruns else set()),
                         work, baselines)
        missed = 0
        for case in wanted:
            caught, out, seconds = run_case(case, model, work, baselines)
            missed += not caught
            print(f"{'CAUGHT' if caught else 'MISSED'}: {case.name} ({case.config}; "
                  f"{'plugin on PYTHONPATH' if case.plugin else 'patched checkout'}: "
                  f"{case.about}) [{seconds:.1f} s]", flush=True)
            for line in naming_lines(out, case):
                print(f"    {line}")
            if not caught:
                print(f"    expected, not found: "
                      f"{[e for e in case.expect if e not in case.found]}")
        if args.reruns:
            failed, found = clean_reruns(model, work, baselines, args.reruns)
            print(f"{args.reruns} clean reruns ({' '.join(MODE)}): {len(found)} counter "
                  f"difference(s) from the baseline, compare failed {failed} time(s)")
            for line in found[:20]:
                print(f"    {line}")
            missed += failed + bool(found)
        return 1 if missed else 0
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
