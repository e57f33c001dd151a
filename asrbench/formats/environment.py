"""Where a number came from: package versions, machine, device, commit, command line."""

from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
import sys
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from asrbench.formats.redact import REDACTED, redact_argv  # noqa: F401 (the one redaction helper)
from asrbench.formats.redact import redact as redact_secrets  # noqa: F401
from asrbench.processes import allocator_policy

PACKAGES = ("asrbench", "torch", "transformers", "datasets", "jiwer", "soundfile", "soxr",
            "numpy", "optimum-habana", "habana-torch-plugin", "ctranslate2")


#: the device environment key that says how this CPU computes bf16 (cpu_bf16_arithmetic)
CPU_BF16 = "cpu_bf16"
#: the device environment key that names the processor's make (cpu_identity): bf16 rounding
#: follows the kernels oneDNN picks for it, not only its instruction set
CPU_ID = "cpu_id"
#: /proc/cpuinfo fields that name a processor's make: x86 (vendor, family, model), Arm
#: (implementer, architecture, part), POWER (cpu)
_IDENTITY_FIELDS = ("vendor_id", "cpu family", "model", "CPU implementer", "CPU architecture",
                    "CPU part", "cpu")
#: oneDNN's ISA ceiling (ONEDNN_MAX_CPU_ISA) name fragments, highest first, and the level
_ISA_CAPS = (("AMX", "amx-bf16"), ("BF16", "avx512-bf16"), ("FP16", "avx512-bf16"),
             ("AVX10", "avx512-bf16"), ("AVX512", "avx512"), ("AVX2", "avx2"), ("AVX", "avx2"),
             ("SSE", "avx2"))
_LEVELS = ("other", "avx2", "avx512", "avx512-bf16", "amx-bf16")


def cpu_identity(cpuinfo: str | None = None) -> str | None:
    """The processor's make, from the first processor's /proc/cpuinfo entry (`cpuinfo`: its
    text, read when None), e.g. "vendor_id GenuineIntel, cpu family 6, model 207"; None where
    it names none (no /proc/cpuinfo: Windows, macOS), so that no two such machines count as the
    same make (an Intel and an AMD Windows machine are both "AMD64"). Two processors with the
    same instruction set round bf16 differently where oneDNN runs other kernels on them (issue
    29's Hindi transcript `tomatarkarive` read `tomatarkarivay` on an Intel Xeon without AMX,
    both AVX512-BF16, against the baseline an AMD EPYC recorded), so reduced-precision
    transcripts are gated exactly only between runs on the same make (gate/compare.py)."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
                cpuinfo = fh.read(65536)
        except OSError:
            cpuinfo = ""
    found: dict[str, str] = {}
    for line in cpuinfo.split("\n"):
        if not line.strip():
            if found:
                break  # the first processor's entry is enough: all are the same make
            continue
        name, _, value = line.partition(":")
        name, value = name.strip(), " ".join(value.split())
        if name in _IDENTITY_FIELDS and value and name not in found:
            found[name] = value[:64]
    if found:
        return ", ".join(f"{name} {found[name]}" for name in _IDENTITY_FIELDS if name in found)
    return None


def cpu_bf16_arithmetic(flags: set[str] | None = None, machine: str | None = None,
                        environ: dict[str, str] | None = None) -> str:
    """How this processor computes bf16 matmuls, as a key: "amx-bf16" (AMX tiles),
    "avx512-bf16" (AVX512-BF16 dot products), "avx512" or "avx2" (bf16 converted to fp32 and
    back), "<machine>" elsewhere; capped by ONEDNN_MAX_CPU_ISA where that is set. bf16
    results on the CPU round differently on each (issue 29: a Hindi transcript changed on an
    AMX Xeon), so reduced-precision transcripts are gated exactly only between runs with the
    same key (gate/compare.py). `flags`: /proc/cpuinfo's (read when None)."""
    machine = machine or platform.machine()
    variables: Mapping[str, str] = os.environ if environ is None else environ
    if flags is None:
        flags = set()
        try:
            with open("/proc/cpuinfo", encoding="utf-8") as fh:
                for line in fh:
                    if line.startswith("flags"):
                        flags = set(line.split(":", 1)[1].split())
                        break
        except OSError:
            pass
    if machine not in ("x86_64", "AMD64", "i686", "i386") and not flags & {"avx2", "avx512f"}:
        return machine or "other"
    if {"amx_bf16", "amx_tile"} <= flags:
        level = "amx-bf16"
    elif "avx512_bf16" in flags:
        level = "avx512-bf16"
    elif {"avx512f", "avx512bw", "avx512vl"} <= flags:
        level = "avx512"
    elif "avx2" in flags:
        level = "avx2"
    else:
        level = "other"
    cap = variables.get("ONEDNN_MAX_CPU_ISA", "").upper()
    if cap and cap != "ALL":
        capped = next((name for part, name in _ISA_CAPS if part in cap), "other")
        if _LEVELS.index(capped) < _LEVELS.index(level):
            level = capped
    return level


def git_commit() -> dict[str, Any]:
    """Commit of the working directory's repository (and whether it has local changes)."""
    cwd = Path.cwd()
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                                    cwd=cwd, capture_output=True, text=True, timeout=10
                                    ).stdout.strip())
        return {"commit": commit, "dirty": dirty}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def environment(device_info: dict[str, Any] | None = None) -> dict[str, Any]:
    """Where a number came from: versions, machine, device, commit."""
    versions: dict[str, str | None] = {}
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
        # what the C library's allocator was told (processes.keep_freed_memory): None where
        # nothing measured in this process
        "allocator": allocator_policy(),
        # Reports are uploaded, stored and rendered: no password from the command line.
        "argv": redact_argv(sys.argv),
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
