"""Decoding execve records into events, on synthetic records (no root needed)."""

from __future__ import annotations

import numpy as np

from aiobpf import ExecveEvent
from aiobpf.lowlevel import EXECVE_RECORD


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
