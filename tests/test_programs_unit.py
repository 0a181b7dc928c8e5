"""The constants C and Python share are written once, in aiobpf/programs/_constants.py: the C
programs use them as -D flags and keep no copy of their own."""

from __future__ import annotations

import re
from importlib import resources

from aiobpf.lowlevel import EXECVE_RECORD, LOG_RECORD, SYSCALL_RECORD
from aiobpf.programs import _constants
from aiobpf.programs._text import include_flags

#: Flags a program is compiled with that are not shared constants: measured on the running
#: kernel, chosen per source, or the header's own guard.
PER_COMPILE = {
    "H",  # include guards: AIOBPF_H, AIOBPF_LOG2_H; and the headers' own macros
    "HIST_ADD",
    "HISTOGRAM",
    "RING",
    "LOG2_H",
    "KEY_COMM",
    "LOG_INFO",
    "MAX_ARGS",
    "PAD_BYTES",
    "PERF_OUTPUT",
    "PID_WORDS",
    "RING_PAGES",
    "SUBMIT_FLAGS",
    "TARGET_TGID",
    "TASK_REAL_PARENT",
    "TASK_TGID",
    "THREAD_STATUS",
    "UID_FILTER",
    "USER_HANDLERS",
}


def _c_sources() -> dict[str, str]:
    here = resources.files("aiobpf.programs")
    return {
        entry.name: entry.read_text()
        for entry in here.iterdir()
        if entry.name.endswith((".bpf.c", ".h"))
    }


def test_every_constant_the_c_uses_comes_from_python() -> None:
    for name, text in _c_sources().items():
        for used in set(re.findall(r"\bAIOBPF_([A-Z0-9_]+)\b", text)):
            if used.startswith("REGS_"):
                continue  # pt_regs offsets, measured from BTF
            assert used in _constants.SHARED or used in PER_COMPILE, f"{name}: AIOBPF_{used}"


def test_no_c_program_defines_a_shared_constant_again() -> None:
    for name, text in _c_sources().items():
        defined = set(re.findall(r"^#define\s+(\w+)", text, flags=re.M))
        copies = {f"AIOBPF_{shared}" for shared in _constants.SHARED} & defined
        copies |= set(_constants.SHARED) & defined
        assert not copies, f"{name} defines {copies} again"
        assert "struct comm_key {" not in text or name == "aiobpf.h", name


def test_every_program_is_compiled_with_the_shared_constants() -> None:
    flags = include_flags()
    for name, value in _constants.SHARED.items():
        assert f"-DAIOBPF_{name}={value}" in flags


def test_the_record_layouts_follow_the_shared_sizes() -> None:
    assert EXECVE_RECORD["comm"].itemsize == _constants.COMM_SIZE
    assert EXECVE_RECORD["filename"].itemsize == _constants.FILENAME_SIZE
    assert EXECVE_RECORD["args"].itemsize == _constants.ARGS_SIZE
    assert LOG_RECORD["comm"].itemsize == SYSCALL_RECORD["comm"].itemsize == _constants.COMM_SIZE


def test_a_comm_key_is_what_the_kernel_compares() -> None:
    assert _constants.comm_key("bash") == b"bash".ljust(16, b"\0")
    assert _constants.comm_key("a-very-long-process-name") == b"a-very-long-pro\0"
