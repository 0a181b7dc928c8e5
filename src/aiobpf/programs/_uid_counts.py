"""``execve_counts()``: exec calls (execve and execveat) per uid, counted in the kernel."""

from __future__ import annotations

import ctypes
from collections.abc import Iterable

from .._kernel.bcc import Program
from .._kernel.libbpf import check, libbpf
from ..sources import MapPoller, MapReading, MapStats, Mode
from ..sources._program import ProgramSource
from ..sources._validate import check_id, check_poll
from ._text import include_flags, program_text

__all__ = ["ExecveCounts", "execve_counts"]


def _compile(uids: tuple[int, ...] | None) -> Program:
    flags = [*include_flags(), *([] if uids is None else ["-DAIOBPF_UID_FILTER"])]
    program = Program.compile(program_text("top_uids"), cflags=flags, attach=False)
    try:
        if uids is not None:
            fd = program.bpf[b"uid_filter"].get_fd()
            present = ctypes.c_uint8(1)
            for uid in uids:
                key = ctypes.c_uint32(uid)
                check(
                    libbpf().bpf_map_update_elem(fd, ctypes.byref(key), ctypes.byref(present), 0),
                    f"adding uid {uid} to the filter",
                )
    except BaseException:
        program.close()
        raise
    return program


class ExecveCounts(ProgramSource[MapReading[int, int], MapPoller[int, int], Program]):
    """An async source of :class:`aiobpf.MapReading` of ``{uid: exec calls}``, one per
    interval; attaches when entered, detaches when closed."""

    _name = "execve_counts()"

    def __init__(self, *, interval: float, mode: Mode, uids: tuple[int, ...] | None) -> None:
        super().__init__()
        check_poll(interval, mode)
        self._interval = interval
        self._mode: Mode = mode
        self._uids = uids

    def _compile(self) -> Program:
        return _compile(self._uids)

    def _wrap(self, program: Program) -> MapPoller[int, int]:
        return MapPoller.from_bcc(
            program.bpf, "counts", interval=self._interval, mode=self._mode, owned=[program.close]
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
    Raises :class:`ValueError` for a bad ``interval`` or ``mode`` or uid; entering raises what
    :meth:`aiobpf.lowlevel.Program.compile` raises.
    """
    wanted = None if uids is None else tuple(sorted({check_id("uid", uid) for uid in uids}))
    return ExecveCounts(interval=interval, mode=mode, uids=wanted)
