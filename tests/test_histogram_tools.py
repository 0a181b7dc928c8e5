"""run_queue_latency() and block_io_latency(), and aiobpf runqlat and biolatency, on the real
kernel, built on aiobpf.load(): the same process's waits, and the same loop device's I/Os,
counted by libbpf-tools' runqlat and biolatency (raw tracepoints here too), with the same
totals."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

import aiobpf

pytestmark = pytest.mark.usefixtures("bpf")

SLEEPS = 40
#: The child: waits for a line, then sleeps a millisecond SLEEPS times (each wake-up is one
#: wait to run), then exits.
CHILD = f"import sys, time; sys.stdin.readline(); [time.sleep(0.001) for _ in range({SLEEPS})]"


def _bucket_counts(text: str) -> int:
    """The total of a histogram as BCC and libbpf-tools draw it."""
    return sum(int(m[1]) for m in re.finditer(r"^\s*\d+ -> \d+\s*: (\d+)", text, re.MULTILINE))


@pytest.mark.anyio
async def test_run_queue_latency_of_one_process() -> None:
    """pid=: a child's waits, at least one per sleep, and the reading's time and kind."""
    async with (
        await anyio.open_process([sys.executable, "-c", CHILD]) as child,
        aiobpf.run_queue_latency(pid=child.pid, mode="snapshot") as latency,
    ):
        assert child.stdin is not None
        await child.stdin.send(b"go\n")
        assert await child.wait() == 0
        histogram = latency.read()
        assert latency.stats.dropped == 0
    assert histogram.cumulative
    assert SLEEPS <= histogram.total < 10 * SLEEPS
    with pytest.raises(ValueError, match="idle task"):
        aiobpf.run_queue_latency(pid=0)


def test_runqlat_counts_what_libbpf_tools_counts() -> None:
    """aiobpf runqlat --pid --json and libbpf-tools' runqlat -p on the same child, both
    attached before it starts and stopped after it ends: the same number of waits."""
    if not Path("/usr/sbin/runqlat").exists():
        pytest.skip("libbpf-tools is installed by scripts/setup.sh test")
    default_sigint = lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)  # noqa: E731
    child = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE)
    tools: list[subprocess.Popen[str]] = []
    try:
        reference = subprocess.Popen(
            ["stdbuf", "-oL", "/usr/sbin/runqlat", "-p", str(child.pid)],
            stdout=subprocess.PIPE, text=True, preexec_fn=default_sigint,
        )  # fmt: skip
        tools.append(reference)
        ours = subprocess.Popen(
            [sys.executable, "-m", "aiobpf", "runqlat", "--json", "--pid", str(child.pid)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=default_sigint,
        )  # fmt: skip
        tools.append(ours)
        assert reference.stdout is not None
        assert ours.stderr is not None
        assert reference.stdout.readline().startswith("Tracing run queue latency")
        assert ours.stderr.readline().startswith("aiobpf runqlat: tracing")
        assert child.stdin is not None
        child.stdin.write(b"go\n")
        child.stdin.close()
        assert child.wait(timeout=60) == 0
        for tool in tools:
            tool.send_signal(signal.SIGINT)
        drawn, _ = reference.communicate(timeout=60)
        out, _ = ours.communicate(timeout=60)
    finally:
        child.kill()
        child.wait()
        for tool in tools:
            tool.kill()
            tool.communicate()
    records = [json.loads(line) for line in out.splitlines()]
    (histogram,) = [r for r in records if r["type"] == "histogram"]
    assert records[-1]["type"] == "summary"
    assert records[-1]["lost"] == 0
    assert histogram["cumulative"]
    assert histogram["total"] == sum(count for _, _, count in histogram["buckets"])
    assert histogram["total"] == _bucket_counts(drawn)
    assert histogram["total"] >= SLEEPS


WRITES = 64


@pytest.fixture
def loop_device(tmp_path: Path) -> Iterator[str]:
    """A loop device over a file of the test's own, detached afterwards."""
    if shutil.which("losetup") is None or not Path("/dev/loop-control").exists():
        pytest.skip("no loop devices here")
    backing = tmp_path / "disk.img"
    with backing.open("wb") as image:
        image.truncate(16 << 20)
    device = subprocess.run(
        ["losetup", "--find", "--show", str(backing)], capture_output=True, text=True, check=True
    ).stdout.strip()
    try:
        yield device
    finally:
        subprocess.run(["losetup", "--detach", device], check=True)


def _direct_writes(device: str) -> None:
    subprocess.run(
        ["dd", "if=/dev/zero", f"of={device}", "bs=4096", f"count={WRITES}", "oflag=direct"],
        check=True,
        capture_output=True,
    )


@pytest.mark.anyio
async def test_block_io_latency_of_one_disk(loop_device: str) -> None:
    """disk=: a loop device's direct writes, at least one I/O each, and nothing of the other
    disks (the backing file's own I/O goes to the disk under it)."""
    name = Path(loop_device).name
    async with aiobpf.block_io_latency(disk=name, mode="snapshot") as latency:
        await anyio.to_thread.run_sync(_direct_writes, loop_device)
        histogram = latency.read()
        assert latency.stats.dropped == 0
    assert WRITES <= histogram.total <= 2 * WRITES
    with pytest.raises(ValueError, match="no disk 'no-such-disk'"):
        aiobpf.block_io_latency(disk="no-such-disk")


def test_biolatency_counts_what_libbpf_tools_counts(loop_device: str) -> None:
    """aiobpf biolatency -d and libbpf-tools' biolatency -d on the same loop device, both
    attached before its writes and stopped after: the same number of I/Os."""
    if not Path("/usr/sbin/biolatency").exists():
        pytest.skip("libbpf-tools is installed by scripts/setup.sh test")
    name = Path(loop_device).name
    default_sigint = lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)  # noqa: E731
    tools: list[subprocess.Popen[str]] = []
    try:
        reference = subprocess.Popen(
            ["stdbuf", "-oL", "/usr/sbin/biolatency", "-d", name],
            stdout=subprocess.PIPE, text=True, preexec_fn=default_sigint,
        )  # fmt: skip
        tools.append(reference)
        ours = subprocess.Popen(
            [sys.executable, "-m", "aiobpf", "biolatency", "--json", "-d", name],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=default_sigint,
        )  # fmt: skip
        tools.append(ours)
        assert reference.stdout is not None
        assert ours.stderr is not None
        assert reference.stdout.readline().startswith("Tracing block device I/O")
        assert ours.stderr.readline().startswith("aiobpf biolatency: tracing")
        _direct_writes(loop_device)
        for tool in tools:
            tool.send_signal(signal.SIGINT)
        drawn, _ = reference.communicate(timeout=60)
        out, _ = ours.communicate(timeout=60)
    finally:
        for tool in tools:
            tool.kill()
            tool.communicate()
    records = [json.loads(line) for line in out.splitlines()]
    (histogram,) = [r for r in records if r["type"] == "histogram"]
    assert histogram["total"] == _bucket_counts(drawn)
    assert WRITES <= histogram["total"] <= 2 * WRITES
