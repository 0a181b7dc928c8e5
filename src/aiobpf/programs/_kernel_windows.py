"""Window counts of exec calls done in the kernel: a hash map drained once per window.

The user-space :func:`aiobpf.window_count` over :func:`aiobpf.execve_events` moves one event per
exec through the ring and counts it in Python. Counting in the kernel moves one map entry per
key per window instead, at the price of windows that close on the drain clock (the poller's
interval) rather than on event time.
"""

from __future__ import annotations

import time
from typing import Any, Literal

import numpy as np

from .._core.validate import check_poll
from .._kernel.objects import BpfObject
from ..operators import WindowCount
from ..sources import MapPoller, MapReading, MapStats, ProgramSource
from . import _constants as C
from ._prebuilt import counted_map
from ._text import prebuilt_path

__all__ = ["KernelWindowCounts", "execve_window_counts"]


#: Keys of ``window_counts``: a uid, or a ``struct comm_key``.
_KEYS: dict[str, np.dtype[Any]] = {
    "uid": np.dtype(np.uint32),
    "comm": np.dtype([("comm", f"S{C.COMM_SIZE}")]),
}


class KernelWindowCounts(ProgramSource[WindowCount, MapPoller[Any, int], BpfObject]):
    """An async source of :class:`aiobpf.WindowCount` whose counting ran in the kernel.

    Each window is what the map held when drained: ``start`` and ``end`` are the drain times
    (Unix seconds), ``late`` is always 0; :attr:`dropped` counts the exec calls the full map
    could not count. Attaches when entered, detaches when closed.
    """

    _name = "execve_window_counts()"

    def __init__(self, key: Literal["uid", "comm"], every: float) -> None:
        super().__init__()
        if key not in ("uid", "comm"):
            raise ValueError(f"key must be 'uid' or 'comm' for counting in the kernel, got {key!r}")
        check_poll(every, "drain")
        self._key = key
        self._every = every
        self._start = time.time()

    def _compile(self) -> BpfObject:
        return BpfObject.load(prebuilt_path(f"execve_window_{self._key}"))

    def _wrap(self, program: BpfObject) -> MapPoller[Any, int]:
        return counted_map(
            program,
            "window_counts",
            key=_KEYS[self._key],
            value=np.uint64,
            owned=[program.close],
            interval=self._every,
            mode="drain",
        )

    def _configure(self, program: BpfObject, inner: MapPoller[Any, int]) -> None:
        self._start = time.time()

    def _convert(self, item: Any) -> WindowCount:
        reading: MapReading[Any, int] = item
        counts: dict[Any, int] = dict(reading.values)
        if self._key == "comm":
            counts = {key.comm.decode(errors="replace"): n for key, n in counts.items()}
        start, self._start = self._start, reading.time
        return WindowCount(start=start, end=reading.time, counts=counts)

    @property
    def dropped(self) -> int:
        """Exec calls of keys the full map had no room for, up to the last window."""
        return self.stats.dropped or 0

    @property
    def stats(self) -> MapStats:
        return self.inner.stats


def execve_window_counts(
    key: Literal["uid", "comm"] = "uid", *, every: float = 2.0
) -> KernelWindowCounts:
    """Exec calls per ``key`` in windows of ``every`` seconds, counted in the kernel:
    ``async with aiobpf.execve_window_counts("comm") as windows: async for window in windows``.

    Raises ValueError for another key or a bad ``every``; entering raises
    :class:`aiobpf.PrivilegeError`, :class:`aiobpf.SetupError` (the prebuilt program is
    missing: run scripts/setup.sh) or :class:`aiobpf.AttachError`.
    """
    return KernelWindowCounts(key, every)
