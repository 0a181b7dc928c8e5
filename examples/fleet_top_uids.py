"""Exec calls per (host, user) over a whole fleet, read back from a NATS JetStream stream.

Every node runs `aiobpf serve --publish nats://ENGINE:4222` (or a pipeline of its own with
`aiobpf.fleet.JetStreamSink`); this reads every node's execs through one durable consumer and
counts them per (host, uid) in windows of wall-clock time, with the same operators as one
node's events: `window_count` and `top_n`, unchanged.

    .venv/bin/python examples/fleet_top_uids.py [--engine nats://127.0.0.1:4222] [--every 2]
        [--top 10] [--durable fleet-top-uids]

A restart resumes after the last message it finished (the durable consumer). nats-py runs on
asyncio only. Needs no root: it reads the engine, not the kernel.
"""

from __future__ import annotations

import argparse
import contextlib
from typing import cast

import anyio

import aiobpf
from aiobpf.fleet import FleetEvent, fleet_events


def host_and_uid(event: FleetEvent) -> tuple[str, int]:
    return event.node, event.uid


async def main(engine: str, every: float, top: int, durable: str) -> None:
    events = fleet_events(engine, subject="aiobpf.*.exec", durable=durable)
    # event time from many clocks: events a second out of order still count, and a node whose
    # clock runs more than 5 s ahead cannot close the others' windows
    windows = aiobpf.window_count(
        host_and_uid, every=every, time="time", time_scale=1.0, lateness=1.0, max_future=5.0
    )
    async with events | windows | aiobpf.top_n(top) as counted:
        async for window in counted:
            for key, count in window.counts.items():
                host, uid = cast(tuple[str, int], key)
                print(f"{host:<24} UID {uid:<8} => {count}")
            late = f", {window.late} late" if window.late else ""
            print(f"-- {window.total} execs in {every:g} s{late}", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", default="nats://127.0.0.1:4222")
    parser.add_argument("--every", type=float, default=2.0)
    parser.add_argument("--top", type=int, default=10)
    parser.add_argument("--durable", default="fleet-top-uids")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C: the reader closes on the way out
        anyio.run(main, args.engine, args.every, args.top, args.durable)
