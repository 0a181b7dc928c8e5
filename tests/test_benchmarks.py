"""The benchmark scripts run as documented, measure what they say, and clean up after
themselves, Ctrl-C included. (Their figures are in benchmarks/RESULTS.md, not checked here.)"""

from __future__ import annotations

import json
import random
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from benchmarks._common import batch_latencies

from . import kernel

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.usefixtures("bpf")


def _benchmark(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


def _rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.timeout(300)  # 21 trials, each its own process that compiles its program
def test_ring_throughput_compares_every_consumer_and_balances(tmp_path: Path) -> None:
    """One small trial of each consumer, the C libbpf floor included, with evenly spaced calls:
    every run balances exactly (produced == received + kernel drops + user-side drops), the
    paced generator offers what it was asked, CPU per record is measured, and the table has
    every row."""
    out = tmp_path / "rows.ndjson"
    done = _benchmark(
        "benchmarks.ring_throughput",
        *("--calls", "20000", "--seconds", "1", "--repeat", "1", "--rates", "20000"),
        *("--budgets", "0,1", "--busy-polls", "0,2000", "--loops", "trio", "--out", str(out)),
        *("--pattern", "even"),
        timeout=280,
    )
    assert done.returncode == 0, done.stderr
    rows = _rows(out)
    assert {row["consumer"] for row in rows} == {
        "bcc-callback",
        "bcc-perf",
        "aiobpf-batches",
        "aiobpf-perf",
        "aiobpf-records",
        "aiobpf-operators",
        "aiobpf-route",
        "aiobpf-route-lossy",
        "libbpf-c",
    }
    # BCC's two and the C floor, and aiobpf's six: without a budget, with one, and busy polling
    assert len(rows) == 3 + 6 * 3
    for row in rows:
        assert row["balanced"], row
        assert row["produced"] == 20000
        assert row["received"] + row["dropped"] + row["user_dropped"] == 20000
        if row["consumer"] != "aiobpf-route-lossy":
            assert row["user_dropped"] == 0, row  # nothing else can drop in user space
        assert row["pattern"] == "even"
        assert row["cpu_us_per_record"] > 0, row
    assert all(row["lost_cb"] == row["dropped"] for row in rows if row["consumer"] == "bcc-perf")
    table = [line for line in done.stdout.splitlines() if line.startswith("| 256 KiB")]
    assert len(table) == len(rows)


def test_execve_storm_counts_every_exec(tmp_path: Path) -> None:
    """The exec storm: each consumer, with and without a latency budget, receives at least the
    storm's execs, and balances."""
    out = tmp_path / "rows.ndjson"
    done = _benchmark(
        "benchmarks.execve_throughput",
        *("--execs", "300", "--repeat", "1", "--rates", "0", "--budgets", "0,10"),
        *("--out", str(out)),
    )
    assert done.returncode == 0, done.stderr
    rows = _rows(out)
    assert len(rows) == 1 + 6 * 2  # BCC, and aiobpf's six (2 paths x 3 loops), budget or not
    assert sorted(row["budget_ms"] for row in rows) == [0] * 7 + [10] * 6
    for row in rows:
        assert row["balanced"], row
        assert row["received"] + row["dropped"] >= 300  # other processes exec too


@pytest.mark.skipif(shutil.which("bpftrace") is None, reason="bpftrace is the reference")
def test_first_event_times_execsnoop_against_bpftrace() -> None:
    """One start of each tool: both show the probe's exec, and the table gives each a time
    and a ratio against bpftrace."""
    done = _benchmark("benchmarks.first_event", "--starts", "1")
    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ") and " ms |" in line]
    assert [row.split(" | ")[0] for row in rows] == ["| aiobpf execsnoop", "| bpftrace one-liner"]
    assert rows[1].endswith("| 1.00x |")


def test_exec_tools_times_each_tracer_against_the_c_tool() -> None:
    """A short storm: every tool prints every exec, and the table gives each a cost per exec
    and a ratio to libbpf-tools' C execsnoop (1.00 for itself)."""
    done = _benchmark("benchmarks.exec_tools", "--execs", "300", "--turns", "1")
    assert done.returncode == 0, done.stderr
    rows = {line[:40].strip(): line.split() for line in done.stdout.splitlines()[2:]}
    assert set(rows) == {
        "aiobpf execsnoop --json", "aiobpf execsnoop --json --no-redact",
        "libbpf-tools execsnoop (C)", "bpftrace one-liner",
    }  # fmt: skip
    assert rows["libbpf-tools execsnoop (C)"][-1] == "1.00"
    assert all(float(row[-4]) > 0 for row in rows.values())


@pytest.mark.skipif(shutil.which("nats-server") is None, reason="nats-server is the engine")
def test_fleet_publish_compares_the_sink_with_the_client_alone() -> None:
    """A short run: both publishers, every batch size, a rate and a ratio each (the sink
    checks that every event was acknowledged, or the run fails)."""
    done = _benchmark("benchmarks.fleet_publish", "--events", "2000", "--repeat", "1")
    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ") and "x |" in line]
    publishers = [row.split(" | ")[1] for row in rows]
    assert publishers == ["nats-py alone", "aiobpf JetStreamSink"] * 3
    assert all(row.endswith("| 1.00x |") for row in rows[::2])


def test_decode_times_this_decoder_against_another_checkout() -> None:
    """--previous times another checkout's decoder in turns with this one (here: itself)."""
    src = str(ROOT / "src")
    done = _benchmark("benchmarks.decode", "--repeat", "1", "--batch", "4", "--previous", src)
    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ")][1:]  # no header
    assert [row.split(" | ")[0] for row in rows] == ["| this checkout", f"| {src}"]
    assert "; 4-record batches." in done.stdout


def test_loop_floor_times_the_loops_sleep_beside_a_read_and_bccs_callback() -> None:
    """A short run: every row present, aiobpf's and BCC's with a cost per record, the ratio's
    base BCC's, and --previous adds another checkout's reads (here: this one's)."""
    src = str(ROOT / "src")
    args = ("--repeat", "1", "--seconds", "0.5", "--previous", src)
    done = _benchmark("benchmarks.loop_floor", *args)
    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ")][1:]
    loops = ["| asyncio"] * 2 + ["| uvloop"] * 2 + ["| trio"] * 2
    loops += ["| -", "| asyncio", "| uvloop", "| trio"]
    assert [row.split(" | ")[0] for row in rows] == loops
    assert rows[6].endswith("| 1.00x |")
    assert all(f"of {src}" in row for row in rows[7:])


def test_close_stall_times_each_source_closing_beside_a_ticking_task() -> None:
    """A short run: a row per source, loop and checkout (--previous: here this one), each with
    the close's time and the loop's longest stall in milliseconds."""
    src = str(ROOT / "src")
    args = ("--repeat", "1", "--loops", "asyncio,trio", "--previous", src)
    done = _benchmark("benchmarks.close_stall", *args)
    assert done.returncode == 0, done.stderr
    rows = [line.split(" | ") for line in done.stdout.splitlines() if line.startswith("| ")][1:]
    sources = ["execve_events", "execve_counts", "hello_world", "syscall_events"]
    assert [(row[0].split()[1], row[1], row[2]) for row in rows] == [
        (source, loop, which)
        for source in sources
        for loop in ("asyncio", "trio")
        for which in ("this checkout", src)
    ]
    assert all(float(row[3]) >= 0 and float(row[4].rstrip(" |")) >= 0 for row in rows)


@pytest.mark.parametrize("pattern", ["even", "poisson"])
def test_several_sources_make_every_call_they_were_given_between_them(pattern: str) -> None:
    """The generator split between four threads, each pacing its own arrivals: the ring gets
    exactly the calls asked for (the threads share the process, which the program selects)."""
    import anyio
    from benchmarks import _loadgen
    from benchmarks._common import GENERATOR_CPU

    from aiobpf.testing import getppid_ring

    calls = 2003  # not a multiple of four: the remainder goes to the first sources

    async def run() -> tuple[int, int]:
        generator = _loadgen.start(_loadgen.build(), calls, 20000, GENERATOR_CPU, pattern, 4)
        try:
            async with getppid_ring(generator.pid, ring_size=1 << 20) as ring:
                assert generator.stdin is not None
                generator.stdin.write(b"g")
                generator.stdin.close()
                received = 0
                with anyio.fail_after(60):
                    async for batch in ring.batches():
                        received += len(batch)
                        if received >= calls:
                            break
                assert generator.stdout is not None
                said = await anyio.to_thread.run_sync(generator.stdout.read)
                assert said.split()[0] == str(calls).encode()  # what it says it offered
                return received + len(ring.drain()), ring.stats.produced or 0
        finally:
            generator.kill()
            generator.wait()
            if generator.stdout is not None:
                generator.stdout.close()

    assert anyio.run(run) == (calls, calls)


def test_lifecycle_of_program_owning_sources_returns_to_baseline(tmp_path: Path) -> None:
    """Three cycles of each program-owning source: fds, BPF objects and the kernel's programs
    and maps back to the baseline (the long run is documented in RELIABILITY.md)."""
    out = tmp_path / "rows.ndjson"
    done = _benchmark("benchmarks.lifecycle", *("--cycles", "3", "--every", "3", "--out", str(out)))
    assert done.returncode == 0, done.stdout + done.stderr
    rows = _rows(out)
    assert len(rows) == 6
    for row in rows:
        assert (row["fds"], row["programs_left"], row["maps_left"]) == (0, 0, 0), row
        assert not any(row["objects"].values()), row


def test_an_interrupted_benchmark_leaves_no_generator_and_nothing_attached(
    tmp_path: Path,
) -> None:
    """SIGINT to the benchmark's own process (not its group, as a supervisor sends it) while a
    trial's generator runs: the trial process is killed, its generator dies with it (it asked
    the kernel for that), and no program stays loaded."""
    programs = kernel.loaded_program_ids()
    running = kernel.processes_named("aiobpf-loadgen")  # another benchmark's, perhaps
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "benchmarks.ring_throughput", "--repeat", "1"),
            *("--calls", "100000000", "--rates", "100000", "--seconds", "600"),
            *("--consumers", "aiobpf-batches", "--loops", "asyncio", "--budgets", "0"),
            *("--out", str(tmp_path / "rows.ndjson")),
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        generators = kernel.wait_for_new_processes("aiobpf-loadgen", running)
        assert generators, "the load generator did not start"
        assert kernel.wait_until_busy(generators), "the generator was never started"
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert kernel.wait_until_gone(generators) == set()
    assert kernel.wait_until_unloaded(kernel.loaded_program_ids() - programs) == set()


@pytest.mark.parametrize("every", [1, 8, 64])
def test_a_batch_samples_the_records_a_per_record_consumer_samples(every: int) -> None:
    """Cut into batches of any sizes, a stream's latency samples are the records whose number
    (from 1) is a multiple of ``every``, as BCC's callback samples them: the batch path's figures
    are not biased towards each batch's oldest record."""
    records = np.zeros(1000, dtype=[("timestamp_ns", "<u8")])
    records["timestamp_ns"] = np.arange(1000)
    rng = random.Random(every)
    sampled: list[int] = []
    received = 0
    while received < len(records):
        size = rng.choice([1, 2, 3, 4, 7, 100])
        batch = records[received : received + size]
        sampled += batch_latencies(batch, received, 10_000, every)
        received += len(batch)
    expected = [10_000 - number + 1 for number in range(every, len(records) + 1, every)]
    assert sampled == expected
