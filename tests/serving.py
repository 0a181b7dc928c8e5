"""aiobpf's service started for a test: ``serve()`` in a task group of its own, stopped on
leaving."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import anyio

from aiobpf.service import Serving, serve


@contextlib.asynccontextmanager
async def running_service(
    *, shutdown: anyio.Event | None = None, **options: Any
) -> AsyncIterator[Serving]:
    """``serve(**options)``, started (its programs attached, its socket listening) for the
    block. Leaving sets ``shutdown`` (a new event unless given: a test may set it sooner) and
    waits for the service to detach everything."""
    stop = shutdown if shutdown is not None else anyio.Event()
    async with anyio.create_task_group() as tasks:
        running = await tasks.start(
            lambda task_status: serve(shutdown=stop, task_status=task_status, **options)
        )
        try:
            yield running
        finally:
            stop.set()
