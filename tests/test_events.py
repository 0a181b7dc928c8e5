"""Decoding execve records into events, on synthetic records (no root needed)."""

from __future__ import annotations

import inspect

import numpy as np

from aiobpf import ExecveEvent
from aiobpf.lowlevel import EXECVE_RECORD
from aiobpf.programs import _constants as C
from aiobpf.programs._execve_event import _FEW, _event


def test_text_fields_end_at_their_first_nul() -> None:
    """Decoding a C string field keeps what comes before its first NUL, nothing after it."""
    record = np.zeros(1, dtype=EXECVE_RECORD)
    record["filename"] = b"/bin/true\0stale tail"
    record["comm"] = b"true"
    (event,) = ExecveEvent.decode(record)
    assert (event.filename, event.comm) == ("/bin/true", "true")


def test_argv_is_what_the_record_used_of_its_field() -> None:
    """argv comes from the args_size bytes the program wrote: empty arguments (in the middle
    and last) are kept, bytes past args_size are not read, and invalid UTF-8 is replaced in its
    own argument only."""
    records = np.zeros(3, dtype=EXECVE_RECORD)
    written = b"ls\0\0-l\0\xff\xfeok\0\0"
    records[0]["args"] = written + b"stale\0tail\0"
    records[0]["args_size"], records[0]["argc"] = len(written), 5
    records[1]["args"] = b"only\0"
    records[1]["args_size"], records[1]["argc"] = 5, 3  # argc beyond the bytes: empty
    records[2]["argc"] = 0
    first, second, third = ExecveEvent.decode(records)
    assert first.argv == ("ls", "", "-l", "\ufffd\ufffdok", "")
    assert second.argv == ("only", "", "")
    assert third.argv == ()


def _varied_records(count: int) -> np.ndarray:
    """Records that differ in every field a decoder treats specially."""
    records = np.zeros(count, dtype=EXECVE_RECORD)
    for index in range(count):
        record = records[index]
        written = b"prog%d\0\0-x\0\xff%d\0" % (index, index)
        record["args"] = written + b"stale\0tail"
        record["args_size"] = len(written) if index % 3 else C.ARGS_SIZE + 100  # clipped
        record["argc"] = 4 + index % 3  # sometimes beyond the bytes written
        record["comm"] = b"comm%d" % index
        record["filename"] = b"/bin/f%d\0old" % index
        record["message"] = b"hi"
        record["syscall"] = C.SYSCALL_EXECVEAT if index % 2 else C.SYSCALL_EXECVE
        record["truncated"] = index % 4  # neither, filename, args, both
        record["retval"] = -index
        record["dirfd"] = -100 + index
        record["timestamp_ns"] = 10**18 + index
        record["pid"], record["uid"], record["cgroup_id"] = 1000 + index, index, 2**63 + index
        record["tid"], record["ppid"], record["gid"] = 5000 + index, 7000 + index, 300 + index
        record["flags"] = 0x1000 * (index % 3)
    return records


def test_a_few_records_decode_as_many_do() -> None:
    """Batches of up to _FEW records are decoded record by record, larger ones by columns: both
    give the same events for the same records."""
    many = ExecveEvent.decode(_varied_records(3 * _FEW))  # by columns
    few = [
        event
        for at in range(0, 3 * _FEW, _FEW)
        for event in ExecveEvent.decode(_varied_records(3 * _FEW)[at : at + _FEW])
    ]
    assert few == many
    assert {event.syscall for event in few} == {"execve", "execveat"}
    assert {(event.filename_truncated, event.argv_truncated) for event in few} == {
        (False, False),
        (True, False),
        (False, True),
        (True, True),
    }
    assert many[1].argv == ("prog1", "", "-x", "\ufffd1", "")
    for index, event in enumerate(many):  # each id in its own field, by either decoder
        ids = (event.pid, event.tid, event.ppid, event.uid, event.gid, event.flags)
        assert ids == (1000 + index, 5000 + index, 7000 + index, index, 300 + index,
                       0x1000 * (index % 3))  # fmt: skip


def test_a_record_decoded_alone_takes_its_fields_in_the_records_order() -> None:
    """The record-by-record decoder names the record's fields in the order numpy gives them."""
    assert tuple(inspect.signature(_event).parameters) == EXECVE_RECORD.names
