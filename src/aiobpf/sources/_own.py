"""Programs of your own, one shape for both loaders: a CO-RE object libbpf loads
(:func:`aiobpf.load`) and BPF C that BCC compiles (:func:`aiobpf.compile_bcc`).

Either is a plain call that touches nothing; ``async with`` loads (off the event loop: the
verifier, or clang, takes a while), attaches every program whose section or name says where,
and on leaving closes the sources opened from it and detaches and unloads, after an error or a
cancel too. Inside, ``ring()``, ``perf_buffer()`` and ``map()`` make sources over its maps,
used as every other source is::

    async with aiobpf.load("opens.bpf.o", params={"target_uid": 1000}) as program:
        async with program.ring("events", record="event") as events:
            async for event in events:
                print(event.pid, event.path)
"""

from __future__ import annotations

import ctypes
from typing import Any, Self, TypeVar

import anyio
import anyio.lowlevel
import anyio.to_thread
import numpy as np
from anyio.abc import AsyncResource

from .._core.records import RecordType
from .._core.validate import MaxLatency
from ..errors import NotOpenError
from ._costs import ProgramCost, costs_of
from ._maps import MapPoller, Mode
from ._perf import PerfBuffer
from ._ring import RingBuffer

__all__ = ["OwnProgram", "Record"]

#: What ``record=`` takes: a dtype, a ctypes structure, a RecordType, or (CO-RE objects) the
#: name of a struct in the object's BTF.
Record = np.dtype[Any] | type[ctypes.Structure] | RecordType[Any] | str | None

_Source = RingBuffer[Any] | PerfBuffer[Any] | MapPoller[Any, Any]
S = TypeVar("S", bound=_Source)


class OwnProgram(AsyncResource):
    """What :func:`load` and :func:`compile_bcc` return: a program of your own, loaded and
    attached while it is open. Subclasses say how to load, attach and find maps."""

    def __init__(self, what: str) -> None:
        self._what = what
        self._opening = False
        self._opened: anyio.Event | None = None
        self._closed = False
        self._released = False
        self._sources: list[_Source] = []

    # -- what subclasses provide ----------------------------------------------------------------

    def _load(self) -> None:
        """Loads (or compiles) the program; runs in a worker thread."""
        raise NotImplementedError

    def _attach(self) -> None:
        """Attaches what attaches on its own; runs in a worker thread."""
        raise NotImplementedError

    def _detach(self) -> None:
        raise NotImplementedError

    def _close_program(self) -> None:
        raise NotImplementedError

    @property
    def _loaded(self) -> bool:
        raise NotImplementedError

    # -- the shape both kinds share (each documents its own) ------------------------------------

    def ring(
        self,
        name: str,
        *,
        record: Record = None,
        counters: str | None = "auto",
        max_latency: MaxLatency = "auto",
        busy_poll: float = 0.0,
    ) -> RingBuffer[Any]:
        """A source over ring buffer ``name``, closed with the program if not before."""
        raise NotImplementedError

    def perf_buffer(
        self,
        name: str,
        *,
        record: Record = None,
        page_cnt: int = 64,
        counters: str | None = "auto",
        order_by: str | None = None,
        max_latency: MaxLatency = "auto",
        busy_poll: float = 0.0,
    ) -> PerfBuffer[Any]:
        """A source over perf event array ``name``, closed with the program if not before."""
        raise NotImplementedError

    def map(
        self,
        name: str,
        *,
        interval: float = 2.0,
        mode: Mode = "snapshot",
        key: Any = None,
        value: Any = None,
        batch: bool = True,
    ) -> MapPoller[Any, Any]:
        """A poller of map ``name``, closed with the program if not before."""
        raise NotImplementedError

    async def attach_uprobe(
        self,
        program: str,
        binary: str,
        symbol: str,
        *,
        retprobe: bool = False,
        pid: int | None = None,
    ) -> None:
        """Attaches ``program`` to function ``symbol`` of ``binary``; detached on closing."""
        raise NotImplementedError

    def _program_fds(self) -> dict[str, int]:
        raise NotImplementedError

    def program_costs(self) -> dict[str, ProgramCost]:
        """Each program's runs and run time, by name, counted while
        :func:`aiobpf.enable_program_stats` is held (zeros otherwise)."""
        self._require_open()
        return costs_of(self._program_fds())

    # -- lifecycle ------------------------------------------------------------------------------

    async def open(self) -> Self:
        """Loads and attaches; idempotent. Entering calls it.

        Raises :class:`aiobpf.CompileError` (with the verifier's or clang's words),
        :class:`aiobpf.PrivilegeError`, :class:`aiobpf.AttachError`, the errors of
        ``params``, and :class:`anyio.ClosedResourceError` once closed. Nothing stays loaded
        after an error or a cancel."""
        if self._closed:
            raise anyio.ClosedResourceError(f"{self._what} is closed")
        if self._loaded:
            return self
        if self._opening:
            raise anyio.BusyResourceError("opening")
        self._opening = True
        opened = self._opened = anyio.Event()
        try:
            # The thread runs to its end even on a cancel (anyio waits for it), so what it
            # loaded is owned here and released below.
            await anyio.to_thread.run_sync(self._load)
            try:
                if not self._closed:
                    await anyio.to_thread.run_sync(self._attach)
                await anyio.lowlevel.checkpoint_if_cancelled()
                if self._closed:
                    raise anyio.ClosedResourceError(f"{self._what} was closed while it opened")
            except BaseException:
                await self._release()
                raise
            return self
        finally:
            self._opening = False
            opened.set()

    async def __aenter__(self) -> Self:
        return await self.open()

    @property
    def closed(self) -> bool:
        return self._closed

    async def aclose(self) -> None:
        """Closes the sources opened from it, detaches (off the loop: each detach waits out a
        grace period in the kernel) and unloads. Idempotent; a cancel does not interrupt it."""
        self._closed = True
        with anyio.CancelScope(shield=True):
            if self._opened is not None:
                await self._opened.wait()
            await self._release()

    async def _release(self) -> None:
        self._closed = True  # a failed open is not tried again on the same object
        with anyio.CancelScope(shield=True):
            sources, self._sources = self._sources, []
            try:
                for source in sources:
                    await source.aclose()
            finally:
                if self._loaded and not self._released:
                    self._released = True
                    try:
                        await anyio.to_thread.run_sync(self._detach)
                    finally:
                        self._close_program()

    def _require_open(self) -> None:
        if self._closed:
            raise anyio.ClosedResourceError(f"{self._what} is closed")
        if not self._loaded:
            raise NotOpenError(f"{self._what} is not open yet: use 'async with' or open()")

    def _keep(self, source: S) -> S:
        """``source``, to be closed with this program if it is still open then."""
        self._sources.append(source)
        return source
