"""connect_events() and aiobpf tcpconnect on the real kernel, from the sock:inet_sock_set_state
tracepoint (no kprobes here): a child connects to the test's own listeners over IPv4 and IPv6
at a signal, and every attempt comes out exactly, checked against libbpf-tools' tcpstates on
the same tracepoint (its tcpconnect needs kprobes, which this kernel has not)."""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

import aiobpf
from aiobpf.programs._connects import ConnectEvent

pytestmark = pytest.mark.usefixtures("bpf")

V4, V6 = 7, 3
#: The child: waits for a line, connects V4 times over IPv4 and V6 over IPv6 to the port,
#: then once to the sentinel port.
CHILD = r"""
import socket, sys
port, sentinel, v4, v6 = (int(arg) for arg in sys.argv[1:])
sys.stdin.readline()
for family, host, count in ((socket.AF_INET, "127.0.0.1", v4), (socket.AF_INET6, "::1", v6)):
    for _ in range(count):
        with socket.socket(family) as s:
            s.connect((host, port))
with socket.socket() as s:
    s.connect(("127.0.0.1", sentinel))
"""


@contextlib.contextmanager
def _listeners() -> Iterator[tuple[int, int]]:
    """A port listening on 127.0.0.1 and ::1, and a sentinel port on 127.0.0.1."""
    with contextlib.ExitStack() as held:
        v4 = held.enter_context(socket.socket())
        v4.bind(("127.0.0.1", 0))
        port = v4.getsockname()[1]
        v6 = held.enter_context(socket.socket(socket.AF_INET6))
        v6.bind(("::1", port))
        sentinel = held.enter_context(socket.socket())
        sentinel.bind(("127.0.0.1", 0))
        for listener in (v4, v6, sentinel):
            listener.listen(64)
        yield port, sentinel.getsockname()[1]


def _child(port: int, sentinel: int) -> subprocess.Popen[bytes]:
    args = [str(port), str(sentinel), str(V4), str(V6)]
    return subprocess.Popen([sys.executable, "-c", CHILD, *args], stdin=subprocess.PIPE)


def _go(child: subprocess.Popen[bytes]) -> None:
    assert child.stdin is not None
    child.stdin.write(b"go\n")
    child.stdin.close()
    assert child.wait(timeout=60) == 0


@pytest.mark.anyio
async def test_connect_events_of_one_process_are_exact() -> None:
    with _listeners() as (port, sentinel):
        child = _child(port, sentinel)
        try:
            async with aiobpf.connect_events(pid=child.pid) as connects:
                await anyio.to_thread.run_sync(_go, child)
                events: list[ConnectEvent] = []
                with anyio.fail_after(30):
                    async for event in connects:
                        events.append(event)
                        if event.dport == sentinel:
                            break
                assert connects.stats.dropped == 0
        finally:
            child.kill()
            child.wait()
    assert {(e.pid, e.uid, e.comm) for e in events} == {(child.pid, 0, "python")}
    expected = [(4, "127.0.0.1", "127.0.0.1", port)] * V4 + [(6, "::1", "::1", port)] * V6
    expected.append((4, "127.0.0.1", "127.0.0.1", sentinel))
    assert [(e.ip, e.saddr, e.daddr, e.dport) for e in events] == expected


@pytest.mark.anyio
async def test_the_port_filter_runs_in_the_kernel() -> None:
    """port=: only connects to that port reach the ring (produced counts them alone)."""
    with _listeners() as (port, sentinel):
        child = _child(port, sentinel)
        try:
            async with aiobpf.connect_events(port=sentinel) as connects:
                await anyio.to_thread.run_sync(_go, child)
                with anyio.fail_after(30):
                    event = await connects.receive()
                assert (event.pid, event.dport) == (child.pid, sentinel)
                assert connects.stats.produced == 1
        finally:
            child.kill()
            child.wait()
    for bad in (0, 65536, True, "80"):
        with pytest.raises(ValueError, match="a port is a whole number"):
            aiobpf.connect_events(port=bad)  # type: ignore[arg-type]


def test_tcpconnect_sees_what_tcpstates_sees() -> None:
    """aiobpf tcpconnect --json --pid and libbpf-tools' tcpstates on the same child: the same
    attempts (CLOSE -> SYN_SENT), by the same process, to the same ports."""
    if not Path("/usr/sbin/tcpstates").exists():
        pytest.skip("libbpf-tools is installed by scripts/setup.sh test")
    default_sigint = lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)  # noqa: E731
    tools: list[subprocess.Popen[str]] = []
    with _listeners() as (port, sentinel):
        child = _child(port, sentinel)
        try:
            reference = subprocess.Popen(
                ["stdbuf", "-oL", "/usr/sbin/tcpstates", "-w", "-D", f"{port},{sentinel}"],
                stdout=subprocess.PIPE, text=True, preexec_fn=default_sigint,
            )  # fmt: skip
            tools.append(reference)
            ours = subprocess.Popen(
                [sys.executable, "-m", "aiobpf", "tcpconnect", "--json", "--pid", str(child.pid)],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                preexec_fn=default_sigint,
            )  # fmt: skip
            tools.append(ours)
            assert reference.stdout is not None
            assert ours.stderr is not None
            assert reference.stdout.readline().split()[0] == "SKADDR"
            assert ours.stderr.readline().startswith("aiobpf tcpconnect: tracing")
            _go(child)
            attempts = []  # (pid, remote port) of each CLOSE -> SYN_SENT the reference saw
            for text in reference.stdout:
                fields = text.split()
                # SKADDR PID COMM IP LADDR LPORT RADDR RPORT OLDSTATE -> NEWSTATE MS
                if fields[8:11] == ["CLOSE", "->", "SYN_SENT"]:
                    attempts.append((int(fields[1]), int(fields[7])))
                    if int(fields[7]) == sentinel:
                        break
            ours.send_signal(signal.SIGINT)
            out, _ = ours.communicate(timeout=60)
        finally:
            child.kill()
            child.wait()
            for tool in tools:
                tool.kill()
                tool.communicate()
    records = [json.loads(text) for text in out.splitlines()]
    assert records[-1] == {"schema": 1, "type": "summary", "seen": len(records) - 1, "lost": 0}
    connects = [(r["pid"], r["dport"]) for r in records if r["type"] == "connect"]
    assert connects == attempts
    assert connects == [(child.pid, port)] * (V4 + V6) + [(child.pid, sentinel)]
