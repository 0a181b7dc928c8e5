"""``pytest --aiobpf-spawned``: what each test spawned, and how each process ended.

The kernel follows the test process's tree (:func:`aiobpf.process_events` with
``filter_descendants``), from before the first test: every process a test forks, at any depth
(a daemon that double-forks included), is reported under that test, with what it ran and how it
ended; the summary shows the tests whose processes failed first. It needs what BPF needs (root,
or CAP_BPF and CAP_PERFMON); without it the run goes on and the summary says why there is no
report.

A test's events are told from the next test's by time: each test ends by starting one
``/bin/true`` of its own and waiting until its exit has come through the kernel's ring, so
everything the test's processes did before is in by then.
"""

from __future__ import annotations

import contextlib
import os
import queue
import shlex
import subprocess
import time
from collections.abc import Generator
from typing import Any

import attrs
import pytest

from .errors import AiobpfError

__all__ = ["SpawnedReport"]

_OPTION = "--aiobpf-spawned"
_SENTINEL_WAIT = 10.0  # seconds a test's end waits for its marker process to come through


@attrs.define
class _Process:
    pid: int
    filename: str = ""
    ended: str | None = None
    failed: bool = False


@attrs.define
class SpawnedReport:
    """The processes each test spawned, by test id, in the order they started."""

    tests: dict[str, list[_Process]] = attrs.field(factory=dict)
    error: str | None = None
    lost: int = 0


class _Tracer:
    """The process source, run on an event loop in a thread of its own (anyio's blocking
    portal), so that pytest's synchronous tests need no loop of theirs."""

    def __init__(self) -> None:
        self.report = SpawnedReport()
        self._events: queue.Queue[Any] = queue.Queue()
        self._held = contextlib.ExitStack()
        self._reading: Any = None
        self._current: str | None = None
        self._processes: dict[int, _Process] = {}

    def start(self) -> None:
        from anyio.from_thread import start_blocking_portal

        from .operators import filter_descendants
        from .programs import process_events

        try:
            portal = self._held.enter_context(start_blocking_portal())
            self._source = process_events(max_latency=0)
            pipeline = self._source | filter_descendants(os.getpid())
            events = self._held.enter_context(portal.wrap_async_context_manager(pipeline))
        except AiobpfError as exc:
            self._held.close()
            self.report.error = str(exc)
            return
        self._reading = portal.start_task_soon(self._read, events)

    async def _read(self, events: Any) -> None:
        async for event in events:
            self._events.put(event)

    @property
    def running(self) -> bool:
        return self._reading is not None and not self._reading.done()

    def begin(self, test: str) -> None:
        self._current = test
        self.report.tests.setdefault(test, [])

    def end(self) -> None:
        """Waits for a marker process of this test's end to come through, and files every
        event before it under the test."""
        marker = subprocess.Popen(["/bin/true"])
        marker.wait()
        deadline = time.monotonic() + _SENTINEL_WAIT
        while (left := deadline - time.monotonic()) > 0:
            try:
                event = self._events.get(timeout=left)
            except queue.Empty:
                break
            if event.pid == marker.pid:
                if event.type == "exit":
                    break
                continue
            self._file(event)
        self._current = None

    def _file(self, event: Any) -> None:
        if event.pid == os.getpid() or self._current is None:
            return
        process = self._processes.get(event.pid)
        if process is None or event.type == "fork":
            process = self._processes[event.pid] = _Process(event.pid)
            self.report.tests[self._current].append(process)
        if event.type == "exec":
            process.filename = event.filename
        elif event.type == "exit":
            process.failed = bool(event.failed)
            if event.signal is not None:
                process.ended = event.signal + (" (core dumped)" if event.core_dumped else "")
            else:
                process.ended = f"exit {event.exit_code}"
            del self._processes[event.pid]

    def close(self) -> None:
        """Stops reading, detaches (what the ring lost is in the report) and ends the loop."""
        if self._reading is not None:
            self._reading.cancel()
            self.report.lost = self._source.stats.dropped or 0
        self._held.close()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.getgroup("aiobpf").addoption(
        _OPTION,
        action="store_true",
        help="report the processes each test spawned and how each ended, from the kernel "
        "(aiobpf; needs root or CAP_BPF and CAP_PERFMON)",
    )


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption(_OPTION, default=False):
        tracer = _Tracer()
        tracer.start()
        config.stash[_TRACER] = tracer


_TRACER = pytest.StashKey[_Tracer]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None]:
    tracer = item.config.stash.get(_TRACER, None)
    if tracer is None or not tracer.running:
        return (yield)
    tracer.begin(item.nodeid)
    try:
        return (yield)
    finally:
        tracer.end()


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    tracer = config.stash.get(_TRACER, None)
    if tracer is None:
        return
    tracer.close()
    report = tracer.report
    write = terminalreporter.write_line
    terminalreporter.section("processes the tests spawned (aiobpf)")
    if report.error is not None:
        write(f"no report: {report.error}")
        return
    spawned = {test: processes for test, processes in report.tests.items() if processes}
    ordered = sorted(spawned.items(), key=lambda item: not any(p.failed for p in item[1]))
    for test, processes in ordered:
        failed = sum(p.failed for p in processes)
        write(f"{test}: {len(processes)} processes" + (f", {failed} failed" if failed else ""))
        for process in processes:
            what = shlex.quote(process.filename) if process.filename else "(forked, no exec)"
            write(f"  {process.pid:>7} {what} -> {process.ended or 'still running'}")
    if not spawned:
        write("no test spawned a process")
    if report.lost:
        write(f"{report.lost} process events lost (the kernel's ring was full)")
