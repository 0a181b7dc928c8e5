"""Prebuilt CO-RE objects loaded by libbpf: aiobpf's execve program needs neither BCC nor kernel
headers at run time, and what goes wrong loading an object is a typed error with libbpf's and
the verifier's words; nothing stays loaded after an error or a close."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest

import aiobpf
from aiobpf._kernel.objects import BpfObject, preload
from aiobpf.programs._text import prebuilt_path

from . import kernel

ROOT = Path(__file__).resolve().parent.parent

REFUSED = r"""
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

SEC("tracepoint/syscalls/sys_enter_getppid")
int reads_null(void *ctx)
{
    volatile int *nowhere = 0;
    return *nowhere;
}
"""

NO_BCC = r"""
import os, subprocess, sys, threading
sys.modules["bcc"] = None  # import bcc fails from here on
import anyio, aiobpf

async def main():
    probe = sys.argv[1]
    async with (
        aiobpf.execve_events() | aiobpf.filter_comm(os.path.basename(probe)) as events,
        aiobpf.hello_world() as logs,
        aiobpf.execve_counts(interval=0.05, uids=[os.getuid()]) as counts,
        aiobpf.execve_window_counts("comm", every=0.05) as windows,
        aiobpf.syscall_events(syscalls=["getppid"], tids=[threading.get_native_id()]) as calls,
    ):
        subprocess.run([probe], check=True)
        ppid = os.getppid()
        with anyio.fail_after(10):
            call = await calls.receive()
            event = await events.receive()
            log = await logs.receive()
            while not (await counts.receive()).values.get(os.getuid()):
                pass
            while not (await windows.receive()).counts.get(event.comm):
                pass
    assert (call.name, call.pid) == ("getppid", os.getpid()), call
    print(event.comm, event.filename, log.text, sys.modules["bcc"] is None)

anyio.run(main)
"""


@pytest.mark.usefixtures("bpf")
def test_the_execve_object_loads_and_releases_everything() -> None:
    """Loaded, it has its maps (an unknown one is a typed LookupError) and programs; closed
    (twice), none of its programs is left loaded."""
    before = kernel.held_program_ids()
    program = BpfObject.load(prebuilt_path("execve"), max_entries={"events": 1 << 16})
    try:
        loaded = kernel.held_program_ids() - before
        assert len(loaded) == 4  # two entries, two exits
        os.close(program.map_fd("events"))
        with pytest.raises(aiobpf.UnknownMapError, match="no map named 'nope'") as caught:
            program.map_fd("nope")
        assert isinstance(caught.value, LookupError)
        program.attach_tracepoints()
    finally:
        program.close()
        program.close()
    assert program.closed
    assert kernel.wait_until_unloaded(loaded) == set()


@pytest.mark.usefixtures("bpf")
def test_a_preload_is_taken_by_the_next_load_of_the_same_object_and_sizes() -> None:
    """preload() loads in a thread; the load that asks for the same object and sizes gets that
    very object (no second one is loaded), another size loads its own."""
    path, sizes = prebuilt_path("hello"), {"logs": 1 << 16}
    before = kernel.held_program_ids()
    preload(path, max_entries=sizes)
    with BpfObject.load(path, max_entries={"logs": 1 << 17}) as other:
        with BpfObject.load(path, max_entries=sizes) as taken:
            assert len(kernel.held_program_ids() - before) == 2  # one program each
            assert taken is not other
        with BpfObject.load(path, max_entries=sizes) as again:  # taken once only: a new load
            assert len(kernel.held_program_ids() - before) == 2
            assert again is not taken
    assert kernel.wait_until_unloaded(kernel.held_program_ids() - before) == set()


@pytest.mark.usefixtures("bpf")
def test_a_source_over_a_missing_map_releases_the_object_and_every_fd() -> None:
    """A ring the object does not have, or a map without its counters, is an UnknownMapError,
    and what the source was to own is released: no fd (the map's included), no program left."""
    from aiobpf.lowlevel import record_type
    from aiobpf.programs._prebuilt import counted_map, counted_ring

    before, programs = kernel.bpf_objects(), kernel.held_program_ids()
    program = BpfObject.load(prebuilt_path("hello"))
    with pytest.raises(aiobpf.UnknownMapError, match="no map named 'nope'"):
        counted_ring(program, "nope", record=record_type(np.dtype("<u8")), owned=[program.close])
    assert program.closed
    program = BpfObject.load(prebuilt_path("hello"))
    with pytest.raises(aiobpf.UnknownMapError, match="no map named 'logs_dropped'"):
        counted_map(program, "logs", key=np.uint32, value=np.uint64, owned=[program.close])
    assert program.closed
    assert kernel.bpf_objects() == before
    assert kernel.wait_until_unloaded(kernel.held_program_ids() - programs) == set()


def test_a_preload_that_failed_raises_in_the_load_that_takes_it(tmp_path: Path) -> None:
    """What a preload met is raised where the object is wanted, as a load would raise it."""
    preload(tmp_path / "nope.bpf.o")
    with pytest.raises(aiobpf.SetupError, match=r"nope\.bpf\.o is missing"):
        BpfObject.load(tmp_path / "nope.bpf.o")


def test_a_missing_object_says_how_to_build_it(tmp_path: Path) -> None:
    """No file: a SetupError naming it and the set-up script that builds it."""
    with pytest.raises(aiobpf.SetupError, match=r"nope\.bpf\.o is missing.*scripts/setup\.sh"):
        BpfObject.load(tmp_path / "nope.bpf.o")


def test_a_file_that_is_no_object_is_a_setup_error(tmp_path: Path) -> None:
    """Not an ELF object: libbpf's refusal, as a SetupError naming the file."""
    path = tmp_path / "garbage.bpf.o"
    path.write_bytes(b"not an object at all\n" * 10)
    with pytest.raises(aiobpf.SetupError, match=r"libbpf cannot open .*garbage\.bpf\.o"):
        BpfObject.load(path)


@pytest.mark.usefixtures("bpf")
@pytest.mark.skipif(shutil.which("clang") is None, reason="clang is needed to build the object")
def test_a_program_the_verifier_refuses_is_a_compile_error_with_its_words(tmp_path: Path) -> None:
    """A program that reads through a NULL pointer: the kernel's verifier refuses it, and the
    CompileError carries the verifier's log; nothing of the object stays loaded."""
    source, built = tmp_path / "refused.bpf.c", tmp_path / "refused.bpf.o"
    source.write_text(REFUSED)
    multiarch = sysconfig.get_config_var("MULTIARCH") or "x86_64-linux-gnu"  # asm/types.h
    flags = ["-g", "-O2", "-target", "bpf", f"-I/usr/include/{multiarch}"]
    subprocess.run(["clang", *flags, "-c", str(source), "-o", str(built)], check=True)
    before = kernel.loaded_program_ids()
    with pytest.raises(aiobpf.CompileError, match=r"refused to load refused\.bpf\.o") as caught:
        BpfObject.load(built)
    assert "invalid mem access" in str(caught.value), caught.value
    assert kernel.wait_until_unloaded(kernel.loaded_program_ids() - before) == set()


@pytest.mark.usefixtures("bpf")
def test_the_prebuilt_programs_need_neither_bcc_nor_kernel_headers(tmp_path: Path) -> None:
    """In a process where ``import bcc`` fails, with /lib/modules/$(uname -r) hidden, the
    prebuilt programs run: execve_events() sees a known exec (filtered in the kernel),
    hello_world() logs it, execve_counts() and execve_window_counts() count it, and
    syscall_events() (the dispatcher) sees a getppid() of this thread; BCC was never imported."""
    program = kernel.uniquely_named_program(tmp_path, "no-bcc-here")
    empty = tmp_path / "no-headers"
    empty.mkdir()
    modules = Path("/lib/modules") / os.uname().release
    hide = (
        f'mount --bind {empty} {modules} && exec "$0" "$@"'
        if modules.exists()
        else 'exec "$0" "$@"'
    )
    done = subprocess.run(
        ["unshare", "-m", "sh", "-c", hide, sys.executable, "-c", NO_BCC, str(program)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["no-bcc-here", str(program), "Hello", "World!", "True"]
