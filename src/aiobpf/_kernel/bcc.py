"""The one module that talks to BCC.

Everything that compiles, loads, attaches or detaches BPF programs goes through here, and every
failure of BCC (a bare ``Exception`` with the real cause printed on stderr) is translated into an
:mod:`aiobpf.errors` type at this boundary. The rest of aiobpf imports nothing from ``bcc`` and is
usable without it.

Programs are compiled with automatic attachment turned off: BCC attaches ``TRACEPOINT_PROBE``
functions one by one inside its constructor, and if the second fails the first stays attached until
interpreter exit. aiobpf attaches them itself, so a failure detaches what was already attached.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import difflib
import errno
import functools
import importlib
import importlib.util
import os
import re
import shutil
import sys
import tempfile
import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any, Self

import anyio
import numpy as np
import numpy.typing as npt

from .._resource import release_together
from ..errors import (
    AttachError,
    BccMissingError,
    CompileError,
    KernelHeadersError,
    KprobesUnavailableError,
    MapTypeError,
    RecordLayoutError,
    UnknownMapError,
    UnknownSymbolError,
)
from .features import kprobes_available, syscall_of
from .privileges import check_privileges
from .ring_protocol import MalformedRecords, record_stride
from .tracefs import ensure_tracefs, require_tracepoint
from .verifier import LOAD_ATTEMPTS, signals_held

__all__ = ["BccRingConsumer", "Program", "import_bcc", "map_fd", "percpu_sums"]

_TRACEPOINT_NAME = re.compile(r"^tracepoint__(\w+?)__(\w+)$")


#: Where Debian's (and Ubuntu's) python3-bpfcc puts the module. BCC is not on PyPI, and a
#: virtual environment does not see the system's packages: aiobpf takes BCC from here, and
#: nothing else of the system's.
DEBIAN_BCC = Path("/usr/lib/python3/dist-packages/bcc")


def import_bcc() -> ModuleType:
    """The ``bcc`` module: the one this Python imports, else Debian's python3-bpfcc (BCC's
    Python side is ctypes over libbcc, the same for every Python 3), so that any virtual
    environment can use it. Raises :class:`BccMissingError` with the install command."""
    try:
        return importlib.import_module("bcc")
    except ImportError as exc:
        missing = exc
    init = DEBIAN_BCC / "__init__.py"
    if init.is_file():
        spec = importlib.util.spec_from_file_location(
            "bcc", init, submodule_search_locations=[str(DEBIAN_BCC)]
        )
        if spec is not None and spec.loader is not None:
            module = importlib.util.module_from_spec(spec)
            sys.modules["bcc"] = module
            try:
                spec.loader.exec_module(module)
            except Exception as exc:
                del sys.modules["bcc"]
                raise BccMissingError(f"BCC's module at {DEBIAN_BCC} fails to load: {exc}") from exc
            return module
    raise BccMissingError(
        "the bcc Python module is needed for your own BCC programs only (aiobpf's tools and "
        "sources need none): BCC is not on PyPI; install Debian's python3-bpfcc (apt-get "
        f"install python3-bpfcc), which aiobpf finds at {DEBIAN_BCC} from any virtual "
        "environment"
    ) from missing


def check_headers() -> None:
    """Raises :class:`KernelHeadersError` unless BCC can find headers for the running kernel."""
    build = Path("/lib/modules") / os.uname().release / "build"
    if not (build / "include").is_dir():
        raise KernelHeadersError(
            f"BCC compiles against kernel headers and found none at {build}; install them "
            f"(apt-get install linux-headers-{os.uname().release}, or run scripts/setup.sh bcc, "
            f"which links the distribution's headers when no package matches this kernel)"
        )


#: fd 2 is the process's: two captures overlapping from two threads would each restore what
#: the other had put there, leaving fd 2 on a deleted file for good. One at a time.
_STDERR_CAPTURE = threading.Lock()


@contextlib.contextmanager
def _captured_stderr() -> Iterator[list[str]]:
    """Captures what C code writes to fd 2 (clang's diagnostics) for the duration; captures
    from several threads take turns."""
    out: list[str] = []
    with _STDERR_CAPTURE, tempfile.TemporaryFile() as sink:
        saved = os.dup(2)
        os.dup2(sink.fileno(), 2)
        try:
            yield out
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            out.append(sink.read().decode(errors="replace"))


def _forget(bpf: Any) -> None:
    """Detaches and closes ``bpf`` and drops BCC's atexit reference so it can be collected."""
    try:
        bpf.cleanup()
    finally:
        atexit.unregister(bpf.cleanup)


def map_fd(bpf: Any, name: str) -> int:
    """A duplicate of the fd of map ``name`` of a ``bcc.BPF`` object (the caller closes it)."""
    return os.dup(_table(bpf, name).get_fd())


def map_types(bpf: Any, name: str) -> tuple[Any, Any]:
    """The ctypes key and (per-CPU: single) value types BCC derived for map ``name``."""
    table = _table(bpf, name)
    return table.Key, getattr(table, "sLeaf", table.Leaf)


def require_map(bpf: Any, name: str) -> None:
    """:class:`aiobpf.UnknownMapError` (naming the program's maps that come close) unless the
    ``bcc.BPF`` object has a map ``name``: asked first, so that a misspelt name is not taken
    for a record to declare."""
    _table(bpf, name)


def _map_names(bpf: Any) -> list[str]:
    """The names of every map of a ``bcc.BPF`` object, from libbcc (whose Python side declares
    no prototypes for these two: declared here, without touching BCC's own)."""
    lib = import_bcc().libbcc.lib
    count = ctypes.CFUNCTYPE(ctypes.c_size_t, ctypes.c_void_p)(("bpf_num_tables", lib))
    name_of = ctypes.CFUNCTYPE(ctypes.c_char_p, ctypes.c_void_p, ctypes.c_size_t)(
        ("bpf_table_name", lib)
    )
    return [
        (name_of(bpf.module, index) or b"").decode(errors="replace")
        for index in range(count(bpf.module))
    ]


def _table(bpf: Any, name: str) -> Any:
    try:
        return bpf[name.encode()]
    except KeyError:
        names = _map_names(bpf)
        close = difflib.get_close_matches(name, names, n=3)
        hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
        shown = ", ".join(map(repr, sorted(names))) or "none"
        raise UnknownMapError(
            f"the BPF program has no map named {name!r}{hint} (its maps: {shown})"
        ) from None


def event_fields(bpf: Any, name: str) -> list[tuple[str, str]]:
    """The fields of the struct the program writes into ring or perf buffer ``name``, as BCC's
    front end parsed them from its ``ringbuf_output``/``ringbuf_reserve``/``perf_submit``
    calls: ``(name, C type)`` in order; empty when it saw none."""
    bcc = import_bcc()
    lib, module, key = bcc.libbcc.lib, bpf.module, name.encode()
    fields = []
    for index in range(lib.bpf_perf_event_fields(module, key)):
        field_name, _, field_type = (
            lib.bpf_perf_event_field(module, key, index).decode().partition("#")
        )
        fields.append((field_name, field_type))
    return fields


def has_map(bpf: Any, name: str) -> bool:
    try:
        bpf[name.encode()]
    except KeyError:
        return False
    return True


def percpu_sums(bpf: Any, name: str) -> Callable[[], list[int]]:
    """A reader of per-CPU array ``name``: one sum over CPUs per slot."""
    bcc = import_bcc()
    table = bpf[name.encode()]
    if not isinstance(table, bcc.table.PerCpuArray):
        raise MapTypeError(f"map {name!r} is a {type(table).__name__}, expected a per-CPU array")
    slots = [ctypes.c_int(i) for i in range(table.max_entries)]

    def read() -> list[int]:
        return [int(table.sum(slot).value) for slot in slots]

    return read


#: The BCC consumer of each ring, per ``bcc.BPF`` object: BCC opens a ring's consumer once per
#: object (a second ``open_ring_buffer`` fails), so sources reading one ring in turn share it.
_CONSUMERS: weakref.WeakKeyDictionary[Any, dict[str, BccRingConsumer]] = weakref.WeakKeyDictionary()


class BccRingConsumer(MalformedRecords):
    """BCC's own per-record ring consumer, for CPUs where the mmap reader's ordering argument fails.

    Each record is copied out of the ring inside BCC's callback (the pointer is only valid there).
    Get one with :meth:`acquire`: one per ring of a ``bcc.BPF`` object, used by one source at a
    time. BCC's consume call drains every ring of the object: records of another ring wait in
    that ring's consumer, and :meth:`pending_bytes` says they are there.
    """

    @classmethod
    def acquire(cls, bpf: Any, name: str, record: np.dtype[np.void]) -> BccRingConsumer:
        """The consumer of ring ``name`` for a new source; :meth:`release` gives it back.

        Raises :class:`anyio.BusyResourceError` while another source reads the ring, and
        :class:`aiobpf.RecordLayoutError` for a record size other than the one it was opened
        with (records already taken would be misread)."""
        consumers = _CONSUMERS.setdefault(bpf, {})
        consumer = consumers.get(name)
        if consumer is None:
            consumer = consumers[name] = cls(bpf, name, record)
        elif consumer._in_use:
            raise anyio.BusyResourceError(f"reading ring {name!r} with BCC's consumer")
        elif consumer._record.itemsize != record.itemsize:
            raise RecordLayoutError(
                f"ring {name!r} is already read through BCC with {consumer._record.itemsize}-byte "
                f"records, not {record.itemsize}"
            )
        consumer._record = record
        consumer._in_use = True
        return consumer

    def release(self) -> None:
        """The source is done with it; records it had not taken stay for the next one."""
        self._in_use = False

    def __init__(self, bpf: Any, name: str, record: np.dtype[np.void]) -> None:
        self._bpf = bpf
        self._name = name
        self._record = record
        self._chunks: list[bytes] = []
        self._in_use = False
        size = record.itemsize

        def on_record(_ctx: Any, data: int, length: int) -> int:
            if length != size:  # skipped and counted, as the mmap reader does
                self._count_malformed(
                    f"ring record is {length} bytes, the declared record is {size}; records "
                    f"of another size are skipped and counted"
                )
                return 0
            self._chunks.append(ctypes.string_at(data, length))
            return 0

        self._callback = on_record
        bpf[name.encode()].open_ring_buffer(on_record)

    #: BCC's consumer cannot see the ring: no size, no pending bytes.
    data_size = None

    @property
    def stride(self) -> int:
        return record_stride(self._record.itemsize)

    def pending_bytes(self) -> int:
        """Bytes of records taken from the ring (by any source's consume call) and not read."""
        return sum(len(chunk) for chunk in self._chunks)

    def read(self) -> npt.NDArray[np.void]:
        """Drains every ring of the BPF object; the records as a new array (records of another
        size than declared are skipped, counted in :attr:`malformed` and told by
        :meth:`take_error`)."""
        self._bpf.ring_buffer_consume()
        chunks, self._chunks = self._chunks, []
        return np.frombuffer(bytearray(b"".join(chunks)), dtype=self._record)


def _find_binary(binary: str) -> str:
    """The path of a uprobe's binary: as given when it holds a slash, else a command on PATH,
    else a library (``"c"``: libc); UnknownSymbolError when there is none."""
    if os.sep in binary:
        if not os.path.isfile(binary):
            raise UnknownSymbolError(f"no binary {binary!r} to attach a uprobe to")
        return binary
    command = shutil.which(binary)
    if command is not None:
        return os.path.realpath(command)
    library = import_bcc().BPF.find_library(binary.encode())
    if library:
        return bytes(library).decode()
    raise UnknownSymbolError(
        f"no binary {binary!r} on PATH and no library lib{binary}.so: give its path"
    )


class Program:
    """A compiled and attached ``bcc.BPF`` object that aiobpf owns and must detach.

    ``with Program.compile(text) as program:`` detaches and closes it on leaving, as BCC's
    ``BPF`` does; :meth:`close` does the same by hand.
    """

    def __init__(self, bpf: Any) -> None:
        self.bpf = bpf
        self._closed = False

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @classmethod
    def compile(cls, text: str, *, cflags: Sequence[str] = (), attach: bool = True) -> Program:
        """Compiles ``text``, loads it, and attaches its ``TRACEPOINT_PROBE`` functions (with
        ``attach=False``, later, by :meth:`attach_tracepoints`: after its maps are filled).

        Raises :class:`BccMissingError`, :class:`PrivilegeError`, :class:`KernelHeadersError`,
        :class:`TracefsError`, :class:`UnknownTracepointError` (checked before compiling, by
        name, against tracefs) or :class:`CompileError` (with clang's or the verifier's words).
        """
        bcc = import_bcc()
        check_privileges()
        check_headers()
        ensure_tracefs()
        for category, event in re.findall(r"TRACEPOINT_PROBE\(\s*(\w+)\s*,\s*(\w+)\s*\)", text):
            require_tracepoint(category, event)

        class _Deferred(bcc.BPF):  # type: ignore[misc,name-defined]
            def __init__(self, **kwargs: Any) -> None:
                try:
                    super().__init__(**kwargs)
                except BaseException:
                    atexit.unregister(self.cleanup)  # nothing is attached yet: let it go
                    raise

            def _trace_autoload(self) -> None:
                """Attachment is done by Program, so a failure can detach what came before."""

        failed: Exception | None
        with _captured_stderr() as diagnostics:
            try:
                bpf = _Deferred(text=text.encode(), cflags=list(cflags))
            except Exception as exc:
                failed = exc
            else:
                failed = None
        if failed is not None:
            raise CompileError(
                f"BCC could not compile the BPF program: {failed}\n{diagnostics[0].strip()}"
            ) from failed
        program = cls(bpf)
        if attach:
            try:
                program.attach_tracepoints()
            except BaseException:
                program.close()
                raise
        return program

    def attach_tracepoints(self) -> None:
        """Attaches every ``TRACEPOINT_PROBE`` function of the program; on a failure, what was
        attached before it stays attached until :meth:`close`."""
        bcc = import_bcc()
        module = self.bpf.module
        names = [
            bcc.lib.bpf_function_name(module, i).decode()
            for i in range(bcc.lib.bpf_num_functions(module))
        ]
        for name in names:
            match = _TRACEPOINT_NAME.match(name)
            if match:
                self.attach_tracepoint(match[1], match[2], name)

    def _load(self, fn_name: str, prog_type: int) -> Any:
        # signals held, and EAGAIN tried again: see aiobpf._kernel.verifier
        for attempt in range(LOAD_ATTEMPTS):
            try:
                with signals_held():
                    return self.bpf.load_func(fn_name.encode(), prog_type)
            except Exception as exc:
                err = ctypes.get_errno()
                if err == errno.EAGAIN and attempt + 1 < LOAD_ATTEMPTS:
                    continue
                raise self._load_error(fn_name, exc, err) from exc
        raise AssertionError("unreachable")

    @staticmethod
    def _load_error(fn_name: str, exc: Exception, err: int) -> CompileError:
        return CompileError(
            f"the kernel refused to load BPF function {fn_name!r}: {exc}"
            + (f" ({os.strerror(err)})" if err else "")
            + (
                "; this process is privileged, so the kernel rejects this program type or "
                "helper, not the user"
                if err == errno.EPERM
                else ""
            )
        )

    def attach_tracepoint(self, category: str, event: str, fn_name: str) -> None:
        """Attaches ``fn_name`` to ``category:event``; raises :class:`UnknownTracepointError`."""
        require_tracepoint(category, event)
        bcc = import_bcc()
        self._load(fn_name, bcc.BPF.TRACEPOINT)
        try:
            self.bpf.attach_tracepoint(tp=f"{category}:{event}".encode(), fn_name=fn_name.encode())
        except Exception as exc:
            raise AttachError(f"attaching {fn_name!r} to {category}:{event} failed: {exc}") from exc

    def attach_raw_tracepoint(self, event: str, fn_name: str) -> None:
        """Attaches ``fn_name`` to the raw tracepoint ``event`` (for example ``sys_enter``)."""
        bcc = import_bcc()
        self._load(fn_name, bcc.BPF.RAW_TRACEPOINT)
        try:
            self.bpf.attach_raw_tracepoint(tp=event.encode(), fn_name=fn_name.encode())
        except Exception as exc:
            raise AttachError(
                f"attaching {fn_name!r} to raw tracepoint {event} failed: {exc}"
            ) from exc

    def load_tail_call_target(self, fn_name: str) -> int:
        """Loads ``fn_name`` as a raw tracepoint program (for a program array); its fd."""
        bcc = import_bcc()
        return int(self._load(fn_name, bcc.BPF.RAW_TRACEPOINT).fd)

    def attach_kprobe(self, function: str, fn_name: str) -> None:
        """Attaches a kprobe, or says which tracepoint to use where the kernel has no kprobes."""
        if not kprobes_available():
            ensure_tracefs()  # the hint looks at its tracepoints
            syscall = syscall_of(function)
            hint = (
                f"syscalls:sys_enter_{syscall} / syscalls:sys_exit_{syscall}"
                if syscall is not None
                else "a tracepoint (see /sys/kernel/tracing/events) or a raw tracepoint"
            )
            raise KprobesUnavailableError(
                f"cannot attach a kprobe to {function!r}: this kernel was built without kprobes "
                f"(CONFIG_KPROBES is off); use {hint} instead"
            )
        bcc = import_bcc()
        self._load(fn_name, bcc.BPF.KPROBE)
        try:
            self.bpf.attach_kprobe(event=function.encode(), fn_name=fn_name.encode())
        except Exception as exc:
            raise AttachError(f"attaching kprobe {fn_name!r} to {function} failed: {exc}") from exc

    def attach_uprobe(
        self,
        binary: str,
        symbol: str,
        fn_name: str,
        *,
        retprobe: bool = False,
        pid: int | None = None,
    ) -> None:
        """Attaches ``fn_name`` to the entry of function ``symbol`` in ``binary`` (with
        ``retprobe``, to its return, where ``PT_REGS_RC(ctx)`` is its return value), in every
        process that runs it or only in ``pid``. ``binary`` is a path, a command found on
        ``PATH`` (``"bash"``) or a library name (``"c"`` for libc). Uprobes need no kprobes.

        Raises :class:`UnknownSymbolError` for a binary that cannot be found or a symbol it
        does not have, and :class:`AttachError` when the kernel refuses the probe.
        """
        path = _find_binary(binary)
        target = -1 if pid is None else pid  # BCC's "every process"
        bcc = import_bcc()
        try:
            bcc.BPF._check_path_symbol(path.encode(), symbol.encode(), 0, target)
        except Exception:
            raise UnknownSymbolError(
                f"{path} has no symbol {symbol!r} (see `nm -D {path}`; a stripped binary "
                "keeps only its dynamic symbols)"
            ) from None
        self._load(fn_name, bcc.BPF.KPROBE)  # uprobe programs are of the kprobe type
        attach = self.bpf.attach_uretprobe if retprobe else self.bpf.attach_uprobe
        kind = "uretprobe" if retprobe else "uprobe"
        try:
            attach(
                name=path.encode(),
                sym=symbol.encode(),
                fn_name=fn_name.encode(),
                pid=target,
            )
        except Exception as exc:
            raise AttachError(
                f"attaching {kind} {fn_name!r} to {path}:{symbol} failed: {exc}"
            ) from exc

    def program_fds(self) -> dict[str, int]:
        """The fd of every function BCC has loaded, by name (BCC's own: not to be closed)."""
        return {
            (name.decode() if isinstance(name, bytes) else str(name)): function.fd
            for name, function in dict(self.bpf.funcs).items()
        }

    def detach(self) -> None:
        """Stops every probe of the program; it stays loaded and its maps stay readable, so a
        source can take what the program delivered before the stop, and nothing after it."""
        bpf = self.bpf
        steps = [
            *(functools.partial(bpf.detach_tracepoint, tp) for tp in list(bpf.tracepoint_fds)),
            *(
                functools.partial(bpf.detach_raw_tracepoint, tp)
                for tp in list(bpf.raw_tracepoint_fds)
            ),
            *(functools.partial(bpf.detach_kprobe_event, ev) for ev in list(bpf.kprobe_fds)),
            *(functools.partial(bpf.detach_uprobe_event, ev) for ev in list(bpf.uprobe_fds)),
        ]
        try:
            release_together(steps)  # each tracepoint's detach waits out a grace period
        except Exception as exc:
            raise AttachError(f"detaching the program failed: {exc}") from exc

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Detaches every probe and closes every fd of the program. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            self.detach()  # all at once: BCC's cleanup detaches one after the other
        finally:
            _forget(self.bpf)
