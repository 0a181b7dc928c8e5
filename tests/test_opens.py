"""open_events() and aiobpf opensnoop on the real kernel, built on aiobpf.load(): a child
process opens files of the test's own at a signal, and every open of them comes out exactly,
checked against libbpf-tools' opensnoop (openat) and bpftrace (openat2, which libbpf-tools
does not trace), with hostile paths (invalid UTF-8, longer than the record)."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

import aiobpf
from aiobpf.cli._opensnoop import line
from aiobpf.programs._opens import OpenEvent

from . import kernel

pytestmark = pytest.mark.usefixtures("bpf")

OPENS = 25
#: The child: imports first, waits for a line, then opens; its last open is the sentinel.
CHILD = r"""
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
how = (ctypes.c_uint64 * 3)(os.O_RDONLY, 0, 0)
base, count = sys.argv[1], int(sys.argv[2])
sys.stdin.readline()
for _ in range(count):
    os.close(os.open(base, os.O_RDONLY))
try:
    os.open(base + ".missing", os.O_RDONLY | os.O_CLOEXEC)
except FileNotFoundError:
    pass
try:
    os.open(os.fsencode(base) + b".\xff\xfe", os.O_RDONLY)
except FileNotFoundError:
    pass
try:
    os.open(base + "/" + "x" * 300, os.O_RDONLY)
except OSError:
    pass
fd = libc.syscall(437, -100, os.fsencode(base), how, ctypes.sizeof(how))  # openat2
assert fd >= 0, ctypes.get_errno()
os.close(fd)
os.close(os.open(base + ".sentinel", os.O_RDONLY | os.O_CREAT, 0o600))
"""


@pytest.fixture
def target(tmp_path: Path) -> Path:
    path = tmp_path / f"opened-{secrets.token_hex(4)}"
    path.write_text("x")
    return path


def _child(target: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(target), str(OPENS)], stdin=subprocess.PIPE
    )


def _go(child: subprocess.Popen[bytes]) -> None:
    assert child.stdin is not None
    child.stdin.write(b"go\n")
    child.stdin.close()
    assert child.wait(timeout=60) == 0


def _check(events: list[OpenEvent], target: Path, pid: int) -> None:
    """Exactly the child's opens of the test's paths, each as it was made."""
    base = str(target)
    ours = [e for e in events if e.path.startswith(base)]
    assert {e.pid for e in ours} == {pid}
    plain = [e for e in ours if e.path == base and e.syscall == "openat"]
    assert len(plain) == OPENS
    assert all(
        e.fd is not None and e.fd >= 0 and e.flags == os.O_CLOEXEC for e in plain
    )  # os.open adds it
    (missing,) = [e for e in ours if e.path == base + ".missing"]
    assert (missing.result, missing.error, missing.failed) == (-2, "ENOENT", True)
    assert missing.flags == os.O_RDONLY | os.O_CLOEXEC
    (invalid,) = [e for e in ours if e.path.startswith(base + ".") and "\ufffd" in e.path]
    assert invalid.path == base + ".\ufffd\ufffd"
    (long,) = [e for e in ours if e.path.startswith(base + "/x")]
    assert len(long.path.encode()) == 255  # the record's 256 bytes, NUL included
    (openat2,) = [e for e in ours if e.syscall == "openat2"]
    assert (openat2.path, openat2.dirfd, openat2.flags) == (base, -100, os.O_RDONLY)
    assert openat2.result >= 0
    assert ours[-1].path == base + ".sentinel"
    assert ours[-1].flags & os.O_CREAT
    assert len(ours) == OPENS + 5


@pytest.mark.anyio
async def test_open_events_of_one_process_are_exact(target: Path) -> None:
    """pid= filters in the kernel: the child's opens, and nothing of any other process."""
    child = _child(target)
    try:
        async with aiobpf.open_events(pid=child.pid) as opens:
            await anyio.to_thread.run_sync(_go, child)
            events: list[OpenEvent] = []
            with anyio.fail_after(30):
                async for event in opens:
                    events.append(event)
                    if event.path == str(target) + ".sentinel":
                        break
            assert {e.pid for e in events} == {child.pid}
            _check(events, target, child.pid)
            stats = opens.stats
            assert stats.dropped == 0
            assert stats.received + stats.pending == stats.produced
    finally:
        child.kill()
        child.wait()


@pytest.mark.anyio
async def test_failed_and_uid_filters_run_in_the_kernel() -> None:
    """failed=True and uid=: only the fresh uid's failed opens reach the ring (produced
    counts what the program submitted, after its filters)."""
    uid = 61402
    with kernel.shared_directory() as directory:
        target = directory / "readable"
        target.write_text("x")
        target.chmod(0o644)
        await _failed_opens_of(uid, directory, target, directory / "missing")
    with pytest.raises(ValueError, match="would match nothing"):
        aiobpf.open_events(uid=(1 << 32) - 1)
    with pytest.raises(ValueError, match="a pid is a whole number"):
        aiobpf.open_events(pid=-1)


async def _failed_opens_of(uid: int, directory: Path, target: Path, missing: Path) -> None:
    async with aiobpf.open_events(uid=uid, failed=True) as opens:
        command = kernel.setpriv_command(uid, "/usr/bin/cat")[:-1]
        for path in (target, missing, target, missing):  # cat reads the first, fails the second
            await anyio.run_process([*command, "/usr/bin/cat", str(path)], check=False)
        events = []
        with anyio.fail_after(30):
            async for event in opens:
                if event.path.startswith(str(directory)):
                    events.append(event)
                if len(events) == 2:
                    break
        assert [(e.uid, e.path, e.error) for e in events] == [(uid, str(missing), "ENOENT")] * 2
        assert all(e.failed and e.uid == uid for e in opens.decode(opens.drain()))


def test_opensnoop_sees_what_libbpf_tools_and_bpftrace_see(target: Path) -> None:
    """The same child under aiobpf opensnoop --pid --json, libbpf-tools' opensnoop -p and a
    bpftrace count of openat2: the same openat calls of the test's paths, the same openat2s."""
    if not Path("/usr/sbin/opensnoop").exists() or shutil.which("bpftrace") is None:
        pytest.skip("libbpf-tools and bpftrace are installed by scripts/setup.sh test")
    child = _child(target)
    default_sigint = lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)  # noqa: E731
    tools: list[subprocess.Popen[str]] = []
    try:
        reference = subprocess.Popen(
            ["stdbuf", "-oL", "/usr/sbin/opensnoop", "-p", str(child.pid)],
            stdout=subprocess.PIPE, text=True, errors="replace", preexec_fn=default_sigint,
        )  # fmt: skip
        tools.append(reference)
        probe = "tracepoint:syscalls:sys_exit_openat2"
        script = f"{probe} /pid == {child.pid}/ {{ @opens = count(); }}"
        counter = subprocess.Popen(
            ["bpftrace", "-e", script],
            stdout=subprocess.PIPE, text=True, preexec_fn=default_sigint,
        )  # fmt: skip
        tools.append(counter)
        ours = subprocess.Popen(
            [sys.executable, "-m", "aiobpf", "opensnoop", "--json", "--pid", str(child.pid)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=default_sigint,
        )  # fmt: skip
        tools.append(ours)
        assert reference.stdout is not None
        assert counter.stdout is not None
        assert ours.stderr is not None
        assert reference.stdout.readline().split()[:2] == ["PID", "COMM"]
        assert counter.stdout.readline().startswith("Attaching")
        assert ours.stderr.readline().startswith("aiobpf opensnoop: tracing")
        _go(child)
        sentinel = str(target) + ".sentinel"
        reference_paths = []
        for text in reference.stdout:
            path = text.rstrip("\n").split(maxsplit=4)[-1]
            reference_paths.append(path)
            if path == sentinel:
                break
        counter.send_signal(signal.SIGINT)
        counted, _ = counter.communicate(timeout=60)
        ours.send_signal(signal.SIGINT)
        out, _ = ours.communicate(timeout=60)
    finally:
        child.kill()
        child.wait()
        for tool in tools:
            tool.kill()
            tool.communicate()
    assert ours.returncode == 0
    records = [json.loads(text) for text in out.splitlines()]
    assert records[-1] == {"schema": 1, "type": "summary", "seen": len(records) - 1, "lost": 0}
    opened = [r for r in records if r["type"] == "open"]
    assert {r["pid"] for r in opened} == {child.pid}
    base = str(target)
    ours_openat = [r["path"] for r in opened if r["syscall"] != "openat2"]
    reference_ours = [p for p in reference_paths if p.startswith(base)]
    assert len(ours_openat) == len(reference_ours) == OPENS + 4
    # the same paths in the same order; the long one is cut at each tool's own record size
    # (libbpf-tools keeps 254 bytes, aiobpf 255)
    assert [p[:200] for p in ours_openat] == [p[:200] for p in reference_ours]
    assert ours_openat.count(base) == OPENS
    assert sum(r["syscall"] == "openat2" for r in opened) == 1
    assert "@opens: 1" in counted


def test_text_lines_escape_what_a_path_may_hold() -> None:
    """A path's control characters and invalid UTF-8 cannot forge lines or colours."""
    event = OpenEvent(
        time=0.0, timestamp_ns=0, pid=1, tid=1, uid=0, comm="x\x1b[31m", syscall="openat",
        dirfd=-100, path="/tmp/a\nb\ufffd", flags=0, mode=0, result=-2,
    )  # fmt: skip
    text = line(event)
    assert "\n" not in text
    assert "\x1b" not in text
    assert text.split()[3:5] == ["-1", "2"]
