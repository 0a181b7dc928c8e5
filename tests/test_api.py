"""The public surface and its one shape: what the top level holds, which modules are public,
that every source is created by a plain call and is an anyio receive stream, and that errors
are typed. The kernel tests open sources the way the README shows."""

from __future__ import annotations

import errno
import importlib
import pkgutil
import subprocess
import sys
import warnings

import anyio
import anyio.abc
import pytest

import aiobpf
from aiobpf._kernel.libbpf import check
from aiobpf.testing import getppid_program

pytestmark = pytest.mark.anyio

#: The top level, as the README and CHANGELOG promise it. A change here is an API change: say it
#: in CHANGELOG.md.
TOP_LEVEL = [
    "AdaptiveLatency",
    "AiobpfError",
    "AsyncioOnlyError",
    "AttachError",
    "BccMissingError",
    "BtfError",
    "CompileError",
    "ExecveEvent",
    "InsecureEngineError",
    "InsecureListenerError",
    "KernelHeadersError",
    "KprobesUnavailableError",
    "LibbpfMissingError",
    "ListenError",
    "LogRecord",
    "MapError",
    "MapPoller",
    "MapReading",
    "MapStats",
    "MapTypeError",
    "NatsMissingError",
    "PerfBuffer",
    "PrivilegeError",
    "ProcessExec",
    "ProcessExit",
    "ProcessFork",
    "RecordLayoutError",
    "RecordingError",
    "ReplayStats",
    "RingBuffer",
    "RingStats",
    "SetupError",
    "StreamEngineError",
    "SyscallDispatch",
    "SyscallEvent",
    "TraceLine",
    "TracefsError",
    "UnknownMapError",
    "UnknownProgramError",
    "CgroupError",
    "NotOpenError",
    "UnknownSymbolError",
    "UnknownSyscallError",
    "UnknownTracepointError",
    "UnsupportedMachineError",
    "UnsupportedProgramError",
    "UnknownTypeError",
    "UnknownVariableError",
    "VariableTypeError",
    "BccProgram",
    "CoreProgram",
    "compile_bcc",
    "load",
    "OpenEvent",
    "open_events",
    "ProgramCost",
    "enable_program_stats",
    "ConnectEvent",
    "connect_events",
    "run_queue_latency",
    "block_io_latency",
    "WindowCount",
    "batch",
    "errors",
    "execve_counts",
    "execve_events",
    "execve_window_counts",
    "filter_cgroup",
    "filter_comm",
    "filter_descendants",
    "filter_pid",
    "filter_uid",
    "fleet",
    "hello_world",
    "lowlevel",
    "merge",
    "operators",
    "pipe",
    "process_events",
    "replay",
    "programs",
    "route",
    "sources",
    "syscall_events",
    "syscall_name",
    "syscall_number",
    "top_n",
    "trace_command",
    "trace_pipe",
    "window_count",
]

#: The modules a user may import; every other module's name starts with an underscore (or
#: lives in a package whose name does).
PUBLIC_MODULES = {
    "aiobpf",
    "aiobpf.__main__",
    "aiobpf.build",
    "aiobpf.cli",
    "aiobpf.doctor",
    "aiobpf.errors",
    "aiobpf.fleet",
    "aiobpf.lowlevel",
    "aiobpf.operators",
    "aiobpf.programs",
    "aiobpf.pytest_plugin",
    "aiobpf.redaction",
    "aiobpf.schema",
    "aiobpf.service",
    "aiobpf.sources",
    "aiobpf.testing",
}


def test_the_top_level_is_pinned() -> None:
    assert sorted(aiobpf.__all__) == sorted(TOP_LEVEL)
    for name in aiobpf.__all__:
        assert getattr(aiobpf, name) is not None


def test_every_top_level_name_has_one_home() -> None:
    """The lazily imported names and the pinned top level are the same list."""
    lazy = set(aiobpf._HOME_OF) | aiobpf._SUBMODULES
    eager = {name for name in aiobpf.__all__ if name in vars(aiobpf.errors)} | {"errors"}
    assert lazy | eager == set(aiobpf.__all__)
    assert not lazy & eager


def test_importing_aiobpf_imports_only_what_it_needs() -> None:
    """``import aiobpf`` loads neither numpy, BCC, anyio nor the service stack: a program pays
    for them when it first uses a name that needs them."""
    code = (
        "import sys, aiobpf\n"
        "heavy = ['numpy', 'bcc', 'anyio', 'trio', 'starlette', 'aiobpf.sources']\n"
        "print(' '.join(name for name in heavy if name in sys.modules))\n"
        "aiobpf.execve_events\n"
        "print('numpy' in sys.modules, 'bcc' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.splitlines() == ["", "True False"]


def test_only_the_intended_modules_are_public() -> None:
    names = {"aiobpf"} | {
        module.name for module in pkgutil.walk_packages(aiobpf.__path__, "aiobpf.")
    }
    public = {
        name for name in names if not any(part.startswith("_") for part in name.split(".")[1:])
    }
    assert public | {"aiobpf.__main__"} == PUBLIC_MODULES


@pytest.mark.parametrize(
    "namespace", ["sources", "programs", "operators", "lowlevel", "errors", "fleet"]
)
def test_every_name_a_namespace_exports_exists(namespace: str) -> None:
    module = importlib.import_module(f"aiobpf.{namespace}")
    for name in module.__all__:
        assert hasattr(module, name), f"aiobpf.{namespace}.{name}"


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("Program", "aiobpf.lowlevel.Program"),
        ("EXECVE_RECORD", "aiobpf.lowlevel.EXECVE_RECORD"),
        ("ExecveEvents", "aiobpf.programs.ExecveEvents"),
        ("KernelWindowCounts", "aiobpf.programs.KernelWindowCounts"),
        ("DispatchStats", "aiobpf.programs.DispatchStats"),
        ("Router", "aiobpf.operators.Router"),
        ("View", "aiobpf.operators.View"),
        ("TracePipe", "aiobpf.sources.TracePipe"),
    ],
)
def test_moved_names_still_work_for_a_release_and_say_where_they_went(old: str, new: str) -> None:
    module, name = new.rsplit(".", 1)
    with pytest.warns(DeprecationWarning, match=new.replace(".", r"\.")):
        value = getattr(aiobpf, old)
    assert value is getattr(importlib.import_module(module), name)


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_thing"):
        aiobpf.no_such_thing  # type: ignore[attr-defined]  # noqa: B018


def test_creating_a_source_touches_nothing_and_every_source_is_an_anyio_stream() -> None:
    """The plain calls need no root, BCC or tracefs: they only check their arguments. What they
    return are anyio receive streams, closed by ``async with``: reliable ones, but for the
    trace pipe (its lines can be lost unseen)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sources = [
            aiobpf.execve_events(),
            aiobpf.execve_counts(),
            aiobpf.execve_window_counts("comm"),
            aiobpf.hello_world(),
            aiobpf.trace_pipe(),
            aiobpf.syscall_events(syscalls=[0]),
            aiobpf.open_events(),
            aiobpf.connect_events(),
            aiobpf.process_events(),
        ]
    for source in sources:
        reliable = not isinstance(source, aiobpf.sources.TracePipe)
        assert isinstance(source, anyio.abc.UnreliableObjectReceiveStream), source
        assert isinstance(source, anyio.abc.ObjectReceiveStream) == reliable, source
        assert not source.closed  # type: ignore[attr-defined]
    with pytest.raises(aiobpf.NotOpenError, match="not open yet"):
        _ = sources[0].stats  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda: aiobpf.execve_events(max_latency=float("inf")),
            "max_latency must be 'auto' or a finite",
        ),
        (lambda: aiobpf.execve_events(busy_poll=float("nan")), "busy_poll must be a finite"),
        (lambda: aiobpf.execve_counts(interval=float("inf")), "interval must be a finite"),
        (lambda: aiobpf.execve_counts(uids=[1 << 40]), "a uid is a whole number"),
        (lambda: aiobpf.execve_counts(uids=[-1]), "a uid is a whole number"),
        (lambda: aiobpf.execve_counts(mode="sometimes"), "mode must be one of"),  # type: ignore[arg-type]
        (lambda: aiobpf.execve_window_counts("pid"), "key must be 'uid' or 'comm'"),  # type: ignore[arg-type]
        (lambda: aiobpf.syscall_events(syscalls=[0], tgids=[1 << 33]), "a tgid is a whole number"),
        (lambda: aiobpf.execve_events() | aiobpf.filter_uid(1 << 32), "a uid is a whole number"),
        (lambda: aiobpf.execve_events() | aiobpf.filter_pid(["1"]), "a pid is a whole number"),  # type: ignore[list-item]
        (lambda: aiobpf.batch(10, max_delay=float("nan")), "max_delay must be a finite"),
        (lambda: aiobpf.batch(10, max_delay=float("inf")), "max_delay must be a finite"),
        (lambda: aiobpf.batch(2.5), "size must be a whole number"),  # type: ignore[arg-type]
        (lambda: aiobpf.window_count("comm", every=float("inf")), "every must be a finite"),
        (lambda: aiobpf.top_n(2.5), "n must be a whole number"),  # type: ignore[arg-type]
    ],
)
def test_bad_arguments_are_refused_at_the_call(call: object, message: str) -> None:
    assert callable(call)
    with pytest.raises(ValueError, match=message):
        call()


def test_a_failed_map_operation_is_a_map_error_keeping_the_errno() -> None:
    with pytest.raises(aiobpf.MapError, match="updating the filter") as caught:
        check(-errno.E2BIG, "updating the filter")
    assert caught.value.errno == errno.E2BIG
    assert isinstance(caught.value, OSError)
    assert check(3, "fine") == 3


def test_the_error_tree_holds_every_error() -> None:
    for name in aiobpf.errors.__all__:
        error = getattr(aiobpf.errors, name)
        assert issubclass(error, aiobpf.AiobpfError)
        assert name in aiobpf.errors.__doc__  # drawn in the tree
    for name in ("BccMissingError", "PrivilegeError", "KernelHeadersError", "TracefsError"):
        assert issubclass(getattr(aiobpf.errors, name), aiobpf.SetupError)


# -- on the kernel ---------------------------------------------------------------------------


@pytest.mark.usefixtures("bpf")
def test_a_program_is_a_context_manager_that_detaches_on_leaving() -> None:
    text, flags = getppid_program()
    with aiobpf.lowlevel.Program.compile(text, cflags=flags) as program:
        assert not program.closed
    assert program.closed


@pytest.mark.usefixtures("bpf")
def test_an_unknown_map_is_a_typed_lookup_error() -> None:
    text, flags = getppid_program()
    with aiobpf.lowlevel.Program.compile(text, cflags=flags) as program:
        with pytest.raises(aiobpf.UnknownMapError, match="no map named 'nope'") as caught:
            aiobpf.RingBuffer.from_bcc(program.bpf, "nope", record=aiobpf.lowlevel.EXECVE_RECORD)
        assert isinstance(caught.value, LookupError)


@pytest.mark.usefixtures("bpf")
def test_an_unknown_syscall_is_a_typed_lookup_error_at_the_call() -> None:
    with pytest.raises(aiobpf.UnknownSyscallError, match="no syscall named 'exceve'") as caught:
        aiobpf.syscall_events(syscalls=["exceve"])
    assert isinstance(caught.value, LookupError)


@pytest.mark.usefixtures("bpf")
async def test_awaiting_a_source_still_opens_it_with_a_warning() -> None:
    """The 0.1 spelling, ``async with await execve_counts()``, keeps working for one release."""
    with pytest.warns(DeprecationWarning, match=r"use 'async with execve_counts\(\) as source'"):
        counts = await aiobpf.execve_counts(interval=3600)
    async with counts:
        assert counts.read().values is not None
    assert counts.closed


@pytest.mark.usefixtures("bpf")
async def test_a_source_closed_before_it_was_opened_refuses_to_open() -> None:
    source = aiobpf.hello_world()
    await source.aclose()
    with pytest.raises(anyio.ClosedResourceError):
        await source.receive()
    async for _ in source:
        pytest.fail("a closed source yields nothing")


@pytest.mark.usefixtures("bpf")
async def test_the_trace_pipe_opens_on_entering_and_refuses_use_after_closing() -> None:
    pipe = aiobpf.trace_pipe()
    async with pipe:
        assert pipe.stats == aiobpf.sources.TraceStats(received=0, skipped=0)
    with pytest.raises(anyio.ClosedResourceError):
        await pipe.receive()


def test_stream_types_say_what_each_source_promises() -> None:
    """A ring is a reliable, ordered anyio stream; a perf buffer (CPUs out of order, full
    buffers losing samples) and the trace pipe (lines overwritten unseen) are unreliable ones:
    siblings over one batch-source base, so code typed for a reliable stream cannot take them."""
    from anyio.abc import ObjectReceiveStream, UnreliableObjectReceiveStream

    from aiobpf.sources import BatchSource, PerfBuffer, RingBuffer, TracePipe

    assert issubclass(RingBuffer, ObjectReceiveStream)
    assert issubclass(RingBuffer, BatchSource)
    assert issubclass(PerfBuffer, BatchSource)
    assert not issubclass(PerfBuffer, RingBuffer)
    for unreliable in (PerfBuffer, TracePipe):
        assert issubclass(unreliable, UnreliableObjectReceiveStream)
        assert not issubclass(unreliable, ObjectReceiveStream)
    assert PerfBuffer.from_fd.__qualname__ == "PerfBuffer.from_fd"
