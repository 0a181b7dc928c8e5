"""The aiobpf command and the examples, run as a user would run them."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream

from aiobpf.lowlevel import cgroup_id
from aiobpf.schema import EXEC_FIELDS, SCHEMA_VERSION

from . import kernel

ROOT = Path(__file__).resolve().parent.parent
UID = 61011


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aiobpf", *args], capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    "args",
    [
        ["top-uids", "--top", "0"],
        ["top-uids", "--interval", "-1"],
        ["execsnoop", "--uid", "nobody"],
        ["execsnoop", "--max-latency", "0.01", "--busy-poll", "0.01"],
        ["execsnoop", "--busy-poll", "-1"],
        ["execsnoop", "--cgroup", "no-such-cgroup"],
        ["syscalls", "--pid", "x"],
        ["no-such-tool"],
        [],
    ],
)
def test_bad_arguments_are_a_usage_error_not_a_traceback(args: list[str]) -> None:
    """Bad arguments print usage and exit 2, with no traceback."""
    result = _run(*args)
    assert result.returncode == 2
    assert "usage:" in result.stderr
    assert "Traceback" not in result.stderr


def test_help_lists_the_tools() -> None:
    """--help names every tool; the installed script is the same command."""
    result = _run("--help")
    assert result.returncode == 0
    for tool in ("execsnoop", "top-uids", "hello"):
        assert tool in result.stdout
    script = Path(sys.executable).with_name("aiobpf")
    assert script.exists()
    assert subprocess.run([str(script), "--help"], capture_output=True).returncode == 0


@pytest.mark.usefixtures("bpf")
def test_the_demo_shows_its_own_execs() -> None:
    """`make demo`'s script: the header once tracing, then the commands it runs itself (their
    comm and filename), then the tally; it ends on time with status 0."""
    done = subprocess.run(
        [str(ROOT / "scripts" / "demo.sh")],
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "AIOBPF_DEMO_SECONDS": "2"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["TIME", "UID", "PID", "PPID", "RET", "COMM", "FILENAME", "ARGS"]
    seen = {tuple(line.split()[5:8]) for line in lines[1:-1]}
    for command in ("uname", "id", "hostname"):
        assert (command, f"/usr/bin/{command}", command) in seen, lines
    assert re.fullmatch(r"-- \d+ execs seen, 0 lost", lines[-1]), lines


async def _lines(process: Process) -> BufferedByteReceiveStream:
    assert process.stdout is not None
    return BufferedByteReceiveStream(process.stdout)


async def _json_until(stream: BufferedByteReceiveStream, done: Any) -> dict[str, Any]:
    while True:
        line = json.loads(await stream.receive_until(b"\n", 1 << 20))
        if done(line):
            return dict(line)


async def _stop(process: Process) -> str:
    process.send_signal(signal.SIGINT)
    await process.wait()
    assert process.stderr is not None
    return (await process.stderr.receive(1 << 20)).decode() if process.returncode else ""


@pytest.mark.anyio
@pytest.mark.usefixtures("bpf")
@pytest.mark.parametrize(
    "command",
    [["-m", "aiobpf", "top-uids"], [str(ROOT / "examples" / "top_uids.py")]],
    ids=["aiobpf top-uids", "examples/top_uids.py"],
)
async def test_top_uids_json_counts_exactly_the_execs_of_a_fresh_uid(command: list[str]) -> None:
    """--json prints one {"type": "counts", "time", "counts"} object per interval; N execs
    under a fresh uid show as exactly N; Ctrl-C exits 0 with no traceback (the tool after a
    summary)."""
    args = [sys.executable, *command, "--json", "--interval", "0.2", "--uid", str(UID)]
    with anyio.fail_after(60):
        async with await anyio.open_process(args) as process:
            stream = await _lines(process)
            first = await _json_until(stream, lambda line: True)  # attached from here on
            assert set(first) == {"type", "time", "counts"}
            assert first["type"] == "counts"
            assert isinstance(first["time"], float)
            for _ in range(3):
                await anyio.run_process(kernel.setpriv_command(UID, "/bin/true"))
            last = await _json_until(stream, lambda line: line["counts"].get(str(UID), 0) >= 3)
            error = await _stop(process)
            if "aiobpf" in command:  # the tool, not the example, ends with a summary
                summary = await _json_until(stream, lambda line: line["type"] == "summary")
                assert summary == {"type": "summary", "counts": {str(UID): 3}, "lost": 0}
    assert last["counts"] == {str(UID): 3}
    assert process.returncode == 0, error


@pytest.mark.usefixtures("bpf")
def test_duration_exits_zero_on_its_own() -> None:
    """--duration S ends the tool after S seconds with status 0."""
    result = _run("top-uids", "--duration", "0.5", "--json")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.anyio
@pytest.mark.usefixtures("bpf")
async def test_execsnoop_json_reports_a_known_program(tmp_path: Path) -> None:
    """execsnoop --json says on stderr when it is tracing, then prints the documented keys with
    the exact pid, uid, filename and argv, the event's own time, and a summary at Ctrl-C."""
    program = kernel.uniquely_named_program(tmp_path, "snoop-me")
    tmp_path.chmod(0o755)  # noqa: ASYNC240 -- set-up before anything is awaited
    args = [sys.executable, "-m", "aiobpf", "execsnoop", "--json", "--uid", str(UID)]
    args += ["--max-latency", "0.01"]  # the budget only delays the lines
    with anyio.fail_after(60):
        async with await anyio.open_process(args) as process:
            await _tracing(process)
            before = time.time()
            await anyio.run_process([*kernel.setpriv_command(UID, program), "an argument"])
            after = time.time()
            stream = await _lines(process)
            line = await _json_until(stream, lambda line: True)
            error = await _stop(process)
            summary = await _json_until(stream, lambda line: True)
    assert set(line) == {"schema", "type", *EXEC_FIELDS, "cgroup"}
    assert line["schema"] == SCHEMA_VERSION
    assert (line["type"], line["uid"], line["comm"], line["retval"]) == ("exec", UID, "snoop-me", 0)
    assert (line["filename"], line["argv"]) == (str(program), [str(program), "an argument"])
    assert before <= line["time"] <= after
    assert summary == {"schema": 1, "type": "summary", "seen": 1, "lost": 0}
    assert process.returncode == 0, error


@pytest.mark.anyio
@pytest.mark.usefixtures("bpf")
async def test_execsnoop_cgroup_keeps_only_the_cgroups_execs(tmp_path: Path) -> None:
    """--cgroup PATH: a program run outside the cgroup, then one in a cgroup below it: only the
    second is shown, with its cgroup's path; the summary counts only it."""
    outside = kernel.uniquely_named_program(tmp_path, "outside")
    inside = kernel.uniquely_named_program(tmp_path, "inside")
    with kernel.new_cgroup() as top, kernel.new_cgroup(top) as inner:
        expected = (f"/{top.name}/{inner.name}", cgroup_id(inner))
        args = [sys.executable, "-m", "aiobpf", "execsnoop", "--json", "--cgroup", top.name]
        with anyio.fail_after(60):
            async with await anyio.open_process([*args, "--max-latency", "0"]) as process:
                await _tracing(process)
                await anyio.run_process([str(outside)])
                await anyio.run_process(kernel.in_cgroup_command(inner, inside))
                stream = await _lines(process)
                line = await _json_until(stream, lambda line: True)
                error = await _stop(process)
                summary = await _json_until(stream, lambda line: True)
    assert (line["comm"], line["filename"]) == ("inside", str(inside))
    assert (line["cgroup"], line["cgroup_id"]) == expected
    assert summary == {"schema": 1, "type": "summary", "seen": 1, "lost": 0}
    assert process.returncode == 0, error


async def _tracing(process: Process) -> None:
    """Waits for a --json tool's word on stderr that it is tracing."""
    assert process.stderr is not None
    said = BufferedByteReceiveStream(process.stderr)
    line = await said.receive_until(b"\n", 4096)
    assert line.startswith(b"aiobpf execsnoop: tracing"), line


GETPPID_CHILD = """
import os, sys
sys.stdin.readline()
for _ in range(25):
    os.getppid()
print("done", flush=True)
sys.stdin.readline()
"""


@pytest.mark.anyio
@pytest.mark.usefixtures("bpf")
async def test_syscalls_json_counts_a_process_exactly() -> None:
    """`aiobpf syscalls --pid P --json` counts P's 25 getppid calls exactly, over its windows."""
    with anyio.fail_after(60):
        async with await anyio.open_process([sys.executable, "-c", GETPPID_CHILD]) as child:
            args = [sys.executable, "-m", "aiobpf", "syscalls", "--json", "--interval", "0.2"]
            args += ["--top", "512"]  # every syscall's count: getppid's is never cut off
            async with await anyio.open_process([*args, "--pid", str(child.pid)]) as tool:
                stream = await _lines(tool)
                await _json_until(stream, lambda line: True)  # attached from here on
                assert child.stdin is not None
                assert child.stdout is not None
                await child.stdin.send(b"go\n")
                await child.stdout.receive()  # "done": all 25 calls were made
                seen = 0

                def counted(line: dict[str, Any]) -> bool:
                    nonlocal seen
                    seen += int(line["counts"].get("getppid", 0))
                    return seen >= 25

                await _json_until(stream, counted)
                last = await _json_until(stream, lambda line: True)  # one more window
                seen += last["counts"].get("getppid", 0)
                error = await _stop(tool)
            await child.stdin.send(b"bye\n")
    assert seen == 25
    assert tool.returncode == 0, error


# -- execsnoop: loss told in-band and at exit, safe text ---------------------------------------


def _start_execsnoop(*args: str, as_json: bool, backend: str) -> subprocess.Popen[str]:
    """`aiobpf execsnoop` started, returned once it is tracing (its header line, or with --json
    its word on stderr). SIGINT at its default: a background process would ignore it."""
    command = [sys.executable, "-m", "aiobpf", "--backend", backend, "execsnoop", *args]
    tool = subprocess.Popen(
        [*command, *(["--json"] if as_json else [])],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert tool.stdout is not None
    assert tool.stderr is not None
    ready = tool.stderr.readline() if as_json else tool.stdout.readline()
    assert ready.startswith("aiobpf execsnoop: tracing" if as_json else "TIME"), ready
    return tool


def execsnoop_while_stopped(
    program: Path, execs: int, *, before: int = 0, as_json: bool, backend: str
) -> list[str]:
    """The lines of `aiobpf execsnoop --uid UID` with a one-page ring (room for one event),
    ``program`` run ``before`` times as UID while it reads, then ``execs`` times while it is
    stopped (SIGSTOP), then stopped with SIGINT."""
    tool = _start_execsnoop(
        "--uid", str(UID), "--ring-size", "4096", as_json=as_json, backend=backend
    )
    try:
        for _ in range(before):
            subprocess.run(kernel.setpriv_command(UID, program), check=True)
        tool.send_signal(signal.SIGSTOP)
        os.waitpid(tool.pid, os.WUNTRACED)  # returns once it is stopped
        for _ in range(execs):
            subprocess.run(kernel.setpriv_command(UID, program), check=True)
        tool.send_signal(signal.SIGCONT)
        return _stopped_output(tool)
    finally:
        tool.kill()
        tool.wait()


def _stopped_output(tool: subprocess.Popen[str], sig: int = signal.SIGINT) -> list[str]:
    """Stops the tool with ``sig``; the lines it printed after its header."""
    tool.send_signal(sig)
    out, err = tool.communicate(timeout=60)
    assert tool.returncode == 0, err
    assert "Traceback" not in err
    return out.splitlines()


@pytest.mark.usefixtures("bpf")
@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
def test_execsnoop_tells_what_it_lost_in_band_and_at_exit(
    tmp_path: Path, backend: str, as_json: bool
) -> None:
    """With a one-page ring (room for one event) and the tool stopped (SIGSTOP) while five
    execs happen, one is shown and four are told lost, as a line of their own as soon as the
    tool sees the drops and in the summary it prints at SIGINT."""
    program = kernel.uniquely_named_program(tmp_path, "lose-me")
    tmp_path.chmod(0o755)
    lines = execsnoop_while_stopped(program, 5, as_json=as_json, backend=backend)
    if as_json:
        records = [json.loads(line) for line in lines]
        assert [record["type"] for record in records] == ["exec", "lost", "summary"]
        assert records[0]["comm"] == "lose-me"
        assert records[1:] == [
            {"schema": 1, "type": "lost", "count": 4},
            {"schema": 1, "type": "summary", "seen": 1, "lost": 4},
        ]
    else:
        assert len(lines) == 3, lines
        assert lines[0].split()[5] == "lose-me"
        assert lines[1:] == ["-- 4 lost", "-- 1 execs seen, 4 lost"]


@pytest.mark.usefixtures("bpf")
@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
def test_drops_after_the_last_read_reach_the_summary(tmp_path: Path, as_json: bool) -> None:
    """A fixed 30 s budget and a one-page ring: the first of five execs wakes the tool, which
    then waits out its budget with that record unread, so the other four are dropped; SIGINT
    cuts the wait. No read happens in the tool's loop after the drops: only the count taken
    after the last read, as it stops, can tell them, and the summary does."""
    program = kernel.uniquely_named_program(tmp_path, "lost-at-the-end")
    tmp_path.chmod(0o755)
    tool = _start_execsnoop(
        *("--uid", str(UID), "--ring-size", "4096", "--max-latency", "30"),
        as_json=as_json,
        backend="asyncio",
    )
    try:
        for _ in range(5):
            subprocess.run(kernel.setpriv_command(UID, program), check=True)
        lines = _stopped_output(tool)
    finally:
        tool.kill()
        tool.wait()
    if as_json:
        assert json.loads(lines[-1]) == {"schema": 1, "type": "summary", "seen": 1, "lost": 4}
    else:
        assert lines[-1] == "-- 1 execs seen, 4 lost"


@pytest.mark.usefixtures("bpf")
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_execsnoop_prints_its_summary_on_a_signal(tmp_path: Path, sig: int) -> None:
    """Ctrl-C (SIGINT) and SIGTERM end execsnoop the same way: what the kernel delivered before
    the signal is shown, then the summary, and the status is 0."""
    program = kernel.uniquely_named_program(tmp_path, "signal-me")
    tmp_path.chmod(0o755)
    tool = _start_execsnoop("--uid", str(UID), as_json=False, backend="asyncio")
    try:
        for _ in range(3):
            subprocess.run(kernel.setpriv_command(UID, program), check=True)
        lines = _stopped_output(tool, sig)
    finally:
        tool.kill()
        tool.wait()
    assert [line.split()[5] for line in lines[:-1]] == ["signal-me"] * 3
    assert lines[-1] == "-- 3 execs seen, 0 lost"


@pytest.mark.usefixtures("bpf")
def test_execsnoop_escapes_control_characters(tmp_path: Path) -> None:
    """A program named with a terminal escape sequence and a newline, run with such an
    argument, is shown with both escaped: the line cannot repaint the watcher's terminal; an
    argument holding a space is quoted, as a shell would need it."""
    name = "evil\x1b[2J\nname"
    program = kernel.uniquely_named_program(tmp_path, name)
    tmp_path.chmod(0o755)
    tool = _start_execsnoop("--uid", str(UID), as_json=False, backend="trio")
    try:
        argument = "arg\x1b]0;title\x07 \u2028\u202eflipped"  # a newline and a bidi override too
        subprocess.run([*kernel.setpriv_command(UID, program), argument], check=True)
        lines = _stopped_output(tool)
    finally:
        tool.kill()
        tool.wait()
    assert len(lines) == 2, lines
    shown = lines[0]
    assert shown.isprintable(), repr(shown)
    assert "evil\\x1b[2J\\x0anam" in shown.split()[5]  # comm: the kernel keeps 15 bytes
    assert f"{tmp_path}/evil\\x1b[2J\\x0aname" in shown
    assert shown.endswith("'arg\\x1b]0;title\\x07 \\u2028\\u202eflipped'")


@pytest.mark.usefixtures("bpf")
@pytest.mark.parametrize("tool", ["execsnoop", "top-uids"])
@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_a_machine_problem_is_one_line_and_status_1(tool: str, backend: str) -> None:
    """Without the privileges BPF needs (root without capabilities), a tool says so in one line
    on stderr and exits 1: no traceback, and no ExceptionGroup from its signal handling."""
    no_capabilities = [
        *("setpriv", "--securebits=+noroot,+noroot_locked"),
        *("--bounding-set=-all", "--inh-caps=-all"),
    ]
    result = subprocess.run(
        [*no_capabilities, sys.executable, "-m", "aiobpf", "--backend", backend, tool],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith(f"aiobpf {tool}: loading BPF programs needs root")
    assert result.stderr.count("\n") == 1, result.stderr


def test_the_command_imports_no_source_before_a_tool_runs() -> None:
    """Building the command's parser (``--version``, ``--help``, every tool's options)
    imports no source and no numpy: a tool pays for them only when it runs (a module-level
    import in a tool's module once made ``aiobpf --version`` three times slower)."""
    code = (
        "import sys; from aiobpf.cli._main import _parser; _parser(); "
        "print(sorted(n for n in sys.modules "
        "if n in ('numpy', 'bcc', 'anyio._backends._trio') or n.startswith('aiobpf.sources')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
