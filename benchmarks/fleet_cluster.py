"""The fleet on a three-node JetStream cluster: what a replicated stream costs, and what a
failover costs.

Three ``nats-server`` processes on loopback form one cluster (routes to one another, file
storage), started here.

``throughput``: the same exec-like events (about 0.4 KiB of JSON each) published with
acknowledgements to a stream of one replica and to a stream of three, by nats-py alone (as a user
would call it: ``json.dumps`` of the batch, ``js.publish`` with a message id, await the ack) and
by ``JetStreamSink`` (block policy: every event acknowledged), each connected with the three
URLs; one message in flight at a time for both. Trials alternate in one run; the table gives
medians of events/s, CPU µs per event and the time from a message's publish to its
acknowledgement.

``failover``: a sink (the service's settings: drop_oldest, a 65,536-event buffer) publishes
2,000 events a second, in batches of 20 every 10 ms, to a stream of three replicas; after 2 s the
stream's leader, or the server the sink is connected to, is killed with SIGKILL and never
restarted; publishing goes on for 8 s more. The table gives the longest time no message was
acknowledged (the outage as the publisher sees it), the most events waiting meanwhile, what
was dropped, and whether the survivors hold every event exactly once (read back through
``fleet_events``).

    .venv/bin/python -m benchmarks.fleet_cluster [--events 50000] [--batches 1,256]
        [--repeat 3] [--failovers 3]
"""

from __future__ import annotations

import argparse
import collections
import itertools
import json
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel

from ._common import machine
from ._nats_server import NatsCluster, ready
from .fleet_publish import EVENT, aiobpf_sink, client_alone

#: Streams of the throughput trials: one replica and three, each over its own subjects.
STREAMS = {1: ("R1", "r1.>"), 3: ("R3", "r3.>")}


async def _add_stream(urls: list[str], name: str, subjects: list[str], replicas: int) -> None:
    import nats

    client = await nats.connect(servers=urls)
    try:
        await client.jetstream().add_stream(name=name, subjects=subjects, num_replicas=replicas)
    finally:
        await client.close()


PUBLISHERS: dict[str, Callable[[list[str], str, int, int], Coroutine[Any, Any, None]]] = {
    "nats-py alone": client_alone,
    "aiobpf JetStreamSink": aiobpf_sink,
}


async def _trial(
    name: str, urls: list[str], subject: str, events: int, batch: int
) -> dict[str, float]:
    wall, cpu = time.monotonic(), time.process_time()
    await PUBLISHERS[name](urls, subject, events, batch)
    wall, cpu = time.monotonic() - wall, time.process_time() - cpu
    return {
        "events_per_s": events / wall,
        "cpu_us_per_event": cpu / events * 1e6,
        "ms_per_message": wall / (events // batch) * 1e3,
    }


def throughput(cluster: NatsCluster, args: argparse.Namespace) -> None:
    urls = cluster.urls
    for replicas, (name, subjects) in STREAMS.items():
        anyio.run(_add_stream, urls, name, [subjects], replicas)
    batches = [int(batch) for batch in args.batches.split(",")]
    rows: dict[tuple[int, int, str], list[dict[str, float]]] = {}
    for turn in range(args.repeat):
        for batch in batches:
            events = args.events if batch > 1 else args.events // 10
            for replicas, (_, subjects) in STREAMS.items():
                for publisher in PUBLISHERS:
                    subject = subjects.replace(">", f"t{turn}b{batch}p{len(rows)}")
                    result = anyio.run(_trial, publisher, urls, subject, events, batch)
                    rows.setdefault((batch, replicas, publisher), []).append(result)
                    print(f"  turn {turn + 1}: R{replicas}, {batch:>4}/msg, {publisher}: {result}")
    print(f"\nMedians of {args.repeat} trials each, alternating, in one run.\n")
    print(
        "| events per message | replicas | publisher | events/s | CPU µs / event | "
        "ms publish to ack | events/s vs client, same stream | vs one replica |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for batch in batches:
        for replicas in STREAMS:
            for publisher in PUBLISHERS:
                trials = rows[batch, replicas, publisher]
                rate = statistics.median(r["events_per_s"] for r in trials)
                client = statistics.median(
                    r["events_per_s"] for r in rows[batch, replicas, "nats-py alone"]
                )
                single = statistics.median(r["events_per_s"] for r in rows[batch, 1, publisher])
                cpu = statistics.median(r["cpu_us_per_event"] for r in trials)
                latency = statistics.median(r["ms_per_message"] for r in trials)
                print(
                    f"| {batch} | {replicas} | {publisher} | {rate:,.0f} | {cpu:.1f} | "
                    f"{latency:.2f} | {rate / client:.2f}x | {rate / single:.2f}x |"
                )


async def _leader(urls: list[str], stream: str) -> str:
    import nats

    client = await nats.connect(servers=urls)
    try:
        info = await client.jetstream().stream_info(stream)
        assert info.cluster is not None
        return str(info.cluster.leader)
    finally:
        await client.close()


class _ClientAlone:
    """nats-py as a user would publish through a failover: each batch a message with its id,
    awaited, tried again at once on any error (a time-out, no responders, a lost connection),
    with the sink's ack time-out. What it cannot publish while the engine is away holds up
    its caller: it has no buffer."""

    def __init__(self, urls: list[str], subject: str) -> None:
        self.urls, self.subject = urls, subject
        self.published = self.dropped = self.pending = self.seq = 0
        self.connected_url: str | None = None
        self._client: Any = None

    async def __aenter__(self) -> _ClientAlone:
        import nats

        self._client = await nats.connect(
            servers=self.urls, reconnect_time_wait=0.25, max_reconnect_attempts=-1
        )
        url = self._client.connected_url
        self.connected_url = f"{url.scheme}://{url.hostname}:{url.port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._client.close()

    async def send(self, items: Any) -> None:
        import nats

        batch = list(items)
        payload = json.dumps({"node": "alone", "run": "r", "boot_id": "b", "seq": self.seq,
                              "items": batch}).encode()  # fmt: skip
        message_id = f"alone:{self.subject}:{self.seq}"
        self.seq += 1
        self.pending += len(batch)
        while True:
            try:
                await self._client.jetstream().publish(
                    self.subject, payload, timeout=2.0, headers={"Nats-Msg-Id": message_id}
                )
                break
            except nats.errors.Error:
                await anyio.lowlevel.checkpoint()  # tried again at once
        self.pending -= len(batch)
        self.published += len(batch)


async def _failover(cluster: NatsCluster, whom: str, publisher: str, trial: int) -> dict[str, Any]:
    """One failover trial: returns what the publisher saw and what the survivors hold."""
    from aiobpf.fleet import JetStreamSink, Node, fleet_events

    urls = cluster.urls
    tag = f"f{trial}{whom}{'sink' if publisher.startswith('aiobpf') else 'alone'}"
    subject = f"aiobpf.{tag}.exec"
    rate_batch, period, before, after = 20, 0.01, 2.0, 8.0
    acks: list[float] = []
    most_pending = 0
    killed_at = 0.0
    victim = roles = ""
    sink: Any = (
        JetStreamSink(
            urls,
            subject=subject,
            node=Node(tag),
            policy="drop_oldest",
            max_pending=65536,
            close_timeout=60,
        )
        if publisher.startswith("aiobpf")
        else _ClientAlone(urls, subject)
    )

    def counts() -> tuple[int, int, int]:
        if isinstance(sink, _ClientAlone):
            return sink.published, sink.pending, sink.dropped
        stats = sink.stats
        return stats.published, stats.pending, stats.dropped

    async with sink:
        sent = 0

        async def monitor() -> None:
            # sampling the publisher's counts every millisecond: the benchmark's clock, not
            # the library's
            nonlocal most_pending
            published = 0
            while True:
                now_published, pending, _ = counts()
                if now_published != published:
                    published = now_published
                    acks.append(time.monotonic())
                most_pending = max(most_pending, pending)
                await anyio.sleep(0.001)

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(monitor)
            start = time.monotonic()
            tick = start
            while tick - start < before + after:
                await sink.send({"n": sent + i, **EVENT} for i in range(rate_batch))
                sent += rate_batch
                tick += period
                if not killed_at and tick - start >= before:
                    leader = await _leader(urls, "AIOBPF")
                    assert sink.connected_url is not None
                    own = cluster.name_of(sink.connected_url)
                    victim = leader if whom == "leader" else own
                    roles = ("the stream leader" if victim == leader else "a follower") + (
                        ", the publisher's own server" if victim == own else ""
                    )
                    killed_at = time.monotonic()
                    cluster.kill(victim)
                await anyio.sleep_until(tick)
            while counts()[1]:  # noqa: ASYNC110 -- sampled: what waits goes out first
                await anyio.sleep(0.01)
            tasks.cancel_scope.cancel()
    published, _, dropped = counts()
    survivors = [url for url in urls if cluster.name_of(url) != victim]
    stored: collections.Counter[int] = collections.Counter()
    reader = fleet_events(survivors, subject=subject, durable=tag)
    async with reader as events:
        with anyio.move_on_after(60):
            async for event in events:
                stored[event.n] += 1
                if len(stored) == published:
                    break
    gaps = [b - a for a, b in itertools.pairwise(acks) if b >= killed_at]
    resumed = next((t for t in acks if t > killed_at), float("nan"))
    return {
        "whom": whom,
        "publisher": publisher,
        "victim": victim,
        "roles": roles,
        "longest_gap_s": max(gaps, default=float("nan")),
        "first_ack_after_kill_s": resumed - killed_at,
        "most_pending": most_pending,
        "sent": sent,
        "published": published,
        "dropped": dropped,
        "stored_once": len(stored) == sent and all(count == 1 for count in stored.values()),
        "repeats_read": reader.stats.duplicates,
    }


def failover(directory: Path, args: argparse.Namespace) -> None:
    results: list[dict[str, Any]] = []
    for trial in range(args.failovers):
        for whom in ("leader", "connected"):
            for publisher in PUBLISHERS:
                cluster = NatsCluster(directory / f"failover-{trial}-{whom}-{len(results)}")
                cluster.start()
                try:
                    anyio.run(ready, cluster.urls)
                    anyio.run(_add_stream, cluster.urls, "AIOBPF", ["aiobpf.>"], 3)
                    result = anyio.run(_failover, cluster, whom, publisher, trial)
                finally:
                    cluster.stop()
                results.append(result)
                print(f"  failover {trial + 1}, {whom}, {publisher}: {result}")
    print(f"\n{args.failovers} failovers of each kind, one fresh cluster each, in turns.\n")
    print(
        "| server killed | publisher | trials | longest time with no ack, s (median, max) | "
        "most events waiting | dropped | every event stored once |"
    )
    print("|---|---|---|---|---|---|---|")
    for roles in sorted({r["roles"] for r in results}):
        for publisher in PUBLISHERS:
            mine = [r for r in results if r["roles"] == roles and r["publisher"] == publisher]
            if not mine:
                continue
            gaps = [r["longest_gap_s"] for r in mine]
            print(
                f"| {roles} | {publisher} | {len(mine)} | "
                f"{statistics.median(gaps):.2f}, {max(gaps):.2f} | "
                f"{max(r['most_pending'] for r in mine):,} | "
                f"{sum(r['dropped'] for r in mine)} | "
                f"{sum(r['stored_once'] for r in mine)} of {len(mine)} |"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--batches", default="1,256")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--failovers", type=int, default=3)
    parser.add_argument("--only", choices=["throughput", "failover"])
    args = parser.parse_args()
    if shutil.which("nats-server") is None:
        raise SystemExit("nats-server is missing: scripts/setup.sh test installs it")
    print(f"Machine: {machine()}")
    print(
        f"Command: .venv/bin/python -m benchmarks.fleet_cluster --events {args.events} "
        f"--batches {args.batches} --repeat {args.repeat} --failovers {args.failovers}"
        + (f" --only {args.only}" if args.only else "")
    )
    with tempfile.TemporaryDirectory() as store:
        if args.only != "failover":
            cluster = NatsCluster(Path(store) / "throughput")
            cluster.start()
            try:
                anyio.run(ready, cluster.urls)
                throughput(cluster, args)
            finally:
                cluster.stop()
        if args.only != "throughput":
            failover(Path(store), args)


if __name__ == "__main__":
    main()
