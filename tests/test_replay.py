"""Recordings played back: execsnoop --json's lines come back as the same typed events, with
their losses, through the same operators, as an unprivileged user; hostile files are refused
line by line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import aiobpf
from aiobpf import ExecveEvent
from aiobpf.schema import exec_record, lost_record, summary_record

from . import kernel
from .test_cli import execsnoop_while_stopped

pytestmark = pytest.mark.anyio


def _event(pid: int, uid: int = 1000, time: float = 1_700_000_000.0, **fields: Any) -> ExecveEvent:
    values: dict[str, Any] = dict(
        pid=pid, tid=pid, ppid=1, uid=uid, gid=uid, comm="ls", filename="/bin/ls",
        argv=("ls", "-l", "\ufffd"), retval=0, timestamp_ns=pid * 1000, time=time,
        syscall="execve", dirfd=-100, flags=0, filename_truncated=False, argv_truncated=False,
        message="", cgroup_id=7,
    )  # fmt: skip
    values.update(fields)
    return ExecveEvent(**values)


def _write(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path


async def test_a_recording_replays_to_the_same_events_and_losses(tmp_path: Path) -> None:
    """Exec records come back as equal ExecveEvents, in order; lost records as the source's
    dropped count; the summary as recorded_seen and recorded_lost; other records skipped."""
    events = [_event(10), _event(11, uid=0, retval=-2, syscall="execveat"), _event(12)]
    records = [
        exec_record(events[0], cgroup="/user.slice"),
        lost_record(3),
        exec_record(events[1]),
        {"schema": 1, "type": "counts", "time": 1.0, "counts": {}},
        exec_record(events[2]),
        lost_record(2),
        summary_record(3, 5),
    ]
    path = _write(tmp_path / "run.jsonl", records)
    async with aiobpf.replay(path) as replayed:
        got = [event async for event in replayed]
        stats = replayed.stats
    assert got == events
    assert (stats.received, stats.dropped, stats.skipped) == (3, 5, 1)
    assert (stats.recorded_seen, stats.recorded_lost) == (3, 5)


async def test_operators_run_on_a_replay(tmp_path: Path) -> None:
    """A filter that the kernel would take from a live source runs in user space on a
    replay, with the same result."""
    path = _write(tmp_path / "run.jsonl", [exec_record(_event(p, uid=p % 2)) for p in range(10)])
    async with aiobpf.replay(path) | aiobpf.filter_uid(1) as odd:
        assert [event.pid async for event in odd] == [1, 3, 5, 7, 9]


async def test_speed_plays_at_the_recorded_pace(tmp_path: Path) -> None:
    """speed=10 hands out events recorded 0.5 s apart at least 0.05 s of the loop's clock
    apart (less its resolution: uvloop's counts whole milliseconds)."""
    path = _write(
        tmp_path / "run.jsonl",
        [exec_record(_event(1, time=100.0)), exec_record(_event(2, time=100.5))],
    )
    async with aiobpf.replay(path, speed=10) as paced:
        before = anyio.current_time()  # the pace counts from the first event, handed out after
        await paced.receive()
        await paced.receive()
        assert anyio.current_time() - before >= 0.05 - 0.001
    with pytest.raises(ValueError, match="speed must be None or a finite number > 0"):
        aiobpf.replay(path, speed=0)


@pytest.mark.parametrize(
    ("line", "said"),
    [
        (b"not json", "line 2: not JSON"),
        (b"\xff\xfe{}", "line 2: not JSON"),
        (b"[1, 2]", "line 2: not a JSON object"),
        (b"[" * 100_000, "line 2: not JSON"),
        (b'{"schema": 2, "type": "exec"}', "line 2: a record of schema 2"),
        (b'{"schema": 1, "type": "exec", "pid": 1}', "line 2: an exec record without 'time'"),
        (b'{"schema": 1, "type": "lost", "count": -1}', "line 2: a lost record whose 'count'"),
        (b'{"schema": 1, "type": "lost", "count": true}', "line 2: a lost record whose 'count'"),
        (b"x" * (2 << 20), "line 2: longer than"),
    ],
)
async def test_a_hostile_line_is_a_recording_error_naming_it(
    tmp_path: Path, line: bytes, said: str
) -> None:
    """Malformed, invalid UTF-8, deeply nested, another version, missing or mistyped fields,
    an endless line: a RecordingError naming the file and line, after the good events before
    it."""
    path = tmp_path / "bad.jsonl"
    path.write_bytes(json.dumps(exec_record(_event(1))).encode() + b"\n" + line + b"\n")
    async with aiobpf.replay(path) as replayed:
        with pytest.raises(aiobpf.RecordingError, match=f"bad.jsonl, {said}"):
            async for _ in replayed:
                pass


def test_a_field_of_the_wrong_type_is_refused() -> None:
    """Each field of an exec record is checked: a text uid, a bool pid, argv of numbers."""
    from aiobpf.schema import event_from_record

    good = exec_record(_event(1))
    for name, value in (("uid", "0"), ("pid", True), ("argv", [1]), ("comm", None)):
        with pytest.raises(aiobpf.RecordingError, match=repr(name)):
            event_from_record({**good, name: value})


@given(lines=st.lists(st.binary(max_size=200), max_size=8))
@settings(max_examples=200, deadline=None)
def test_whatever_a_file_holds_replay_yields_events_or_a_recording_error(
    tmp_path_factory: pytest.TempPathFactory, lines: list[bytes]
) -> None:
    """Any bytes: the replay hands out events, or stops with a RecordingError; nothing else
    escapes it."""
    path = tmp_path_factory.mktemp("fuzz") / "any.jsonl"
    path.write_bytes(b"\n".join(lines))

    async def main() -> None:
        async with aiobpf.replay(path) as replayed:
            try:
                async for event in replayed:
                    assert isinstance(event, ExecveEvent)
            except aiobpf.RecordingError:
                pass

    anyio.run(main)


REPLAY_AS_NOBODY = """
import json, sys
import anyio, aiobpf
from aiobpf.schema import exec_record

async def main(path):
    async with aiobpf.replay(path) as events:
        async for event in events:
            print(json.dumps(exec_record(event)))
        stats = events.stats
    print(json.dumps([stats.received, stats.dropped, stats.recorded_seen, stats.recorded_lost]))

anyio.run(main, sys.argv[1])
"""


@pytest.mark.usefixtures("bpf")
def test_an_execsnoop_recording_replays_as_nobody_with_its_losses(tmp_path: Path) -> None:
    """execsnoop --json records real execs of a fresh uid with a one-page ring, stopped while
    five execs happen (one kept, four lost); the recording, replayed by uid 65534 (no
    privileges), gives the same events and the same losses."""
    program = kernel.uniquely_named_program(tmp_path, "replay-me")
    tmp_path.chmod(0o755)
    lines = execsnoop_while_stopped(program, 5, before=1, as_json=True, backend="trio")
    recorded = [json.loads(line) for line in lines]
    execs = [record for record in recorded if record["type"] == "exec"]
    summary = recorded[-1]
    assert summary["type"] == "summary"
    assert summary["seen"] == len(execs) >= 1
    assert summary["lost"] >= 1
    assert len(execs) + summary["lost"] == 6  # what the kernel produced

    nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    environment = {**os.environ, "PYTHONPATH": str(Path(aiobpf.__file__).parent.parent)}
    with kernel.shared_directory() as shared:  # pytest's own is root's alone
        recording = shared / "run.jsonl"
        recording.write_text("".join(line + "\n" for line in lines))
        recording.chmod(0o644)
        result = subprocess.run(
            [*nobody, sys.executable, "-c", REPLAY_AS_NOBODY, str(recording)],
            capture_output=True,
            text=True,
            timeout=120,
            env=environment,
            cwd="/",
        )
    assert result.returncode == 0, result.stderr
    *replayed, counts = (json.loads(line) for line in result.stdout.splitlines())
    assert replayed == [{key: value for key, value in e.items() if key != "cgroup"} for e in execs]
    assert counts == [len(execs), summary["lost"], summary["seen"], summary["lost"]]
