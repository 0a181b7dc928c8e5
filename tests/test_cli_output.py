"""What the command prints, on synthetic events: whatever a local user puts in a file name, a
process name or an argument, execsnoop's text line is one printable line that cannot repaint a
terminal, and its JSON line is one line that reads back as the event's schema record."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from aiobpf.cli._execsnoop import _execsnoop_line
from aiobpf.cli._text import printable
from aiobpf.programs import ExecveEvent
from aiobpf.redaction import DEFAULT, NONE
from aiobpf.schema import event_from_record

#: Text as a hostile user writes it: controls, escapes, separators, bidi overrides, U+FFFD
#: (what invalid UTF-8 becomes), surrogate-free.
hostile = st.text(
    st.characters(exclude_categories=["Cs"])
    | st.sampled_from("\x1b\n\r\t\x07\u2028\u202e\ufffd\\"),
    max_size=40,
)


def _event(comm: str, filename: str, argv: list[str]) -> ExecveEvent:
    return ExecveEvent(
        pid=7, tid=7, ppid=1, uid=1000, gid=1000, comm=comm, filename=filename,
        argv=tuple(argv), retval=0, timestamp_ns=1, time=1_700_000_000.5, syscall="execve",
        dirfd=-100, flags=0, filename_truncated=False, argv_truncated=False, message="",
        cgroup_id=1,
    )  # fmt: skip


@given(comm=hostile, filename=hostile, argv=st.lists(hostile, max_size=6))
@settings(max_examples=300, deadline=None)
def test_a_text_line_is_one_printable_line(comm: str, filename: str, argv: list[str]) -> None:
    """No control character, line separator or bidi override reaches the terminal."""
    line = _execsnoop_line(_event(comm, filename, argv), False, NONE)
    assert line.isprintable()
    assert "\n" not in line


@given(comm=hostile, filename=hostile, argv=st.lists(hostile, max_size=6))
@settings(max_examples=300, deadline=None)
def test_a_json_line_reads_back_as_the_event(comm: str, filename: str, argv: list[str]) -> None:
    """One line (JSON escapes every control character), and it reads back, through the
    schema, as the same event (argv redacted by the default)."""
    event = _event(comm, filename, argv)
    line = _execsnoop_line(event, True, DEFAULT)
    assert "\n" not in line
    back = event_from_record(json.loads(line))
    assert (back.comm, back.filename) == (comm, filename)
    assert back.argv == DEFAULT.argv(tuple(argv))


@given(text=hostile)
def test_printable_escapes_are_unambiguous(text: str) -> None:
    """Backslashes are doubled, so an escape shown can always be told from the same letters
    written by the user."""
    shown = printable(text)
    assert shown.isprintable()
    if text.isprintable():
        assert shown == text.replace("\\", "\\\\")
