"""Fleet: events into NATS JetStream and back out, against a real nats-server."""

from __future__ import annotations

import collections
import errno
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time as time_module
from collections.abc import AsyncIterable, AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

import aiobpf
from aiobpf.fleet import (
    FleetEvent,
    JetStreamSink,
    Node,
    SinkPolicy,
    SinkStats,
    fleet_events,
    publish,
)

from . import kernel
from .nats_engine import NatsServer, nats_server_or_skip

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parent.parent
BOOT_ID = Path("/proc/sys/kernel/random/boot_id").read_text().strip()

#: nats-py runs on asyncio only: the sink and the reader are tested there (and refused on trio).
asyncio_only = pytest.mark.parametrize("anyio_backend", ["asyncio"])


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[NatsServer]:
    server = nats_server_or_skip(tmp_path / "jetstream")
    try:
        yield server
    finally:
        server.stop()


async def first(count: int, stream: AsyncIterable[Any]) -> AsyncIterator[Any]:
    """The first ``count`` items of ``stream``, then the end."""
    if count <= 0:
        return
    async for item in stream:
        yield item
        count -= 1
        if count == 0:
            return


async def jetstream_state(url: str, durable: str) -> tuple[int, int, int]:
    """Messages in stream AIOBPF, and of consumer ``durable`` those not yet delivered and those
    delivered but not acknowledged: read from the engine itself."""
    import nats

    client = await nats.connect(url)
    try:
        jetstream = client.jetstream()
        stream = await jetstream.stream_info("AIOBPF")
        consumer = await jetstream.consumer_info("AIOBPF", durable)
        return stream.state.messages, consumer.num_pending, consumer.num_ack_pending
    finally:
        await client.close()


async def read(url: str, count: int, durable: str = "test") -> list[FleetEvent]:
    async with fleet_events(url, durable=durable) as events:
        with anyio.fail_after(30):
            return [await events.receive() for _ in range(count)]


@asyncio_only
@pytest.mark.usefixtures("bpf")
async def test_execs_of_a_fresh_uid_arrive_once_with_the_hosts_identity(
    engine: NatsServer, tmp_path: Path
) -> None:
    """N execs of a fresh uid, published from execve_events() (filtered in the kernel), are
    acknowledged by the engine and read back exactly once by the fleet reader: their pids,
    uid, comm and filename, and this host's name and boot id."""
    uid, count = 61091, 12
    program = kernel.uniquely_named_program(tmp_path, "fleet-exec")
    tmp_path.chmod(0o755)  # noqa: ASYNC240 -- set-up before anything is awaited
    async with (
        JetStreamSink(engine.url, subject="aiobpf.thishost.exec") as sink,
        aiobpf.execve_events() | aiobpf.filter_uid(uid) as execs,
    ):
        pids = []
        for _ in range(count):
            child = kernel.spawn_as(uid, program)
            child.wait()
            pids.append(child.pid)
        assert await publish(first(count, execs), sink) == count
    stats = sink.stats
    assert (stats.received, stats.published, stats.dropped, stats.pending) == (count, count, 0, 0)
    assert (stats.duplicates, stats.retries) == (0, 0)

    events = await read(engine.url, count)
    assert sorted(event.pid for event in events) == sorted(pids)
    assert {(event.node, event.boot_id) for event in events} == {(socket.gethostname(), BOOT_ID)}
    assert {(event.uid, event.comm, event.filename) for event in events} == {
        (uid, "fleet-exec", str(program))
    }
    assert len({(event.message_id, event.index) for event in events}) == count
    # exactly once: the stream holds these messages and no other, all acknowledged
    assert await jetstream_state(engine.url, "test") == (stats.messages, 0, 0)


@asyncio_only
@pytest.mark.usefixtures("bpf")
async def test_an_engine_killed_during_a_storm_loses_nothing_silently(engine: NatsServer) -> None:
    """The engine is killed during an exec storm and started again: every exec is published
    (acknowledged) or counted as dropped by the sink's bounded buffer, and the stream holds
    each published message once (retries keep their message ids); the reader gets every
    published event, each once."""
    uid, runs = 61092, 300
    program = shutil.which("true") or "/bin/true"  # run by the uid's shell: a path it may reach
    storm = ["/bin/sh", "-c", f'i=0; while [ $i -lt {runs} ]; do "$0"; i=$((i+1)); done', program]
    produced = runs + 1  # the shell's exec, as the uid (by its path: no search), then the storm

    async def outage(stream: AsyncIterable[Any]) -> AsyncIterator[Any]:
        seen = 0
        async for event in stream:
            seen += 1
            if seen == 40:
                engine.stop()
            elif seen == 150:
                engine.start()
            yield event

    sink = JetStreamSink(
        engine.url,
        subject="aiobpf.stormhost.exec",
        max_pending=64,
        max_items=16,
        policy="drop_oldest",
        ack_timeout=0.5,
        close_timeout=60,
    )
    source = aiobpf.execve_events()
    async with sink, source | aiobpf.filter_uid(uid) as execs:  # the uid filter: in the kernel
        async with await anyio.open_process(kernel.setpriv_command(uid, "/bin/sh")[:-1] + storm):
            await publish(outage(first(produced, execs)), sink)
        assert source.stats.received == produced
        assert source.stats.dropped == 0
    stats = sink.stats
    assert stats.received == produced
    assert stats.published + stats.dropped == produced
    assert stats.pending == 0
    assert stats.disconnects >= 1  # the outage was seen (a publish may wait it out, or retry)

    events = await read(engine.url, stats.published)
    assert len({(event.message_id, event.index) for event in events}) == stats.published
    assert {event.comm for event in events} <= {"sh", "true"}
    assert await jetstream_state(engine.url, "test") == (stats.messages, 0, 0)


@asyncio_only
async def test_a_durable_reader_resumes_after_the_last_message_it_finished(
    engine: NatsServer,
) -> None:
    """A reader that stops in the middle of a message leaves that message to the next reader
    with the same durable name, which gets it at once; the repeats are told by their ids."""
    async with JetStreamSink(engine.url, node=Node("resume-node"), max_items=16) as sink:
        await sink.send({"uid": 1000, "n": n} for n in range(40))  # messages of 16, 16, 8
    assert sink.stats.published == 40

    before = await read(engine.url, 20, durable="resumer")  # message 0, and 4 of message 1
    after = await read(engine.url, 16 + 8, durable="resumer")  # message 1 again, message 2
    ids_before = {(event.message_id, event.index) for event in before}
    ids_after = {(event.message_id, event.index) for event in after}
    assert sorted(event.n for event in after) == list(range(16, 40))
    repeated = ids_before & ids_after
    assert len(repeated) == 4
    assert len({message_id for message_id, _ in repeated}) == 1
    assert len(ids_before | ids_after) == 40
    assert await jetstream_state(engine.url, "resumer") == (3, 0, 0)


PUBLISHER = """
import sys, anyio
from aiobpf.fleet import JetStreamSink, Node

async def main(url, node, *uids):
    async with JetStreamSink(url, node=Node(node)) as sink:
        await sink.send({"uid": int(uid), "comm": "job"} for uid in uids)
    assert sink.stats.published == len(uids), sink.stats

anyio.run(main, *sys.argv[1:])
"""


@asyncio_only
async def test_two_nodes_are_told_apart_by_the_fleet_reader(engine: NatsServer) -> None:
    """Two publishing processes standing for two nodes: the reader counts execs per (node,
    uid), through the same operators as a node's own events."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    for node, uids in (("node-a", [1, 1, 1, 2]), ("node-b", [1, 3, 3])):
        command = [sys.executable, "-c", PUBLISHER, engine.url, node, *map(str, uids)]
        with anyio.fail_after(60):
            await anyio.run_process(command, env=env, stdout=None, stderr=None)

    counts: collections.Counter[tuple[str, int]] = collections.Counter()
    async with fleet_events(engine.url) | aiobpf.filter_uid({1, 3}) as events:
        with anyio.fail_after(30):
            async for event in first(6, events):
                counts[event.node, event.uid] += 1
    assert counts == {("node-a", 1): 3, ("node-b", 1): 1, ("node-b", 3): 2}


@asyncio_only
async def test_the_buffer_policies_count_what_they_drop(engine: NatsServer) -> None:
    """With the engine down, a sink holds at most max_pending items: drop_newest refuses what
    comes after, drop_oldest gives up the oldest waiting (never the one being published); once
    the engine is back, what was kept is published: published + dropped == received."""
    cases: list[tuple[SinkPolicy, list[int]]] = [
        ("drop_newest", [0, 1, 2]),
        ("drop_oldest", [0, 8, 9]),
    ]
    for policy, kept in cases:
        subject = f"aiobpf.{policy}.test"
        sink = JetStreamSink(
            engine.url,
            subject=subject,
            max_pending=30,
            max_items=10,
            policy=policy,
            ack_timeout=0.2,
        )
        async with sink:
            engine.stop()
            for batch in range(10):  # ten messages of ten
                await sink.send({"batch": batch, "n": n} for n in range(10))
            stats = sink.stats  # what the engine sees of the outage, and when, is its own
            assert stats == SinkStats(100, 0, 70, 30, 0, 0, stats.retries, stats.disconnects, 0)
            engine.start()
        assert (sink.stats.published, sink.stats.dropped, sink.stats.pending) == (30, 70, 0)
        async with fleet_events(engine.url, subject=subject, durable=policy) as events:
            with anyio.fail_after(30):
                got = [await events.receive() for _ in range(30)]
        assert sorted({event.batch for event in got}) == kept


@asyncio_only
async def test_block_waits_for_room(engine: NatsServer) -> None:
    """With the block policy, a send that finds the buffer full waits until the engine took
    enough: nothing is dropped."""
    sink = JetStreamSink(engine.url, max_pending=20, max_items=10, policy="block", ack_timeout=0.2)
    async with sink:
        engine.stop()
        await sink.send({"n": n} for n in range(20))
        done = anyio.Event()

        async def third() -> None:
            await sink.send({"n": n} for n in range(20, 30))
            done.set()

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(third)
            await anyio.wait_all_tasks_blocked()
            assert not done.is_set()
            assert sink.stats.pending == 20
            engine.start()
    assert (sink.stats.received, sink.stats.published, sink.stats.dropped) == (30, 30, 0)


@asyncio_only
async def test_an_unreachable_engine_is_a_stream_engine_error(engine: NatsServer) -> None:
    engine.stop()
    with pytest.raises(aiobpf.StreamEngineError, match="cannot reach the stream engine"):
        async with JetStreamSink(engine.url, connect_timeout=1):
            pass
    with pytest.raises(aiobpf.StreamEngineError, match="cannot reach the stream engine"):
        async with fleet_events(engine.url, connect_timeout=1):
            pass


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_on_trio_the_nats_parts_say_why_they_cannot_run() -> None:
    """nats-py runs on asyncio only: on trio, the sink and the reader raise a typed error that
    names the reason, before any connection."""
    with pytest.raises(aiobpf.AsyncioOnlyError, match="asyncio only: nats-py"):
        async with JetStreamSink("nats://127.0.0.1:1"):
            pass
    with pytest.raises(aiobpf.AsyncioOnlyError, match="asyncio only: nats-py"):
        async with fleet_events("nats://127.0.0.1:1"):
            pass


def test_bad_arguments_are_refused_at_the_call() -> None:
    with pytest.raises(ValueError, match="policy must be one of"):
        JetStreamSink(policy="drop_all")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_pending"):
        JetStreamSink(max_pending=10, max_items=16)
    with pytest.raises(ValueError, match="ack_timeout"):
        JetStreamSink(ack_timeout=0)


@asyncio_only
@pytest.mark.usefixtures("bpf")
async def test_serve_publishes_every_exec_to_the_engine(engine: NatsServer, tmp_path: Path) -> None:
    """`aiobpf serve --publish URL`: execs of a fresh uid reach the stream, each once, on the
    exec subject, and the processes' exits on the node's exit subject, while the service runs;
    stopped with Ctrl-C, it says how many it published."""
    uid, count = 61093, 6
    program = kernel.uniquely_named_program(tmp_path, "fleet-served")
    tmp_path.chmod(0o755)  # noqa: ASYNC240 -- set-up before anything is awaited
    command = [sys.executable, "-m", "aiobpf", "serve", "--socket", str(tmp_path / "sock")]
    command += ["--publish", engine.url, "--subject", "aiobpf.served.exec"]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    async with await anyio.open_process(command, env=env, stderr=None) as service:
        assert service.stdout is not None
        said = b""
        with anyio.fail_after(60):
            while b"publishing to" not in said:
                said += await service.stdout.receive()
        pids = []
        for _ in range(count):
            child = kernel.spawn_as(uid, program)
            child.wait()
            pids.append(child.pid)
        execs = fleet_events(engine.url, subject="aiobpf.served.exec", durable="served")
        async with execs | aiobpf.filter_uid(uid) as events:
            with anyio.fail_after(30):
                got = [event async for event in first(count, events)]
        exits = fleet_events(engine.url, subject="aiobpf.*.exit", durable="served-exits")
        async with exits | aiobpf.filter_uid(uid) as events:
            with anyio.fail_after(30):
                ended = [event async for event in first(count, events)]
        transport = httpx.AsyncHTTPTransport(uds=str(tmp_path / "sock"))
        async with httpx.AsyncClient(transport=transport) as client:
            metrics = (await client.get("http://localhost/metrics")).text
        service.send_signal(signal.SIGINT)
        with anyio.fail_after(60):
            async for chunk in service.stdout:
                said += chunk
            assert await service.wait() == 0
    assert sorted(event.pid for event in got) == sorted(pids)
    assert {(event.node, event.comm) for event in got} == {(socket.gethostname(), "fleet-served")}
    assert {event.type for event in got} == {"exec"}
    assert sorted(event.pid for event in ended) == sorted(pids)
    assert {(e.type, e.comm, e.exit_code, e.signal) for e in ended} == {
        ("exit", "fleet-served", 0, None)
    }
    assert b"events published to " + engine.url.encode() + b", 0 dropped" in said
    published = {
        sample.name: sample.value
        for family in text_string_to_metric_families(metrics)
        for sample in family.samples
        if sample.name.startswith("aiobpf_publish_")
        and sample.labels == {"subject": "aiobpf.served.exec"}
    }
    assert published["aiobpf_publish_published_total"] >= count
    assert published["aiobpf_publish_received_total"] == (
        published["aiobpf_publish_published_total"]
        + published["aiobpf_publish_dropped_total"]
        + published["aiobpf_publish_pending"]
    )


TIMED_PUBLISHER = """
import sys, anyio
from aiobpf.fleet import JetStreamSink, Node

async def main(url, node, time, *uids):
    async with JetStreamSink(url, subject=f"aiobpf.{node}.exec", node=Node(node)) as sink:
        await sink.send({"uid": int(uid), "time": float(time)} for uid in uids)

anyio.run(main, *sys.argv[1:])
"""


@asyncio_only
async def test_the_fleet_top_uids_example_counts_per_host_and_uid(engine: NatsServer) -> None:
    """examples/fleet_top_uids.py, run as a user would: two nodes' execs in one window of
    wall-clock time come out counted per (host, uid); a later event closes the window."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    # a window's start (windows are aligned to multiples of their length) a little in the past:
    # the example takes no node's clock more than 5 s ahead of its own
    now = float(int(time_module.time()) // 10 * 10 - 100)
    for node, time, uids in (
        ("node-a", now, [1000, 1000, 0]),
        ("node-b", now + 1, [1000]),
        ("node-b", now + 10, [1000]),  # the next window: closes the first
    ):
        command = [sys.executable, "-c", TIMED_PUBLISHER, engine.url, node, str(time)]
        with anyio.fail_after(60):
            await anyio.run_process([*command, *map(str, uids)], env=env, stdout=None)
    example = [sys.executable, str(ROOT / "examples" / "fleet_top_uids.py")]
    example += ["--engine", engine.url, "--every", "2"]
    async with await anyio.open_process(example, env=env, stderr=None) as reader:
        assert reader.stdout is not None
        said = ""
        with anyio.fail_after(60):
            while "-- 4 execs in 2 s" not in said:
                said += (await reader.stdout.receive()).decode()
        reader.send_signal(signal.SIGINT)
        with anyio.fail_after(60):
            await reader.wait()
    lines = said.split("-- 4 execs")[0].splitlines()
    assert sorted(" ".join(line.split()) for line in lines) == [
        "node-a UID 0 => 1",
        "node-a UID 1000 => 2",
        "node-b UID 1000 => 1",
    ]


def test_items_are_encoded_as_json_objects_of_their_fields() -> None:
    """attrs events (tuples as lists), numpy records (C strings as text), window counts with
    tuple keys, histograms, and a clear TypeError for what has no JSON form."""
    import json

    import numpy as np

    from aiobpf.fleet._encoding import to_json
    from aiobpf.programs import ExecveEvent

    event = ExecveEvent(
        pid=1, tid=1, ppid=0, uid=1000, gid=1000, comm="ls", filename="/bin/ls",
        argv=("ls", "-l"), retval=0, timestamp_ns=5, time=1.5, syscall="execve", dirfd=-100,
        flags=0, filename_truncated=False, argv_truncated=False, message="hello world",
        cgroup_id=7,
    )  # fmt: skip
    record = np.zeros(1, dtype=[("pid", "<u4"), ("comm", "S16")])[0]
    record["pid"], record["comm"] = 42, b"bash"
    window = aiobpf.WindowCount(start=0.0, end=2.0, counts={("web1", 1000): 3})
    histogram = aiobpf.operators.Histogram.from_counts({0: 1, 3: 2}, time=4.0)
    decoded = json.loads(to_json({"items": [event, record, window, histogram]}))
    assert decoded["items"][0]["argv"] == ["ls", "-l"]
    assert decoded["items"][0]["cgroup_id"] == 7
    assert decoded["items"][1] == {"pid": 42, "comm": "bash"}
    assert decoded["items"][2]["counts"] == {'["web1",1000]': 3}
    assert decoded["items"][3]["counts"] == [1, 0, 0, 2]
    assert decoded["items"][3]["kind"] == "log2"
    with pytest.raises(TypeError, match="cannot encode object"):
        to_json({"items": [object()]})


@asyncio_only
async def test_the_reader_skips_what_is_not_aiobpfs_and_names_a_missing_stream(
    engine: NatsServer,
) -> None:
    """A message that is not aiobpf's JSON is acknowledged, skipped and counted; a stream that
    does not exist is a StreamEngineError naming it."""
    import nats

    async with JetStreamSink(engine.url, node=Node("mixed")) as sink:
        await sink.send([{"uid": 1}])
    client = await nats.connect(engine.url)
    try:
        await client.jetstream().publish(sink.subject, b"not json at all")
    finally:
        await client.close()
    async with JetStreamSink(engine.url, node=Node("mixed")) as sink:
        await sink.send([{"uid": 2}])

    async with fleet_events(engine.url, durable="mixed") as events:
        with anyio.fail_after(30):
            got = [await events.receive() for _ in range(2)]
        assert [event.uid for event in got] == [1, 2]
        assert events.stats.malformed == 1
    with pytest.raises(aiobpf.StreamEngineError, match="cannot read stream 'NOPE'"):
        async with fleet_events(engine.url, stream="NOPE", connect_timeout=5):
            pass


@asyncio_only
async def test_a_send_cancelled_while_waiting_for_room_is_counted_as_dropped(
    engine: NatsServer,
) -> None:
    """With the block policy and the engine away, a send cancelled while it waits for room
    counts its items as dropped: received == published + dropped + pending still."""
    sink = JetStreamSink(
        engine.url, max_pending=10, max_items=10, policy="block", ack_timeout=0.2, close_timeout=1
    )
    async with sink:
        engine.stop()
        await sink.send({"n": n} for n in range(10))
        with anyio.move_on_after(0.5):
            await sink.send({"n": n} for n in range(10, 20))
        stats = sink.stats
        assert (stats.received, stats.dropped, stats.pending) == (20, 10, 10)
    assert (sink.stats.received, sink.stats.published, sink.stats.dropped) == (20, 0, 20)


def test_a_nodes_subject_is_one_token_per_part() -> None:
    """A host name's dots (and NATS wildcards) would split or widen a subject: each is a '_'."""
    assert Node("web1.example.com", "b").subject("exec") == "aiobpf.web1_example_com.exec"
    assert Node("a*b>c d", "b").subject("exec") == "aiobpf.a_b_c_d.exec"
    assert JetStreamSink(node=Node("db.2", "b")).subject == "aiobpf.db_2.events"
    with pytest.raises(ValueError, match="a node needs a name"):
        Node("")


FAILED_EXECS = """
import os, sys
argv = [b"\\xff" * 255] * 8  # invalid UTF-8: each byte is a U+FFFD, 6 bytes of JSON
for _ in range(int(sys.argv[1])):
    try:
        os.execv(b"/nonexistent/aiobpf-oversize", argv)
    except OSError:
        pass
"""


@asyncio_only
@pytest.mark.usefixtures("bpf")
async def test_failed_execs_with_long_invalid_utf8_argv_do_not_wedge_the_sink(
    engine: NatsServer,
) -> None:
    """256 failed execs of a fresh uid, each with 2 KiB of invalid UTF-8 in argv, make a batch
    of about 3 MiB of JSON, over the engine's 1 MiB message: the sink retried it forever and
    published nothing after it. It is split into messages the engine takes, and every exec is
    published and read back once."""
    uid, count = 61093, 256
    async with (
        JetStreamSink(engine.url, subject="aiobpf.oversize.exec", close_timeout=30) as sink,
        aiobpf.execve_events() | aiobpf.filter_uid(uid) as execs,
    ):
        python = kernel.setpriv_command(uid, sys.executable)
        await anyio.run_process([*python, "-c", FAILED_EXECS, str(count)])
        with anyio.fail_after(60):
            got = [event async for event in first(count + 1, execs)]  # setpriv's exec first
        await sink.send(got)
    stats = sink.stats
    assert (stats.received, stats.published, stats.dropped, stats.pending) == (
        count + 1, count + 1, 0, 0
    )  # fmt: skip
    assert stats.messages >= 3  # 3 MiB in messages of at most 1 MiB
    assert stats.too_large == 0

    events = await read(engine.url, count + 1)
    failed = [event for event in events if event.retval == -errno.ENOENT]
    assert len(failed) == count
    assert {"\ufffd" * 255} == {arg for event in failed for arg in event.argv}


@asyncio_only
async def test_an_item_larger_than_the_engines_message_is_dropped_and_counted(
    engine: NatsServer,
) -> None:
    """An item larger than the engine's largest message alone cannot be published: it is
    dropped and counted (too_large, within dropped), and the items around it, in the same
    batch and after, are published in order."""
    huge = {"n": -1, "blob": "x" * (1024 * 1024 + 1)}
    async with JetStreamSink(engine.url, node=Node("huge"), close_timeout=30) as sink:
        await sink.send([{"n": 0}, huge, {"n": 1}])
        await sink.send({"n": n} for n in range(2, 5))
    stats = sink.stats
    assert (stats.received, stats.published, stats.dropped, stats.pending) == (6, 5, 1, 0)
    assert stats.too_large == 1
    events = await read(engine.url, 5)
    assert [event.n for event in events] == list(range(5))


@asyncio_only
async def test_items_of_each_kind_go_to_their_own_subject(engine: NatsServer) -> None:
    """publish(kind_of=...) through a sink with a subject per kind: each kind's items reach
    its subject, in order, and only those; a kind with no subject is refused at the send."""

    async def items() -> AsyncIterator[dict[str, Any]]:
        for n in range(10):
            yield {"n": n, "kind": "exit" if n % 3 == 0 else "exec"}

    subjects = {"exit": "aiobpf.kinds.exit"}
    async with JetStreamSink(engine.url, subject="aiobpf.kinds.exec", subjects=subjects) as sink:
        sent = await publish(
            items(), sink, kind_of=lambda item: "exit" if item["kind"] == "exit" else None
        )
        with pytest.raises(ValueError, match="no subject for 'fork' items"):
            await sink.send([{"n": -1}], kind="fork")
    assert sent == 10
    assert sink.stats.published == 10
    for subject, wanted in (
        ("aiobpf.kinds.exec", [1, 2, 4, 5, 7, 8]),
        ("aiobpf.kinds.exit", [0, 3, 6, 9]),
    ):
        async with fleet_events(engine.url, subject=subject, durable=subject[-4:]) as events:
            with anyio.fail_after(30):
                got = [event.n async for event in first(len(wanted), events)]
        assert got == wanted


@asyncio_only
async def test_a_stream_that_does_not_hold_a_kinds_subject_is_said_at_once(
    engine: NatsServer,
) -> None:
    """An existing stream that holds the sink's subject but not its subject for exits: a
    publish there would never be acknowledged, so entering says so instead."""
    import nats

    client = await nats.connect(engine.url)
    try:
        await client.jetstream().add_stream(name="EXECS", subjects=["execs.only"])
    finally:
        await client.close()
    sink = JetStreamSink(
        engine.url, subject="execs.only", stream="EXECS", subjects={"exit": "aiobpf.x.exit"}
    )
    with pytest.raises(aiobpf.StreamEngineError, match=r"holds 'execs\.only' but not"):
        async with sink:
            pass


@asyncio_only
async def test_a_batch_is_split_under_the_engines_largest_message(engine: NatsServer) -> None:
    """A batch whose JSON is larger than the engine's largest message goes out as several
    messages, each within it, in order; none is refused."""
    blob = "y" * 20_000
    async with JetStreamSink(engine.url, node=Node("split"), close_timeout=30) as sink:
        await sink.send({"n": n, "blob": blob} for n in range(200))  # about 4 MiB
    stats = sink.stats
    assert (stats.published, stats.dropped, stats.too_large) == (200, 0, 0)
    assert 4 <= stats.messages <= 16
    events = await read(engine.url, 200)
    assert [event.n for event in events] == list(range(200))


@asyncio_only
async def test_a_deeply_nested_message_is_skipped_and_the_reader_goes_on(
    engine: NatsServer,
) -> None:
    """A peer publishes a deeply nested JSON body on the subject: it raised RecursionError out
    of the reader, unacknowledged, so every restart died on it again. It is skipped, counted
    and acknowledged; the events after it are read."""
    import nats

    async with JetStreamSink(engine.url, node=Node("nested")) as sink:
        await sink.send([{"uid": 1}])
    client = await nats.connect(engine.url)
    try:
        for hostile in (b"[" * 100_000 + b"]" * 100_000, b'{"items":' * 50_000, b"\xff\xfe{"):
            await client.jetstream().publish(sink.subject, hostile)
    finally:
        await client.close()
    async with JetStreamSink(engine.url, node=Node("nested")) as sink:
        await sink.send([{"uid": 2}])

    async with fleet_events(engine.url, durable="nested") as events:
        with anyio.fail_after(30):
            got = [await events.receive() for _ in range(2)]
        assert [event.uid for event in got] == [1, 2]
        assert events.stats.malformed == 3
    assert await jetstream_state(engine.url, "nested") == (5, 0, 0)  # all acknowledged


class _Message:
    """What the reader takes of a NATS message: its body."""

    def __init__(self, data: bytes) -> None:
        self.data = data


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(
    data=st.binary(max_size=300)
    | _json_values.map(lambda value: json.dumps(value).encode())
    | st.fixed_dictionaries(
        dict.fromkeys(("node", "boot_id", "run", "seq", "items"), _json_values)
    ).map(lambda value: json.dumps(value).encode())
    | st.integers(1, 200_000).map(lambda depth: b"[" * depth)
)
@settings(max_examples=300, deadline=None)
def test_no_message_body_stops_the_reader(data: bytes) -> None:
    """Whatever bytes a peer publishes, the reader's decoding returns events or nothing (then
    counted as malformed, or as a duplicate): it never raises."""
    events = fleet_events()
    before = events.stats
    decoded = events._decode(_Message(data))
    after = events.stats
    assert all(isinstance(event, FleetEvent) for event in decoded)
    if not decoded:
        assert after.malformed + after.duplicates == before.malformed + before.duplicates + 1


@given(
    node=st.text(min_size=1),
    boot_id=st.text(),
    run=st.text(),
    seq=st.integers(min_value=0),
    items=st.lists(st.dictionaries(st.text(), _json_values, max_size=3), max_size=5),
)
@settings(max_examples=100, deadline=None)
def test_a_well_formed_message_decodes_to_its_items(
    node: str, boot_id: str, run: str, seq: int, items: list[dict[str, Any]]
) -> None:
    """aiobpf's own messages (any text, any items of objects) decode to one event an item,
    in order, with the message's id; the same message again is a duplicate."""
    body = {"node": node, "boot_id": boot_id, "run": run, "seq": seq, "items": items}
    events = fleet_events()
    decoded = events._decode(_Message(json.dumps(body).encode()))
    assert [event.fields for event in decoded] == items
    assert {(event.node, event.boot_id, event.message_id) for event in decoded} <= {
        (node, boot_id, f"{node}:{run}:{seq}")
    }
    assert events._decode(_Message(json.dumps(body).encode())) == []
    assert (events.stats.duplicates, events.stats.malformed) == (1, 0)


def test_engine_urls_are_checked_at_the_call() -> None:
    """A malformed URL list is a ValueError naming it; plain nats:// beyond this machine is
    refused before any connection (every user's commands in clear) unless insecure; a
    password in a URL never shows in what is said of it."""
    from aiobpf.fleet import Engine

    for bad in ("", "nats://", "http://host:4222", "nats://a:4222,,nats://b:4222"):
        with pytest.raises(ValueError, match="must be nats://HOST:PORT"):
            Engine.of(bad)
    with pytest.raises(aiobpf.InsecureEngineError, match=r"10\.1\.2\.3:4222 is beyond"):
        JetStreamSink("nats://10.1.2.3:4222")
    with pytest.raises(aiobpf.InsecureEngineError, match=re.escape("nats://***@10.1.2.3:4222")):
        fleet_events("nats://user:hunter2@10.1.2.3:4222")
    assert Engine.of("tls://10.1.2.3:4222").servers == ("tls://10.1.2.3:4222",)
    assert Engine.of("nats://10.1.2.3:4222", insecure=True).shown == "nats://10.1.2.3:4222"
    cluster = Engine.of(["nats://127.0.0.1:4222", "nats://u:p@localhost:4223"])
    assert cluster.shown == "nats://127.0.0.1:4222,nats://***@localhost:4223"


@asyncio_only
async def test_an_engine_that_wants_a_token_gets_it_from_a_file(tmp_path: Path) -> None:
    """nats-server --auth TOKEN: the sink and the reader authenticate with a credentials file
    (mode 0600) and every item goes through; a file others may read is refused; without it
    the engine refuses, and nothing said holds the token."""
    token = "s3cret-" + os.urandom(4).hex()
    server = nats_server_or_skip(tmp_path / "js", ["--auth", token])
    try:
        credentials = tmp_path / "engine.token"
        credentials.write_text(token + "\n")
        credentials.chmod(0o600)
        async with JetStreamSink(server.url, credentials=credentials, node=Node("auth")) as sink:
            await sink.send([{"n": 1}, {"n": 2}])
        assert sink.stats.published == 2
        async with fleet_events(server.url, credentials=credentials, durable="auth") as events:
            with anyio.fail_after(30):
                assert [(await events.receive()).n for _ in range(2)] == [1, 2]

        credentials.chmod(0o644)
        with pytest.raises(aiobpf.StreamEngineError, match="readable by others"):
            async with JetStreamSink(server.url, credentials=credentials):
                pass
        with pytest.raises(aiobpf.StreamEngineError) as refused:
            async with JetStreamSink(server.url, connect_timeout=5):
                pass
        assert token not in str(refused.value)
    finally:
        server.stop()


@asyncio_only
async def test_user_and_password_from_a_file_and_tls_with_a_private_authority(
    tmp_path: Path,
) -> None:
    """nats-server with a user, a password and TLS (a certificate of a private authority):
    tls:// with tls_ca and user:password from a file publish and read back; the same server
    without the authority is refused."""
    key, certificate = tmp_path / "key.pem", tmp_path / "cert.pem"
    await anyio.run_process(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-keyout", str(key), "-out", str(certificate), "-subj", "/CN=localhost"),
            *("-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"),
        ]
    )
    options = ["--user", "node", "--pass", "pa:ss", "--tls", "--tlscert", str(certificate)]
    server = nats_server_or_skip(tmp_path / "js", [*options, "--tlskey", str(key)])
    try:
        url = f"tls://127.0.0.1:{server.port}"
        credentials = tmp_path / "engine.login"
        credentials.write_text("node:pa:ss\n")  # a password may hold a colon
        credentials.chmod(0o600)
        sink = JetStreamSink(url, credentials=credentials, tls_ca=certificate, node=Node("tls"))
        async with sink:
            await sink.send([{"n": 7}])
        assert sink.stats.published == 1
        reader = fleet_events(url, credentials=credentials, tls_ca=certificate, durable="tls")
        async with reader as events:
            with anyio.fail_after(30):
                assert (await events.receive()).n == 7
        with pytest.raises(aiobpf.StreamEngineError, match="cannot reach the stream engine"):
            async with JetStreamSink(url, credentials=credentials, connect_timeout=5):
                pass
    finally:
        server.stop()


@asyncio_only
async def test_a_peer_cannot_make_a_nodes_messages_duplicates(engine: NatsServer) -> None:
    """A peer that read a node's messages publishes, on its own subject, messages with the
    node's name, boot, run and numbers before the node does: the engine stores every one of
    the node's (its message ids are random, not node:run:seq) and the reader hands every one
    out (a repeat is told by its subject too)."""
    victim = JetStreamSink(engine.url, subject="aiobpf.victim.exec", node=Node("victim", "b"))
    peer = JetStreamSink(engine.url, subject="aiobpf.peer.exec", node=Node("victim", "b"))
    peer.run = victim.run
    async with peer:
        await peer.send([{"who": "peer", "n": n} for n in range(3)])  # seq 0, then...
        await peer.send([{"who": "peer", "n": 3}])
    async with victim:
        await victim.send([{"who": "victim", "n": n} for n in range(3)])
        await victim.send([{"who": "victim", "n": 3}])
    assert (victim.stats.published, victim.stats.duplicates) == (4, 0)
    events = await read(engine.url, 8, durable="spoof")
    assert sorted(event.n for event in events if event.who == "victim") == [0, 1, 2, 3]


def test_serve_refuses_a_password_in_publish_and_an_engine_in_clear() -> None:
    """aiobpf serve --publish with a password in the URL (argv is every local user's to read):
    status 1, one line, the password not repeated; nats:// beyond this machine: status 1, one
    line, no connection made; a malformed URL list: a usage error."""

    def serve(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "aiobpf", "serve", "--port", "1", *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=60)

    with_password = serve("--publish", "nats://node:hunter2@127.0.0.1:4222")
    assert with_password.returncode == 1
    assert "--publish-credentials FILE" in with_password.stderr
    assert "hunter2" not in with_password.stderr
    assert with_password.stderr.count("\n") == 1
    in_clear = serve("--publish", "nats://10.1.2.3:4222")
    assert in_clear.returncode == 1
    assert "in clear" in in_clear.stderr
    assert in_clear.stderr.count("\n") == 1
    assert serve("--publish", "nats://a:1,,x").returncode == 2
