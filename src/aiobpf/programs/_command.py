"""A command run and traced from its first instruction: what it and every process below it
fork, exec and how each ends (``aiobpf run``, and :func:`aiobpf.trace_command` for tests and
notebooks).

The command must not run before the kernel follows it, or its first forks and execs would be
missed: it is started behind a gate, ``sh -c 'read _ </dev/fd/FD && exec "$@"'``, which waits
on a pipe until its pid is in the program's tracked set, then execs the command in the same
process (a gate closed without the word, on an error, ends the shell with 1 and runs nothing).
A command that is not found, or not executable, ends that shell with 127 or 126, as a shell
says.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Sequence
from typing import Any

import anyio
import anyio.abc
import attrs

from .._core.validate import MaxLatency
from ._process import ProcessEvents, ProcessExit, process_events

__all__ = ["TracedCommand", "trace_command"]


@attrs.frozen
class TracedCommand:
    """A command being traced: its ``process`` (anyio's, to wait for or signal) and the
    ``events`` of its tree (:class:`aiobpf.programs.ProcessEvents`, already open)."""

    process: anyio.abc.Process
    events: ProcessEvents

    @property
    def pid(self) -> int:
        return self.process.pid

    def is_end(self, event: object) -> bool:
        """Whether ``event`` is the command's own exit (its tree's later events may follow)."""
        return isinstance(event, ProcessExit) and event.pid == self.process.pid


@contextlib.asynccontextmanager
async def trace_command(
    command: Sequence[str],
    *,
    ring_size: int = 1024 * 1024,
    max_latency: MaxLatency = 0,
    **options: Any,
) -> AsyncIterator[TracedCommand]:
    """Starts ``command`` with the process programs attached and following it before its
    first instruction, and yields it with the events of its tree::

        async with aiobpf.trace_command(["make", "test"]) as traced:
            async for event in traced.events:
                ...
                if traced.is_end(event):
                    break
            status = await traced.process.wait()

    ``options`` go to :func:`anyio.open_process` (``stdin``, ``stdout``, ``cwd``, ``env``...).
    Leaving detaches the programs, and kills the command if it still runs. ``max_latency``:
    0 (each event at once) by default, as a tracer's lines follow the command's own.
    """
    if not command:
        raise ValueError("trace_command needs a command to run")
    source = process_events(ring_size=ring_size, max_latency=max_latency)
    source.follow(())  # only what is followed, and nothing yet
    async with source:
        gate, release = os.pipe()
        try:
            shell = f'read _ </dev/fd/{gate} && exec "$@"'  # dash: no fd above 9 in <&
            process = await anyio.open_process(
                ["/bin/sh", "-c", shell, "sh", *command], pass_fds=(gate,), **options
            )
        except BaseException:
            os.close(release)
            raise
        finally:
            os.close(gate)
        try:
            with os.fdopen(release, "wb") as opening:
                source.follow([process.pid])  # in the kernel's set before the command runs
                with contextlib.suppress(BrokenPipeError):  # the gate died: its status says
                    opening.write(b"\n")
                    opening.flush()
            yield TracedCommand(process, source)
        finally:
            with anyio.CancelScope(shield=True):
                if process.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        process.kill()
                await process.aclose()
