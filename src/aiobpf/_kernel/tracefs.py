"""Finding tracefs and the tracepoints it lists.

tracefs is where the kernel names its tracepoints (``events/<category>/<event>``) and their ids; a
fresh machine may not have it mounted. Being root, aiobpf mounts it at the standard place when it
is missing, and otherwise says exactly what is wrong.
"""

from __future__ import annotations

import ctypes
import difflib
import os
from pathlib import Path

from ..errors import TracefsError, UnknownTracepointError

__all__ = ["ensure_tracefs", "require_tracepoint", "tracefs_root", "tracepoint_exists"]

_CANDIDATES = (Path("/sys/kernel/tracing"), Path("/sys/kernel/debug/tracing"))


def tracefs_root() -> Path | None:
    """The mounted tracefs directory, or None."""
    for candidate in _CANDIDATES:
        if os.path.isdir(candidate / "events"):  # False, not PermissionError, for a user
            return candidate
    return None


def ensure_tracefs() -> Path:
    """Returns the tracefs root, mounting it at /sys/kernel/tracing when it is not mounted."""
    root = tracefs_root()
    if root is not None:
        return root
    target = _CANDIDATES[0]
    libc = ctypes.CDLL(None, use_errno=True)
    if target.is_dir() and libc.mount(b"tracefs", bytes(target), b"tracefs", 0, None) == 0:
        return target
    errno = ctypes.get_errno()
    raise TracefsError(
        f"tracefs is not mounted (looked in {', '.join(map(str, _CANDIDATES))}) and mounting it "
        f"at {target} failed: {os.strerror(errno) if errno else 'no such directory'}; "
        f"run as root, or mount it yourself: mount -t tracefs tracefs {target}"
    )


def tracepoint_exists(category: str, event: str) -> bool:
    """Whether the running kernel has tracepoint ``category:event``."""
    return (ensure_tracefs() / "events" / category / event).is_dir()


def require_tracepoint(category: str, event: str) -> Path:
    """Returns the tracepoint's tracefs directory; raises :class:`UnknownTracepointError`."""
    events = ensure_tracefs() / "events"
    path = events / category / event
    if path.is_dir():
        return path
    if (events / category).is_dir():
        known = sorted(p.name for p in (events / category).iterdir() if p.is_dir())
        where = f"category {category!r} has no event {event!r}"
        close = difflib.get_close_matches(event, known, n=3)
    else:
        known = sorted(p.name for p in events.iterdir() if p.is_dir())
        where = f"there is no tracepoint category {category!r}"
        close = difflib.get_close_matches(category, known, n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else f"; see {events} for what exists"
    raise UnknownTracepointError(f"unknown tracepoint {category}:{event}: {where}{hint}")
