"""Syscall dispatch by opcode: the kernel's tail-call table, managed from async Python.

A program on the raw tracepoint ``sys_enter`` decides whether the calling task is in scope, then
tail-calls through a program array indexed by syscall number (``programs/dispatch.bpf.c``).
:class:`SyscallDispatch` installs, replaces and removes handlers per syscall while it runs, and
its :meth:`~SyscallDispatch.view` gives the events each *emit* slot sent, through the same
:class:`aiobpf.operators.Router` views that route events in user space.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import re
from collections.abc import AsyncGenerator, Iterable, Sequence
from pathlib import Path
from typing import Literal, Self

import anyio
import attrs
import numpy as np
import numpy.typing as npt
from anyio import AsyncContextManagerMixin

from .._core.records import RecordType
from .._core.validate import MaxLatency, check_id, check_reading_mode, ring_pages
from .._kernel.bcc import Program
from .._kernel.libbpf import check, libbpf
from .._kernel.map_io import MapReader
from .._kernel.objects import BpfObject
from .._kernel.syscalls import syscall_name, syscall_number
from ..errors import AttachError, MapError, NotOpenError, UnknownProgramError
from ..operators import Policy, Router, View
from ..sources import ProgramRing, RingBuffer, RingStats
from . import _constants as C
from ._constants import comm_key
from ._prebuilt import counted_ring
from ._text import include_flags, prebuilt_path

__all__ = [
    "SYSCALL_RECORD",
    "DispatchStats",
    "SyscallDispatch",
    "SyscallEvent",
    "SyscallEvents",
    "syscall_events",
]

BUILT_IN = ("emit", "count", "ignore")
Default = Literal["count", "emit", "ignore"]
_DEFAULTS = {"count": C.DEFAULT_COUNT, "emit": C.DEFAULT_EMIT, "ignore": C.DEFAULT_NOTHING}
_USER_HANDLER = re.compile(r"\bint\s+(\w+)\s*\(\s*struct\s+bpf_raw_tracepoint_args\s*\*")

#: Layout of ``struct syscall_event`` in ``programs/dispatch.bpf.c`` (88 bytes).
SYSCALL_RECORD: np.dtype[np.void] = np.dtype(
    [
        ("timestamp_ns", "<u8"),
        ("args", "<u8", (6,)),
        ("pid", "<u4"),
        ("tid", "<u4"),
        ("uid", "<u4"),
        ("nr", "<u4"),
        ("comm", f"S{C.COMM_SIZE}"),
    ],
    align=True,
)


@attrs.frozen
class SyscallEvent:
    """One syscall entry a handler emitted: who made it, which one, and its six raw arguments."""

    pid: int
    tid: int
    uid: int
    comm: str
    nr: int
    name: str
    args: tuple[int, ...]
    """The six argument registers, as unsigned 64-bit ints."""
    timestamp_ns: int

    @classmethod
    def decode(cls, batch: npt.NDArray[np.void]) -> list[SyscallEvent]:
        return [
            cls(
                pid=pid,
                tid=tid,
                uid=uid,
                comm=comm.decode(errors="replace"),
                nr=nr,
                name=syscall_name(nr),
                args=tuple(int(arg) for arg in args),
                timestamp_ns=timestamp,
            )
            for timestamp, args, pid, tid, uid, nr, comm in batch.tolist()
        ]


SYSCALL_EVENTS: RecordType[SyscallEvent] = RecordType(
    dtype=SYSCALL_RECORD, decode=SyscallEvent.decode
)


@attrs.frozen
class DispatchStats:
    """Counts of the dispatcher: ``in_scope`` syscalls that reached the table, ``fell_through``
    an empty slot (the default action), were ``ignored``; ``ia32`` syscalls of tasks in scope,
    which are not dispatched (on x86-64 they are numbered differently: 11 is execve there,
    munmap here) but counted here; the event ring's ``events``."""

    in_scope: int
    fell_through: int
    ignored: int
    ia32: int
    events: RingStats


def _names(syscalls: str | int | Iterable[str | int]) -> list[int]:
    items = [syscalls] if isinstance(syscalls, str | int) else list(syscalls)
    numbers = [syscall_number(item) for item in items]
    for nr in numbers:
        if not 0 <= nr < C.MAX_SYSCALLS:
            raise ValueError(f"syscall number must be 0 to {C.MAX_SYSCALLS - 1}, got {nr}")
    return numbers


def _load(ring_size: int, user_handlers: str) -> _Kernel:
    """The prebuilt dispatcher, loaded with a ring of ``ring_size`` bytes and tid/tgid bitmaps
    that cover pid_max, and ``user_handlers`` compiled by BCC (not attached)."""
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    words = (pid_max + 63) // 64
    dispatcher = BpfObject.load(
        prebuilt_path("dispatch"),
        max_entries={"events": ring_size, "scope_tids": words, "scope_tgids": words},
    )
    try:
        user = (
            Program.compile(user_handlers, cflags=include_flags(), attach=False)
            if user_handlers.strip()
            else None
        )
        return _Kernel(dispatcher, user, _USER_HANDLER.findall(user_handlers))
    except BaseException:
        dispatcher.close()
        raise


class _Kernel:
    """The loaded dispatcher: its handlers, scope, counters and the raw tracepoint; users'
    handlers, compiled by BCC as a program of their own, fill slots of the same table."""

    def __init__(
        self, dispatcher: BpfObject, user: Program | None, user_names: Sequence[str]
    ) -> None:
        self.dispatcher, self.user = dispatcher, user
        try:
            self.handlers = {name: dispatcher.program_fd(f"handle_{name}") for name in BUILT_IN}
            for name in user_names:
                assert user is not None
                self.handlers[name] = user.load_tail_call_target(name)
        except BaseException:
            if user is not None:
                user.close()
            raise
        self.slots: dict[int, str] = {}
        self._closed = False
        self.readers = {
            name: MapReader(
                fd=dispatcher.own_map_fd(name), name=name, key=_U32, value=np.dtype("<u8")
            )
            for name in ("syscall_counts", "fallthrough_counts", "dispatch_counts")
        }

    @property
    def closed(self) -> bool:
        return self._closed

    def attach_tracepoints(self) -> None:
        self.dispatcher.attach_tracepoints()  # dispatch on raw sys_enter; handlers stay apart

    def program_fds(self) -> dict[str, int]:
        fds = self.dispatcher.program_fds()
        if self.user is not None:
            fds.update(self.user.program_fds())
        return fds

    def detach(self) -> None:
        self.dispatcher.detach()

    def _add_id(self, map_name: str, value: int) -> None:
        """Sets bit ``value`` of a tid/tgid bitmap (one u64 word per 64 ids)."""
        key = ctypes.c_uint32(value >> 6)
        word = ctypes.c_uint64(0)
        fd = self.dispatcher.own_map_fd(map_name)
        check(libbpf().bpf_map_lookup_elem(fd, ctypes.byref(key), ctypes.byref(word)), map_name)
        word.value |= 1 << (value & 63)
        check(libbpf().bpf_map_update_elem(fd, ctypes.byref(key), ctypes.byref(word), 0), map_name)

    def set_scope(
        self, tids: Iterable[int], tgids: Iterable[int], uids: Iterable[int], comms: Iterable[str]
    ) -> None:
        flags = 0
        for bit, map_name, ids in (
            (C.SCOPE_TID, "scope_tids", tids),
            (C.SCOPE_TGID, "scope_tgids", tgids),
        ):
            for value in ids:
                self._add_id(map_name, int(value))
                flags |= bit
        for uid in uids:
            self.dispatcher.update("scope_uids", _u32(uid), b"\x01")
            flags |= C.SCOPE_UID
        for comm in comms:
            self.dispatcher.update("scope_comms", comm_key(comm), b"\x01")
            flags |= C.SCOPE_COMM
        self.dispatcher.update("dispatch_config", _u32(0), _u32(flags))

    def set_default(self, action: Default) -> None:
        if action not in _DEFAULTS:
            raise ValueError(f"default must be one of {', '.join(_DEFAULTS)}, got {action!r}")
        self.dispatcher.update("dispatch_config", _u32(1), _u32(_DEFAULTS[action]))

    def install(self, numbers: list[int], handler: str) -> None:
        if handler not in self.handlers:
            raise UnknownProgramError(
                f"no handler {handler!r}: the built-in ones are {', '.join(BUILT_IN)}, and user "
                f"handlers are the functions given in user_handlers ({', '.join(self.handlers)})"
            )
        for nr in numbers:
            try:
                self.dispatcher.update("handlers", _u32(nr), _u32(self.handlers[handler]))
            except MapError as exc:
                raise AttachError(f"putting {handler!r} in slot {nr}: {exc}") from exc
            self.slots[nr] = handler

    def remove(self, numbers: list[int]) -> None:
        fd = self.dispatcher.own_map_fd("handlers")
        for nr in numbers:
            key = ctypes.c_uint32(nr)
            if libbpf().bpf_map_delete_elem(fd, ctypes.byref(key)) < 0:
                err = ctypes.get_errno()
                if err != errno.ENOENT:  # an empty slot is already what was asked
                    raise MapError(err, f"emptying slot {nr} of the handler table")
            self.slots.pop(nr, None)

    def counts(self, map_name: str) -> dict[int, int]:
        keys, values = self.readers[map_name].read()
        return {int(k): int(v) for k, v in zip(keys.tolist(), values.tolist(), strict=True) if v}

    def close(self) -> None:
        # The kernel empties a program array only from a work queue after its last fd closes;
        # emptying the slots here frees the handler programs before close() returns.
        if self._closed:
            return
        self._closed = True
        try:
            if not self.dispatcher.closed:
                self.remove(list(self.slots))
        finally:
            try:
                if self.user is not None:
                    self.user.close()
            finally:
                self.dispatcher.close()


def _u32(value: int) -> bytes:
    return int(value).to_bytes(4, "little")


_U32 = np.dtype("<u4")


class SyscallEvents(ProgramRing[SyscallEvent, _Kernel]):
    """An async source of :class:`SyscallEvent` from the dispatcher's ring; also the kernel half
    of :class:`SyscallDispatch`. Entering loads, fills the scope and table, and attaches."""

    _name = "syscall_events()"

    def __init__(
        self,
        *,
        syscalls: Iterable[str | int] | None,
        tids: Iterable[int],
        tgids: Iterable[int],
        uids: Iterable[int],
        comms: Iterable[str],
        default: Default,
        user_handlers: str,
        ring_size: int,
        max_latency: MaxLatency,
    ) -> None:
        super().__init__()
        if default not in _DEFAULTS:
            raise ValueError(f"default must be one of {', '.join(_DEFAULTS)}, got {default!r}")
        check_reading_mode(max_latency, 0.0)
        ring_pages(ring_size)  # a power-of-two number of pages, or ValueError
        self._ring_size = ring_size
        self._max_latency = max_latency
        self._syscalls = None if syscalls is None else _names(list(syscalls))
        self._scope = (
            [check_id("tid", tid) for tid in tids],
            [check_id("tgid", tgid) for tgid in tgids],
            [check_id("uid", uid) for uid in uids],
            [str(comm) for comm in comms],
        )
        self._default: Default = default
        self._user_handlers = user_handlers

    def _compile(self) -> _Kernel:
        return _load(self._ring_size, self._user_handlers)

    def _wrap(self, program: _Kernel) -> RingBuffer[SyscallEvent]:
        return counted_ring(
            program.dispatcher,
            "events",
            record=SYSCALL_EVENTS,
            owned=[program.close],
            max_latency=self._max_latency,
        )

    def _configure(self, program: _Kernel, inner: RingBuffer[SyscallEvent]) -> None:
        program.set_scope(*self._scope)
        program.set_default(self._default)
        if self._syscalls is not None:
            program.install(self._syscalls, "emit")

    @property
    def kernel(self) -> _Kernel:
        """The running dispatcher; raises :class:`anyio.ClosedResourceError` when not running."""
        if self._program is None or self._inner is None or self._inner.closed:
            raise anyio.ClosedResourceError("the dispatcher is not running")
        return self._program


class SyscallDispatch(AsyncContextManagerMixin):
    """The syscall dispatch table, as an async context manager.

    ``tids``, ``tgids``, ``uids``, ``comms`` limit it to those tasks (decided in the kernel before
    the tail call; all given sets must match); with none it covers the whole machine. Slots start
    empty: every syscall in scope falls through to ``default`` (``"count"`` per syscall,
    ``"emit"`` an event, ``"ignore"``). ``user_handlers`` is C text of extra handlers,
    ``int name(struct bpf_raw_tracepoint_args *ctx)`` with maps of their own (read them through
    :attr:`user_program`): BCC compiles them, so they need BCC and kernel headers, and this
    (privileged) process loads them, so they must be code you trust. The dispatcher itself and
    its built-in handlers are prebuilt (CO-RE): they need neither.

    Entering loads and attaches; leaving detaches the raw tracepoint and frees the program
    array and every map. Raises :class:`aiobpf.PrivilegeError`, :class:`aiobpf.SetupError`
    (the prebuilt program is missing: run scripts/setup.sh), and for ``user_handlers`` what
    :meth:`aiobpf.lowlevel.Program.compile` raises.
    """

    def __init__(
        self,
        *,
        tids: Iterable[int] = (),
        tgids: Iterable[int] = (),
        uids: Iterable[int] = (),
        comms: Iterable[str] = (),
        default: Default = "count",
        user_handlers: str = "",
        ring_size: int = 1 << 20,
        max_latency: MaxLatency = "auto",
        buffer_size: int = 1024,
        policy: Policy = "block",
    ) -> None:
        self._source = SyscallEvents(
            syscalls=None,
            tids=tids,
            tgids=tgids,
            uids=uids,
            comms=comms,
            default=default,
            user_handlers=user_handlers,
            ring_size=ring_size,
            max_latency=max_latency,
        )
        self._default: Default = default  # what an empty slot does: view() asks
        self._buffer_size = buffer_size
        self._policy: Policy = policy
        self._router: Router[SyscallEvent] | None = None

    @property
    def _live(self) -> _Kernel:
        return self._source.kernel

    @contextlib.asynccontextmanager
    async def __asynccontextmanager__(self) -> AsyncGenerator[Self]:
        """Compiles and attaches while entering, routes while entered; leaving detaches the
        program first (so the ring's count at closing is exact), then ends every view."""
        async with self._source:
            router = Router(
                self._source.ring,
                lambda event: event.nr,
                buffer_size=self._buffer_size,
                policy=self._policy,
            )
            async with router:
                self._router = router
                try:
                    yield self
                finally:
                    self._source.detach()

    def install(self, syscalls: str | int | Iterable[str | int], handler: str) -> None:
        """Puts ``handler`` in the slots of ``syscalls`` (names or numbers), at once, while the
        program runs. Raises :class:`aiobpf.UnknownSyscallError` for an unknown syscall and
        :class:`LookupError` for an unknown handler."""
        self._live.install(_names(syscalls), handler)

    @property
    def user_program(self) -> Program | None:
        """The BCC program of ``user_handlers`` (None without any), whose maps the handlers
        fill: ``aiobpf.MapPoller.from_bcc(dispatch.user_program.bpf, "hits")``."""
        return self._live.user

    def remove(self, syscalls: str | int | Iterable[str | int]) -> None:
        """Empties the slots of ``syscalls``: they fall through to the default action again."""
        self._live.remove(_names(syscalls))

    def set_default(self, action: Default) -> None:
        """Changes what an empty slot does, while the program runs."""
        self._live.set_default(action)
        self._default = action

    @property
    def table(self) -> dict[str, str]:
        """The installed slots: ``{syscall name: handler}``."""
        return {syscall_name(nr): handler for nr, handler in sorted(self._live.slots.items())}

    @property
    def _routes(self) -> Router[SyscallEvent]:
        if self._router is None:
            raise NotOpenError("SyscallDispatch is not running yet: use it with 'async with'")
        return self._router

    def view(self, *syscalls: str | int) -> View[SyscallEvent]:
        """The events the kernel routed to *emit* for these syscalls (a Router view). Raises
        :class:`ValueError` for a syscall whose slot holds ``count`` or ``ignore``, or is empty
        while the default does not emit: its view would never yield. Install ``emit`` first."""
        routes = self._routes
        numbers = _names(list(syscalls))
        silent = {
            syscall_name(nr): how
            for nr in numbers
            if (how := self._live.slots.get(nr, f"empty, default {self._default}"))
            in ("count", "ignore", "empty, default count", "empty, default ignore")
        }
        if silent:
            said = ", ".join(f"{name} ({how})" for name, how in silent.items())
            raise ValueError(
                f"{said}: not set to emit, so a view would never yield; "
                f"install({sorted(silent)!r}, 'emit') first"
            )
        return routes.view(*numbers)

    def default_view(self) -> View[SyscallEvent]:
        """Emitted events no other view claims (such as the fall-through, with default="emit")."""
        return self._routes.default()

    def counts(self) -> dict[str, int]:
        """Calls counted by *count* handlers, by syscall name, since the start."""
        return {syscall_name(nr): n for nr, n in self._live.counts("syscall_counts").items()}

    def fallthrough_counts(self) -> dict[str, int]:
        """In-scope calls that fell through an empty slot (default "count"), by syscall name."""
        return {syscall_name(nr): n for nr, n in self._live.counts("fallthrough_counts").items()}

    @property
    def stats(self) -> DispatchStats:
        counts = self._live.counts("dispatch_counts")
        return DispatchStats(
            in_scope=counts.get(C.STAT_IN_SCOPE, 0),
            fell_through=counts.get(C.STAT_FELL_THROUGH, 0),
            ignored=counts.get(C.STAT_IGNORED, 0),
            ia32=counts.get(C.STAT_COMPAT, 0),
            events=self._source.stats,
        )


def syscall_events(
    *,
    syscalls: Iterable[str | int] | None = None,
    tids: Iterable[int] = (),
    tgids: Iterable[int] = (),
    uids: Iterable[int] = (),
    comms: Iterable[str] = (),
    ring_size: int = 1 << 20,
    max_latency: MaxLatency = "auto",
) -> SyscallEvents:
    """The given syscalls (all of them if None) of the tasks in scope, as :class:`SyscallEvent`:
    ``async with aiobpf.syscall_events(syscalls=["openat"]) as calls: async for call in calls``.

    Raises :class:`aiobpf.UnknownSyscallError` for an unknown syscall name and
    :class:`ValueError` for a bad argument; entering raises :class:`aiobpf.PrivilegeError`
    or :class:`aiobpf.SetupError` (the prebuilt program is missing: run scripts/setup.sh).
    """
    return SyscallEvents(
        syscalls=syscalls,
        tids=tids,
        tgids=tgids,
        uids=uids,
        comms=comms,
        default="emit" if syscalls is None else "ignore",
        user_handlers="",
        ring_size=ring_size,
        max_latency=max_latency,
    )
