"""A CO-RE object of your own (``.bpf.o``), loaded by libbpf: :func:`load`.

No BCC, clang or kernel headers on the host: the object carries its BTF, from which records,
map keys and values and globals are typed, and its CO-RE relocations, which libbpf resolves
against the running kernel. Parameters set ``const volatile`` globals before the verifier sees
the programs; sections the kernel cannot run are set aside before it does.
"""

from __future__ import annotations

import ctypes
import difflib
import functools
import os
import platform
import shutil
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any

import anyio.to_thread

from .._core.records import RecordType, record_type
from .._core.validate import MaxLatency
from .._kernel.btf_types import ObjectTypes
from .._kernel.features import unsupported_section
from .._kernel.libbpf import check, libbpf
from .._kernel.map_io import percpu_sums
from .._kernel.objects import BpfObject
from .._kernel.tracefs import tracepoint_exists
from .._resource import release_all
from ..errors import (
    RecordLayoutError,
    UnknownMapError,
    UnknownProgramError,
    UnknownSymbolError,
    UnsupportedProgramError,
)
from ._globals import python_value, section_size, variable_named, write_params
from ._maps import MapPoller, Mode
from ._own import OwnProgram, Record
from ._perf import PerfBuffer
from ._ring import RingBuffer

__all__ = ["CoreProgram", "load", "set_aside_unsupported"]


class CoreProgram(OwnProgram):
    """A CO-RE object (``.bpf.o``) libbpf loads; made by :func:`load`.

    On entering, programs attach by their sections: ``tracepoint/CATEGORY/EVENT``,
    ``raw_tp/EVENT``, ``uprobe/BINARY:FUNCTION`` and ``uretprobe/...``. A bare ``uprobe``
    section is attached by :meth:`attach_uprobe`; other bare sections are loaded only (tail-call
    targets)."""

    def __init__(
        self,
        source: str | os.PathLike[str] | bytes,
        *,
        params: Mapping[str, Any] | None = None,
        max_entries: Mapping[str, int] | None = None,
        skip_unsupported: bool = False,
        optional: Collection[str] = (),
    ) -> None:
        if isinstance(source, bytes | bytearray):
            self._source: Path | bytes = bytes(source)
            what = "the BPF object given as bytes"
        elif isinstance(source, str | os.PathLike):
            self._source = Path(source)
            what = f"the BPF object {self._source.name}"
        else:
            raise TypeError(f"load() takes a path or an object's bytes, got {source!r}")
        super().__init__(what)
        self._params = dict(params or {})
        self._max_entries = dict(max_entries or {})
        self._skip_unsupported = skip_unsupported
        self._optional = frozenset(optional)
        self._object: BpfObject | None = None
        self._types: ObjectTypes | None = None
        #: programs left out, by name, with why (and what to use instead)
        self.skipped: dict[str, str] = {}

    @property
    def _loaded(self) -> bool:
        return self._object is not None

    def _load(self) -> None:
        self._object = BpfObject._load(
            self._source,
            self._max_entries,
            self._prepare,
            name=None if isinstance(self._source, Path) else "<bytes>",
        )
        self._types = self._object.types()

    def _prepare(self, loaded: BpfObject) -> None:
        """Before the kernel sees it: programs this kernel cannot run are not loaded, and the
        parameters are written into the object's data sections."""
        skipped = set_aside_unsupported(loaded, refuse=not self._skip_unsupported)
        programs = loaded.programs()
        unknown = self._optional - set(programs)
        if unknown:
            raise UnknownProgramError(
                f"{self._what} has no program {sorted(unknown)[0]!r} (optional=); "
                f"its programs: {', '.join(programs)}"
            )
        for name in self._optional - set(skipped):
            section, handle = programs[name]
            kind, _, hook = section.partition("/")
            category, _, event = hook.partition("/")
            if kind in ("tracepoint", "tp") and not tracepoint_exists(category, event):
                skipped[name] = f"this kernel has no tracepoint {category}:{event}"
                check(libbpf().bpf_program__set_autoload(handle, False), f"program {name!r}")
        self.skipped = skipped
        if self._params:
            write_params(loaded, loaded.types(), self._params)

    def _attach(self) -> None:
        self._program.attach_tracepoints()

    def _program_fds(self) -> dict[str, int]:
        return self._program.program_fds()

    def _detach(self) -> None:
        if self._object is not None:
            self._object.detach()

    def _close_program(self) -> None:
        if self._object is not None:
            self._object.close()

    @property
    def _program(self) -> BpfObject:
        self._require_open()
        assert self._object is not None
        return self._object

    # -- attaching ------------------------------------------------------------------------------

    async def attach_uprobe(
        self,
        program: str,
        binary: str,
        symbol: str,
        *,
        retprobe: bool = False,
        pid: int | None = None,
    ) -> None:
        """Attaches ``program`` (a C function in a bare ``SEC("uprobe")``) to function
        ``symbol`` of ``binary`` (a path, a command on ``PATH`` or a library file name such as
        ``libc.so.6``), in every process or only in ``pid``; with ``retprobe``, to its return.
        Detached when the object closes. Uprobes need no kprobes.

        Raises :class:`aiobpf.UnknownProgramError`, :class:`aiobpf.UnknownSymbolError` (no such
        binary or function) or :class:`aiobpf.AttachError`."""
        loaded = self._program
        path = _find_binary(binary)
        attach = functools.partial(
            loaded.attach_uprobe, program, path, symbol, retprobe=retprobe, pid=pid
        )
        await anyio.to_thread.run_sync(attach)

    # -- sources --------------------------------------------------------------------------------

    def ring(
        self,
        name: str,
        *,
        record: Record = None,
        counters: str | None = "auto",
        max_latency: MaxLatency = "auto",
        busy_poll: float = 0.0,
    ) -> RingBuffer[Any]:
        """A source over ring buffer ``name``: ``record`` is the name of a struct in the
        object's BTF (records come with its fields; char arrays as text), a numpy dtype, a
        ctypes structure or a :class:`aiobpf.lowlevel.RecordType`. ``counters``, and the
        rest, are as for :meth:`aiobpf.RingBuffer.from_bcc` (``<name>_counts``: the program's
        ``[produced, dropped]``). Closed with the object, if not before."""
        layout = self._record(name, record)
        fd, counter_reader, owned = self._map_with_counters(name, counters, f"{name}_counts", 2)
        ring = RingBuffer.from_fd(
            fd,
            name=name,
            record=layout,
            counters=counter_reader,
            max_latency=max_latency,
            busy_poll=busy_poll,
            owned=owned,
        )
        return self._keep(ring)

    def perf_buffer(
        self,
        name: str,
        *,
        record: Record = None,
        page_cnt: int = 64,
        counters: str | None = "auto",
        order_by: str | None = None,
        max_latency: MaxLatency = "auto",
        busy_poll: float = 0.0,
    ) -> PerfBuffer[Any]:
        """A source over perf event array ``name`` (``bpf_perf_event_output``); ``record`` as
        for :meth:`ring`, the rest as for :meth:`aiobpf.PerfBuffer.from_bcc`."""
        self._require_open()
        layout = self._record(name, record)
        fd, counter_reader, owned = self._map_with_counters(name, counters, f"{name}_counts", 2)
        perf = PerfBuffer.from_fd(
            fd,
            name=name,
            record=layout,
            page_cnt=page_cnt,
            counters=counter_reader,
            order_by=order_by,
            max_latency=max_latency,
            busy_poll=busy_poll,
            owned=owned,
        )
        return self._keep(perf)

    def map(
        self,
        name: str,
        *,
        interval: float = 2.0,
        mode: Mode = "snapshot",
        key: Any = None,
        value: Any = None,
        batch: bool = True,
    ) -> MapPoller[Any, Any]:
        """A poller of map ``name``, a reading every ``interval`` seconds (see
        :class:`aiobpf.MapPoller`); keys and values have the types the object's BTF gives them
        unless declared. ``<name>_dropped`` (a per-CPU array) is read into ``dropped``."""
        types = self._object_types
        handle = self._known_map(name)
        if key is None or value is None:
            key_id = libbpf().bpf_map__btf_key_type_id(handle)
            value_id = libbpf().bpf_map__btf_value_type_id(handle)
            if not key_id or not value_id:
                raise RecordLayoutError(
                    f"map {name!r} of {self._what} has no key and value types in BTF (declare "
                    "it with __type(key, ...) and __type(value, ...)), or give key= and value="
                )
            key = types.ctype(key_id, f"{name} key") if key is None else key
            value = types.ctype(value_id, f"{name} value") if value is None else value
        fd, dropped, owned = self._map_with_counters(name, "auto", f"{name}_dropped", 1)
        poller = MapPoller.from_fd(
            fd,
            name=name,
            key=key,
            value=value,
            interval=interval,
            mode=mode,
            dropped=dropped,
            batch=batch,
            owned=owned,
        )
        return self._keep(poller)

    # -- globals --------------------------------------------------------------------------------

    def variable(self, name: str) -> Any:
        """The value of global ``name`` now (``.bss``, ``.data``, ``.rodata``): an int, a
        float, text for a char array, a list for other arrays, a structure for a struct."""
        loaded = self._program
        variable = variable_named(self._object_types, name, self._what)
        fd = loaded.own_map_fd(variable.section)
        size = section_size(loaded, variable.section)
        buffer = ctypes.create_string_buffer(size)
        key = ctypes.c_uint32(0)
        check(libbpf().bpf_map_lookup_elem(fd, ctypes.byref(key), buffer), f"global {name!r}")
        ctype = self._object_types.ctype(variable.type_id, name)
        raw = buffer.raw[variable.offset : variable.offset + variable.size]
        return python_value(ctype.from_buffer_copy(raw))

    # -- helpers --------------------------------------------------------------------------------

    @property
    def _object_types(self) -> ObjectTypes:
        self._require_open()
        assert self._types is not None
        return self._types

    def _known_map(self, name: str) -> int:
        maps = self._program.maps()
        if name not in maps:
            visible = sorted(m for m in maps if not m.startswith(".") and "." not in m)
            close = difflib.get_close_matches(name, visible, n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise UnknownMapError(
                f"{self._what} has no map named {name!r}{hint}; it has: {', '.join(visible)}"
            )
        return maps[name]

    def _record(self, name: str, record: Record) -> RecordType[Any]:
        self._known_map(name)
        if record is None:
            raise RecordLayoutError(
                f"map {name!r} of {self._what} carries bytes whose type the object does not "
                "say: name the struct the program writes (record='event') or declare one"
            )
        if isinstance(record, str):
            types = self._object_types
            return record_type(types.ctype(types.find(record), record))
        return record_type(record)

    def _map_with_counters(
        self, name: str, counters: str | None, default: str, slots: int
    ) -> tuple[int, Callable[[], list[int]] | None, list[Callable[[], None]]]:
        """A duplicate of map ``name``'s fd, the reader of its counters map, and what a source
        over it owns (the counters' fd); nothing stays open on an error."""
        loaded = self._program
        if counters == "auto":
            counters = default if default in loaded.maps() else None
        elif counters is not None:
            self._known_map(counters)
        fd = loaded.map_fd(name)
        if counters is None:
            return fd, None, []
        try:
            counts = loaded.map_fd(counters)
        except BaseException:
            os.close(fd)
            raise
        owned: list[Callable[[], None]] = [lambda: os.close(counts)]
        try:
            return fd, percpu_sums(counts, slots), owned
        except BaseException as exc:
            release_all([lambda: os.close(fd), *owned], after=exc)
            raise


def set_aside_unsupported(loaded: BpfObject, *, refuse: bool) -> dict[str, str]:
    """Marks the programs of ``loaded`` this kernel cannot run as not to be loaded, and returns
    them with why; with ``refuse``, raises :class:`aiobpf.UnsupportedProgramError` instead."""
    lib = libbpf()
    skipped: dict[str, str] = {}
    for name, (section, handle) in loaded.programs().items():
        why = unsupported_section(section)
        if why is not None:
            skipped[name] = why
            check(lib.bpf_program__set_autoload(handle, False), f"program {name!r}")
    if skipped and refuse:
        listed = "; ".join(f"{name}: {why}" for name, why in skipped.items())
        raise UnsupportedProgramError(
            f"the BPF object {loaded.path.name} has programs this kernel cannot run ({listed}). "
            "Change them, or pass skip_unsupported=True to load the others"
        )
    return skipped


def load(
    source: str | os.PathLike[str] | bytes,
    *,
    params: Mapping[str, Any] | None = None,
    max_entries: Mapping[str, int] | None = None,
    skip_unsupported: bool = False,
    optional: Collection[str] = (),
) -> CoreProgram:
    """A CO-RE object of your own (a ``.bpf.o`` path, or its bytes), loaded by libbpf and
    attached on ``async with``: no BCC, clang or kernel headers on the host.

    ``params`` set globals before the kernel verifies the programs: ``const volatile`` ones
    (``.rodata``) are constants to the verifier, so a branch on one costs nothing. Each is
    checked against the object's BTF: an unknown name raises
    :class:`aiobpf.UnknownVariableError` (with the close matches), a value of the wrong type or
    out of range :class:`aiobpf.VariableTypeError`. ``max_entries`` sizes maps by name.

    A program whose kind this kernel cannot run (kprobes where it has none; fentry, fexit and
    tp_btf where it refuses BPF trampolines) is never handed to the kernel: opening raises
    :class:`aiobpf.UnsupportedProgramError` naming the tracepoint to use instead, or, with
    ``skip_unsupported=True``, loads the others and lists it in ``skipped``. ``optional``
    names programs to leave out (listed in ``skipped``) where the kernel has no tracepoint of
    the name their section gives, as ``syscalls:sys_enter_open`` off x86-64."""
    return CoreProgram(
        source,
        params=params,
        max_entries=max_entries,
        skip_unsupported=skip_unsupported,
        optional=optional,
    )


_MULTIARCH = f"{platform.machine()}-linux-gnu"
_LIBRARY_DIRS = (f"/lib/{_MULTIARCH}", f"/usr/lib/{_MULTIARCH}", "/lib64", "/usr/lib64", "/lib",
                 "/usr/lib")  # fmt: skip


def _find_binary(binary: str) -> str:
    """A path for ``binary``: a path as given, a command on ``PATH``, or a library file in the
    usual directories; :class:`aiobpf.UnknownSymbolError` when there is none."""
    if "/" in binary:
        if not Path(binary).is_file():
            raise UnknownSymbolError(f"no binary {binary} for a uprobe")
        return binary
    command = shutil.which(binary)
    if command is not None:
        return os.path.realpath(command)
    for directory in _LIBRARY_DIRS:
        candidate = Path(directory) / binary
        if candidate.is_file():
            return str(candidate.resolve())
    raise UnknownSymbolError(
        f"no command {binary!r} on PATH and no library {binary} in {', '.join(_LIBRARY_DIRS)}: "
        "give its path"
    )
