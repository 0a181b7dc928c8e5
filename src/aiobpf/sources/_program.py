"""The lifecycle every source over a program aiobpf compiles shares, written once.

A plain call creates the source and touches nothing. Entering it (``async with``), or the first
``receive()`` of a bare ``async for``, compiles the program in a worker thread (clang takes a
while), hands it to the inner source that owns it from then on (a ring or a map poller), fills
its maps, attaches it, and honours a cancel that came during all that. Any failure on the way
releases what was built; leaving detaches the program.
"""

from __future__ import annotations

import warnings
from collections.abc import Generator
from typing import Any, Generic, Protocol, Self, TypeVar

import anyio
import anyio.lowlevel
import anyio.to_thread
import numpy as np
import numpy.typing as npt
from anyio.abc import ObjectReceiveStream

from ..errors import NotOpenError
from ._batch import Batches
from ._costs import ProgramCost, costs_of
from ._ring import RingBuffer
from ._stats import RingStats

__all__ = ["ProgramRing", "ProgramSource"]

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


class InnerSource(Protocol[T_co]):
    """What a program source wraps: a ring or a map poller that owns the program."""

    @property
    def closed(self) -> bool: ...

    async def receive(self) -> T_co: ...

    def __anext__(self) -> Any: ...

    async def aclose(self) -> None: ...


Inner = TypeVar("Inner", bound=InnerSource[Any])


class Loaded(Protocol):
    """What a program source needs of its program: BCC's :class:`aiobpf.lowlevel.Program`, or a
    prebuilt object libbpf loaded (:class:`aiobpf._kernel.objects.BpfObject`)."""

    @property
    def closed(self) -> bool: ...

    def attach_tracepoints(self) -> None: ...

    def program_fds(self) -> dict[str, int]: ...

    def detach(self) -> None: ...

    def close(self) -> None: ...


P = TypeVar("P", bound=Loaded)


class ProgramSource(ObjectReceiveStream[T], Generic[T, Inner, P]):
    """Base of the sources of aiobpf's programs; subclasses say how to compile, wrap and attach.

    Items are what the inner source yields, passed through :meth:`_convert`.
    """

    #: How messages name the source, e.g. "execve_events()".
    _name = "source"

    def __init__(self) -> None:
        self._inner: Inner | None = None
        self._program: P | None = None
        self._opening = False
        self._closed = False
        # Set when an open ends, and when the release ends: a close waits for both, so that
        # the program is never released under a thread still attaching it (a close during an
        # open freed the object while libbpf attached it: a segmentation fault), nor twice at
        # once. Made by the coroutine that starts each (an event belongs to a running loop).
        self._opened: anyio.Event | None = None
        self._released: anyio.Event | None = None

    # -- what subclasses provide ----------------------------------------------------------------

    def _compile(self) -> P:
        """Compiles (or loads) the program without attaching it; runs in a worker thread."""
        raise NotImplementedError

    def _wrap(self, program: P) -> Inner:
        """The inner source over ``program``, owning it: on failure it must release it."""
        raise NotImplementedError

    def _configure(self, program: P, inner: Inner) -> None:
        """Fills the program's maps before it is attached (filters, scope, tables)."""

    def _attach(self, program: P) -> None:
        """Attaches the program; runs in a worker thread. Tracepoints by default."""
        program.attach_tracepoints()

    def _convert(self, item: Any) -> T:
        result: T = item
        return result

    # -- lifecycle ------------------------------------------------------------------------------

    async def open(self) -> Inner:
        """Compiles, configures and attaches the program; idempotent. Entering the source calls
        it; so does the first ``receive()``.

        Raises what :meth:`aiobpf.lowlevel.Program.compile` raises (:class:`aiobpf.PrivilegeError`,
        :class:`aiobpf.BccMissingError`, :class:`aiobpf.KernelHeadersError`, ...),
        :class:`aiobpf.AttachError`, :class:`anyio.ClosedResourceError` once closed, and
        :class:`anyio.BusyResourceError` while another task is opening it.
        """
        if self._closed:
            raise anyio.ClosedResourceError(f"{self._name} is closed")
        if self._inner is not None:
            return self._inner
        if self._opening:
            raise anyio.BusyResourceError("opening")
        self._opening = True
        opened = self._opened = anyio.Event()
        try:
            # The thread cannot be interrupted: anyio waits for it (shielded) and hands over
            # the program; a cancel or a close that came meanwhile is honoured below, once the
            # program is owned.
            program = await anyio.to_thread.run_sync(self._compile)
            inner = self._wrap(program)
            self._inner, self._program = inner, program
            try:
                if not self._closed:
                    self._configure(program, inner)
                    # attached once its maps hold: no event they exclude can reach the consumer
                    await anyio.to_thread.run_sync(self._attach, program)
                await anyio.lowlevel.checkpoint_if_cancelled()
                if self._closed:  # closed by another task meanwhile, which waits for this
                    raise anyio.ClosedResourceError(f"{self._name} was closed while it opened")
            except BaseException:
                await self._release(inner)
                raise
            return inner
        finally:
            self._opening = False
            opened.set()

    async def __aenter__(self) -> Self:
        await self.open()  # entering attaches; leaving closes
        return self

    def __await__(self) -> Generator[Any, None, Self]:
        """The 0.1 spelling, ``async with source()``: opens, with a warning."""
        warnings.warn(
            f"awaiting {self._name} is deprecated and will be removed in 0.3: "
            f"use 'async with {self._name} as source'",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.__aenter__().__await__()

    @property
    def closed(self) -> bool:
        return self._closed

    def detach(self) -> None:
        """Stops the program's probes; it stays loaded, its maps readable, until closing (which
        detaches first anyway). Nothing the program makes afterwards reaches the source.

        It blocks: each tracepoint's detach waits out a grace period in the kernel (tens of
        milliseconds). From async code, ``await anyio.to_thread.run_sync(source.detach)``
        keeps the loop running, as closing does."""
        program = self._program
        if program is not None and not program.closed:
            program.detach()

    async def aclose(self) -> None:
        """Detaches the program, then releases everything: the inner source counts what the
        program delivered before the stop and nobody read (``unread``). Idempotent; a cancel
        does not interrupt it. Closing while another task opens the source waits for that
        open to end (it then releases what it built, and raises
        :class:`anyio.ClosedResourceError` in the opening task)."""
        self._closed = True
        with anyio.CancelScope(shield=True):
            if self._opened is not None:
                await self._opened.wait()
            if self._inner is not None:
                await self._release(self._inner)

    async def _release(self, inner: Inner) -> None:
        """Detaches in a worker thread, then closes ``inner`` (which releases the program),
        shielded, once: a second caller waits for the first. A tracepoint's detach waits out a
        grace period in the kernel (about 70 ms on a VM here, per tracepoint): on the event
        loop it stalled every other task for as long (0.37 s for execve_events()' five)."""
        with anyio.CancelScope(shield=True):
            if self._released is not None:
                await self._released.wait()
                return
            released = self._released = anyio.Event()
            try:
                await anyio.to_thread.run_sync(self.detach)
            finally:
                try:
                    await inner.aclose()
                finally:
                    released.set()

    def program_costs(self) -> dict[str, ProgramCost]:
        """Each of the source's BPF programs' runs and run time, by name, counted while
        :func:`aiobpf.enable_program_stats` is held (zeros otherwise); raises
        :class:`aiobpf.NotOpenError` before the source is open."""
        self.inner  # noqa: B018 (NotOpenError before the open)
        assert self._program is not None
        return costs_of(self._program.program_fds())

    # -- reading --------------------------------------------------------------------------------

    @property
    def inner(self) -> Inner:
        """The source this one wraps; raises :class:`aiobpf.NotOpenError` before it is open."""
        if self._inner is None:
            raise NotOpenError(f"{self._name} is not open yet: use 'async with' or open()")
        return self._inner

    async def receive(self) -> T:
        """The next item (opening the source if needed). Raises :class:`anyio.EndOfStream` when
        it was closed while waiting, :class:`anyio.ClosedResourceError` when it was closed
        before."""
        inner = self._inner if self._inner is not None else await self.open()
        return self._convert(await inner.receive())

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> T:
        if self._closed:
            raise StopAsyncIteration
        inner = self._inner if self._inner is not None else await self.open()
        return self._convert(await inner.__anext__())


class ProgramRing(ProgramSource[T, RingBuffer[T], P]):
    """A program source whose inner source is a ring: its batches, drain and stats too."""

    @property
    def ring(self) -> RingBuffer[T]:
        """The ring source this one wraps; raises :class:`RuntimeError` before it is open."""
        return self.inner

    @property
    def stats(self) -> RingStats:
        """The ring's counters (see :class:`aiobpf.RingStats`)."""
        return self.inner.stats

    @property
    def latency_bound(self) -> float | None:
        """The ring's (see :attr:`aiobpf.RingBuffer.latency_bound`); None before it opens."""
        return None if self._inner is None else self._inner.latency_bound

    def batches(self) -> Batches:
        """Numpy batches of raw records, one per wake-up, opening the source if needed (see
        :meth:`aiobpf.RingBuffer.batches`)."""
        return Batches(self)

    async def receive_batch(self) -> npt.NDArray[np.void]:
        """Every available record as one array, opening the source if needed (see
        :meth:`aiobpf.RingBuffer.receive_batch`)."""
        inner = self._inner if self._inner is not None else await self.open()
        return await inner.receive_batch()

    def drain(self) -> npt.NDArray[np.void]:
        """Every record available now, without waiting (see :meth:`aiobpf.RingBuffer.drain`)."""
        return self.inner.drain()
