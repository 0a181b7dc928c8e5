"""Prebuilt CO-RE objects loaded by libbpf: aiobpf's own programs with no BCC, clang or kernel
headers on the host.

Set-up compiles aiobpf's programs once with clang against the kernel's BTF (``vmlinux.h``)
into ``aiobpf/programs/<name>.bpf.o``. Loading one is libbpf's job, called through ctypes: it
sizes the maps, relocates every field read for the running kernel from its BTF
(``/sys/kernel/btf/vmlinux``), loads the programs and attaches each to the hook its section
names (``SEC("tracepoint/syscalls/sys_enter_execve")``). libbpf's messages (the verifier's
log among them) are collected while it works and end up in the error raised, instead of on
stderr.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import ctypes
import errno
import functools
import os
import platform
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Self

from .._resource import release_together
from ..errors import (
    AttachError,
    BtfError,
    CompileError,
    SetupError,
    UnknownMapError,
    UnknownProgramError,
    UnknownSymbolError,
    UnsupportedMachineError,
)
from .btf_types import ObjectTypes
from .libbpf import check, libbpf, write_element
from .libc import libc
from .privileges import check_privileges
from .tracefs import require_tracepoint
from .verifier import LOAD_ATTEMPTS, signals_held

__all__ = ["BpfObject", "check_built_for", "preload"]

_PRINT = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)
_INFO = 1  # libbpf_print_level: WARN (0) and INFO are kept, DEBUG (2) is left out
_collected = threading.local()


def _print_message(level: int, text_format: bytes, arguments: int) -> int:
    """libbpf's print callback: formats a message (``va_list``, a pointer on x86-64) into the
    current thread's collection, if one is open. Never raises: ctypes would only print it."""
    messages: list[str] | None = getattr(_collected, "messages", None)
    if messages is None or level > _INFO:
        return 0
    buffer = ctypes.create_string_buffer(1 << 18)  # the verifier's log comes as one message
    libc().vsnprintf(buffer, len(buffer), text_format, arguments)
    messages.append(buffer.value.decode(errors="replace"))
    return 0


_print = _PRINT(_print_message)  # one callback object for the life of the process


@contextlib.contextmanager
def _messages() -> Iterator[list[str]]:
    """What libbpf says on this thread meanwhile. libbpf has one print callback for the whole
    process, and BCC (which links the same libbpf) sets its own when it compiles: ours is put
    in for the call, and the one before it back afterwards."""
    messages: list[str] = []
    _collected.messages = messages
    previous = libbpf().libbpf_set_print(ctypes.cast(_print, ctypes.c_void_p))
    try:
        yield messages
    finally:
        libbpf().libbpf_set_print(previous)
        _collected.messages = None


def _said(messages: list[str], lines: int = 30) -> str:
    text = "".join(messages).rstrip()
    tail = text.splitlines()[-lines:]
    return ("\n" + "\n".join(tail)) if tail else ""


_PreloadKey = tuple[Path, tuple[tuple[str, int], ...]]
_preloads: dict[_PreloadKey, concurrent.futures.Future[BpfObject]] = {}


def _preload_key(path: Path, max_entries: dict[str, int] | None) -> _PreloadKey:
    return path, tuple(sorted((max_entries or {}).items()))


def preload(path: Path, *, max_entries: dict[str, int] | None = None) -> None:
    """Starts loading the object at ``path`` in a thread of its own, for the next
    :meth:`BpfObject.load` of the same object and sizes to take, errors included.

    The kernel verifies the programs while the caller goes on: libbpf's calls release the GIL,
    so a command that imports numpy meanwhile (as long as a load takes) starts that much
    sooner. A preload nobody takes keeps its object loaded until the process exits."""
    future: concurrent.futures.Future[BpfObject] = concurrent.futures.Future()

    def load() -> None:
        try:
            future.set_result(BpfObject._load(path, max_entries))
        except BaseException as exc:  # handed to the taker, whatever it is
            future.set_exception(exc)

    _preloads[_preload_key(path, max_entries)] = future
    threading.Thread(target=load, name=f"aiobpf preload {path.name}", daemon=True).start()


def check_built_for(path: Path) -> None:
    """:class:`aiobpf.UnsupportedMachineError` when the objects beside ``path`` were compiled
    for another machine (their build writes it in ``BUILT_FOR``): one clear line, rather
    than programs that read the wrong registers."""
    try:
        built_for = (path.parent / "BUILT_FOR").read_text().strip()
    except FileNotFoundError:
        return
    if built_for != platform.machine():
        raise UnsupportedMachineError(
            f"aiobpf's programs in {path.parent} were built for {built_for}, and this machine "
            f"is {platform.machine()}: install a wheel built for {platform.machine()} "
            "(python -m build, on such a machine)"
        )


#: Section kinds attached on their own, to the hook the section names.
_ATTACHED = frozenset({"tracepoint", "tp", "raw_tracepoint", "raw_tp", "uprobe", "uretprobe",
                       "uprobe.s", "uretprobe.s", "usdt"})  # fmt: skip


class _UprobeOptions(ctypes.Structure):
    """libbpf's ``struct bpf_uprobe_opts`` up to ``func_name`` (libbpf 0.8 and later; its
    ``sz`` tells a later libbpf where this caller's fields end)."""

    _fields_ = [
        ("sz", ctypes.c_size_t),
        ("ref_ctr_offset", ctypes.c_size_t),
        ("bpf_cookie", ctypes.c_uint64),
        ("retprobe", ctypes.c_bool),
        ("func_name", ctypes.c_char_p),
    ]


class BpfObject:
    """One CO-RE object, opened, loaded and (once :meth:`attach_tracepoints` is called)
    attached; :meth:`close` detaches and unloads it. The same surface as
    :class:`aiobpf.lowlevel.Program` where the program sources use it."""

    def __init__(self, handle: int, path: Path) -> None:
        self._handle: int | None = handle
        self.path = path
        self._memory: ctypes.Array[ctypes.c_char] | None = None
        self._links: list[int] = []
        # Attaching, detaching and closing take turns: libbpf frees the object on close, and a
        # close from another thread while this one attached crashed the process.
        self._lock = threading.RLock()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @classmethod
    def load(cls, path: Path, *, max_entries: dict[str, int] | None = None) -> BpfObject:
        """Opens the object at ``path``, sets the ``max_entries`` of the maps named, and loads
        it (the kernel verifies every program); takes it from :func:`preload` where one was
        started for the same object and sizes. Raises :class:`aiobpf.SetupError` when the file
        is missing, :class:`aiobpf.PrivilegeError` without CAP_BPF and CAP_PERFMON (or root),
        :class:`aiobpf.CompileError` (with libbpf's and the verifier's words) when the kernel
        refuses a program."""
        started = _preloads.pop(_preload_key(path, max_entries), None)
        if started is not None:
            return started.result()
        return cls._load(path, max_entries)

    @classmethod
    def _load(
        cls,
        source: Path | bytes,
        max_entries: dict[str, int] | None,
        prepare: Callable[[BpfObject], object] | None = None,
        *,
        name: str | None = None,
    ) -> BpfObject:
        """Opens ``source`` (a file, or an object's bytes called ``name``), sizes its maps,
        runs ``prepare`` on the opened object (globals, programs not to load), and loads it."""
        if isinstance(source, Path):
            if not source.is_file():
                raise SetupError(
                    f"the BPF object {source.name} is missing from {source.parent}: an aiobpf "
                    "installed from a wheel has its programs inside (python -m build makes "
                    "one); a checkout compiles them with scripts/setup.sh"
                )
            check_built_for(source)
        label = source if isinstance(source, Path) else Path(name or "<bytes>")
        check_privileges()  # EACCES from the kernel may be the verifier's refusal
        # signals held, and EAGAIN tried again: see aiobpf._kernel.verifier (an object that
        # failed to load cannot load again: each try opens it anew)
        for attempt in range(LOAD_ATTEMPTS):
            with _messages() as said, signals_held():
                loaded = cls._open(source, label, said)
                try:
                    for map_name, entries in (max_entries or {}).items():
                        check(
                            libbpf().bpf_map__set_max_entries(loaded._map(map_name), entries),
                            f"sizing map {map_name!r} of {label.name}",
                        )
                    if prepare is not None:
                        prepare(loaded)
                    result = libbpf().bpf_object__load(loaded._handle)
                except BaseException:
                    loaded.close()
                    raise
            if result >= 0:
                return loaded
            loaded.close()
            if -result != errno.EAGAIN or attempt + 1 == LOAD_ATTEMPTS:
                raise CompileError(
                    f"the kernel refused to load {label.name}: {os.strerror(-result)}{_said(said)}"
                )
        raise AssertionError("unreachable")

    @classmethod
    def _open(cls, source: Path | bytes, label: Path, said: list[str]) -> BpfObject:
        if isinstance(source, Path):
            handle = libbpf().bpf_object__open_file(os.fsencode(source), None)
            memory = None
        else:
            # libbpf reads the ELF from this memory while it opens and loads: kept alive
            memory = ctypes.create_string_buffer(source, len(source))
            handle = libbpf().bpf_object__open_mem(memory, len(source), None)
        if not handle:
            err = ctypes.get_errno()
            raise SetupError(
                f"libbpf cannot open {label}: {os.strerror(err)} (not a BPF object file?)"
                f"{_said(said)}"
            )
        loaded = cls(handle, label)
        loaded._memory = memory
        return loaded

    def _map(self, name: str) -> int:
        if self._handle is None:
            raise ValueError(f"{self.path.name} is closed")
        found = libbpf().bpf_object__find_map_by_name(self._handle, name.encode())
        if not found:
            raise UnknownMapError(f"the BPF program {self.path.name} has no map named {name!r}")
        return int(found)

    def own_map_fd(self, name: str) -> int:
        """The object's own fd of map ``name``: valid until :meth:`close`, not to be closed."""
        return check(libbpf().bpf_map__fd(self._map(name)), f"map {name!r}")

    def map_fd(self, name: str) -> int:
        """A duplicate of the fd of map ``name`` (the caller closes it)."""
        return os.dup(self.own_map_fd(name))

    def program_fd(self, name: str) -> int:
        """The fd of the loaded program ``name`` (a C function's name), valid until
        :meth:`close`: what a program array takes as a tail-call target."""
        if self._handle is None:
            raise ValueError(f"{self.path.name} is closed")
        program = libbpf().bpf_object__find_program_by_name(self._handle, name.encode())
        if not program:
            raise UnknownProgramError(
                f"the BPF object {self.path.name} has no program named {name!r}"
            )
        return check(libbpf().bpf_program__fd(program), f"program {name!r}")

    def update(self, name: str, key: bytes, value: bytes) -> None:
        """Puts ``value`` at ``key`` in map ``name`` (both laid out as the map holds them),
        through the object's own fd: what a program is set up with before it is attached."""
        write_element(self.own_map_fd(name), key, value, f"map {name!r}")

    def map_fds(self, *names: str) -> list[int]:
        """Duplicates of the fds of maps ``names``, in order (the caller closes them); on an
        error, none is left open."""
        fds: list[int] = []
        try:
            for name in names:
                fds.append(self.map_fd(name))
        except BaseException:
            for fd in fds:
                os.close(fd)
            raise
        return fds

    # -- objects of your own (aiobpf.load) ------------------------------------------------------

    def programs(self) -> dict[str, tuple[str, int]]:
        """Every program: its C function's name, with its section and handle."""
        if self._handle is None:
            raise ValueError(f"{self.path.name} is closed")
        lib = libbpf()
        found: dict[str, tuple[str, int]] = {}
        program = None
        while program := lib.bpf_object__next_program(self._handle, program):
            name = (lib.bpf_program__name(program) or b"?").decode()
            found[name] = ((lib.bpf_program__section_name(program) or b"?").decode(), program)
        return found

    def program_fds(self) -> dict[str, int]:
        """The fd of every loaded program by name (the object's own: not to be closed)."""
        lib = libbpf()
        fds = {name: lib.bpf_program__fd(handle) for name, (_, handle) in self.programs().items()}
        return {name: fd for name, fd in fds.items() if fd >= 0}

    def maps(self) -> dict[str, int]:
        """Every map by name (a data section's by its section name, ``.rodata``), with handle."""
        if self._handle is None:
            raise ValueError(f"{self.path.name} is closed")
        lib = libbpf()
        found: dict[str, int] = {}
        handle = None
        while handle := lib.bpf_object__next_map(self._handle, handle):
            found[(lib.bpf_map__name(handle) or b"?").decode()] = handle
        return found

    def map_handle(self, name: str) -> int:
        """The libbpf handle of map ``name`` (``.rodata`` and the like name a data section)."""
        return self._map(name)

    def types(self) -> ObjectTypes:
        """The types in the object's BTF; :class:`aiobpf.BtfError` when it has none."""
        if self._handle is None:
            raise ValueError(f"{self.path.name} is closed")
        btf = libbpf().bpf_object__btf(self._handle)
        if not btf:
            raise BtfError(
                f"{self.path.name} carries no BTF: compile it with clang -g "
                "(aiobpf build does), so that its types can be read"
            )
        return ObjectTypes(btf, self.path.name)

    def attach_uprobe(
        self, program: str, binary: str, symbol: str, *, retprobe: bool, pid: int | None
    ) -> None:
        """Attaches ``program`` to function ``symbol`` of ``binary`` (a path, or a library
        libbpf finds), in every process or only ``pid``; detached with the others."""
        lib = libbpf()
        with self._lock, _messages() as said:
            handle = self.programs().get(program, (None, 0))[1]
            if not handle:
                raise UnknownProgramError(
                    f"the BPF object {self.path.name} has no program named {program!r}"
                )
            options = _UprobeOptions(
                sz=ctypes.sizeof(_UprobeOptions), retprobe=retprobe, func_name=symbol.encode()
            )
            target = -1 if pid is None else pid
            link = lib.bpf_program__attach_uprobe_opts(
                handle, target, os.fsencode(binary), 0, ctypes.byref(options)
            )
            if not link:
                err = ctypes.get_errno()
                kind = "uretprobe" if retprobe else "uprobe"
                words = _said(said)
                if err == errno.ENOENT:
                    raise UnknownSymbolError(
                        f"no function {symbol!r} in {binary} for {kind} {program!r} (see "
                        f"`nm -D {binary}`; a stripped binary keeps only its dynamic "
                        f"symbols){words}"
                    )
                raise AttachError(
                    f"attaching {kind} {program!r} to {binary}:{symbol} failed: "
                    f"{os.strerror(err)}{words}"
                )
            self._links.append(link)

    def attach_tracepoints(self) -> None:
        """Attaches every program to the hook its section names (a program whose section names
        none, such as ``SEC("raw_tp")``, is a tail-call target: loaded, not attached).

        On a failure, detaches the ones attached and raises :class:`aiobpf.AttachError`
        (:class:`aiobpf.TracefsError` when tracefs is not mounted and cannot be,
        :class:`aiobpf.UnknownTracepointError` for a tracepoint this kernel does not have)."""
        lib = libbpf()
        program = None
        with self._lock, _messages() as said:
            if self._handle is None:
                raise AttachError(f"{self.path.name} is closed: it cannot be attached")
            try:
                while program := lib.bpf_object__next_program(self._handle, program):
                    section = (lib.bpf_program__section_name(program) or b"?").decode()
                    kind, _, hook = section.partition("/")
                    if not hook or kind not in _ATTACHED or not lib.bpf_program__autoload(program):
                        continue  # a tail-call target, attached by a call, or not loaded
                    if kind == "tracepoint":  # said plainly, as for BCC's programs
                        require_tracepoint(*hook.split("/", 1))
                    link = lib.bpf_program__attach(program)
                    if not link:
                        err = ctypes.get_errno()
                        raise AttachError(
                            f"attaching {self.path.name}'s program to {section} failed: "
                            f"{os.strerror(err)}{_said(said)}"
                        )
                    self._links.append(link)
            except BaseException:
                self.detach()
                raise

    def detach(self) -> None:
        """Detaches every program, all at once (each tracepoint's detach waits out a grace period
        in the kernel); the object stays loaded, its maps readable."""
        with self._lock:
            links, self._links = self._links, []
            destroy = libbpf().bpf_link__destroy
            release_together(functools.partial(destroy, link) for link in links)

    @property
    def closed(self) -> bool:
        return self._handle is None

    def close(self) -> None:
        """Detaches and unloads; idempotent."""
        with self._lock:
            self.detach()
            handle, self._handle = self._handle, None
            if handle is not None:
                libbpf().bpf_object__close(handle)
