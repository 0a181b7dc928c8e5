"""Histograms a BPF program keeps in a map (BCC's ``BPF_HISTOGRAM`` with ``bpf_log2l``,
bpftrace's ``hist()`` and ``lhist()``): bucket counts by slot, read by a
:class:`aiobpf.MapPoller`, as values with their bucket bounds, drawn in a terminal as BCC's
``print_log2_hist`` draws them.

A log2 slot ``i`` holds the values whose ``bit_length`` is ``i`` (slot 0: zero; slot ``i``:
``2**(i-1)`` to ``2**i - 1``), which is what ``bpf_log2l(v)`` computes in the program. A linear
slot ``i`` holds ``i * step`` to ``(i + 1) * step - 1``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

import attrs

from ._core import Operator, map

if TYPE_CHECKING:
    from ..sources import MapReading

__all__ = ["Histogram", "histograms", "keyed_histograms"]

Kind = Literal["log2", "linear"]

#: Width of the distribution column, as BCC draws it.
_STARS = 40


@attrs.frozen
class Histogram:
    """Counts by slot of a log2 or linear histogram, at ``time`` (Unix seconds, the reading's)."""

    kind: Kind
    counts: tuple[int, ...]
    step: int = 1
    time: float | None = None
    cumulative: bool = False
    """Whether the counts are totals since the program started (from a snapshot reading)
    rather than one interval's (a delta or drain reading)."""

    @classmethod
    def from_counts(
        cls,
        counts: Mapping[Any, int],
        kind: Kind = "log2",
        step: int = 1,
        time: float | None = None,
        cumulative: bool = False,
    ) -> Histogram:
        """From ``{slot: count}`` (a map reading's values); raises ValueError for a negative or
        non-integer slot, an unknown kind or a step below 1."""
        _check_shape(kind, step)
        slots = {_slot(key): int(count) for key, count in counts.items()}
        size = max((slot for slot, count in slots.items() if count), default=-1) + 1
        counted = tuple(slots.get(slot, 0) for slot in range(size))
        return cls(kind, counted, step, time, cumulative)

    @classmethod
    def from_reading(
        cls, reading: MapReading[Any, int], kind: Kind = "log2", step: int = 1
    ) -> Histogram:
        """From a map reading of ``{slot: count}``: at the reading's time, cumulative when it
        was a snapshot (totals since the start), else one interval's."""
        return cls.from_counts(reading.values, kind, step, reading.time, reading.mode == "snapshot")

    def slot_of(self, value: int) -> int:
        """The slot a value falls in (what the program computes)."""
        return value.bit_length() if self.kind == "log2" else value // self.step

    def bounds(self, slot: int) -> tuple[int, int]:
        """The lowest and highest value of a slot."""
        if self.kind == "linear":
            return slot * self.step, (slot + 1) * self.step - 1
        return (1 << slot) >> 1, (1 << slot) - 1

    def buckets(self) -> list[tuple[int, int, int]]:
        """``(low, high, count)`` of every slot up to the last with a count."""
        return [(*self.bounds(slot), count) for slot, count in enumerate(self.counts)]

    @property
    def total(self) -> int:
        return sum(self.counts)

    def render(self, label: str = "value") -> str:
        """The histogram as BCC's ``print_log2_hist`` prints it (log2), or as its
        ``print_linear_hist`` does (linear): one line per bucket, counts and a bar of stars."""
        if self.kind == "linear":
            return self._render_linear(label)
        last = len(self.counts) - 1
        if last <= 0:
            return ""
        wide = last > 32
        header = ("               %-29s" if wide else "     %-19s") % label
        width = 20 if wide else 10
        stars = _STARS // 2 if wide else _STARS
        peak = max(self.counts)
        lines = [f"{header} : count     distribution"]
        for slot in range(1, last + 1):
            low, high = self.bounds(slot)
            if low == high:
                low -= 1
            count = self.counts[slot]
            bar = _bar(count, peak, stars)
            lines.append(f"{low:{width}d} -> {high:<{width}d} : {count:<8d} |{bar:<{stars}}|")
        return "\n".join(lines)

    def _render_linear(self, label: str) -> str:
        if not self.counts:
            return ""
        peak = max(self.counts)
        lines = [f"     {label:<13} : count     distribution"]
        for slot, count in enumerate(self.counts):
            low = self.bounds(slot)[0]
            lines.append(
                f"        {low:<10d} : {count:<8d} |{_bar(count, peak, _STARS):<{_STARS}}|"
            )
        return "\n".join(lines)


def _check_shape(kind: Kind, step: int) -> None:
    if kind not in ("log2", "linear"):
        raise ValueError(f"kind must be 'log2' or 'linear', got {kind!r}")
    if not (isinstance(step, int) and step >= 1):
        raise ValueError(f"step must be a whole number >= 1, got {step!r}")


def _slot(key: Any) -> int:
    slot = getattr(key, "value", key)  # a ctypes key
    if isinstance(slot, bool) or not isinstance(slot, int) or slot < 0:
        raise ValueError(f"a histogram slot is a whole number >= 0, got {key!r}")
    return slot


def _bar(count: int, peak: int, width: int) -> str:
    """BCC's bar: ``width * count / peak`` stars, rounded down."""
    return "*" * min(width, width * count // peak)


def keyed_histograms(
    counts: Mapping[Any, int],
    *,
    slot: str = "slot",
    kind: Kind = "log2",
    step: int = 1,
    time: float | None = None,
    cumulative: bool = False,
) -> dict[Any, Histogram]:
    """One :class:`Histogram` per key of a keyed histogram map (a struct key with a ``slot``
    field beside the others, as BCC's ``BPF_HISTOGRAM(dist, struct key)``): by the other
    field's value (a tuple of them when there are several)."""
    groups: dict[Any, dict[int, int]] = defaultdict(dict)
    for key, count in counts.items():
        fields = attrs.asdict(key, recurse=False) if attrs.has(type(key)) else None
        if fields is None or slot not in fields:
            raise ValueError(
                f"a keyed histogram's keys are records with a {slot!r} field, got {key!r}"
            )
        slot_value = fields.pop(slot)
        group = next(iter(fields.values())) if len(fields) == 1 else tuple(fields.values())
        groups[group][slot_value] = count
    return {
        group: Histogram.from_counts(c, kind, step, time, cumulative) for group, c in groups.items()
    }


def histograms(
    kind: Kind = "log2", step: int = 1, *, slot: str | None = None
) -> Operator[Any, Any]:
    """Map readings of a histogram map as :class:`Histogram` values:
    ``MapPoller.from_bcc(bpf, "dist", mode="delta") | histograms()`` gives each interval's.
    With ``slot`` (the slot field of a struct key), each reading becomes a dict of histograms
    by the key's other field (see :func:`keyed_histograms`)."""
    _check_shape(kind, step)  # at the call, not at the first reading
    if slot is None:
        return map(lambda reading: Histogram.from_reading(reading, kind, step))
    return map(
        lambda reading: keyed_histograms(
            reading.values,
            slot=slot,
            kind=kind,
            step=step,
            time=reading.time,
            cumulative=reading.mode == "snapshot",
        )
    )
