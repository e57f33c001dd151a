"""Whether the Hugging Face Hub can be reached: a 3 s TCP probe, so that a model or dataset
that is not in the local cache fails at once, in one line, when this machine is offline
(instead of the Hugging Face libraries' retries with back-off). Used by measure/models.py and
measure/data/hub.py."""

from __future__ import annotations

import os
import socket
from urllib.parse import urlparse

HUB_PROBE_SECONDS = 3.0


def hub_reachable(timeout: float = HUB_PROBE_SECONDS) -> bool:
    """Whether a TCP connection to the Hugging Face Hub opens within `timeout` seconds."""
    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        socket.create_connection((endpoint.hostname or "huggingface.co", port), timeout).close()
        return True
    except OSError:
        return False
