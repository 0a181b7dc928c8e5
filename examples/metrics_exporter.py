"""Your own pipeline as Prometheus metrics, next to aiobpf's, on the service's /metrics.

    sudo .venv/bin/python examples/metrics_exporter.py [--port 9109] [--every 10]

Counts exec calls per command in windows of --every seconds of event time (in user space) and
per user (in the kernel), and serves them as ``exec_by_comm_total{comm=...}`` and
``exec_by_uid_total{uid=...}`` (with ``*_last`` gauges for the last window) beside aiobpf's own
metrics. The endpoint is ``aiobpf serve``'s: loopback TCP with a bearer token, printed at start.
Scrape it with the Prometheus config in docs/guide/service.md. ``--program-stats`` adds what the two
sources' BPF programs cost the kernel (``aiobpf_program_runs_total``,
``aiobpf_program_run_seconds_total``), counted while it runs.
"""

from __future__ import annotations

import argparse
import contextlib
import functools

import anyio
from prometheus_client.registry import Collector

import aiobpf
from aiobpf.service import ProgramCostMetrics, StreamMetrics, serve


async def main(port: int, every: float, program_stats: bool) -> None:
    by_comm = StreamMetrics("exec_by_comm", "exec calls per command", label="comm")
    by_uid = StreamMetrics("exec_by_uid", "exec calls per user, counted in the kernel", label="uid")
    async with (
        anyio.create_task_group() as tasks,
        aiobpf.execve_events() as events,  # attached from here: nothing is missed after
        aiobpf.execve_counts(interval=every) as counts,  # cumulative since attached
    ):
        collectors: list[Collector] = [by_comm, by_uid]
        if program_stats:
            collectors.append(
                ProgramCostMetrics({"execve_events": events, "execve_counts": counts})
            )
        serving = await tasks.start(functools.partial(serve, port=port, collectors=collectors))
        print(f"metrics at {serving.url}metrics, token {serving.token}", flush=True)
        tasks.start_soon(by_comm.consume, events | aiobpf.window_count("comm", every=every))
        await by_uid.consume(counts)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=9109)
    parser.add_argument("--every", type=float, default=10.0, help="window length, seconds")
    parser.add_argument(
        "--program-stats", action="store_true", help="export what the BPF programs cost"
    )
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C: sources close on the way out
        stats = aiobpf.enable_program_stats() if args.program_stats else contextlib.nullcontext()
        with stats:  # the kernel counts while it is held
            anyio.run(main, args.port, args.every, args.program_stats)
