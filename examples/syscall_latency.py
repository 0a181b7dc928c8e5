"""Latency of every syscall, as log2 histograms kept in the kernel (from sys_enter to sys_exit,
per thread), read every interval: BCC's funclatency/syscount idea on raw syscall tracepoints,
which this kernel has (it has no kprobes).

    sudo .venv/bin/python examples/syscall_latency.py [--pid PID] [--interval 2] [--top 5] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import anyio

import aiobpf
from aiobpf.operators import Histogram, histograms

PROGRAM = r"""
struct hist_key {
    u64 nr;
    u64 slot;
};

BPF_HASH(start, u32, u64, 10240);
BPF_HISTOGRAM(dist, struct hist_key, 8192);

TRACEPOINT_PROBE(raw_syscalls, sys_enter)
{
    u64 id = bpf_get_current_pid_tgid();
    if (TARGET_TGID && (id >> 32) != TARGET_TGID)
        return 0;
    u32 tid = id;
    u64 now = bpf_ktime_get_ns();
    start.update(&tid, &now);
    return 0;
}

TRACEPOINT_PROBE(raw_syscalls, sys_exit)
{
    u64 id = bpf_get_current_pid_tgid();
    if (TARGET_TGID && (id >> 32) != TARGET_TGID)
        return 0;
    u32 tid = id;
    u64 *began = start.lookup(&tid);
    if (!began)
        return 0;
    struct hist_key key = {};
    key.nr = args->id;
    key.slot = bpf_log2l((bpf_ktime_get_ns() - *began) / 1000);
    start.delete(&tid);
    dist.increment(key);
    return 0;
}
"""


@contextlib.asynccontextmanager
async def syscall_latency(
    pid: int | None = None, interval: float = 2.0, mode: aiobpf.sources.Mode = "delta"
) -> AsyncIterator[AsyncIterator[dict[Any, Histogram]]]:
    """Per syscall number, a log2 histogram of its latency in microseconds, every interval:
    that interval's (``mode="delta"``) or since the start (``"snapshot"``)."""
    flags = [f"-DTARGET_TGID={pid or 0}"]
    program = aiobpf.compile_bcc(PROGRAM, cflags=flags)
    async with program, program.map("dist", interval=interval, mode=mode) as poller:
        yield (poller | histograms(slot="slot")).__aiter__()


def _name(number: int) -> str:
    try:
        return aiobpf.syscall_name(number)
    except LookupError:
        return f"syscall {number}"


async def main(pid: int | None, interval: float, top: int, as_json: bool) -> None:
    async with syscall_latency(pid, interval, "snapshot" if as_json else "delta") as readings:
        if as_json:
            print(json.dumps({"type": "ready"}), flush=True)
        async for by_syscall in readings:
            busiest = sorted(by_syscall.items(), key=lambda item: -item[1].total)[:top]
            if as_json:
                syscalls = {_name(nr): h.buckets() for nr, h in busiest}
                print(json.dumps({"type": "histograms", "syscalls": syscalls}), flush=True)
                continue
            for nr, histogram in busiest:
                print(f"\n{_name(nr)} ({histogram.total} calls)")
                print(histogram.render("usecs"))
            print(flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pid", type=int, help="only this process")
    parser.add_argument("--interval", type=float, default=2.0)
    parser.add_argument("--top", type=int, default=5, help="syscalls shown, most called first")
    parser.add_argument("--json", action="store_true", help="totals since the start, as JSON")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        anyio.run(main, args.pid, args.interval, args.top, args.json)
