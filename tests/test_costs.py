"""What BPF programs cost, on request: the kernel's run statistics while
``enable_program_stats()`` is held, read per program of every kind of source, in the tools'
summaries and in the service's /metrics."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import anyio
import httpx
import pytest

import aiobpf
from aiobpf.build import compile_object
from aiobpf.service import AccessPolicy

from . import kernel
from .serving import running_service

pytestmark = pytest.mark.usefixtures("bpf")

PROGRAMS = Path(__file__).parent / "programs"
UID = 61403
CALLS = 1234


@pytest.fixture(scope="module")
def own_execs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("clang") is None:
        pytest.skip("clang builds the test program (run scripts/setup.sh)")
    return compile_object(
        PROGRAMS / "own_execs.bpf.c", tmp_path_factory.mktemp("objects") / "own_execs.bpf.o"
    )


def _stats_fds() -> int:
    """This process's fds that hold the kernel's run statistics on."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:bpf-stats"
        except OSError:
            continue  # the listing's own fd, closed by now
    return count


@pytest.mark.anyio
async def test_a_program_run_count_is_its_exact_load(own_execs: Path) -> None:
    """A uprobe on getppid in one process, under the statistics: runs == the 1,234 calls,
    each taking a plausible time; the switch is shared by nested holders and let go after."""
    before = _stats_fds()
    with aiobpf.enable_program_stats(), aiobpf.enable_program_stats():
        assert _stats_fds() == before + 1  # one switch, held twice
        async with aiobpf.load(own_execs) as program:
            code = f"import os, sys; sys.stdin.readline(); [os.getppid() for _ in range({CALLS})]"
            async with await anyio.open_process([sys.executable, "-c", code]) as child:
                await program.attach_uprobe("on_getppid", "libc.so.6", "getppid", pid=child.pid)
                assert program.program_costs()["on_getppid"].runs == 0
                assert child.stdin is not None
                await child.stdin.send(b"go\n")
                assert await child.wait() == 0
            cost = program.program_costs()["on_getppid"]
            assert cost.runs == CALLS == program.variable("getppid_calls")
            assert cost.ns_per_run is not None
            assert 0 < cost.ns_per_run < 1_000_000
            assert cost.ns_per_event(CALLS) == cost.ns_per_run
    assert _stats_fds() == before
    with pytest.raises(aiobpf.NotOpenError):
        aiobpf.load(own_execs).program_costs()


@pytest.mark.anyio
async def test_shipped_sources_say_their_programs_costs() -> None:
    """execve_events(): its exec programs ran at least once per exec the test made."""
    with aiobpf.enable_program_stats():
        source = aiobpf.execve_events()
        async with source | aiobpf.filter_uid(UID) as events:
            for _ in range(3):
                await anyio.run_process(kernel.setpriv_command(UID, "/bin/true"))
            with anyio.fail_after(30):
                for _ in range(3):
                    await events.receive()
            costs = source.program_costs()
    assert costs["sys_enter_execve"].runs >= 3
    assert costs["sys_exit_execve"].runs >= 3
    assert costs["sys_enter_execve"].run_time_ns > 0


def test_opensnoop_program_stats_in_its_summary(tmp_path: Path) -> None:
    """--program-stats: the JSON summary has the programs' runs and time; each open the tool
    saw took an entry and an exit run at least."""
    target = tmp_path / "opened"
    target.write_text("x")
    opens = f"[os.close(os.open({str(target)!r}, 0)) for _ in range(5)]"
    code = f"import os, sys; sys.stdin.readline(); {opens}"
    child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE)
    tool = subprocess.Popen(
        [sys.executable, "-m", "aiobpf", "opensnoop", "--json", "--program-stats",
         "--pid", str(child.pid)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    try:
        assert tool.stderr is not None
        assert tool.stderr.readline().startswith("aiobpf opensnoop: tracing")
        assert child.stdin is not None
        child.stdin.write(b"go\n")
        child.stdin.close()
        assert child.wait(timeout=60) == 0
        tool.send_signal(signal.SIGINT)
        out, _ = tool.communicate(timeout=60)
    finally:
        child.kill()
        tool.kill()
        tool.communicate()
    records = [json.loads(line) for line in out.splitlines()]
    summary = records[-1]
    assert summary["type"] == "summary"
    assert sum(r.get("path") == str(target) for r in records) == 5
    assert summary["program_runs"] >= 2 * summary["seen"] >= 10
    assert summary["program_run_ns"] > 0


@pytest.mark.anyio
async def test_serve_program_stats_in_metrics() -> None:
    """serve(program_stats=True): /metrics counts the service's programs, by source."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    token = "cost-test-token"
    with anyio.fail_after(60):
        async with (
            running_service(port=port, access=AccessPolicy(token=token), program_stats=True),
            httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{port}",
                headers={"Authorization": f"Bearer {token}"},
            ) as client,
        ):
            for _ in range(3):
                await anyio.run_process(kernel.setpriv_command(UID, "/bin/true"))
            metrics = (await client.get("/metrics")).text
    runs = {
        line.split("{")[1].split("}")[0]: float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("aiobpf_program_runs_total{")
    }
    assert runs['program="sys_enter_execve",source="execve_events"'] >= 3
    assert (
        'aiobpf_program_run_seconds_total{program="sys_enter_execve",source="execve_events"}'
        in metrics
    )
    assert any('source="execve_counts"' in key for key in runs)
