"""Publishing to NATS JetStream with acknowledgements: aiobpf's sink against the client alone.

Both publish the same exec-like events (about 0.4 KiB of JSON each) to the same stream on a
nats-server started here (JetStream, file storage, on loopback), one message at a time, each
acknowledged before the next: ``nats-py`` as a user would call it (``json.dumps`` of the batch,
``js.publish`` with a message id, await the ack), and ``JetStreamSink.send`` with the block
policy, so that nothing is dropped and every event is acknowledged. Trials alternate, in one
run; the table gives medians of events/s and CPU µs per event, and the ratio to the client.

    .venv/bin/python -m benchmarks.fleet_publish [--events 100000] [--batches 1,16,256]
        [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import anyio

from ._common import machine
from ._nats_server import NatsServer

EVENT = {
    "pid": 4242,
    "tid": 4242,
    "ppid": 1,
    "uid": 1000,
    "gid": 1000,
    "comm": "bash",
    "filename": "/usr/bin/ls",
    "argv": ["ls", "--color=auto", "-la", "/var/log"],
    "retval": 0,
    "timestamp_ns": 123456789012345,
    "time": 1_800_000_000.123,
    "syscall": "execve",
    "dirfd": -100,
    "flags": 0,
    "filename_truncated": False,
    "argv_truncated": False,
    "message": "hello world",
    "cgroup_id": 4242,
}


async def client_alone(url: str | list[str], subject: str, events: int, batch: int) -> None:
    import nats

    client = await nats.connect(servers=url)
    try:
        jetstream = client.jetstream()
        for seq in range(events // batch):
            payload = json.dumps({"node": "bench", "seq": seq, "items": [EVENT] * batch})
            await jetstream.publish(
                subject, payload.encode(), headers={"Nats-Msg-Id": f"bench:{subject}:{seq}"}
            )
    finally:
        await client.close()


async def aiobpf_sink(url: str | list[str], subject: str, events: int, batch: int) -> None:
    from aiobpf.fleet import JetStreamSink

    items = [EVENT] * batch
    async with JetStreamSink(
        url, subject=subject, max_items=batch, max_pending=max(batch, 4096), close_timeout=60
    ) as sink:
        for _ in range(events // batch):
            await sink.send(items)
    assert sink.stats.published == events - events % batch, sink.stats


PUBLISHERS: dict[str, Callable[[str, str, int, int], Coroutine[Any, Any, None]]] = {
    "nats-py alone": client_alone,
    "aiobpf JetStreamSink": aiobpf_sink,
}


async def _trial(name: str, url: str, subject: str, events: int, batch: int) -> dict[str, float]:
    wall, cpu = time.monotonic(), time.process_time()
    await PUBLISHERS[name](url, subject, events, batch)
    wall, cpu = time.monotonic() - wall, time.process_time() - cpu
    return {"events_per_s": events / wall, "cpu_us_per_event": cpu / events * 1e6}


async def _ensure_stream(url: str) -> None:
    import nats

    client = await nats.connect(url)
    try:
        await client.jetstream().add_stream(name="AIOBPF", subjects=["aiobpf.>"])
    finally:
        await client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--batches", default="1,16,256")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if shutil.which("nats-server") is None:
        raise SystemExit("nats-server is missing: scripts/setup.sh test installs it")
    batches = [int(batch) for batch in args.batches.split(",")]
    rows: dict[tuple[int, str], list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as store:
        engine = NatsServer(Path(store))
        engine.start()
        url = engine.url
        try:
            anyio.run(_ensure_stream, url)
            for turn in range(args.repeat):
                for batch in batches:
                    events = args.events if batch > 1 else args.events // 10
                    for name in PUBLISHERS:
                        subject = f"aiobpf.bench{turn}.b{batch}.{len(rows)}x{name[:5]}".replace(
                            " ", ""
                        ).replace("-", "")
                        result = anyio.run(_trial, name, url, subject, events, batch)
                        rows.setdefault((batch, name), []).append(result)
                        print(f"  turn {turn + 1}: {batch:>4} per message, {name}: {result}")
        finally:
            engine.stop()
    print(f"Machine: {machine()}")
    print(
        f"Command: .venv/bin/python -m benchmarks.fleet_publish --events {args.events} "
        f"--batches {args.batches} --repeat {args.repeat}"
    )
    print(f"Medians of {args.repeat} trials each, alternating, in one run.\n")
    print("| events per message | publisher | events/s | CPU µs / event | events/s vs client |")
    print("|---|---|---|---|---|")
    for batch in batches:
        base = statistics.median(r["events_per_s"] for r in rows[batch, "nats-py alone"])
        for name in PUBLISHERS:
            rate = statistics.median(r["events_per_s"] for r in rows[batch, name])
            cpu = statistics.median(r["cpu_us_per_event"] for r in rows[batch, name])
            print(f"| {batch} | {name} | {rate:,.0f} | {cpu:.1f} | {rate / base:.2f}x |")


if __name__ == "__main__":
    main()
