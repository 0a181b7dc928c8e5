"""This boot of the machine: its id, new at every boot, which makes ids unique across reboots
(an exec's, a fleet node's)."""

from __future__ import annotations

import functools
import uuid
from pathlib import Path

__all__ = ["boot_id"]

_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


@functools.cache
def boot_id() -> str:
    """The kernel's boot id (a UUID); a random one where /proc does not give it."""
    try:
        return _BOOT_ID.read_text().strip()
    except OSError:  # not Linux, or /proc not mounted: still unique per run
        return uuid.uuid4().hex
