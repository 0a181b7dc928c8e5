"""The one JSON form of aiobpf's exec events, wherever they leave the process: ``aiobpf
execsnoop --json`` lines, the service's SSE ``exec`` events, the fleet's messages, and the
recordings :func:`aiobpf.replay` plays back.

Every record is a JSON object with ``schema`` (:data:`SCHEMA_VERSION`) and ``type``:

``exec`` (one exec, :class:`aiobpf.ExecveEvent`'s fields):
    ``time`` (wall-clock seconds, float), ``timestamp_ns`` (CLOCK_MONOTONIC of the recording
    host, int), ``pid``, ``tid``, ``ppid``, ``uid``, ``gid`` (ints), ``comm`` (text, after the
    exec), ``syscall`` (``"execve"`` or ``"execveat"``), ``dirfd``, ``flags`` (execveat's),
    ``filename`` (text, as the caller gave it), ``argv`` (a list of text, at most the source's
    ``max_args``), ``filename_truncated``, ``argv_truncated`` (booleans), ``retval`` (0, or a
    negative errno), ``cgroup_id`` (int), and, from the command only, ``cgroup`` (the cgroup's
    path, or null).
``lost`` (records the source lost since the last ``lost`` record):
    ``count`` (int).
``summary`` (at the end of a run):
    ``seen`` and ``lost`` (ints): every exec reported and every one lost, in all (``aiobpf
    run`` adds ``processes`` and ``failures``).

Process records (:func:`aiobpf.process_events`; ``aiobpf exitsnoop`` and ``aiobpf run``) share
``time``, ``pid``, ``ppid``, ``uid``, ``gid``, ``comm``, ``start_ns`` (the process's start,
CLOCK_MONOTONIC) and ``cgroup_id``:

``fork``:
    ``parent_comm``.
``exec`` (of a process record: ``ancestors`` tells it from execsnoop's):
    ``tid``, ``filename``, ``ancestors`` (a list of pids, the parent first), ``exec_id``.
``exit``:
    ``tid``, ``exit_code`` (null when a signal ended the process), ``signal`` (its name, as
    "SIGKILL", or null), ``core_dumped``, ``status`` (the raw wait status), ``duration_s``.

An ``open`` record (:func:`aiobpf.open_events`; ``aiobpf opensnoop``) has ``time``,
``timestamp_ns``, ``pid``, ``tid``, ``uid``, ``comm``, ``syscall`` (``"open"``, ``"openat"`` or
``"openat2"``), ``dirfd``, ``path`` (as the caller gave it), ``flags`` and ``mode`` (ints, as
``os.O_*``), ``result`` (the new fd, or a negative errno) and ``error`` (the errno's name, or
null).

A ``connect`` record (:func:`aiobpf.connect_events`; ``aiobpf tcpconnect``) has ``time``,
``timestamp_ns``, ``pid``, ``tid``, ``uid``, ``comm``, ``ip`` (4 or 6), ``saddr``, ``sport``
(0 unless bound before the connect), ``daddr`` and ``dport`` (addresses as text).

A ``histogram`` record (``aiobpf runqlat``, ``aiobpf biolatency``) has ``time`` (the reading's,
or null), ``unit`` (``"usecs"``), ``cumulative`` (totals since the start, or one interval's),
``total`` and ``buckets``: a list of ``[low, high, count]``, the log2 slots up to the last with
a count (slot 0 is ``[0, 0, n]``: below one unit).

Text the kernel held as bytes that are not UTF-8 is decoded with U+FFFD in their place (the
same in every form). A reader ignores fields it does not know; a newer schema adds fields and
raises the version only when a field changes its meaning.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs

from .errors import RecordingError
from .redaction import DEFAULT, Redaction

if TYPE_CHECKING:
    from .operators._histogram import Histogram
    from .programs._connects import ConnectEvent
    from .programs._execve_event import ExecveEvent
    from .programs._opens import OpenEvent
    from .programs._process import ProcessEvent

__all__ = [
    "EXEC_FIELDS",
    "SCHEMA_VERSION",
    "connect_record",
    "event_from_record",
    "exec_record",
    "histogram_record",
    "lost_record",
    "open_record",
    "process_record",
    "summary_record",
]

SCHEMA_VERSION = 1

#: The fields of an ``exec`` record taken from the event, in the order they are written.
EXEC_FIELDS = (
    "time", "timestamp_ns", "pid", "tid", "ppid", "uid", "gid", "comm", "syscall", "dirfd",
    "flags", "filename", "argv", "filename_truncated", "argv_truncated", "retval", "cgroup_id",
)  # fmt: skip

_TYPES: dict[str, type | tuple[type, ...]] = {
    "time": (int, float), "timestamp_ns": int, "pid": int, "tid": int, "ppid": int,
    "uid": int, "gid": int, "comm": str, "syscall": str, "dirfd": int, "flags": int,
    "filename": str, "argv": list, "filename_truncated": bool, "argv_truncated": bool,
    "retval": int, "cgroup_id": int,
}  # fmt: skip


def exec_record(
    event: ExecveEvent, *, redaction: Redaction = DEFAULT, **extra: Any
) -> dict[str, Any]:
    """The ``exec`` record of ``event``, its argv's secrets hidden by ``redaction``
    (:mod:`aiobpf.redaction`; ``NONE`` keeps them), with ``extra`` fields after its own
    (``cgroup``)."""
    record: dict[str, Any] = {"schema": SCHEMA_VERSION, "type": "exec"}
    for name in EXEC_FIELDS:
        record[name] = getattr(event, name)
    record["argv"] = list(redaction.argv(event.argv))
    record.update(extra)
    return record


def process_record(event: ProcessEvent) -> dict[str, Any]:
    """The ``fork``, ``exec`` or ``exit`` record of a process event."""
    record: dict[str, Any] = {"schema": SCHEMA_VERSION, "type": event.type}
    record.update(attrs.asdict(event))
    del record["timestamp_ns"]
    return record


def connect_record(event: ConnectEvent) -> dict[str, Any]:
    """The ``connect`` record of a connect event."""
    record: dict[str, Any] = {"schema": SCHEMA_VERSION, "type": "connect"}
    record.update(attrs.asdict(event))
    return record


def open_record(event: OpenEvent) -> dict[str, Any]:
    """The ``open`` record of an open event."""
    record: dict[str, Any] = {"schema": SCHEMA_VERSION, "type": "open"}
    record.update(attrs.asdict(event))
    record["error"] = event.error
    return record


def histogram_record(histogram: Histogram, unit: str) -> dict[str, Any]:
    """The ``histogram`` record of a histogram of ``unit``."""
    return {
        "schema": SCHEMA_VERSION,
        "type": "histogram",
        "time": histogram.time,
        "unit": unit,
        "cumulative": histogram.cumulative,
        "total": histogram.total,
        "buckets": [list(bucket) for bucket in histogram.buckets()],
    }


def lost_record(count: int) -> dict[str, Any]:
    return {"schema": SCHEMA_VERSION, "type": "lost", "count": count}


def summary_record(seen: int, lost: int, **extra: int) -> dict[str, Any]:
    return {"schema": SCHEMA_VERSION, "type": "summary", "seen": seen, "lost": lost, **extra}


def event_from_record(record: Mapping[str, Any]) -> ExecveEvent:
    """The :class:`aiobpf.ExecveEvent` an ``exec`` record describes. Raises
    :class:`aiobpf.RecordingError` for a record of another schema version, a missing field or
    one of the wrong type (naming it)."""
    from .programs._execve_event import ExecveEvent

    if record.get("schema") != SCHEMA_VERSION:
        raise RecordingError(
            f"a record of schema {record.get('schema')!r}: this aiobpf reads schema "
            f"{SCHEMA_VERSION}"
        )
    values: dict[str, Any] = {}
    for name, kind in _TYPES.items():
        try:
            value = record[name]
        except KeyError:
            raise RecordingError(f"an exec record without {name!r}") from None
        bad_bool = isinstance(value, bool) and kind is int
        if bad_bool or not isinstance(value, kind):
            raise RecordingError(
                f"an exec record whose {name!r} is {type(value).__name__}, not "
                f"{getattr(kind, '__name__', 'a number')}"
            )
        values[name] = value
    argv = values["argv"]
    if not all(isinstance(arg, str) for arg in argv):
        raise RecordingError("an exec record whose 'argv' is not a list of text")
    values["argv"] = tuple(argv)
    values["time"] = float(values["time"])
    return ExecveEvent(message="", **values)
