"""Map polling: a BPF map read every ``interval`` seconds, as an async source.

A BPF program that aggregates in the kernel (a hash of counts per uid, per syscall, ...) hands
user space a small map instead of a stream of events. :class:`MapPoller` reads such a map on a
fixed schedule and yields one :class:`MapReading` per tick:

* ``"snapshot"``: every key and value, as the map holds them (cumulative counters stay
  cumulative: exec calls per uid since start, say);
* ``"delta"``: what changed since the previous reading (for counters: the increments; keys whose
  value did not change are left out);
* ``"drain"``: every key and value, atomically taken out of the map (hash maps only), so each
  reading holds what was added during its window and the map stays small.

Which is exact: the kernel takes each element out atomically, but a program that increments a
value through a pointer it looked up an instant before the element is taken out writes into the
element being freed, and that one increment is lost. Counters that only grow, read in
``"delta"`` mode, have no such window: every increment is in some reading.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar, cast

import anyio
import anyio.lowlevel
import attrs
import numpy as np
import numpy.typing as npt
from anyio.abc import ObjectReceiveStream

from .._core.validate import Mode, check_poll
from .._kernel import bcc as _bcc
from .._kernel.map_io import MapReader
from .._resource import release_all, warn_unclosed
from ._stats import MapStats

__all__ = ["MapPoller", "MapReading", "Mode"]

K = TypeVar("K")
V = TypeVar("V")


@attrs.frozen
class MapReading(Generic[K, V]):
    """One reading of a map: ``values`` by key, taken at ``time`` (Unix seconds).

    ``dropped`` counts the updates the program could not make because the map was full, since
    it was attached, from the program's per-CPU counter ``<map>_dropped``; None for a program
    that keeps none.
    """

    time: float
    values: dict[K, V]
    mode: str
    dropped: int | None = None


def _hashable(value: Any) -> Any:
    """Array fields become tuples, so that records can be dict keys."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, list):
        return tuple(_hashable(item) for item in value)
    return value


def _converter(dtype: np.dtype[Any], name: str) -> Callable[[npt.NDArray[Any]], list[Any]]:
    """Turns an array of ``dtype`` into Python values: ints stay ints, ``char[N]`` fields are
    bytes, other array fields tuples, and structs become frozen (hashable) attrs records."""
    if dtype.names is None:
        return lambda array: cast(list[Any], array.tolist())
    record = attrs.make_class(name, list(dtype.names), frozen=True)

    def convert(array: npt.NDArray[Any]) -> list[Any]:
        return [record(*map(_hashable, row)) for row in array.tolist()]

    return convert


def _char_arrays_as_bytes(dtype: np.dtype[Any]) -> np.dtype[Any]:
    """ctypes ``c_char * N`` arrives as N one-byte strings; make it one N-byte string."""
    if dtype.names is None or dtype.fields is None:
        return dtype
    formats: list[Any] = []
    for name in dtype.names:
        field = dtype.fields[name][0]
        if field.subdtype is not None and field.subdtype[0] == np.dtype("S1"):
            formats.append(np.dtype(f"S{field.itemsize}"))
        else:
            formats.append(_char_arrays_as_bytes(field))
    offsets = [dtype.fields[name][1] for name in dtype.names]
    return np.dtype(
        {
            "names": list(dtype.names),
            "formats": formats,
            "offsets": offsets,
            "itemsize": dtype.itemsize,
        }
    )


def _as_dtype(declared: Any, fallback: Any) -> np.dtype[Any]:
    """A numpy dtype from a dtype or ctypes type, or from BCC's type when none was declared."""
    dtype: np.dtype[Any] = np.dtype(fallback if declared is None else declared)
    return _char_arrays_as_bytes(dtype)


class MapPoller(ObjectReceiveStream[MapReading[K, V]]):
    """An async source of :class:`MapReading`, one per ``interval`` seconds.

    The first reading comes one interval after iteration starts; ticks are scheduled from the
    start (a slow consumer does not make the schedule drift, a late one skips no reading).

    **Cancellation**: a reading is taken and handed out with no await in between, so a
    cancelled consumer never loses the contents of a drained map.
    **Memory**: one reading (the map's size); ``delta`` mode also keeps the previous one.
    **Closing**: :meth:`aclose` (or ``async with``) closes the map fd and releases the program
    when the poller owns it; using it afterwards raises :class:`anyio.ClosedResourceError`.
    """

    def __init__(
        self,
        reader: MapReader,
        *,
        interval: float,
        mode: Mode = "snapshot",
        on_close: Sequence[Callable[[], None]] = (),
        dropped: Callable[[], list[int]] | None = None,
    ) -> None:
        self._closed = True
        check_poll(interval, mode)
        if mode == "drain" and not reader.drainable:
            raise ValueError(
                f"mode 'drain' needs a hash map, and map {reader.name!r} is not one (type "
                f"{reader.map_type}); use 'delta' for arrays"
            )
        self._reader = reader
        self._dropped = dropped
        self._interval = interval
        self._mode = mode
        self._on_close = list(on_close)
        self._keys = _converter(reader.key, "Key")
        self._values = _converter(reader.value, "Value")
        self._previous: dict[Any, Any] = {}
        self._next_tick: float | None = None
        self._sleep_scope: anyio.CancelScope | None = None
        self._readings = 0
        self._last_dropped: int | None = None
        self._closed = False

    @classmethod
    def from_bcc(
        cls,
        bpf: Any,
        name: str,
        *,
        interval: float = 2.0,
        mode: Mode = "snapshot",
        key: Any = None,
        value: Any = None,
        batch: bool = True,
        owned: Sequence[Callable[[], None]] = (),
    ) -> MapPoller[Any, Any]:
        """A poller of map ``name`` of a ``bcc.BPF`` object (which stays yours to clean up).

        ``key``/``value`` (numpy dtypes or ctypes types) default to the types BCC knows for the
        map. ``batch=False`` walks the keys instead of using batch syscalls. ``owned``: release
        callbacks run when the poller closes (and at once if building it fails). A per-CPU array
        ``<name>_dropped`` in the program, where it counts updates that found the map full, is
        read into each reading's ``dropped``.

        Raises :class:`LookupError` for an unknown map, :class:`aiobpf.MapTypeError` for a map
        type that cannot be polled or declared types of the wrong size, :class:`ValueError` for
        a bad ``interval`` or ``mode``.
        """
        try:
            table_key, table_value = _bcc.map_types(bpf, name)
            dropped = (
                _bcc.percpu_sums(bpf, f"{name}_dropped")
                if _bcc.has_map(bpf, f"{name}_dropped")
                else None
            )
            fd = _bcc.map_fd(bpf, name)
        except BaseException as exc:
            release_all(reversed(owned), after=exc)
            raise
        return cls.from_fd(
            fd,
            name=name,
            key=_as_dtype(key, table_key),
            value=_as_dtype(value, table_value),
            interval=interval,
            mode=mode,
            dropped=dropped,
            batch=batch,
            owned=owned,
        )

    @classmethod
    def from_fd(
        cls,
        fd: int,
        *,
        name: str,
        key: Any,
        value: Any,
        interval: float = 2.0,
        mode: Mode = "snapshot",
        dropped: Callable[[], list[int]] | None = None,
        batch: bool = True,
        owned: Sequence[Callable[[], None]] = (),
    ) -> MapPoller[Any, Any]:
        """A poller of the map ``fd`` of a program another loader loaded (libbpf, a map pinned
        in bpffs): the poller owns ``fd`` and closes it. ``key``/``value``: numpy dtypes or
        ctypes types of the map's keys and values; ``dropped`` reads the program's count of
        updates that found the map full (first slot). The rest and the errors are as for
        :meth:`from_bcc`."""
        on_close: list[Callable[[], None]] = [*owned, lambda: os.close(fd)]
        try:
            reader = MapReader(
                fd=fd,
                name=name,
                key=_as_dtype(key, None),
                value=_as_dtype(value, None),
                batch=batch,
            )
            return cls(reader, interval=interval, mode=mode, on_close=on_close, dropped=dropped)
        except BaseException as exc:
            release_all(reversed(on_close), after=exc)
            raise

    def read(self) -> MapReading[K, V]:
        """A reading now, in this poller's mode (a drain empties the map)."""
        if self._closed:
            raise anyio.ClosedResourceError(f"the poller of map {self._reader.name!r} is closed")
        dropped = None if self._dropped is None else self._dropped()[0]
        self._last_dropped = dropped
        keys, values = self._reader.read(delete=self._mode == "drain")
        current = dict(zip(self._keys(keys), self._values(values), strict=True))
        now = time.time()
        if self._mode == "delta":
            changes = {
                key: _subtract(value, self._previous.get(key))
                for key, value in current.items()
                if self._previous.get(key) != value
            }
            self._previous = current
            return MapReading(time=now, values=changes, mode=self._mode, dropped=dropped)
        return MapReading(time=now, values=current, mode=self._mode, dropped=dropped)

    def __aiter__(self) -> MapPoller[K, V]:
        return self

    async def __anext__(self) -> MapReading[K, V]:
        if self._closed:
            raise StopAsyncIteration
        now = anyio.current_time()
        if self._next_tick is None:
            self._next_tick = now + self._interval
            if self._mode == "delta":
                self.read()  # the baseline: changes are counted from here
        while self._next_tick <= now - self._interval:
            self._next_tick += self._interval  # a consumer that fell behind skips to the latest
        with anyio.CancelScope() as self._sleep_scope:
            await anyio.sleep_until(self._next_tick)
        if self._closed:
            raise StopAsyncIteration  # closed by another task while this one waited
        self._next_tick += self._interval
        reading = self.read()
        self._readings += 1
        return reading

    async def receive(self) -> MapReading[K, V]:
        """The next reading. Raises :class:`anyio.EndOfStream` when the poller was closed while
        waiting, and :class:`anyio.ClosedResourceError` when it was closed before."""
        if self._closed:
            raise anyio.ClosedResourceError(f"the poller of map {self._reader.name!r} is closed")
        try:
            return await self.__anext__()
        except StopAsyncIteration:
            raise anyio.EndOfStream from None

    @property
    def stats(self) -> MapStats:
        """Readings handed out, and the program's count of updates the full map refused as of
        the last reading taken, handed out or by :meth:`read` (None for a program that keeps no
        such count, or before the first)."""
        return MapStats(readings=self._readings, dropped=self._last_dropped)

    @property
    def closed(self) -> bool:
        return self._closed

    async def aclose(self) -> None:
        """Closes the map fd and releases what the poller owns; a waiting consumer's loop ends.
        Idempotent."""
        self._release()
        if self._sleep_scope is not None:
            self._sleep_scope.cancel()
        await anyio.lowlevel.checkpoint()

    def _release(self) -> None:
        if self._closed:
            return
        self._closed = True
        callbacks, self._on_close = self._on_close, []
        release_all(reversed(callbacks))

    def __del__(self) -> None:
        if getattr(self, "_closed", True):
            return
        warn_unclosed(self, f"map poller of {self._reader.name!r}")
        self._release()


def _subtract(value: Any, previous: Any) -> Any:
    """value - previous, field by field for records; a new key counts from zero."""
    if previous is None:
        return value
    if attrs.has(type(value)):
        changes = {
            field.name: getattr(value, field.name) - getattr(previous, field.name)
            for field in attrs.fields(type(value))
        }
        return type(value)(**changes)
    return value - previous
