"""Histograms from map readings (operators/_histogram.py): bucket bounds, drawing against BCC's
own print_log2_hist/print_linear_hist, and the operator on both loops."""

from __future__ import annotations

import contextlib
import io
import json
import signal
import sys
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import attrs
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream

from aiobpf.lowlevel import Program
from aiobpf.operators import Histogram, histograms, keyed_histograms, pipe
from aiobpf.sources import MapPoller, MapReading

ROOT = Path(__file__).resolve().parent.parent
bcc_table = pytest.importorskip("bcc.table", reason="BCC draws the reference histograms")


def _bcc_drawing(draw: Any, counts: list[int], label: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        draw(counts, label, None)
    return out.getvalue().rstrip("\n")


@pytest.mark.parametrize(
    "counts",
    [
        {1: 3, 2: 10, 5: 40, 6: 1},
        {0: 5, 3: 1},
        {10: 7},
        {40: 2, 2: 1},  # past slot 32: BCC's wide layout
        {4: 1, 5: 1000, 6: 1001},
    ],
)
def test_log2_drawing_is_bccs(counts: dict[int, int]) -> None:
    """The same counts draw exactly as BCC's print_log2_hist draws them."""
    histogram = Histogram.from_counts(counts)
    dense = [counts.get(slot, 0) for slot in range(max(counts) + 1)]
    assert histogram.render("usecs") == _bcc_drawing(bcc_table._print_log2_hist, dense, "usecs")


def test_linear_drawing_is_bccs() -> None:
    counts = {0: 1, 1: 4, 3: 9, 7: 2}
    histogram = Histogram.from_counts(counts, kind="linear")
    dense = [counts.get(slot, 0) for slot in range(8)]
    expected = _bcc_drawing(bcc_table._print_linear_hist, dense, "value")
    assert histogram.render() == expected


def test_bucket_bounds() -> None:
    """log2 slot i holds 2**(i-1) .. 2**i - 1 (bpf_log2l's slots); linear ones step wide."""
    log2 = Histogram.from_counts({0: 1, 1: 2, 4: 3})
    assert log2.buckets() == [(0, 0, 1), (1, 1, 2), (2, 3, 0), (4, 7, 0), (8, 15, 3)]
    assert [log2.slot_of(v) for v in (0, 1, 8, 15, 16, 40_000)] == [0, 1, 4, 4, 5, 16]
    linear = Histogram.from_counts({2: 5}, kind="linear", step=10)
    assert linear.buckets() == [(0, 9, 0), (10, 19, 0), (20, 29, 5)]
    assert linear.slot_of(29) == 2
    assert (log2.total, linear.total) == (6, 5)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"counts": {-1: 1}}, "a histogram slot is a whole number >= 0, got -1"),
        ({"counts": {}, "kind": "log10"}, "kind must be 'log2' or 'linear', got 'log10'"),
        ({"counts": {}, "kind": "linear", "step": 0}, "step must be a whole number >= 1, got 0"),
    ],
)
def test_bad_histograms_are_refused(arguments: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Histogram.from_counts(**arguments)


@pytest.mark.anyio
async def test_the_operator_turns_readings_into_histograms() -> None:
    async def readings() -> AsyncIterator[MapReading[int, int]]:
        yield MapReading(time=1.0, values={3: 2}, mode="delta")
        yield MapReading(time=2.0, values={}, mode="delta")

    got = [h async for h in pipe(readings(), histograms())]
    assert got == [Histogram("log2", (0, 0, 0, 2), 1, 1.0), Histogram("log2", (), 1, 2.0)]
    with pytest.raises(ValueError, match="step must be"):
        histograms("linear", step=-2)


@attrs.frozen
class _Key:
    nr: int
    slot: int


def test_keyed_histograms_group_by_the_other_field() -> None:
    counts = {_Key(0, 3): 2, _Key(0, 5): 1, _Key(230, 16): 4}
    got = keyed_histograms(counts, slot="slot", time=5.0)
    assert got == {
        0: Histogram("log2", (0, 0, 0, 2, 0, 1), 1, 5.0),
        230: Histogram("log2", (0,) * 16 + (4,), 1, 5.0),
    }
    with pytest.raises(ValueError, match="records with a 'slot' field"):
        keyed_histograms({3: 1})


LATENCY = r"""
BPF_HASH(start, u32, u64);
BPF_HISTOGRAM(dist);

TRACEPOINT_PROBE(syscalls, sys_enter_clock_nanosleep)
{
    u64 id = bpf_get_current_pid_tgid();
    u32 tid = id;
    if (tid != TARGET_TID)
        return 0;
    u64 now = bpf_ktime_get_ns();
    start.update(&tid, &now);
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_exit_clock_nanosleep)
{
    u32 tid = bpf_get_current_pid_tgid();
    if (tid != TARGET_TID)
        return 0;
    u64 *began = start.lookup(&tid);
    if (!began)
        return 0;
    u64 usecs = (bpf_ktime_get_ns() - *began) / 1000;
    start.delete(&tid);
    dist.increment(bpf_log2l(usecs));
    return 0;
}
"""


def _sleep(seconds: float) -> int:
    """Sleeps (clock_nanosleep); how long it took as this thread saw it, in microseconds."""
    began = time.monotonic()
    time.sleep(seconds)
    return int((time.monotonic() - began) * 1e6)


@pytest.mark.anyio
@pytest.mark.usefixtures("bpf")
async def test_a_known_latency_lands_in_its_bucket() -> None:
    """Three 40 ms sleeps of this thread, timed in the kernel from sys_enter to sys_exit of
    clock_nanosleep: all three land in one log2 bucket, at least 2**15 us (32.8 ms, a sleep
    never ends early) and no higher than the longest sleep this thread measured around the
    call, which includes the kernel's time."""
    program = Program.compile(LATENCY, cflags=[f"-DTARGET_TID={threading.get_native_id()}"])
    poller = MapPoller.from_bcc(program.bpf, "dist", interval=0.05, owned=[program.close])
    async with poller:
        longest = max(_sleep(0.04) for _ in range(3))
        with anyio.fail_after(10):
            async for histogram in poller | histograms():
                if histogram.total == 3:
                    break
    (slot,) = [slot for slot, count in enumerate(histogram.counts) if count]
    assert histogram.counts[slot] == 3
    assert histogram.slot_of(40_000) <= slot <= histogram.slot_of(longest)
    low, high = histogram.bounds(slot)
    assert low <= 40_000
    assert f"{low} -> {high}" in histogram.render("usecs")


SLEEPER = """
import sys, time
sys.stdin.readline()
for _ in range(10):
    time.sleep(0.02)
print("slept", flush=True)
sys.stdin.readline()
"""


@pytest.mark.anyio
@pytest.mark.usefixtures("bpf")
async def test_syscall_latency_example_sees_a_process_sleep() -> None:
    """examples/syscall_latency.py --pid: ten 20 ms sleeps of a child come as exactly ten
    clock_nanosleep calls, each in a bucket that reaches 20,000 us (a sleep never ends early)."""
    example = [sys.executable, str(ROOT / "examples" / "syscall_latency.py")]
    with anyio.fail_after(60):
        async with await anyio.open_process([sys.executable, "-c", SLEEPER]) as child:
            args = [*example, "--pid", str(child.pid), "--interval", "0.2", "--json"]
            async with await anyio.open_process(args) as tool:
                assert tool.stdout is not None
                assert child.stdin is not None
                lines = BufferedByteReceiveStream(tool.stdout)
                assert json.loads(await lines.receive_until(b"\n", 1 << 20))["type"] == "ready"
                await child.stdin.send(b"go\n")
                while True:
                    line = json.loads(await lines.receive_until(b"\n", 1 << 20))
                    sleeps = line["syscalls"].get("clock_nanosleep", [])
                    if sum(count for _, _, count in sleeps) >= 10:
                        break
                tool.send_signal(signal.SIGINT)
                await tool.wait()
            await child.stdin.send(b"done\n")
    assert sum(count for _, _, count in sleeps) == 10
    assert all(high >= 20_000 for _, high, count in sleeps if count)
    assert tool.returncode == 0
