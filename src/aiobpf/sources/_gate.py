"""One task at a time reads a source; it waits for the source's fd on the event loop, and
closing it wakes that task and waits for it to leave."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING

import anyio
import sniffio

from .._kernel.timerfd import TimerFd

if TYPE_CHECKING:
    import trio

__all__ = ["ReaderGate"]


def _set_result(future: asyncio.Future[bool], result: bool) -> None:
    if not future.done():
        future.set_result(result)


class _Readiness:
    """An fd kept registered with the asyncio loop from one wait to the next.

    anyio's ``wait_readable`` registers the fd for each wait and unregisters it on waking: two
    ``epoll_ctl`` calls and a loop handle per wake-up, the main cost of a source whose records
    come one at a time. Here the fd stays registered while the reader comes back to wait; a
    readiness reported while nobody waits unregisters it (so data left unread never spins the
    loop), and the next wait registers it again. ``has_data`` (the ring's own positions) tells a
    stale readiness, reported just before the reader took what made the fd ready, from a real
    one, so that it costs no wake-up.

    An fd whose readiness is consumed by polling it (``consumed_by_poll``: perf events, see
    :class:`ReaderGate`) stays registered for good: polled again it reports nothing, so it
    cannot spin the loop, and only the loop's own poll, which reports what it consumed, ever
    looks at it. The one other poll is the registration's own: a wait that registers looks at
    ``has_data`` after it.
    """

    def __init__(
        self, fd: int, has_data: Callable[[], bool] | None, *, consumed_by_poll: bool = False
    ) -> None:
        self._fd = fd
        self._has_data = has_data
        self._consumed_by_poll = consumed_by_poll
        self._loop = asyncio.get_running_loop()
        self._future: asyncio.Future[bool] | None = None
        self._registered = False

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def start_wait(self) -> asyncio.Future[bool] | None:
        """Watches the fd (registering it if it is not) and returns the future its readiness, or
        :meth:`wake`, sets; None when the registration found records already (see above). The
        waiter awaits the future itself, a coroutine less to resume per wake-up, then calls
        :meth:`end_wait`."""
        if not self._registered:
            self._loop.add_reader(self._fd, self._ready)
            self._registered = True
            if self._consumed_by_poll and self._has_data is not None and self._has_data():
                return None  # the registration's poll took the readiness of these records
        future: asyncio.Future[bool] = self._loop.create_future()
        self._future = future
        return future

    def end_wait(self) -> None:
        self._future = None

    def _ready(self) -> None:
        future = self._future
        if future is None:  # nobody waits: the reader looks at the ring before it waits again
            if not self._consumed_by_poll:
                self.close()  # stop watching until the next wait: level-triggered, it would spin
        elif not future.done() and (self._has_data is None or self._has_data()):
            future.set_result(True)

    def wake(self) -> None:
        """Ends a wait with False (the source is closing)."""
        if self._future is not None and not self._future.done():
            self._future.set_result(False)

    def close(self) -> None:
        if self._registered:
            self._registered = False
            with contextlib.suppress(Exception):  # a loop already closed holds nothing
                self._loop.remove_reader(self._fd)


class ReaderGate:
    """The reader bookkeeping every fd-backed source shares.

    A source's buffers are not safe to share between two tasks reading at once, so a second
    reader gets :class:`anyio.BusyResourceError`. A close from another task must not release
    the fd (or unmap the ring) under a reader still waiting on it: :meth:`wake_and_wait` wakes
    that wait and returns once the reader has left; :meth:`close` then lets go of the fd.

    **Readiness consumed by polling** (``consumed_by_poll``). A perf event's ``poll`` reports
    readable once per wake-up: it swaps the buffer's wake-up flag for zero (``perf_poll``), and
    the epoll fd a perf source waits on passes that on. epoll polls an fd again before it
    reports it, and an event loop polls it when it registers it: trio registers the fd anew
    for each wait (``EPOLL_CTL_MOD``, one-shot), asyncio when a reader is added. A record that
    arrives between the reader's last look at the buffers and that registration has its
    wake-up taken by the registration's poll; the loop's own poll then sees nothing, and the
    record would wait for the next one, forever if it was the last. So a wait looks at the
    buffers (``has_data``) once more after registering: on asyncio the fd stays registered
    (see :class:`_Readiness`), on trio a callback the loop runs after the waiting task parked
    looks, and ends the wait when there is data.
    """

    def __init__(
        self, has_data: Callable[[], bool] | None = None, *, consumed_by_poll: bool = False
    ) -> None:
        if consumed_by_poll and has_data is None:
            raise ValueError("a readiness consumed by polling needs has_data to look again")
        self._has_data = has_data
        self._consumed_by_poll = consumed_by_poll
        self._reading = False
        self._closing = False
        self._waiting_fd: int | None = None
        self._readiness: _Readiness | None = None
        self._timer: TimerFd | None = None  # what a trio reader sleeps on
        self._sleeping: asyncio.Future[bool] | None = None
        self._reader_left: anyio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # the reader's, when on asyncio

    def reading(self) -> ReaderGate:
        """Held by the task reading (``with gate.reading():``); entering it while another task
        holds it is an error. The gate is its own context manager: a read enters it every time,
        and a generator-based one cost a read at 1,000 records a second about a tenth of its
        CPU (its code and frames, cold in the CPU's caches after each sleep)."""
        return self

    def __enter__(self) -> None:
        if self._reading:
            raise anyio.BusyResourceError("reading from")
        self._reading = True

    def __exit__(self, *exc_info: object) -> None:
        self._reading = False
        if self._reader_left is not None:
            self._reader_left.set()

    def _asyncio_loop(self) -> asyncio.AbstractEventLoop | None:
        """The asyncio loop the reader runs on, None on trio: sniffio's answer, remembered with
        the loop it was given on. Asked on every wait, sniffio costs asyncio a look-up of the
        current task and an import each time; the running loop is one C call."""
        loop = self._loop
        if loop is None or asyncio._get_running_loop() is not loop:
            on_asyncio = sniffio.current_async_library() == "asyncio"
            loop = self._loop = asyncio.get_running_loop() if on_asyncio else None
        return loop

    async def checkpoint(self) -> None:
        """Lets the other tasks run, and is where a cancel is seen: anyio's checkpoint, without
        asking sniffio which loop runs it."""
        if self._asyncio_loop() is not None:
            await asyncio.sleep(0)
        else:
            import trio

            await trio.lowlevel.checkpoint()

    async def wait_readable(self, fd: int) -> bool:
        """Waits until ``fd`` is readable: True, or False when :meth:`wake_and_wait` woke it."""
        if self._closing:
            return False
        self._waiting_fd = fd
        try:
            loop = self._asyncio_loop()
            if loop is not None:
                readiness = self._readiness
                if readiness is None or readiness.loop is not loop:
                    if readiness is not None:
                        readiness.close()
                    readiness = self._readiness = _Readiness(
                        fd, self._has_data, consumed_by_poll=self._consumed_by_poll
                    )
                future = readiness.start_wait()
                if future is None:
                    return True
                try:
                    return await future
                finally:
                    readiness.end_wait()
            import trio  # the other backend anyio runs on; imported once it is running

            try:
                if self._consumed_by_poll:
                    await self._wait_and_look_again(fd)
                else:
                    await trio.lowlevel.wait_readable(fd)  # anyio's, without its sniffio call
            except trio.ClosedResourceError:  # notify_closing: the source is closing
                return False
            return True
        finally:
            self._waiting_fd = None

    async def _wait_and_look_again(self, fd: int) -> None:
        """trio: waits on ``fd``, and ends the wait early if the buffers hold data once the
        registration is done (see the class docstring)."""
        import trio

        has_data = self._has_data
        assert has_data is not None

        def look_again(scope: trio.CancelScope) -> None:
            if has_data():
                scope.cancel()  # a no-op once the wait is over

        with trio.CancelScope() as scope:
            # runs on the loop after this task parks, so after the registration's poll
            trio.lowlevel.current_trio_token().run_sync_soon(look_again, scope)
            await trio.lowlevel.wait_readable(fd)

    async def sleep(self, seconds: float) -> bool:
        """Sleeps (a latency budget, say): True, or False when :meth:`wake_and_wait` cut it
        short, so that closing never waits a budget out.

        A source with a budget sleeps once per read, so the sleep is each loop's cheapest: on
        asyncio a loop timer sets a future, as ``asyncio.sleep`` does (an anyio cancel scope
        around each sleep cost a third of such a read); on trio a wait on a timerfd, which
        costs trio's run loop about 20 µs less a wake-up than a deadline (a cancel scope and
        its abort). A cancel of the task still ends the sleep.
        """
        if self._closing:
            return False
        loop = self._asyncio_loop()
        if loop is not None:
            future: asyncio.Future[bool] = loop.create_future()
            timer = loop.call_later(seconds, _set_result, future, True)
            self._sleeping = future
            try:
                return await future
            finally:
                timer.cancel()
                self._sleeping = None
        import trio  # the other backend anyio runs on; imported once it is running

        if self._timer is None:
            self._timer = TimerFd()
        self._timer.arm(seconds)
        self._waiting_fd = self._timer.fd  # wake_and_wait wakes it as it wakes an fd wait
        try:
            await trio.lowlevel.wait_readable(self._timer.fd)
        except trio.ClosedResourceError:  # notify_closing: the source is closing
            return False
        finally:
            self._waiting_fd = None
        return not self._closing

    async def wake_and_wait(self) -> None:
        """Wakes the reader waiting on the fd (or sleeping), if any, and waits until it has left
        (shielded: the caller is releasing what the reader uses, so it must not be cancelled
        halfway). No wait starts afterwards."""
        self._closing = True
        if not self._reading:
            return
        self._reader_left = anyio.Event()
        if self._sleeping is not None:
            _set_result(self._sleeping, False)
        if self._readiness is not None:
            self._readiness.wake()
        if self._waiting_fd is not None and sniffio.current_async_library() != "asyncio":
            anyio.notify_closing(self._waiting_fd)
        with anyio.CancelScope(shield=True):
            await self._reader_left.wait()

    def close(self) -> None:
        """Lets go of the fd (before it is closed). Idempotent."""
        self._closing = True
        if self._readiness is not None:
            self._readiness.close()
            self._readiness = None
        if self._timer is not None:
            self._timer.close()
            self._timer = None
