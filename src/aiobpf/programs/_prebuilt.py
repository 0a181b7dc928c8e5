"""Sources over a prebuilt object's maps, opened one way for every program: a map together
with the per-CPU counters the program keeps beside it (``<ring>_counts``: produced and
dropped; ``<map>_dropped``: updates the full map refused), owned by the source."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from .._core.records import RecordType
from .._kernel.map_io import percpu_sums
from .._kernel.objects import BpfObject
from .._resource import release_all
from ..sources import MapPoller, RingBuffer

__all__ = ["counted_map", "counted_ring"]

T = TypeVar("T")

Owned = Sequence[Callable[[], None]]


def _with_counters(
    program: BpfObject, name: str, counters: str, slots: int, owned: Owned
) -> tuple[int, Callable[[], list[int]], list[Callable[[], None]]]:
    """Map ``name``'s fd, the reader of its ``counters`` map of ``slots`` slots, and what the
    source owns with them; on an error, ``owned`` and every fd opened are released."""
    try:
        fd, counts = program.map_fds(name, counters)
    except BaseException as exc:
        release_all(reversed(owned), after=exc)
        raise
    on_close = [*owned, lambda: os.close(counts)]
    try:
        return fd, percpu_sums(counts, slots), on_close
    except BaseException as exc:
        release_all([lambda: os.close(fd), *reversed(on_close)], after=exc)
        raise


def counted_ring(
    program: BpfObject, name: str, *, record: RecordType[T], owned: Owned, **options: Any
) -> RingBuffer[T]:
    """Ring ``name`` of ``program``, its ``[produced, dropped]`` read from ``<name>_counts``;
    the source owns ``owned`` (``program.close``, say) and releases it, on failure too.
    ``options`` as for :meth:`aiobpf.RingBuffer.from_fd`."""
    fd, counters, on_close = _with_counters(program, name, f"{name}_counts", 2, owned)
    return RingBuffer.from_fd(
        fd, name=name, record=record, counters=counters, owned=on_close, **options
    )


def counted_map(
    program: BpfObject, name: str, *, key: Any, value: Any, owned: Owned, **options: Any
) -> MapPoller[Any, Any]:
    """A poller of map ``name`` of ``program``, each reading's ``dropped`` read from
    ``<name>_dropped``; owns ``owned`` as :func:`counted_ring` does. ``options`` as for
    :meth:`aiobpf.MapPoller.from_fd`."""
    fd, dropped, on_close = _with_counters(program, name, f"{name}_dropped", 1, owned)
    return MapPoller.from_fd(
        fd, name=name, key=key, value=value, dropped=dropped, owned=on_close, **options
    )
