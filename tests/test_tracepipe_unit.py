"""Trace pipe line parsing (no root needed)."""

from __future__ import annotations

from aiobpf.sources._trace_pipe import parse_trace_line


def test_parses_the_default_trace_format() -> None:
    """Task, pid, cpu, flags, timestamp, function and message come out of a printk line."""
    line = parse_trace_line(
        "           <...>-4242    [001] d..31  1234.567890: bpf_trace_printk: Hello World!"
    )
    assert line is not None
    assert (line.task, line.pid, line.cpu, line.flags) == ("<...>", 4242, 1, "d..31")
    assert line.timestamp == 1234.56789
    assert (line.function, line.message) == ("bpf_trace_printk", "Hello World!")


def test_parses_tasks_with_dashes_and_the_tgid_column() -> None:
    """A task name with dashes and the record-tgid column still parse."""
    line = parse_trace_line("  kworker/u4:1-my-task-77 (   70) [000] ..... 9.000001: foo: a: b")
    assert line is not None
    assert (line.task, line.pid, line.function, line.message) == (
        "kworker/u4:1-my-task",
        77,
        "foo",
        "a: b",
    )


def test_other_lines_are_not_trace_lines() -> None:
    """Comments and notices are skipped, not misparsed."""
    assert parse_trace_line("# tracer: nop") is None
    assert parse_trace_line("CPU:1 [LOST 12 EVENTS]") is None
