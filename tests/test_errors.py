"""Bad input and a hostile environment give typed errors that say what to do, and leak nothing."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import aiobpf
from aiobpf import RingBuffer
from aiobpf._kernel.ring_protocol import RingReader
from aiobpf.lowlevel import EXECVE_RECORD, record_type
from aiobpf.testing import getppid_program, getppid_record

from . import kernel

_PROBE = """
import sys, time, anyio, aiobpf
async def main():
    start = time.process_time()
    try:
        async with eval(sys.argv[1]):
            print("0", "opened")
    except aiobpf.AiobpfError as exc:
        print(f"{time.process_time() - start:.3f}", type(exc).__name__, exc)
anyio.run(main)
"""

#: What a refusal may cost: a second of the process's own CPU time. CPU time, not wall time,
#: so that the promise does not depend on what else the machine runs (the suite must pass beside
#: ``stress-ng --cpu 2``); a refusal that compiled, or spun, first would still exceed it. A
#: refusal that hangs instead is caught by the tests' timeouts.
REFUSAL_CPU_SECONDS = 1.0


@contextlib.contextmanager
def within_a_second() -> Iterator[None]:
    """Bad input is refused within a second of CPU time of the call that gets it."""
    start = time.process_time()
    yield
    spent = time.process_time() - start
    assert spent < REFUSAL_CPU_SECONDS, f"refused after {spent:.2f} s of CPU time"


def _run_probe(*wrapper: str, source: str = "aiobpf.execve_events()") -> str:
    """Opens ``source`` (an expression) in a child process under ``wrapper``; returns what it
    printed ("opened", or the error), having checked that an error cost less than a second of
    CPU time."""
    command = [*wrapper, sys.executable, "-c", _PROBE, source]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    seconds, _, printed = result.stdout.strip().partition(" ")
    assert float(seconds) < REFUSAL_CPU_SECONDS, f"refused after {seconds} s of CPU: {printed}"
    return printed


def test_missing_bcc_is_a_typed_error_with_the_install_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without the bcc module (neither this Python's nor Debian's), compiling a BCC program
    says to install python3-bpfcc."""
    monkeypatch.setitem(sys.modules, "bcc", None)
    monkeypatch.setattr(aiobpf._kernel.bcc, "DEBIAN_BCC", Path("/nonexistent/bcc"))
    with (
        within_a_second(),
        pytest.raises(aiobpf.BccMissingError, match="apt-get install python3-bpfcc"),
    ):
        aiobpf.lowlevel.Program.compile("int f(void *ctx) { return 0; }")


@pytest.mark.parametrize("size", [3 * 4096, 1024, 0])
def test_ring_size_must_be_a_power_of_two_number_of_pages(size: int) -> None:
    """A ring size that is not a power-of-two page count, or under a page, is refused before
    anything loads."""
    with (
        within_a_second(),
        pytest.raises(ValueError, match=rf"power of two .* at least one page .* got {size}$"),
    ):
        aiobpf.execve_events(ring_size=size)


def test_bad_record_declaration_is_a_type_error() -> None:
    """A record that is neither a numpy dtype nor a ctypes.Structure is refused by name."""
    from aiobpf.lowlevel import record_type

    with within_a_second(), pytest.raises(TypeError, match=r"ctypes\.Structure subclass .*got 42"):
        record_type(42)  # type: ignore[arg-type]


@pytest.mark.usefixtures("bpf")
def test_no_privileges_is_a_privilege_error() -> None:
    """Root without capabilities gets PrivilegeError naming CAP_BPF, not a BCC traceback."""
    out = _run_probe(
        "setpriv", "--securebits=+noroot,+noroot_locked", "--bounding-set=-all", "--inh-caps=-all"
    )
    assert out.startswith("PrivilegeError"), out
    assert "CAP_BPF" in out


@pytest.mark.usefixtures("bpf")
def test_missing_kernel_headers_is_a_headers_error(tmp_path: Path) -> None:
    """With /lib/modules/$(uname -r) hidden, a program BCC compiles (here a user's syscall
    handler) is refused with an error naming the path and the package; execve_events(),
    prebuilt, does not need them."""
    modules = Path("/lib/modules") / os.uname().release
    hide = f'mount --bind {tmp_path} {modules} && "$0" "$@"'
    handler = "int mine(struct bpf_raw_tracepoint_args *ctx) { return 0; }"
    source = f"aiobpf.SyscallDispatch(user_handlers={handler!r})"
    out = _run_probe("unshare", "-m", "sh", "-c", hide, source=source)
    assert out.startswith("KernelHeadersError"), out
    assert f"linux-headers-{os.uname().release}" in out
    assert _run_probe("unshare", "-m", "sh", "-c", hide) == "opened"


@pytest.mark.usefixtures("bpf")
def test_unmountable_tracefs_is_a_tracefs_error() -> None:
    """tracefs unmounted in a private namespace, and no right to mount it: TracefsError."""
    script = (
        "umount /sys/kernel/debug 2>/dev/null; umount /sys/kernel/tracing 2>/dev/null; "
        'exec setpriv --bounding-set=-sys_admin --inh-caps=-sys_admin "$0" "$@"'
    )
    out = _run_probe("unshare", "-m", "sh", "-c", script)
    assert out.startswith("TracefsError"), out
    assert "mount -t tracefs" in out


@pytest.mark.usefixtures("bpf")
def test_unknown_tracepoint_names_close_matches() -> None:
    """A misspelled tracepoint is refused before compiling, with suggestions."""
    programs = kernel.loaded_program_ids()
    text = "TRACEPOINT_PROBE(syscalls, sys_enter_execv) { return 0; }"
    with (
        within_a_second(),
        pytest.raises(aiobpf.UnknownTracepointError, match="did you mean sys_enter_execve"),
    ):
        aiobpf.lowlevel.Program.compile(text)
    assert kernel.wait_until_unloaded(kernel.loaded_program_ids() - programs) == set()


@pytest.mark.usefixtures("bpf")
def test_malformed_program_reports_the_compilers_words() -> None:
    """A C error reaches the user as CompileError with clang's diagnostic; nothing loads."""
    programs = kernel.loaded_program_ids()
    with (
        within_a_second(),
        pytest.raises(aiobpf.CompileError, match="undeclared identifier 'no_such_thing'"),
    ):
        aiobpf.lowlevel.Program.compile("int f(void *ctx) { return no_such_thing; }")
    assert kernel.wait_until_unloaded(kernel.loaded_program_ids() - programs) == set()


@pytest.mark.usefixtures("bpf")
def test_compiles_in_several_threads_each_get_their_own_diagnostics() -> None:
    """clang writes its diagnostics to the process's fd 2, which compiling redirects: compiles
    from several worker threads at once each report their own error, and fd 2 is the same file
    afterwards (overlapping redirections used to leave it on a deleted temporary file)."""
    before = os.fstat(2)
    start = threading.Barrier(4)
    errors: dict[int, str] = {}

    def compile_broken(number: int) -> None:
        start.wait()
        try:
            aiobpf.lowlevel.Program.compile(f"int f(void *ctx) {{ return missing_{number}; }}")
        except aiobpf.CompileError as exc:
            errors[number] = str(exc)

    threads = [threading.Thread(target=compile_broken, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for number in range(4):
        assert f"undeclared identifier 'missing_{number}'" in errors[number]
        others = [n for n in range(4) if n != number]
        assert not any(f"missing_{n}'" in errors[number] for n in others)
    after = os.fstat(2)
    assert (after.st_dev, after.st_ino) == (before.st_dev, before.st_ino)


@pytest.mark.usefixtures("bpf")
def test_kprobe_without_kprobes_names_the_tracepoint_alternative() -> None:
    """This kernel has no kprobes: asking for one says so and names the syscall tracepoint."""
    program = aiobpf.lowlevel.Program.compile("int probe(void *ctx) { return 0; }")
    try:
        with (
            within_a_second(),
            pytest.raises(
                aiobpf.KprobesUnavailableError,
                match="syscalls:sys_enter_execve / syscalls:sys_exit",
            ),
        ):
            program.attach_kprobe("__x64_sys_execve", "probe")
    finally:
        program.close()


@pytest.mark.usefixtures("bpf")
def test_record_of_the_wrong_size_is_a_layout_error() -> None:
    """Declaring 24-byte records for a ring of 32-byte ones raises RecordLayoutError when the
    source is made (BCC saw the struct the program writes), and releases the program."""
    programs = kernel.loaded_program_ids()
    text, flags = getppid_program()
    program = aiobpf.lowlevel.Program.compile(text, cflags=flags)
    wrong = np.dtype([("a", "<u8"), ("b", "<u8"), ("c", "<u8")])
    with within_a_second(), pytest.raises(aiobpf.RecordLayoutError, match="32 bytes"):
        RingBuffer.from_bcc(program.bpf, "events", record=wrong, owned=[program.close])
    assert kernel.wait_until_unloaded(kernel.loaded_program_ids() - programs) == set()


@pytest.mark.usefixtures("bpf")
def test_a_map_that_is_not_a_ring_is_a_map_type_error() -> None:
    """from_bcc on a per-CPU array says which map type it found and which it needs."""
    text, flags = getppid_program()
    program = aiobpf.lowlevel.Program.compile(text, cflags=flags)
    try:
        with within_a_second(), pytest.raises(aiobpf.MapTypeError, match="expected a ring"):
            RingBuffer.from_bcc(program.bpf, "events_counts", record=np.dtype("<u8"))
        with within_a_second(), pytest.raises(LookupError, match="no map named 'nope'"):
            RingBuffer.from_bcc(program.bpf, "nope", record=np.dtype("<u8"))
    finally:
        program.close()


@pytest.mark.usefixtures("bpf")
def test_a_misspelt_ring_name_is_an_unknown_map_with_the_close_names() -> None:
    """from_bcc with a ring name one letter off, and no record declared: an UnknownMapError
    naming the ring it comes close to (it said to declare the record, as if the ring existed
    and its struct could not be read)."""
    text, flags = getppid_program()
    program = aiobpf.lowlevel.Program.compile(text, cflags=flags)
    try:
        with pytest.raises(aiobpf.UnknownMapError, match="did you mean 'events'"):
            RingBuffer.from_bcc(program.bpf, "evnets")
        with pytest.raises(aiobpf.UnknownMapError, match="no map named 'evnets'"):
            aiobpf.PerfBuffer.from_bcc(program.bpf, "evnets")
    finally:
        program.close()


class _InjectedFault(Exception):
    pass


@pytest.mark.usefixtures("bpf")
def test_a_failure_after_the_ring_is_mapped_releases_everything(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A source that fails after its ring is mapped (here a reader that is built, then fails,
    leaving arrays over the mapping in the error's frames) raises that error, not an unmap
    error, and still detaches the program it owns."""
    programs = kernel.loaded_program_ids()
    held = kernel.bpf_objects()
    text, flags = getppid_program()
    program = aiobpf.lowlevel.Program.compile(text, cflags=flags)

    def reader_then_fault(**kwargs: Any) -> RingReader:
        reader = RingReader(**kwargs)  # noqa: F841 -- kept alive by this frame, as in a real fault
        raise _InjectedFault("after mapping")

    monkeypatch.setattr(aiobpf.sources._ring, "RingReader", reader_then_fault)
    with pytest.raises(_InjectedFault, match="after mapping") as raised:
        RingBuffer.from_bcc(
            program.bpf, "events", record=getppid_record(32), reader="mmap", owned=[program.close]
        )
    assert not getattr(raised.value, "__notes__", None)  # releasing went through
    assert kernel.bpf_objects() == held
    assert kernel.wait_until_unloaded(kernel.loaded_program_ids() - programs) == set()


def test_import_needs_neither_bcc_nor_root() -> None:
    """`import aiobpf` works where bcc cannot be imported, and user-space parts stay usable."""
    code = (
        "import sys; sys.modules['bcc'] = None\n"
        "import aiobpf, numpy\n"
        "from aiobpf.lowlevel import record_type\n"
        "rt = record_type(numpy.dtype([('pid', '<u4')]))\n"
        "print(rt.decode(numpy.zeros(2, rt.dtype))[1].pid)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "0"


def test_programs_built_for_another_machine_are_refused_in_one_line(tmp_path: Path) -> None:
    """Objects whose build says another machine (BUILT_FOR beside them) are refused before
    anything loads, naming both machines: not programs that read the wrong registers."""
    from aiobpf._kernel.objects import BpfObject

    other = "aarch64" if os.uname().machine != "aarch64" else "x86_64"
    (tmp_path / "BUILT_FOR").write_text(f"{other}\n")
    (tmp_path / "hello.bpf.o").write_bytes(b"\x7fELF")
    with pytest.raises(aiobpf.UnsupportedMachineError, match=f"built for {other}, and this"):
        BpfObject.load(tmp_path / "hello.bpf.o")


def test_reading_a_mapped_ring_needs_x86_memory_ordering(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a CPU without x86-64's memory ordering, a ring over a mapped fd is refused (and the
    fd it was to own is closed) rather than read with the wrong ordering."""
    import platform

    monkeypatch.setattr(platform, "machine", lambda: "aarch64")
    fd = os.open("/dev/null", os.O_RDONLY)
    with pytest.raises(aiobpf.UnsupportedMachineError, match="this machine is aarch64"):
        RingBuffer.from_fd(fd, name="events", record=record_type(EXECVE_RECORD))
    with pytest.raises(OSError, match="Bad file descriptor"):
        os.fstat(fd)
