"""The event service, served for real on a loopback port and read with a real HTTP client."""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import AsyncGenerator
from typing import Any

import anyio
import httpx
import pytest

from aiobpf.service import EventHub, serve

from . import kernel

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.usefixtures("bpf"),
    # httpx's streaming helpers are async generators nested in one another; closing a response
    # leaves the inner ones to the garbage collector, which trio reports. Not aiobpf's.
    pytest.mark.filterwarnings(
        r"ignore:Exception ignored in. <async_generator object "
        r"(Response\.aiter|BoundAsyncStream|\w*ByteStream|AsyncHTTP11Connection|AsyncResponseStream)"
        ":pytest.PytestUnraisableExceptionWarning"
    ),
]

UID = 61061


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def _sse(response: httpx.Response) -> AsyncGenerator[tuple[str, Any], None]:
    """(event, data) pairs of a Server-Sent Events response."""
    event = "message"
    async for line in response.aiter_lines():
        if line.startswith("event: "):
            event = line.removeprefix("event: ")
        elif line.startswith("data: "):
            yield event, json.loads(line.removeprefix("data: "))
            event = "message"


async def test_events_top_and_metrics_show_a_known_program(tmp_path: Any) -> None:
    """/events streams a known program's exec (filtered by uid), /top and /metrics show the
    exact count for its fresh uid, and shutting down detaches everything."""
    program = kernel.uniquely_named_program(tmp_path, "served-me")
    tmp_path.chmod(0o755)
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    programs, objects = kernel.loaded_program_ids(), kernel.bpf_objects()
    stop = anyio.Event()
    with anyio.fail_after(60):
        async with anyio.create_task_group() as tasks, httpx.AsyncClient(base_url=base) as client:
            await tasks.start(
                lambda task_status: serve(port=port, shutdown=stop, task_status=task_status)
            )
            async with client.stream("GET", "/events", params={"uid": UID}) as response:
                assert response.headers["content-type"].startswith("text/event-stream")
                for _ in range(3):
                    await anyio.run_process(kernel.setpriv_command(UID, program))
                seen = []
                async with contextlib.aclosing(_sse(response)) as messages:
                    async for event, data in messages:
                        assert event == "exec"
                        seen.append(data)
                        if len(seen) == 3:
                            break
            top = (await client.get("/top")).json()
            metrics = (await client.get("/metrics")).text
            page = (await client.get("/")).text
            stop.set()
    assert [(e["uid"], e["comm"], e["filename"]) for e in seen] == [
        (UID, "served-me", str(program))
    ] * 3
    assert top["counts"][str(UID)] == 3
    assert f'aiobpf_execve_total{{uid="{UID}"}} 3.0' in metrics
    assert "aiobpf_kernel_dropped_total" in metrics
    assert 'new EventSource("/events")' in page
    assert kernel.bpf_objects() == objects
    assert kernel.wait_until_unloaded(kernel.loaded_program_ids() - programs) == set()


async def test_a_slow_subscriber_loses_events_while_a_fast_one_gets_all() -> None:
    """With a 4-event queue per client, a subscriber that does not read keeps 4 events and
    counts the rest as lost; one that reads gets every event; neither blocks the kernel reader."""
    execs = 10
    got: list[Any] = []
    with anyio.fail_after(60):
        async with EventHub(client_buffer=4) as hub:
            with hub.subscribe(uid=UID) as slow, hub.subscribe(uid=UID) as fast:

                async def read_fast() -> None:
                    async for event in fast.receive:
                        got.append(event)
                        if len(got) == execs:
                            return

                async with anyio.create_task_group() as tasks:
                    tasks.start_soon(read_fast)
                    for _ in range(execs):
                        await anyio.run_process(kernel.setpriv_command(UID, "/bin/true"))
                assert slow.lost == execs - 4
                assert slow.unreported_lost == execs - 4
                assert hub.user_dropped == execs - 4
                assert hub.stats()["kernel_dropped"] == 0
    assert [event.uid for event in got] == [UID] * execs
