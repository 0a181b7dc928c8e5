"""A timer the kernel reports through an fd (``timerfd_create(2)``), which Python 3.11 does not
wrap.

trio sleeps by a deadline: a cancel scope, the run loop's deadline queue and an abort, about
20 µs of CPU more per wake-up than waiting on an fd (benchmarks/RESULTS.md, "What a wake-up
costs"). A source that waits out a latency budget once per read sleeps on one of these instead.
"""

from __future__ import annotations

import ctypes
import os

from .libc import libc

__all__ = ["TimerFd"]

CLOCK_MONOTONIC = 1  # the clock of time.monotonic() and of trio's and asyncio's clocks
_NS = 1_000_000_000


class TimerFd:
    """A one-shot timer: its fd becomes readable when the time given to :meth:`arm` is up."""

    def __init__(self) -> None:
        lib = libc()
        fd = lib.timerfd_create(CLOCK_MONOTONIC, os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"timerfd_create: {os.strerror(errno)}")
        self.fd: int = fd
        # struct itimerspec: it_interval (0: one-shot), then it_value, each {tv_sec, tv_nsec}
        self._spec = (ctypes.c_long * 4)()
        self._spec_ref = ctypes.byref(self._spec)
        self._settime = lib.timerfd_settime

    def arm(self, seconds: float) -> None:
        """Makes the fd readable ``seconds`` from now, and unreadable until then: arming again
        clears an expiry nobody read, and replaces a time not yet up."""
        # a zero it_value would disarm the timer instead: a wait on it would never end
        self._spec[2], self._spec[3] = divmod(max(1, int(seconds * _NS)), _NS)
        if self._settime(self.fd, 0, self._spec_ref, None) < 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"timerfd_settime: {os.strerror(errno)}")

    def close(self) -> None:
        """Closes the fd; idempotent. Whoever waits on it must have been woken first."""
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)
