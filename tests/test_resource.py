"""Releasing steps together: each in a thread of its own, every one run, failures raised after."""

from __future__ import annotations

import functools
import threading
from typing import Any

import pytest

from aiobpf._resource import release_together


def test_the_steps_run_at_once() -> None:
    """Four steps that each wait for the other three can only all finish side by side."""
    barrier = threading.Barrier(4, timeout=30)
    done: list[int] = []

    def step(index: int) -> None:
        barrier.wait()  # BrokenBarrierError after 30 s if the steps ran one after the other
        done.append(index)

    release_together([functools.partial(step, index) for index in range(4)])
    assert sorted(done) == [0, 1, 2, 3]


def test_every_step_runs_and_the_failure_is_raised_after() -> None:
    done: list[int] = []

    def fail() -> None:
        raise OSError("detaching failed")

    with pytest.raises(OSError, match="detaching failed"):
        release_together([lambda: done.append(0), fail, lambda: done.append(2)])
    assert sorted(done) == [0, 2]


def test_where_no_thread_starts_the_steps_left_run_in_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """At interpreter shutdown no new thread starts: the steps that got none run in the caller's
    thread, in order, and still all run."""
    started = 0

    class ShuttingDown(threading.Thread):
        def start(self) -> None:
            nonlocal started
            if started == 1:
                raise RuntimeError("can't create new thread at interpreter shutdown")
            started += 1
            super().start()

    monkeypatch.setattr(threading, "Thread", ShuttingDown)  # what _resource starts
    ran: list[tuple[int, Any]] = []

    def step(index: int) -> None:
        ran.append((index, threading.current_thread()))

    release_together([functools.partial(step, index) for index in range(4)])
    assert sorted(index for index, _ in ran) == [0, 1, 2, 3]
    in_caller = [index for index, thread in ran if thread is threading.current_thread()]
    assert in_caller == [1, 2, 3]


def test_one_step_runs_in_the_caller() -> None:
    ran: list[Any] = []
    release_together([lambda: ran.append(threading.current_thread())])
    assert ran == [threading.current_thread()]
