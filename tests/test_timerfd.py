"""The timerfd a trio reader sleeps its latency budget on (no root needed)."""

from __future__ import annotations

import os
import select

import pytest

from aiobpf._kernel.timerfd import TimerFd


def _readable(fd: int, timeout: float) -> bool:
    return bool(select.select([fd], [], [], timeout)[0])


def test_the_fd_becomes_readable_when_the_time_is_up_and_not_before() -> None:
    timer = TimerFd()
    try:
        timer.arm(60)
        assert not _readable(timer.fd, 0)
        timer.arm(0.001)  # replaces the time not yet up
        assert _readable(timer.fd, 30)
    finally:
        timer.close()


def test_arming_again_clears_an_expiry_nobody_read() -> None:
    """A reader woken by the timer arms it for its next sleep without reading it first."""
    timer = TimerFd()
    try:
        timer.arm(0)  # a zero time still expires (a zero it_value would disarm the timer)
        assert _readable(timer.fd, 30)
        timer.arm(60)
        assert not _readable(timer.fd, 0)
    finally:
        timer.close()


def test_close_lets_go_of_the_fd_once() -> None:
    timer = TimerFd()
    fd = timer.fd
    timer.close()
    timer.close()
    with pytest.raises(OSError, match="Bad file descriptor"):
        os.fstat(fd)
