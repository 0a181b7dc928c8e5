"""Programs of your own on the real kernel, one shape for both loaders: CO-RE objects compiled
here by ``aiobpf build`` and loaded by :func:`aiobpf.load` (parameters, records typed from BTF
by struct name, maps, globals, uprobes attached by a call, sections this kernel cannot run),
and BPF C compiled by BCC through :func:`aiobpf.compile_bcc`."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import anyio
import pytest

import aiobpf
from aiobpf._kernel.features import kprobes_available
from aiobpf.build import compile_object

from . import kernel

pytestmark = [pytest.mark.usefixtures("bpf"), pytest.mark.anyio]

PROGRAMS = Path(__file__).parent / "programs"
UID = 61401  # the test's own: no other test execs as it


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The test programs, compiled as a user would (clang and bpftool, from set-up)."""
    if shutil.which("clang") is None or shutil.which("bpftool") is None:
        pytest.skip("clang and bpftool build the test programs (run scripts/setup.sh)")
    out = tmp_path_factory.mktemp("objects")
    return {
        name: compile_object(PROGRAMS / f"{name}.bpf.c", out / f"{name}.bpf.o")
        for name in ("own_execs", "unsupported", "refused")
    }


def _run_as(uid: int, count: int) -> list[int]:
    """Starts ``count`` processes as ``uid`` (setpriv: each one execve as that uid) and waits
    for them; returns their pids."""
    pids = []
    for _ in range(count):
        process = subprocess.Popen(kernel.setpriv_command(uid, "/bin/true"))
        pids.append(process.pid)
        process.wait()
    return pids


async def test_params_records_maps_and_globals_of_an_own_co_re_object(
    built: dict[str, Path],
) -> None:
    """Parameters set before load steer the program (uid filter, text, a signed offset);
    records come typed from the struct named in BTF, nested struct and arrays included; the
    map's keys and values come from BTF; globals read back. Exact for a known workload."""
    params = {"target_uid": UID, "tag": "mine", "offset": -1}
    async with aiobpf.load(built["own_execs"], params=params) as program:
        assert program.skipped == {}
        async with program.ring("records", record="exec_record") as records:
            pids = _run_as(UID, 5)
            got = []
            with anyio.fail_after(30):
                async for record in records:
                    got.append(record)
                    if len(got) == 5:
                        break
            assert [r.pid for r in got] == pids
            assert {r.origin.uid for r in got} == {UID}
            assert {r.origin.tag for r in got} == {"mine"}
            assert {r.comm for r in got} == {
                "setpriv"
            }  # the exec is setpriv's, before the new image
            assert [list(r.sizes) for r in got] == [[0, 1, 2]] * 5
            assert [r.serial for r in got] == list(range(5))
            assert records.stats.received == 5
            assert records.stats.dropped == 0
            assert records.stats.produced == 5
        assert program.variable("seen") == 5
        assert program.variable("tag") == "mine"
        assert program.variable("limit_hits") == 7
        async with program.map("per_pid") as per_pid:
            assert per_pid.read().values == dict.fromkeys(pids, 1)


async def test_a_perf_buffer_of_an_own_object_types_its_samples_from_btf(
    built: dict[str, Path],
) -> None:
    """perf_buffer(name, record="struct"): the same records as the ring, from a perf event
    array libbpf sized to the CPUs; an unreliable stream, ordered here by a field."""
    uid = UID + 5
    async with aiobpf.load(built["own_execs"], params={"target_uid": uid}) as program:
        samples = program.perf_buffer("perf_records", record="exec_record", order_by="serial")
        async with samples:
            pids = _run_as(uid, 3)
            got = []
            with anyio.fail_after(30):
                async for sample in samples:
                    got.append(sample)
                    if len(got) == 3:
                        break
        assert sorted(s.pid for s in got) == sorted(pids)
        assert {(s.origin.uid, s.comm) for s in got} == {(uid, "setpriv")}
        assert samples.stats.lost == 0


async def test_the_object_can_be_given_as_bytes_and_closes_its_sources(
    built: dict[str, Path],
) -> None:
    """An object's bytes load as its file does; a source left open is closed with it."""
    program = aiobpf.load(built["own_execs"].read_bytes(), params={"target_uid": UID + 1})
    async with program:
        ring = program.ring("records", record="exec_record")
        pids = _run_as(UID + 1, 2)
        with anyio.fail_after(30):
            first = await ring.receive()
        assert first.pid == pids[0]
    assert ring.closed
    assert program.closed
    stats = ring.stats  # the second record: taken and not handed out, or left in the ring
    assert (stats.received, stats.pending + stats.unread, stats.produced) == (1, 1, 2)
    with pytest.raises(anyio.ClosedResourceError):
        program.ring("records", record="exec_record")


async def test_a_bare_uprobe_section_attaches_by_a_call(built: dict[str, Path]) -> None:
    """A ``SEC("uprobe")`` program attached to libc's getppid in one process counts exactly
    its calls: 1,234 from a Python child that waits for the probe before calling."""
    async with aiobpf.load(built["own_execs"]) as program:
        code = "import os, sys; sys.stdin.readline(); [os.getppid() for _ in range(1234)]"
        async with await anyio.open_process([sys.executable, "-c", code]) as child:
            await program.attach_uprobe("on_getppid", "libc.so.6", "getppid", pid=child.pid)
            assert child.stdin is not None
            await child.stdin.send(b"go\n")
            assert await child.wait() == 0
        assert program.variable("getppid_calls") == 1234
        with pytest.raises(aiobpf.UnknownSymbolError, match="no function 'getppid_nope'"):
            await program.attach_uprobe("on_getppid", "libc.so.6", "getppid_nope")
        with pytest.raises(aiobpf.UnknownProgramError, match="on_getppidd"):
            await program.attach_uprobe("on_getppidd", "libc.so.6", "getppid")
        with pytest.raises(aiobpf.UnknownSymbolError, match="no command 'no-such-binary"):
            await program.attach_uprobe("on_getppid", f"no-such-binary-{secrets.token_hex(3)}", "f")


async def test_unknown_names_get_the_close_matches(built: dict[str, Path]) -> None:
    async with aiobpf.load(built["own_execs"]) as program:
        with pytest.raises(aiobpf.UnknownMapError, match=r"did you mean records"):
            program.ring("record", record="exec_record")
        with pytest.raises(aiobpf.UnknownTypeError, match=r"did you mean exec_record\?.*unused"):
            program.ring("records", record="exec_recrd")
        with pytest.raises(aiobpf.RecordLayoutError, match="name the struct"):
            program.ring("records")
        with pytest.raises(aiobpf.UnknownVariableError, match=r"did you mean seen"):
            program.variable("sen")
        with pytest.raises(aiobpf.MapTypeError):
            program.ring("per_pid", record="exec_record")  # a hash map, not a ring


@pytest.mark.parametrize(
    ("params", "error", "words"),
    [
        (
            {"target_ui": 1},
            aiobpf.UnknownVariableError,
            r"no global 'target_ui' \(did you mean target_uid",
        ),
        ({"target_uid": -1}, aiobpf.VariableTypeError, r"0\.\.4294967295; -1 does not fit"),
        ({"target_uid": 1 << 32}, aiobpf.VariableTypeError, "does not fit its 4 bytes"),
        ({"target_uid": True}, aiobpf.VariableTypeError, "32-bit integer, not True"),
        ({"target_uid": "1"}, aiobpf.VariableTypeError, "32-bit integer, not '1'"),
        ({"offset": -(1 << 15) - 1}, aiobpf.VariableTypeError, "-32768..32767"),
        ({"offset": 1.5}, aiobpf.VariableTypeError, "16-bit integer, not 1.5"),
        ({"tag": "12345678"}, aiobpf.VariableTypeError, "at most 7 bytes and a NUL"),
        ({"tag": 7}, aiobpf.VariableTypeError, r"text \(char\[8\]\), not 7"),
        ({"tag": b"\xff\xfe" * 10}, aiobpf.VariableTypeError, "is 20 bytes"),
    ],
)
async def test_bad_params_are_refused_and_nothing_stays_loaded(
    built: dict[str, Path], params: dict[str, object], error: type[Exception], words: str
) -> None:
    before = kernel.held_program_ids()
    with pytest.raises(error, match=words):
        async with aiobpf.load(built["own_execs"], params=params):
            pytest.fail("opened with a bad parameter")
    assert kernel.held_program_ids() == before


async def test_sections_this_kernel_cannot_run_get_one_error_or_are_skipped(
    built: dict[str, Path],
) -> None:
    """kprobe, fentry and tp_btf programs are never handed to the kernel: by default one error
    names each with its replacement; with skip_unsupported the tracepoint beside them runs."""
    if kprobes_available():
        pytest.skip("this kernel has kprobes: the kprobe section would load")
    before = kernel.held_program_ids()
    with pytest.raises(aiobpf.UnsupportedProgramError) as refused:
        async with aiobpf.load(built["unsupported"]):
            pytest.fail("opened with unsupported programs")
    words = str(refused.value)
    assert 'on_open_kprobe: SEC("kprobe/do_sys_openat2") is a kprobe' in words
    assert 'use SEC("tracepoint/syscalls/sys_enter_openat2")' in words
    assert 'on_exec_btf: SEC("tp_btf/sched_process_exec")' in words
    assert 'use SEC("raw_tp/sched_process_exec")' in words
    assert "skip_unsupported=True" in words
    assert kernel.held_program_ids() == before
    program = aiobpf.load(
        built["unsupported"], params={"target_uid": UID + 2}, skip_unsupported=True
    )
    async with program:
        assert set(program.skipped) == {"on_open_kprobe", "on_unlink_fentry", "on_exec_btf"}
        assert "sys_enter_unlinkat" in program.skipped["on_unlink_fentry"]
        assert len(kernel.held_program_ids() - before) == 1
        _run_as(UID + 2, 3)
        assert program.variable("tracepoint_hits") == 3
    assert kernel.held_program_ids() == before


def _held_in_load(program: aiobpf.CoreProgram) -> tuple[threading.Event, threading.Event]:
    """Events around ``program``'s load in its worker thread: one set when the load starts,
    one the load waits for before it goes on."""
    started, proceed = threading.Event(), threading.Event()
    load = program._load

    def held() -> None:
        started.set()
        proceed.wait()
        load()

    program._load = held  # type: ignore[method-assign]
    return started, proceed


async def test_a_cancel_or_a_close_during_the_load_leaves_nothing_loaded(
    built: dict[str, Path],
) -> None:
    """The load runs on in its thread after a cancel or a close: what it loaded is released
    then, and the opener hears why."""
    before = kernel.held_program_ids()
    program = aiobpf.load(built["own_execs"])
    started, proceed = _held_in_load(program)
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(program.open)
        await anyio.to_thread.run_sync(started.wait)
        tasks.cancel_scope.cancel()
        proceed.set()
    assert program.closed
    assert kernel.held_program_ids() == before

    program = aiobpf.load(built["own_execs"])
    started, proceed = _held_in_load(program)
    outcome: list[BaseException] = []

    async def opener() -> None:
        try:
            await program.open()
        except anyio.ClosedResourceError as exc:
            outcome.append(exc)

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(opener)
        await anyio.to_thread.run_sync(started.wait)
        tasks.start_soon(program.aclose)
        await anyio.wait_all_tasks_blocked()
        proceed.set()
    assert [str(exc) for exc in outcome] == [
        f"the BPF object {built['own_execs'].name} was closed while it opened"
    ]
    assert kernel.held_program_ids() == before
    with pytest.raises(aiobpf.NotOpenError):
        aiobpf.load(built["own_execs"]).ring("records", record="exec_record")


async def test_a_refused_program_gets_the_verifier_s_reason(built: dict[str, Path]) -> None:
    """The verifier says why last, after a log of many kilobytes: the error ends with it."""
    before = kernel.held_program_ids()
    with pytest.raises(aiobpf.CompileError) as refused:
        async with aiobpf.load(built["refused"]):
            pytest.fail("the verifier let it through")
    words = str(refused.value)
    assert "the kernel refused to load refused.bpf.o" in words
    assert "dereference of modified ctx ptr" in words
    assert "-- END PROG LOAD LOG --" in words
    assert kernel.held_program_ids() == before


async def test_a_file_that_is_not_an_object_gets_a_clear_error(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.bpf.o"
    garbage.write_bytes(b"\x7fELF" + os.urandom(200))
    with pytest.raises(aiobpf.SetupError, match=r"libbpf cannot open .*garbage"):
        async with aiobpf.load(garbage):
            pass
    with pytest.raises(aiobpf.SetupError, match="missing"):
        async with aiobpf.load(tmp_path / "none.bpf.o"):
            pass
    with pytest.raises(TypeError):
        aiobpf.load(42)  # type: ignore[arg-type]


BCC_PROGRAM = r"""
struct exec_record {
    u32 pid;
    u32 uid;
    char comm[16];
};
BPF_RINGBUF_OUTPUT(records, 16);
BPF_HASH(per_pid, u32, u64, 1024);

TRACEPOINT_PROBE(syscalls, sys_enter_execve)
{
    u32 uid = bpf_get_current_uid_gid();
    if (uid != TARGET_UID)
        return 0;
    u32 pid = bpf_get_current_pid_tgid() >> 32;
    per_pid.increment(pid);
    struct exec_record *record = records.ringbuf_reserve(sizeof(*record));
    if (!record)
        return 0;
    record->pid = pid;
    record->uid = uid;
    bpf_get_current_comm(&record->comm, sizeof(record->comm));
    records.ringbuf_submit(record, 0);
    return 0;
}
"""


async def test_a_bcc_program_has_the_same_shape() -> None:
    """compile_bcc: compiled off the loop on entering, ``ring()`` and ``map()`` as for a CO-RE
    object, closed with it."""
    uid = UID + 3
    async with aiobpf.compile_bcc(BCC_PROGRAM, cflags=[f"-DTARGET_UID={uid}"]) as program:
        async with program.ring("records") as records:
            pids = _run_as(uid, 3)
            got = []
            with anyio.fail_after(30):
                async for record in records:
                    got.append((record.pid, record.uid, record.comm))
                    if len(got) == 3:
                        break
        assert got == [(pid, uid, "setpriv") for pid in pids]
        poller = program.map("per_pid")
        assert poller.read().values == dict.fromkeys(pids, 1)
    assert poller.closed
    with pytest.raises(aiobpf.CompileError):
        async with aiobpf.compile_bcc("int broken( {"):
            pass


def test_the_ring_from_bcc_example_prints_a_known_exec() -> None:
    """examples/ring_from_bcc.py, as a user runs it: an exec of the test's own uid after it
    says it traces comes out with its pid, uid and comm."""
    uid = UID + 4
    example = Path(__file__).parent.parent / "examples" / "ring_from_bcc.py"
    with subprocess.Popen(
        [sys.executable, str(example)], stdout=subprocess.PIPE, text=True
    ) as running:
        assert running.stdout is not None
        assert running.stdout.readline() == "tracing execs for 5 s\n"
        (pid,) = _run_as(uid, 1)
        output, _ = running.communicate(timeout=60)
    assert running.returncode == 0
    assert f"pid={pid} uid={uid} comm=setpriv msg=hello world\n" in output


def test_aiobpf_build_compiles_checks_and_reports_clang(tmp_path: Path) -> None:
    """The command: an object the kernel verifies (--check); clang's words and exit 1 for C
    it refuses; the replacement named for a section this kernel cannot run."""
    if shutil.which("clang") is None:
        pytest.skip("clang builds the test programs (run scripts/setup.sh)")
    command = [sys.executable, "-m", "aiobpf", "build"]
    out = tmp_path / "x.bpf.o"
    done = subprocess.run(
        [*command, str(PROGRAMS / "own_execs.bpf.c"), "-o", str(out), "--check"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert out.is_file()
    assert "the kernel verifies every program of x.bpf.o" in done.stdout
    broken = tmp_path / "broken.bpf.c"
    broken.write_text("int f(void) { return missing; }\n")
    done = subprocess.run([*command, str(broken)], capture_output=True, text=True)
    assert done.returncode == 1
    assert "use of undeclared identifier 'missing'" in done.stderr
    assert not (tmp_path / "broken.bpf.o").exists()
    done = subprocess.run(
        [*command, str(PROGRAMS / "unsupported.bpf.c"), "-o", str(out), "--check"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1
    assert 'use SEC("raw_tp/sched_process_exec")' in done.stderr
