"""``execve_counts()``: exec calls (execve and execveat) per uid, counted in the kernel."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from .._core.validate import check_id, check_poll
from .._kernel.objects import BpfObject
from ..sources import MapPoller, MapReading, MapStats, Mode, ProgramSource
from ._prebuilt import counted_map
from ._text import prebuilt_path

__all__ = ["ExecveCounts", "execve_counts"]


def _load(uids: tuple[int, ...] | None) -> BpfObject:
    """The prebuilt counting program, loaded, its uid filter filled (not attached)."""
    program = BpfObject.load(prebuilt_path("top_uids"))
    try:
        if uids is not None:
            for uid in uids:
                program.update("uid_filter", uid.to_bytes(4, "little"), b"\1")
            program.update("counts_config", bytes(4), (1).to_bytes(4, "little"))
    except BaseException:
        program.close()
        raise
    return program


class ExecveCounts(ProgramSource[MapReading[int, int], MapPoller[int, int], BpfObject]):
    """An async source of :class:`aiobpf.MapReading` of ``{uid: exec calls}``, one per
    interval; attaches when entered, detaches when closed."""

    _name = "execve_counts()"

    def __init__(self, *, interval: float, mode: Mode, uids: tuple[int, ...] | None) -> None:
        super().__init__()
        check_poll(interval, mode)
        self._interval = interval
        self._mode: Mode = mode
        self._uids = uids

    def _compile(self) -> BpfObject:
        return _load(self._uids)

    def _wrap(self, program: BpfObject) -> MapPoller[int, int]:
        return counted_map(
            program,
            "counts",
            key=np.uint32,
            value=np.uint64,
            owned=[program.close],
            interval=self._interval,
            mode=self._mode,
        )

    def read(self) -> MapReading[int, int]:
        """A reading now (see :meth:`aiobpf.MapPoller.read`); raises :class:`RuntimeError`
        before the source is open."""
        return self.inner.read()

    @property
    def stats(self) -> MapStats:
        return self.inner.stats


def execve_counts(
    *, interval: float = 2.0, mode: Mode = "snapshot", uids: Iterable[int] | None = None
) -> ExecveCounts:
    """Exec calls (``execve`` and ``execveat``, counted at their entry) per uid, kept in a
    kernel hash map and read every ``interval`` seconds as a :class:`aiobpf.MapReading` of
    ``{uid: calls}``; each reading's ``dropped`` counts the calls of uids the full map had no
    room for.

    ``uids`` counts only those users, filtering in the kernel (others cost one map lookup).
    ``mode`` as in :class:`aiobpf.MapPoller`; the default snapshot is cumulative since start.
    Raises :class:`ValueError` for a bad ``interval`` or ``mode`` or uid; entering raises
    :class:`aiobpf.PrivilegeError`, :class:`aiobpf.SetupError` (the prebuilt program is
    missing: run scripts/setup.sh) or :class:`aiobpf.AttachError`.
    """
    wanted = None if uids is None else tuple(sorted({check_id("uid", uid) for uid in uids}))
    return ExecveCounts(interval=interval, mode=mode, uids=wanted)
