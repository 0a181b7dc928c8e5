"""Process lifecycle on the real kernel: forks, execs and exits of a scripted tree, exact;
ancestors as /proc has them; one exit per process; trees followed in the kernel; aiobpf run
and exitsnoop as a user runs them, against libbpf-tools' exitsnoop."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
import pytest

import aiobpf
from aiobpf import ProcessExec, ProcessExit, ProcessFork
from aiobpf.programs import TracedCommand

from . import kernel

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("bpf")]

#: The traced command: a tree whose every ending its parent also sees (wait statuses, printed
#: as JSON), then a pause on stdin while the test runs a process outside the tree.
TREE = r"""
import json, os, resource, signal, sys, threading

statuses = {}
def reap(pid):
    statuses[pid] = os.waitpid(pid, 0)[1]

children = []
for code in range(1, 6):  # five at once, in the background
    pid = os.fork()
    if pid == 0:
        os._exit(code)
    children.append(pid)
for pid in children:
    reap(pid)

for number, core in ((signal.SIGKILL, False), (signal.SIGSEGV, True)):
    pid = os.fork()
    if pid == 0:
        resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY,) * 2 if core else (0, 0))
        os.kill(os.getpid(), number)
    reap(pid)

pid = os.fork()  # threads that end before their process does
if pid == 0:
    threads = [threading.Thread(target=lambda: None) for _ in range(3)]
    for thread in threads: thread.start()
    for thread in threads: thread.join()
    os._exit(6)
reap(pid)

ready, gone = os.pipe()  # a daemon: double-forked, reparented, ends after its parent
middle = os.fork()
if middle == 0:
    if os.fork() == 0:
        os.setsid()
        os.close(ready)
        os.write(gone, str(os.getpid()).encode())
        os._exit(9)  # the pipe's end closes after the exit is traced
    os._exit(0)
os.close(gone)
reap(middle)
daemon = int(os.read(ready, 32))
while os.read(ready, 1):
    pass  # end of file: the daemon has ended

print(json.dumps({"statuses": statuses, "daemon": daemon}), flush=True)
sys.stdin.readline()
sys.exit(11)
"""


async def _until_end(traced: TracedCommand) -> list[Any]:
    """Every event of the traced tree up to the command's exit, and what the ring holds then."""
    from aiobpf.programs._process import decode

    got: list[Any] = []
    async for event in traced.events:
        got.append(event)
        if traced.is_end(event):
            break
    got += decode(traced.events.drain())
    return got


async def test_every_ending_of_a_scripted_tree_is_exact(tmp_path: Path) -> None:
    """Exit codes 1-5 of background children, a SIGKILL, a SIGSEGV that dumps core, a process
    whose threads end first (one exit, code 6), a double-forked daemon (code 9, after its
    parent): each exit as its parent's wait status says, one per process; a process outside
    the tree (same uid, same name) never appears; the command's own status is 11."""
    outside = kernel.uniquely_named_program(tmp_path, "python3")
    with anyio.fail_after(60):
        async with aiobpf.trace_command([sys.executable, "-c", TREE], cwd=str(tmp_path)) as traced:
            assert traced.process.stdout is not None
            assert traced.process.stdin is not None
            told = json.loads((await traced.process.stdout.receive()).decode())
            await anyio.run_process([str(outside)])  # not in the tree
            await traced.process.stdin.send(b"go\n")
            events = await _until_end(traced)
            assert await traced.process.wait() == 11
    exits = [event for event in events if isinstance(event, ProcessExit)]
    by_pid = {event.pid: event for event in exits}
    assert len(by_pid) == len(exits), "one exit per process"
    for pid, status in told["statuses"].items():
        event = by_pid[int(pid)]
        assert event.status == status
        if os.WIFSIGNALED(status):
            assert event.signal == signal.Signals(os.WTERMSIG(status)).name
            assert event.exit_code is None
            assert event.core_dumped is os.WCOREDUMP(status)
        else:
            assert (event.exit_code, event.signal) == (os.WEXITSTATUS(status), None)
    ended = [by_pid[int(pid)] for pid in told["statuses"]]
    codes = sorted(event.exit_code for event in ended if event.exit_code is not None)
    assert codes == [0, 1, 2, 3, 4, 5, 6]  # the daemon's parent, five children, the threads' one
    kinds = sorted((event.signal, event.core_dumped) for event in exits if event.signal)
    assert kinds == [("SIGKILL", False), ("SIGSEGV", True)]
    assert by_pid[told["daemon"]].exit_code == 9
    assert set(by_pid) == {int(pid) for pid in told["statuses"]} | {told["daemon"], traced.pid}
    assert by_pid[traced.pid].exit_code == 11
    forks = {event.pid for event in events if isinstance(event, ProcessFork)}
    assert forks == set(by_pid) - {traced.pid}  # every process of the tree, no thread
    assert all(event.uid == 0 for event in events)
    assert str(outside) not in {e.filename for e in events if isinstance(e, ProcessExec)}


CHAIN = r"""
import json, os
chain, pid = [], os.getppid()
while pid > 0:
    chain.append(pid)
    with open(f"/proc/{pid}/stat") as stat:
        pid = int(stat.read().rsplit(")", 1)[1].split()[1])
print(json.dumps([os.getpid(), chain]), flush=True)
"""


async def test_ancestors_are_what_proc_says_at_the_exec() -> None:
    """A process five shells deep: its exec's ancestors, read in the kernel, are the chain of
    parents /proc gives while they all wait for it, nearest first, up to init."""
    inner: Sequence[str] = [sys.executable, "-c", CHAIN]
    for _ in range(5):
        inner = ["sh", "-c", '"$@"; exit $?', "sh", *inner]  # sh waits: not an exec of it
    with anyio.fail_after(60):
        async with aiobpf.trace_command(inner) as traced:
            assert traced.process.stdout is not None
            pid, chain = json.loads((await traced.process.stdout.receive()).decode())
            events = await _until_end(traced)
    execs = [e for e in events if isinstance(e, ProcessExec) and e.pid == pid]
    assert execs, "the innermost exec was not seen"
    ancestors = execs[-1].ancestors
    assert list(ancestors) == chain[: len(ancestors)]
    assert ancestors[:5] == tuple(chain[:5])
    assert ancestors[4] == traced.pid
    assert ancestors[-1] == 1 or len(ancestors) == aiobpf.programs._process.ANCESTORS


async def test_filter_descendants_needs_a_source_that_follows_forks() -> None:
    """On a stream that cannot tell lineage, filter_descendants says so at once."""
    with pytest.raises(ValueError, match="follows forks in the kernel"):
        aiobpf.trace_pipe() | aiobpf.filter_descendants(1)


async def test_execve_events_follow_a_tree_in_the_kernel(tmp_path: Path) -> None:
    """execve_events() | filter_descendants(root): the execs of a tree that exists before the
    source opens (its root waits), a double-forked daemon's among them, and nothing of the
    same program run outside it, as the same uid, just before."""
    program = kernel.uniquely_named_program(tmp_path, "in-the-tree")
    tmp_path.chmod(0o755)  # noqa: ASYNC240 -- set-up before anything is awaited
    script = f'"{program}" a; ( "{program}" b & ) ; "{program}" c'
    child_code = (
        "import subprocess, sys; sys.stdin.readline(); "
        f"subprocess.run(['/bin/sh', '-c', {script!r}])"
    )
    with anyio.fail_after(60):
        async with await anyio.open_process([sys.executable, "-c", child_code]) as root:
            source = aiobpf.execve_events()
            async with source | aiobpf.filter_descendants(root.pid) as events:
                await anyio.run_process([str(program), "outside"])  # not in the tree
                assert root.stdin is not None
                await root.stdin.send(b"go\n")
                seen = []
                async for event in events:
                    seen.append(event)
                    if {tuple(e.argv[1:]) for e in seen} >= {("a",), ("b",), ("c",)}:
                        break
                assert source.stats.dropped == 0
            assert await root.wait() == 0
    ours = [e for e in seen if e.filename == str(program)]
    assert sorted(e.argv[1] for e in ours) == ["a", "b", "c"]
    assert [e.filename for e in seen if e.filename != str(program)] == ["/bin/sh"]
    assert all(e.retval == 0 for e in seen)


async def test_a_tree_that_already_exists_is_followed_from_its_root(tmp_path: Path) -> None:
    """filter_descendants(pid) follows the processes below pid that exist when the source
    opens: a child started before, which forks and exits later, is seen; a sibling process
    outside the tree is not."""
    script = (
        "import os, sys; sys.stdin.readline(); pid = os.fork()\n"
        "if not pid: os._exit(3)\nos.waitpid(pid, 0); os._exit(4)"
    )
    shell = ["sh", "-c", '"$0" -c "$1"; exit 5', sys.executable, script]
    async with await anyio.open_process(shell) as root:
        assert root.stdin is not None
        async with aiobpf.process_events() | aiobpf.filter_descendants(root.pid) as events:
            await anyio.run_process(["sh", "-c", "exit 42"], check=False)  # outside
            await root.stdin.send(b"go\n")
            got: list[Any] = []
            with anyio.fail_after(60):
                async for event in events:
                    got.append(event)
                    if isinstance(event, ProcessExit) and event.pid == root.pid:
                        break
        assert await root.wait() == 5
    exits = [event.exit_code for event in got if isinstance(event, ProcessExit)]
    assert sorted(code or 0 for code in exits) == [3, 4, 5]


async def test_kinds_not_wanted_never_leave_the_kernel() -> None:
    """process_events(kinds=("exit",)): a followed tree that forks, execs and exits gives its
    two exits, exact, and the ring held nothing else (the source read two records in all)."""
    script = "sh -c 'exit 3'; exit 5"
    async with await anyio.open_process(["sh", "-c", f"read _; {script}"]) as root:
        assert root.stdin is not None
        source = aiobpf.process_events(kinds=("exit",))
        async with source | aiobpf.filter_descendants(root.pid) as events:
            await root.stdin.send(b"go\n")
            got: list[Any] = []
            with anyio.fail_after(60):
                async for event in events:
                    got.append(event)
                    if event.pid == root.pid:
                        break
            assert source.stats.received == 2
            assert source.stats.dropped == 0
        assert await root.wait() == 5
    assert all(isinstance(event, ProcessExit) for event in got)
    assert [event.exit_code for event in got] == [3, 5]


@pytest.mark.parametrize(
    ("kinds", "error"),
    [((), ValueError), (("exit", "death"), ValueError), ("exit", TypeError)],
)
def test_unknown_kinds_are_refused(kinds: Any, error: type[Exception]) -> None:
    with pytest.raises(error, match="kinds"):
        aiobpf.process_events(kinds=kinds)


def _aiobpf(*args: str, **options: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aiobpf", *args], capture_output=True, text=True, timeout=120,
        **options,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("command", "status"),
    [
        (["sh", "-c", "exit 7"], 7),
        (["sh", "-c", "kill -KILL $$"], 128 + 9),
        (["aiobpf-no-such-command"], 127),
        (["NOT_EXECUTABLE"], 126),
        ([], 125),
    ],
    ids=["code", "signal", "not-found", "not-executable", "no-command"],
)
def test_aiobpf_run_exits_as_the_command_did(
    command: list[str], status: int, tmp_path: Path
) -> None:
    """aiobpf run's status is the command's, 128 + the signal's number when killed, 127 and
    126 as a shell says, and 125 for aiobpf run's own failure."""
    plain = tmp_path / "plain.txt"
    plain.write_text("not a program\n")  # mode 0644: not even root may exec it
    command = [str(plain) if word == "NOT_EXECUTABLE" else word for word in command]
    result = _aiobpf("run", "--", *command)
    assert result.returncode == status, result.stderr


def test_aiobpf_run_writes_the_trace_apart_from_the_commands_output(tmp_path: Path) -> None:
    """The command's stdout is its own; the trace (JSON with -o) holds its exec and exit, a
    child's exit with its code, and a summary counting processes and failures."""
    trace = tmp_path / "trace.jsonl"
    result = _aiobpf(
        "run", "--json", "-o", str(trace), "--", "sh", "-c", "echo out; sh -c 'exit 3'; true"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "out\n"
    records = [json.loads(line) for line in trace.read_text().splitlines()]
    assert {record["schema"] for record in records} == {1}
    exits = [record for record in records if record["type"] == "exit"]
    assert sorted(record["exit_code"] for record in exits) == [0, 3]
    assert {"pid", "ppid", "comm", "exit_code", "signal", "core_dumped", "duration_s"} <= set(
        exits[0]
    )
    assert records[-1] == {
        "schema": 1, "type": "summary", "seen": 2, "lost": 0, "processes": 2, "failures": 1
    }  # fmt: skip


def test_aiobpf_run_passes_sigint_to_the_command() -> None:
    """SIGINT to aiobpf run goes to the command (here it exits 130 on it, as a shell would),
    and aiobpf run ends with it."""
    command = [sys.executable, "-m", "aiobpf", "run", "--", sys.executable, "-c"]
    command.append("import signal, sys, time; print('ready', flush=True); time.sleep(60)")
    with subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_default_sigint,
    ) as runner:
        assert runner.stdout is not None
        assert runner.stdout.readline() == "ready\n"
        runner.send_signal(signal.SIGINT)
        assert runner.wait(timeout=60) == 128 + signal.SIGINT  # Python's KeyboardInterrupt


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # a background process would ignore it


def _our_exitsnoop(uid: int) -> subprocess.Popen[str]:
    """`aiobpf exitsnoop --json --uid UID`, reading at once, started (not yet attached)."""
    snoop = ["exitsnoop", "--json", "--uid", str(uid), "--max-latency", "0"]
    return subprocess.Popen(
        [sys.executable, "-m", "aiobpf", *snoop],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_default_sigint,
    )  # fmt: skip


def _exits_and_losses(out: str) -> tuple[set[int], int]:
    """The pids of the exit records in exitsnoop's JSON output, and what its summary lost."""
    records = [json.loads(line) for line in out.splitlines()]
    summary = records[-1]
    assert summary["type"] == "summary"
    return {record["pid"] for record in records if record["type"] == "exit"}, summary["lost"]


def test_exitsnoop_sees_every_exit_libbpf_tools_sees(tmp_path: Path) -> None:
    """A fork storm (stress-ng --fork) of a fresh uid in a cgroup of its own: every process
    exit libbpf-tools' exitsnoop reports for the cgroup, aiobpf exitsnoop --uid reports too,
    or counts as lost; and the storm's own process ends last in both."""
    import shutil

    if shutil.which("stress-ng") is None or not Path("/usr/sbin/exitsnoop").exists():
        pytest.skip("stress-ng and libbpf-tools are installed by scripts/setup.sh test")
    uid = 61095
    with kernel.new_cgroup() as cgroup:
        reference = subprocess.Popen(
            ["stdbuf", "-oL", "/usr/sbin/exitsnoop", "-c", str(cgroup)],
            stdout=subprocess.PIPE, text=True, preexec_fn=_default_sigint,
        )  # fmt: skip
        ours = _our_exitsnoop(uid)
        try:
            assert reference.stdout is not None
            assert ours.stderr is not None
            assert reference.stdout.readline().split()[:2] == ["PCOMM", "PID"]
            assert ours.stderr.readline().startswith("aiobpf exitsnoop: tracing")
            storm = ["stress-ng", "--fork", "2", "--fork-ops", "400", "--timeout", "30", "-q"]
            move = 'echo $$ > "$1/cgroup.procs" && shift && exec "$@"'
            as_uid = kernel.setpriv_command(uid, "stress-ng")[:-1]
            stress = subprocess.Popen(
                ["sh", "-c", move, "sh", str(cgroup), *as_uid, *storm], cwd="/tmp"
            )
            assert stress.wait(timeout=120) == 0
            seen_reference = _exited_pids(reference, stress.pid)
            ours.send_signal(signal.SIGINT)
            out, _ = ours.communicate(timeout=60)
        finally:
            for tool in (reference, ours):
                tool.kill()
                tool.communicate()  # reaps it and closes its pipes
    seen_ours, lost = _exits_and_losses(out)
    missing = seen_reference - seen_ours
    assert len(missing) <= lost, sorted(missing)[:10]
    assert len(seen_reference) > 400
    assert stress.pid in seen_ours


def _exited_pids(reference: subprocess.Popen[str], last: int) -> set[int]:
    """The pids libbpf-tools' exitsnoop reported, up to ``last``'s exit."""
    assert reference.stdout is not None
    pids: set[int] = set()
    for line in reference.stdout:
        fields = line.split()
        if len(fields) > 1 and fields[1].isdigit():
            pids.add(int(fields[1]))
            if int(fields[1]) == last:
                return pids
    raise AssertionError("the reference ended before the storm's own exit")


def test_exitsnoop_sees_every_exit_bpftrace_sees_in_an_exec_storm() -> None:
    """An exec storm (stress-ng --exec: thousands of processes) of a fresh uid: every process
    exit bpftrace's sched:sched_process_exit reports for the uid (the leader of each process),
    aiobpf exitsnoop --uid reports too, or counts as lost, and it reports no other."""
    import shutil

    if shutil.which("stress-ng") is None or shutil.which("bpftrace") is None:
        pytest.skip("stress-ng and bpftrace are installed by scripts/setup.sh test")
    uid = 61097
    script = (
        f"tracepoint:sched:sched_process_exit /uid == {uid} && pid == tid/ "
        '{ printf("%d\\n", pid); }'
    )
    reference = subprocess.Popen(
        ["bpftrace", "-B", "line", "-e", script],
        stdout=subprocess.PIPE, text=True, preexec_fn=_default_sigint,
    )  # fmt: skip
    ours = _our_exitsnoop(uid)
    try:
        assert reference.stdout is not None
        assert ours.stderr is not None
        assert reference.stdout.readline().startswith("Attaching")
        assert ours.stderr.readline().startswith("aiobpf exitsnoop: tracing")
        storm = ["stress-ng", "--exec", "2", "--exec-ops", "100", "--timeout", "60", "-q"]
        stress = subprocess.Popen([*kernel.setpriv_command(uid, "stress-ng")[:-1], *storm],
                                  cwd="/tmp")  # fmt: skip
        assert stress.wait(timeout=120) == 0
        seen_reference: set[int] = set()
        for line in reference.stdout:
            seen_reference.add(int(line))
            if int(line) == stress.pid:
                break
        # every thread of the storm had ended (waited for above): every exit is in our ring
        ours.send_signal(signal.SIGINT)
        out, _ = ours.communicate(timeout=60)
    finally:
        for tool in (reference, ours):
            tool.kill()
            tool.communicate()
    seen_ours, lost = _exits_and_losses(out)
    missing = seen_reference - seen_ours
    assert len(missing) <= lost, sorted(missing)[:10]
    assert seen_ours <= seen_reference
    assert len(seen_reference) > 100
    assert stress.pid in seen_ours or lost > 0


def test_exitsnoop_failed_shows_only_failures_as_a_person_reads_them(tmp_path: Path) -> None:
    """exitsnoop --failed --uid U, text: a fresh uid's exit 0 is left out; its exit 3 reads
    "code 3", a SIGKILL reads "SIGKILL", each with its pid; the summary counts them."""
    uid = 61096
    tool = subprocess.Popen(
        [sys.executable, "-m", "aiobpf", "exitsnoop", "--failed", "--uid", str(uid)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_default_sigint,
    )
    try:
        assert tool.stdout is not None
        assert tool.stdout.readline().split()[:3] == ["TIME", "PCOMM", "PID"]
        pids = {}
        for name, script in (("ok", "exit 0"), ("three", "exit 3"), ("killed", "kill -9 $$")):
            child = subprocess.Popen(
                [*kernel.setpriv_command(uid, "/bin/sh")[:-1], "/bin/sh", "-c", script]
            )
            child.wait()
            pids[name] = child.pid
        tool.send_signal(signal.SIGINT)
        out, err = tool.communicate(timeout=60)
    finally:
        tool.kill()
        tool.communicate()
    assert tool.returncode == 0, err
    lines = out.splitlines()
    by_pid = {int(line.split()[2]): line for line in lines[:-1]}
    assert set(by_pid) == {pids["three"], pids["killed"]}
    assert by_pid[pids["three"]].endswith("code 3")
    assert by_pid[pids["killed"]].endswith("SIGKILL")
    assert lines[-1] == "-- 2 exits seen, 0 events lost"
