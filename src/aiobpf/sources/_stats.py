"""Counters a source exposes, so that no loss is silent: every source has a ``stats`` property
returning one of these frozen records."""

from __future__ import annotations

import attrs

__all__ = ["MapStats", "RingStats", "TraceStats"]


@attrs.frozen
class RingStats:
    """What a ring buffer source has seen.

    ``produced`` and ``dropped`` come from the BPF program's own per-CPU counters (the kernel keeps
    no drop count for ring buffers); they are ``None`` for a program that does not keep them. Once
    the ring is drained (and always once the source is closed),
    ``received + pending + unread + dropped + malformed == produced``.
    """

    received: int
    """Records handed to the consumer (in batches or one by one)."""
    pending: int
    """Records taken from the ring and held by the source, not yet handed out (at closing: the
    records the source held and discarded)."""
    dropped: int | None
    """Records the program could not reserve room for (ring full)."""
    produced: int | None
    """Records the program tried to submit."""
    wakeups: int
    """Times the consumer woke up to read."""
    batches: int
    """Non-empty batches read."""
    malformed: int = 0
    """Records skipped because their size was not the declared record's (each time, the next
    read raised :class:`aiobpf.RecordLayoutError`)."""
    unread: int = 0
    """Records still in the ring when the source closed, taken out and counted then. aiobpf's
    programs are detached first, so nothing comes after."""
    lost: int | None = None
    """Perf buffers only: samples the kernel had no room for, as it reported them (with the
    next sample that fit). Rings keep no such count."""


@attrs.frozen
class MapStats:
    """What a map poller has seen."""

    readings: int
    """Readings handed to the consumer."""
    dropped: int | None
    """The program's count of updates the full map had no room for, as of the last reading
    (``None`` when the program keeps no ``<map>_dropped`` count)."""


@attrs.frozen
class TraceStats:
    """What a trace pipe source has seen. The kernel's trace buffer overwrites lines nobody
    reads and keeps no count of them, so there is no ``dropped``."""

    received: int
    """Lines handed to the consumer."""
    skipped: int
    """Lines read from the pipe that the ``keep`` selection left out."""
    stale: int = 0
    """Lines from before the source opened, left out (``fresh=True``)."""
