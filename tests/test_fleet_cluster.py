"""The fleet on a clustered engine: three nats-server processes on the loopback, a replicated
stream, and an engine node killed for good while a fresh uid execs."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterable, AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from benchmarks._nats_server import NatsCluster, ready

import aiobpf
from aiobpf.fleet import JetStreamSink, fleet_events, publish

from . import kernel

pytestmark = [pytest.mark.anyio, pytest.mark.parametrize("anyio_backend", ["asyncio"])]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[NatsCluster]:
    if shutil.which("nats-server") is None:
        pytest.skip("nats-server is not installed: scripts/setup.sh test installs it")
    engines = NatsCluster(tmp_path / "cluster")
    engines.start()
    try:
        yield engines
    finally:
        engines.stop()


async def _leader(urls: list[str]) -> str:
    import nats

    client = await nats.connect(servers=urls)
    try:
        info = await client.jetstream().stream_info("AIOBPF")
        assert info.cluster is not None
        return str(info.cluster.leader)
    finally:
        await client.close()


async def _killing_after(count: int, stream: AsyncIterable[Any], kill: Any) -> AsyncIterator[Any]:
    seen = 0
    async for item in stream:
        seen += 1
        if seen == count:
            await kill()
        yield item


async def _first(count: int, stream: AsyncIterable[Any]) -> AsyncIterator[Any]:
    async for item in stream:
        yield item
        count -= 1
        if count == 0:
            return


@pytest.mark.usefixtures("bpf")
@pytest.mark.parametrize("whom", ["leader", "connected"])
async def test_an_engine_node_killed_for_good_loses_no_exec(
    cluster: NatsCluster, whom: str
) -> None:
    """A replicated stream (3 replicas, made so by default on a cluster of three) takes a
    fresh uid's exec storm while the stream's leader, or the node the publisher is connected
    to, is killed with SIGKILL and never restarted: every exec is published (acknowledged by a
    quorum) exactly once, nothing is dropped, and a reader of the survivors gets each once."""
    uid, runs = 61101 if whom == "leader" else 61102, 200
    with anyio.fail_after(120):
        await ready(cluster.urls)
        sink = JetStreamSink(
            cluster.urls, subject="aiobpf.cluster.exec", max_items=16, close_timeout=60
        )
        killed: list[str] = []

        async def kill() -> None:
            if whom == "leader":
                name = await _leader(cluster.urls)
            else:
                assert sink.connected_url is not None
                name = cluster.name_of(sink.connected_url)
            await anyio.to_thread.run_sync(cluster.kill, name)
            killed.append(name)

        program = shutil.which("true") or "/bin/true"
        storm = ["/bin/sh", "-c", f'i=0; while [ $i -lt {runs} ]; do "$0"; i=$((i+1)); done']
        produced = runs + 1  # the shell's own exec, then the storm
        source = aiobpf.execve_events()
        async with sink, source | aiobpf.filter_uid(uid) as execs:
            assert sink.replicas == 3
            command = [*kernel.setpriv_command(uid, "/bin/sh")[:-1], *storm, program]
            async with await anyio.open_process(command):
                await publish(_killing_after(60, _first(produced, execs), kill), sink)
            assert source.stats.dropped == 0
        stats = sink.stats
        assert killed
        assert (stats.received, stats.published, stats.dropped, stats.pending) == (
            produced, produced, 0, 0
        )  # fmt: skip
        survivors = [url for name, url in zip(cluster.servers, cluster.urls, strict=True)
                     if name not in killed]  # fmt: skip
        async with fleet_events(survivors, durable=f"after-{whom}") as events:
            got = [await events.receive() for _ in range(produced)]
    assert len({(event.message_id, event.index) for event in got}) == produced
    assert {event.uid for event in got} == {uid}


async def test_a_publish_in_flight_to_a_server_that_dies_is_asked_again_at_once(
    cluster: NatsCluster,
) -> None:
    """A message in flight to the sink's own server when that server dies is published again
    through another server as soon as the connection moves, not after its acknowledgement's
    time-out (60 s here): the server is stopped (SIGSTOP) once the request is in its socket,
    then killed; the sink knew only its URL (the others come from the cluster)."""
    subject = "aiobpf.inflight.exec"
    with anyio.fail_after(60):
        await ready(cluster.urls)
        async with JetStreamSink(cluster.urls, subject=subject) as first:  # the stream
            await first.send([{"n": 0}])
        leader = await _leader(cluster.urls)
    follower = next(name for name in cluster.servers if name != leader)
    sink = JetStreamSink(
        [cluster.servers[follower].url], subject=subject, ack_timeout=60, close_timeout=60
    )
    with anyio.fail_after(30):  # the time-out alone would take 60 s
        async with sink:
            cluster.servers[follower].pause()
            await sink.send([{"n": 1}])
            # until the request has left the client for the stopped server's socket: the
            # publishing task took it, and nats-py's buffer is empty
            while sink._in_flight is None or sink._client.pending_data_size:  # noqa: ASYNC110
                await anyio.sleep(0.01)
            await anyio.to_thread.run_sync(cluster.kill, follower)
        # leaving waited for the engine to take what was pending
    stats = sink.stats
    assert (stats.received, stats.published, stats.dropped, stats.pending) == (1, 1, 0, 0)
    assert stats.disconnects == 1
    survivors = [cluster.servers[name].url for name in cluster.servers if name != follower]
    async with fleet_events(survivors, subject=subject, durable="inflight") as events:
        with anyio.fail_after(30):
            assert [(await events.receive()).n for _ in range(2)] == [0, 1]


async def test_an_explicit_replica_count_the_stream_lacks_is_an_error(
    cluster: NatsCluster,
) -> None:
    """A stream made with one replica keeps working for a sink that asks for none (with a
    notice saying what a lost node would cost), and is an error for one that asks for 3."""
    with anyio.fail_after(60):
        await ready(cluster.urls)
        async with JetStreamSink(cluster.urls, replicas=1) as first:
            await first.send([{"n": 1}])
        assert first.replicas == 1
        async with JetStreamSink(cluster.urls) as second:
            await second.send([{"n": 2}])
        assert second.replicas == 1
        assert any("1 replica(s) on a cluster of 3" in notice for notice in second.notices)
        with pytest.raises(aiobpf.StreamEngineError, match="3 were asked"):
            async with JetStreamSink(cluster.urls, replicas=3):
                pass
    with pytest.raises(ValueError, match="replicas must be a whole number"):
        JetStreamSink(replicas=0)


async def test_a_reader_whose_node_is_killed_reads_on(cluster: NatsCluster) -> None:
    """A fleet reader half-way through a replicated stream loses the engine node it is
    connected to (SIGKILL, for good): it reconnects to a survivor and reads on, every event
    once, none missing, the ones published after the loss included."""
    with anyio.fail_after(120):
        await ready(cluster.urls)
        async with JetStreamSink(cluster.urls, subject="aiobpf.before.events") as sink:
            assert sink.replicas == 3
            await sink.send([{"n": n} for n in range(100)])
        # small fetches: most of the stream is fetched after the loss, through a survivor
        reader = fleet_events(cluster.urls, durable="through-failover", batch=10)
        async with reader as events:
            got = [await events.receive() for _ in range(50)]
            assert events.connected_url is not None
            lost = cluster.name_of(events.connected_url)
            await anyio.to_thread.run_sync(cluster.kill, lost)
            survivors = [url for name, url in zip(cluster.servers, cluster.urls, strict=True)
                         if name != lost]  # fmt: skip
            async with JetStreamSink(survivors, subject="aiobpf.after.events") as sink:
                await sink.send([{"n": n} for n in range(100, 150)])
            got += [await events.receive() for _ in range(100)]
            assert events.connected_url is not None
            assert cluster.name_of(events.connected_url) != lost
    assert sorted(event.n for event in got) == list(range(150))
    assert len({(event.message_id, event.index) for event in got}) == 150
