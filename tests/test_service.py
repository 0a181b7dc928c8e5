"""The event service, served for real on a loopback port and read with a real HTTP client."""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import sys
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import anyio.streams.text
import httpx
import pytest

from aiobpf.programs import ExecveEvent, ExecveEvents
from aiobpf.service import AccessPolicy, EventHub, serve

from . import kernel
from .serving import running_service

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
#: The bearer token the TCP tests' servers require, and the header that carries it.
TOKEN = "test-token-not-secret"
AUTHORIZED = {"Authorization": f"Bearer {TOKEN}"}
ACCESS = AccessPolicy(token=TOKEN)
#: Execs per round of the slow-client test: fewer than a client's queue holds.
ROUND = 32


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def _sse(response: httpx.Response) -> AsyncGenerator[tuple[str, Any], None]:
    """(event, data) pairs of a Server-Sent Events response, ("connected", filters) first."""
    event = "message"
    async for line in response.aiter_lines():
        if line.startswith("event: "):
            event = line.removeprefix("event: ")
        elif line.startswith("data: "):
            yield event, json.loads(line.removeprefix("data: "))
            event = "message"


async def test_events_top_and_metrics_show_a_known_program(tmp_path: Any) -> None:
    """/events streams a known program's execs and exits (filtered by uid), /top and /metrics
    show the exact exec, exit and failure counts for its fresh uid, and shutting down
    detaches everything."""
    program = kernel.uniquely_named_program(tmp_path, "served-me")
    tmp_path.chmod(0o755)
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    programs, objects = kernel.loaded_program_ids(), kernel.bpf_objects()
    stop = anyio.Event()
    execs: list[Any] = []
    exits: list[Any] = []
    with anyio.fail_after(60):
        async with (
            running_service(port=port, access=ACCESS, shutdown=stop),
            httpx.AsyncClient(base_url=base, headers=AUTHORIZED) as client,
        ):
            async with client.stream("GET", "/events", params={"uid": UID}) as response:
                assert response.headers["content-type"].startswith("text/event-stream")
                async with contextlib.aclosing(_sse(response)) as messages:
                    async for event, data in messages:
                        if event == "connected":
                            assert data["types"] == ["exec", "exit"]
                            stats = (await client.get("/stats")).json()
                            for _ in range(3):
                                command = kernel.setpriv_command(UID, program)
                                await anyio.run_process([*command, "--password=hunter2"])
                            shell = kernel.setpriv_command(UID, "/bin/sh")
                            await anyio.run_process([*shell, "-c", "exit 7"], check=False)
                            continue
                        (execs if event == "exec" else exits).append(data)
                        assert event in ("exec", "exit")
                        if len(execs) == 4 and len(exits) == 4:
                            break
            top = (await client.get("/top")).json()
            metrics = (await client.get("/metrics")).text
            page = (await client.get("/")).text
            stop.set()
    assert [(e["uid"], e["comm"], e["filename"]) for e in execs] == [
        (UID, "served-me", str(program))
    ] * 3 + [(UID, "sh", "/bin/sh")]
    assert {tuple(e["argv"]) for e in execs[:3]} == {(str(program), "--password=*****")}
    assert [(e["type"], e["uid"], e["comm"], e["exit_code"], e["signal"]) for e in exits] == [
        ("exit", UID, "served-me", 0, None)
    ] * 3 + [("exit", UID, "sh", 7, None)]
    assert [e["pid"] for e in exits] == [e["pid"] for e in execs]
    assert stats["kernel_selection"] == {"uid": [UID], "comm": None}  # while it was connected
    assert top["counts"][str(UID)] == 4
    assert (top["exits"][str(UID)], top["failures"][str(UID)]) == (4, 1)
    assert f'aiobpf_execve_total{{uid="{UID}"}} 4.0' in metrics
    assert f'aiobpf_process_exits_total{{uid="{UID}"}} 4.0' in metrics
    assert f'aiobpf_process_failures_total{{uid="{UID}"}} 1.0' in metrics
    assert 'aiobpf_kernel_dropped_total{source="exit"} 0.0' in metrics
    assert "new EventSource(" in page
    assert kernel.bpf_objects() == objects
    assert kernel.wait_until_unloaded(kernel.loaded_program_ids() - programs) == set()


async def test_a_service_without_exits_attaches_no_exit_program() -> None:
    """serve(exits=False): no process program is loaded, /events offers execs only (asking
    for exits is refused), and /top and /stats carry no exit counts."""
    port = _free_port()
    with anyio.fail_after(60):
        async with (
            running_service(port=port, access=ACCESS, exits=False) as serving,
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=AUTHORIZED) as client,
        ):
            attached = kernel.program_names(kernel.held_program_ids())
            sources = serving.hub.kernel_sources()
            refused = await client.get("/events", params={"type": "exit"})
            top = (await client.get("/top")).json()
            stats = (await client.get("/stats")).json()
    assert not any(name.startswith("process_") for name in attached), attached
    assert "process_exits" not in sources
    assert refused.status_code == 400
    assert refused.json() == {"error": "type must be one of ['exec']"}
    assert "exits" not in top
    assert "failures" not in top
    assert (stats["exits_received"], stats["exits_dropped"]) == (None, None)


async def test_a_shutdown_ends_open_event_streams_cleanly() -> None:
    """Shutting down ends the event streams first: a client's stream ends as a complete response
    (hypercorn would wait for it, then cut the connection: an incomplete one), then the server
    exits and detaches everything."""
    port = _free_port()
    programs, objects = kernel.loaded_program_ids(), kernel.bpf_objects()
    stop = anyio.Event()
    events: list[str] = []
    with anyio.fail_after(60):
        async with (
            running_service(port=port, access=ACCESS, shutdown=stop),
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=AUTHORIZED) as client,
            # a uid nothing runs as here: no other process's exec or exit comes in between
            client.stream("GET", "/events", params={"uid": UID}) as response,
            contextlib.aclosing(_sse(response)) as messages,
        ):
            async for event, _ in messages:
                events.append(event)
                stop.set()
    assert events == ["connected"]
    assert kernel.bpf_objects() == objects
    assert kernel.wait_until_unloaded(kernel.loaded_program_ids() - programs) == set()


async def test_a_cancelled_server_with_a_stream_open_exits_without_error() -> None:
    """serve() cancelled while a client's event stream is open returns without an error and
    detaches everything. (On asyncio hypercorn's server, cancelled again while it waited for
    that connection, raised InvalidStateError; it now stops through its shutdown trigger.)"""
    port = _free_port()
    programs, objects = kernel.loaded_program_ids(), kernel.bpf_objects()
    server = anyio.CancelScope()

    async def run(*, task_status: anyio.abc.TaskStatus[Any]) -> None:
        with server:
            await serve(port=port, access=ACCESS, task_status=task_status)

    with anyio.fail_after(60):
        async with (
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=AUTHORIZED) as client,
            anyio.create_task_group() as tasks,
        ):
            await tasks.start(run)
            with contextlib.suppress(httpx.RemoteProtocolError):  # trio's server cuts it
                async with (
                    # a uid nothing runs as here: no other process's event comes first
                    client.stream("GET", "/events", params={"uid": UID}) as response,
                    contextlib.aclosing(_sse(response)) as messages,
                ):
                    async for event, _ in messages:
                        assert event == "connected"
                        server.cancel()
    assert server.cancel_called
    assert kernel.bpf_objects() == objects
    assert kernel.wait_until_unloaded(kernel.loaded_program_ids() - programs) == set()


async def test_a_slow_subscriber_loses_events_while_a_fast_one_gets_all() -> None:
    """With a 4-event queue per client, a subscriber that does not read keeps 4 events and
    counts the rest as lost; one that reads gets every event; neither blocks the kernel reader."""
    execs = 10
    got: list[Any] = []
    with anyio.fail_after(60):
        async with EventHub(client_buffer=4) as hub:
            with (
                hub.subscribe(uid=UID, kinds={"exec"}) as slow,
                hub.subscribe(uid=UID, kinds={"exec"}) as fast,
            ):

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
                assert hub.stats.kernel_dropped == 0
    assert [event.uid for event in got] == [UID] * execs


async def test_clients_filters_reach_the_kernel_as_a_union(tmp_path: Any) -> None:
    """With no client the kernel passes nothing; with clients that all filter by uid it passes
    exactly their uids' execs (the ring's produced counter moves by those alone); one client
    without a filter opens it up; leaving narrows it again; a client of exits only opens
    nothing for execs."""
    async with EventHub() as hub:
        events = hub._running()
        assert isinstance(events, ExecveEvents)

        def produced() -> int:
            return int(events.stats.produced or 0)

        assert hub.kernel_selection == {"uid": [], "comm": []}
        before = produced()
        await anyio.run_process(kernel.setpriv_command(UID, "/bin/true"))
        assert produced() == before  # nobody listens: the kernel dropped it before the ring

        with hub.subscribe(uid=UID) as first, hub.subscribe(uid=UID + 1) as second:
            assert hub.kernel_selection == {"uid": [UID, UID + 1], "comm": None}
            before = produced()
            for uid in (UID, UID + 1, UID + 2):
                await anyio.run_process(kernel.setpriv_command(uid, "/bin/true"))
            with anyio.fail_after(10):
                assert (await first.receive.receive()).uid == UID
                assert (await second.receive.receive()).uid == UID + 1
            assert produced() == before + 2  # UID + 2 and everyone else's execs stayed out

            with hub.subscribe() as everything:
                assert hub.kernel_selection == {"uid": None, "comm": None}
                await anyio.run_process(kernel.setpriv_command(UID + 2, "/bin/true"))
                with anyio.fail_after(10):
                    while (await everything.receive.receive()).uid != UID + 2:
                        pass
            assert hub.kernel_selection == {"uid": [UID, UID + 1], "comm": None}
            with hub.subscribe(kinds={"exit"}):  # wants no execs: opens nothing for them
                assert hub.kernel_selection == {"uid": [UID, UID + 1], "comm": None}
        assert hub.kernel_selection == {"uid": [], "comm": []}
        with hub.subscribe(kinds={"exit"}):
            assert hub.kernel_selection == {"uid": [], "comm": []}


class _StalledClient:
    """An SSE client on a plain socket with a 4 KiB receive window that reads nothing until told
    to: a slow client as the server sees one (client libraries on asyncio read ahead into memory
    whatever the application does, so they cannot play this part)."""

    def __init__(self, port: int, path: str) -> None:
        self._socket = socket.socket()
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self._socket.connect(("127.0.0.1", port))
        request = f"GET {path} HTTP/1.0\r\nHost: localhost\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"
        self._socket.sendall(request.encode())
        self._socket.setblocking(False)
        self._pending = b""

    async def messages(self) -> AsyncGenerator[tuple[str, Any], None]:
        """(event, data) pairs, ("connected", filters) first; the headers are skipped."""
        while True:
            while b"\n\n" not in self._pending:
                await anyio.wait_readable(self._socket)
                chunk = self._socket.recv(65536)
                if not chunk:
                    return
                self._pending += chunk
            block, self._pending = self._pending.split(b"\n\n", 1)
            text = block.decode().split("\r\n\r\n")[-1]  # the first block follows the headers
            lines = dict(line.split(": ", 1) for line in text.split("\n"))
            yield lines.get("event", "message"), json.loads(lines["data"])

    def close(self) -> None:
        self._socket.close()


async def test_a_slow_http_client_is_told_exactly_what_it_lost(tmp_path: Any) -> None:
    """Over real HTTP: a client that stops reading fills its socket (the server's send buffer is
    32 KiB) and its 64-event queue; from then on its events are dropped and counted, and when it
    reads again it gets `lost` events that add up exactly to what it missed. A client that keeps
    up gets every event, and the kernel ring loses nothing.

    "Keeps up" has a meaning that does not depend on the scheduler: the execs come in rounds of
    ``ROUND`` (fewer than a queue holds), and a round starts only once the fast client has
    received every event before it. Its queue is then empty at the start of a round and holds at
    most ``ROUND`` events during one, so it can never be full: a single event lost by the fast
    client is a bug, however slowly the machine runs its reader."""
    program = kernel.uniquely_named_program(tmp_path, "flood-me")
    tmp_path.chmod(0o755)
    port = _free_port()
    queue, rounds = 64, 200
    assert queue > ROUND
    storm = f"for i in $(seq {ROUND}); do {program}; done"
    stop = anyio.Event()
    execs = 0
    fast: list[Any] = []
    with anyio.fail_after(100):
        async with (
            running_service(
                port=port, access=ACCESS, client_buffer=queue, send_buffer=32768, shutdown=stop
            ),
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=AUTHORIZED) as client,
        ):
            # closed on any way out, before the server is asked to stop: hypercorn's trio
            # server cannot interrupt a send to a client that does not read
            path = "/events?comm=flood-me&type=exec"
            with contextlib.closing(_StalledClient(port, path)) as slow:
                slow_messages = slow.messages()
                assert await anext(slow_messages) == (
                    "connected",
                    {"uid": None, "comm": "flood-me", "types": ["exec"]},
                )
                wanted = {"comm": "flood-me", "type": "exec"}
                async with (
                    client.stream("GET", "/events", params=wanted) as response,
                    anyio.create_task_group() as readers,
                ):
                    fast_connected = anyio.Event()
                    fast_caught_up = anyio.Event()

                    async def read_fast() -> None:
                        async with contextlib.aclosing(_sse(response)) as messages:
                            async for event, data in messages:
                                if event == "connected":
                                    fast_connected.set()
                                    continue
                                assert event == "exec", (event, data)
                                fast.append(data)
                                if len(fast) == execs:
                                    fast_caught_up.set()

                    readers.start_soon(read_fast)
                    await fast_connected.wait()
                    # Rounds until the slow client's queue overflows, then one round more. The
                    # server's socket send buffer (and the client's window) fill first.
                    overflowed = False
                    for _ in range(rounds):
                        fast_caught_up = anyio.Event()
                        await anyio.run_process(["sh", "-c", storm])
                        execs += ROUND
                        if len(fast) == execs:
                            fast_caught_up.set()
                        await fast_caught_up.wait()
                        if overflowed:
                            break
                        overflowed = (await client.get("/stats")).json()["user_dropped"] > 0
                    assert overflowed, f"{execs} events did not overflow the slow client"
                    stats = (await client.get("/stats")).json()
                    readers.cancel_scope.cancel()

                slow_execs, slow_lost = 0, 0
                async with contextlib.aclosing(slow_messages):
                    async for event, data in slow_messages:
                        if event == "lost":
                            slow_lost += data["count"]
                        else:
                            assert (event, data["comm"]) == ("exec", "flood-me")
                            slow_execs += 1
                        if slow_execs + slow_lost == execs:
                            break
            stop.set()
    assert len(fast) == execs
    assert slow_lost == stats["user_dropped"] > 0
    assert slow_execs == execs - slow_lost
    assert stats["kernel_dropped"] == 0
    assert stats["kernel_selection"] == {"uid": None, "comm": ["flood-me"]}


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
async def test_the_service_example_embeds_the_hub(tmp_path: Any, backend: str) -> None:
    """examples/service.py: its own route and aiobpf's mounted ones answer, its watcher task
    prints an alert for a watched program's exec, and SIGTERM ends it cleanly, detached."""
    program = kernel.uniquely_named_program(tmp_path, "watch-me")
    tmp_path.chmod(0o755)
    port = _free_port()
    programs = kernel.loaded_program_ids()
    example = Path(__file__).parent.parent / "examples" / "service.py"
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    command = [sys.executable, str(example), "--port", str(port), "--alert-comm", "watch-me"]
    command += ["--token-file", str(token_file)]
    with anyio.fail_after(60):
        async with (
            await anyio.open_process([*command, "--backend", backend]) as process,
        ):
            assert process.stdout is not None
            lines = anyio.streams.text.TextReceiveStream(process.stdout)
            output = ""
            while "(Ctrl-C stops)" not in output:
                output += await lines.receive()
            assert TOKEN not in output
            client = httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {TOKEN}"}
            )
            await anyio.run_process(kernel.setpriv_command(UID, program))
            while "alert:" not in output:
                output += await lines.receive()
            async with client:
                own = (await client.get(f"/uids/{UID}")).json()
                top = (await client.get("/aiobpf/top")).json()
                page = (await client.get("/aiobpf/")).text
            process.send_signal(signal.SIGTERM)
            assert await process.wait() == 0
    assert f"alert: uid {UID} ran {program}" in output
    assert own == {"uid": UID, "execve": 1}
    assert top["counts"][str(UID)] == 1
    assert "new EventSource(" in page
    assert kernel.wait_until_unloaded(kernel.loaded_program_ids() - programs) == set()


async def test_bad_filters_are_refused_and_long_names_match_what_the_kernel_keeps(
    tmp_path: Any,
) -> None:
    """/events refuses a uid that is not one and a type of event it has not (400, with the
    reason), and so does subscribing in Python; a comm filter longer than the kernel's 15
    bytes matches the name the kernel reports."""
    program = kernel.uniquely_named_program(tmp_path, "a-rather-long-program-name")
    tmp_path.chmod(0o755)
    port = _free_port()
    stop = anyio.Event()
    with anyio.fail_after(60):
        async with (
            running_service(port=port, access=ACCESS, shutdown=stop) as serving,
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=AUTHORIZED) as client,
        ):
            refusals = [
                (await client.get("/events", params={"uid": uid}))
                for uid in ("me", "-1", "4294967296")
            ]
            wrong_type = await client.get("/events", params={"type": "fork"})
            with (
                pytest.raises(ValueError, match="kinds are some of"),
                serving.hub.subscribe(kinds={"exec", "fork"}),
            ):
                pass
            long_name = "a-rather-long-program-name"
            with serving.hub.subscribe(comm=long_name, kinds={"exec"}) as subscriber:
                await anyio.run_process([str(program)])
                event = await subscriber.receive.receive()
            stop.set()
    assert [response.status_code for response in refusals] == [400] * 3
    assert "uid must be an integer" in refusals[0].json()["error"]
    assert (wrong_type.status_code, wrong_type.json()) == (
        400,
        {"error": "type must be one of ['exec', 'exit']"},
    )
    assert isinstance(event, ExecveEvent)
    assert (event.comm, event.filename) == ("a-rather-long-p", str(program))


async def test_a_client_that_takes_nothing_is_disconnected_after_the_timeout(
    tmp_path: Any,
) -> None:
    """A client whose window stays shut for stalled_client_timeout (here 1 s) is disconnected
    by the kernel (TCP_USER_TIMEOUT): its subscription ends at its next event, and the server
    shuts down (hypercorn's trio server could not otherwise interrupt the stalled send)."""
    program = kernel.uniquely_named_program(tmp_path, "stall-me")
    tmp_path.chmod(0o755)
    port = _free_port()
    stop = anyio.Event()
    with anyio.fail_after(60):
        async with (
            running_service(
                port=port,
                access=ACCESS,
                client_buffer=8,
                send_buffer=8192,
                stalled_client_timeout=1.0,
                shutdown=stop,
            ) as serving,
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=AUTHORIZED),
        ):
            with contextlib.closing(_StalledClient(port, "/events?comm=stall-me")) as stalled:
                messages = stalled.messages()
                assert (await anext(messages))[0] == "connected"
                hub = serving.hub
                assert hub.stats.clients == 1
                # fill its window and the server's buffer, until its events are being dropped
                while hub.user_dropped == 0:
                    await anyio.run_process(
                        ["sh", "-c", f"for i in $(seq 200); do {program}; done"]
                    )
                # The kernel gives up on the connection a second after its window shut, and
                # the stream notices at its next event. Nothing signals the kernel's timer:
                # exec one more event now and then until the hub has no client left.
                while hub.stats.clients:
                    await anyio.run_process([str(program)])
                    await anyio.sleep(0.2)
                await messages.aclose()
            stop.set()


async def test_the_metrics_example_exports_a_pipeline_of_ones_own(tmp_path: Any) -> None:
    """examples/metrics_exporter.py: execs of a fresh uid reach /metrics as that uid's count
    (counted in the kernel) and its command's count (windows in user space), beside aiobpf's
    own metrics and behind the token; Ctrl-C ends it cleanly, detached."""
    program = kernel.uniquely_named_program(tmp_path, "exported")
    tmp_path.chmod(0o755)
    port = _free_port()
    programs = kernel.loaded_program_ids()
    example = Path(__file__).parent.parent / "examples" / "metrics_exporter.py"
    command = [sys.executable, str(example), "--port", str(port), "--every", "0.2"]
    command.append("--program-stats")
    uid = UID + 4
    with anyio.fail_after(60):
        async with await anyio.open_process(command) as process:
            assert process.stdout is not None
            lines = anyio.streams.text.TextReceiveStream(process.stdout)
            output = ""
            while "token" not in output or not output.endswith("\n"):
                output += await lines.receive()
            token = output.split(" token ")[1].split()[0]
            for _ in range(3):
                await anyio.run_process(kernel.setpriv_command(uid, program))
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                assert (await client.get("/metrics")).status_code == 401  # no token
                wanted = [
                    f'exec_by_uid_total{{uid="{uid}"}} 3.0',
                    'exec_by_comm_total{comm="exported"} 3.0',
                ]
                metrics = ""
                while not all(line in metrics for line in wanted):
                    # an exec to end the command's window in event time, and time for the next
                    # reading of the kernel's counts
                    await anyio.run_process(["/bin/true"])
                    response = await client.get(
                        "/metrics", headers={"Authorization": f"Bearer {token}"}
                    )
                    metrics = response.text
            process.send_signal(signal.SIGINT)
            assert await process.wait() == 0
    assert "aiobpf_execve_total" in metrics  # aiobpf's own, on the same registry
    runs = 'aiobpf_program_runs_total{program="sys_enter_execve",source="execve_events"}'
    assert runs in metrics
    assert kernel.wait_until_unloaded(kernel.loaded_program_ids() - programs) == set()
