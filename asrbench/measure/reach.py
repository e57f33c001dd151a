"""Whether the Hugging Face Hub can be reached: offline mode asked for by the environment, or
else a 3 s TCP probe, so that a model or dataset that is not in the local cache fails at once,
in one line, when this machine is offline (instead of the Hugging Face libraries' retries with
back-off). Used by measure/models.py and measure/data/hub.py."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from urllib.parse import urlparse

HUB_PROBE_SECONDS = 3.0
#: the values huggingface_hub reads as true in its environment variables
TRUE_VALUES = frozenset({"1", "ON", "YES", "TRUE"})


def hub_offline_requested(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the environment puts huggingface_hub, and with it transformers, offline, read as
    huggingface_hub reads it: HF_HUB_OFFLINE, or where that is unset or empty the older
    TRANSFORMERS_OFFLINE, true when 1, ON, YES or TRUE in any case."""
    environ = os.environ if environ is None else environ
    value = environ.get("HF_HUB_OFFLINE") or environ.get("TRANSFORMERS_OFFLINE") or ""
    return value.upper() in TRUE_VALUES


def hub_reachable(timeout: float = HUB_PROBE_SECONDS) -> bool:
    """Whether a TCP connection to the Hugging Face Hub opens within `timeout` seconds."""
    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    except ValueError:  # a port that is no number, or out of range: nothing to reach
        return False
    try:
        socket.create_connection((endpoint.hostname or "huggingface.co", port), timeout).close()
        return True
    except OSError:
        return False
