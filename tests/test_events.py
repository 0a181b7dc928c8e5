"""Decoding execve records into events, on synthetic records (no root needed)."""

from __future__ import annotations

import numpy as np

from aiobpf import ExecveEvent
from aiobpf.lowlevel import EXECVE_RECORD


def test_text_fields_end_at_their_first_nul() -> None:
    """Decoding a C string field keeps what comes before its first NUL, nothing after it."""
    record = np.zeros(1, dtype=EXECVE_RECORD)
    record["filename"] = b"/bin/true\0stale tail"
    record["comm"] = b"true"
    (event,) = ExecveEvent.decode(record)
    assert (event.filename, event.comm) == ("/bin/true", "true")
