"""Window counts of execve calls done in the kernel: a hash map drained once per window.

The user-space :func:`aiobpf.window_count` over :func:`aiobpf.execve_events` moves one event per
exec through the ring and counts it in Python. Counting in the kernel moves one map entry per
key per window instead, at the price of windows that close on the drain clock (the poller's
interval) rather than on event time.
"""

from __future__ import annotations

import functools
import time
from typing import Any, Literal

import anyio
import anyio.lowlevel
import anyio.to_thread

from ._bcc import Program
from ._programs import include_flags, program_text
from ._resource import AsyncResource
from .maps import MapPoller
from .operators import WindowCount

__all__ = ["KernelWindowCounts", "execve_window_counts"]


def _compile(key: str) -> Program:
    flags = [*include_flags(), *(["-DAIOBPF_KEY_COMM"] if key == "comm" else [])]
    return Program.compile(program_text("execve_window"), cflags=flags)


class KernelWindowCounts(AsyncResource):
    """An async source of :class:`aiobpf.WindowCount` whose counting ran in the kernel.

    Each window is what the map held when drained: ``start`` and ``end`` are the drain times
    (Unix seconds), ``late`` is always 0; :attr:`dropped` counts the exec calls the full map
    could not count. Close it (``async with``) to detach.
    """

    def __init__(self, poller: MapPoller[Any, int], key: str) -> None:
        self._poller = poller
        self._key = key
        self._start = time.time()
        self.dropped = 0
        """Exec calls of keys the full map had no room for, up to the last window."""

    def __aiter__(self) -> KernelWindowCounts:
        return self

    async def __anext__(self) -> WindowCount:
        reading = await self._poller.__anext__()
        self.dropped = reading.dropped or 0
        counts: dict[Any, int] = dict(reading.values)
        if self._key == "comm":
            counts = {key.comm.decode(errors="replace"): n for key, n in counts.items()}
        start, self._start = self._start, reading.time
        return WindowCount(start=start, end=reading.time, counts=counts)

    async def aclose(self) -> None:
        await self._poller.aclose()


async def execve_window_counts(
    key: Literal["uid", "comm"] = "uid", *, every: float = 2.0
) -> KernelWindowCounts:
    """execve calls per ``key`` in windows of ``every`` seconds, counted in the kernel.

    Raises ValueError for another key, and what :meth:`aiobpf.Program.compile` raises.
    """
    if key not in ("uid", "comm"):
        raise ValueError(f"key must be 'uid' or 'comm' for counting in the kernel, got {key!r}")
    program = await anyio.to_thread.run_sync(functools.partial(_compile, key))
    poller: MapPoller[Any, int] = MapPoller.from_bcc(
        program.bpf, "window_counts", interval=every, mode="drain", owned=[program.close]
    )
    try:
        await anyio.lowlevel.checkpoint_if_cancelled()
    except BaseException:
        await poller.aclose()
        raise
    return KernelWindowCounts(poller, key)
