"""What program kinds the running kernel can run, and what to use instead where it cannot.

A kernel built without kprobes has no kprobe PMU; one that refuses BPF trampolines (fentry,
fexit, tp_btf, LSM) says so only when such a program is loaded. Both are asked of the kernel,
not assumed: a section of a user's object that cannot run here gets an error naming the
tracepoint to use before libbpf fails the whole object with an errno.
"""

from __future__ import annotations

import collections
import ctypes
import functools
import os
import platform
import re
import struct
from pathlib import Path

from ..errors import LibbpfMissingError
from .libbpf import libbpf
from .libc import libc

__all__ = ["kprobes_available", "syscall_of", "trampolines_refused", "unsupported_section"]

_TRACEFS_ROOTS = (Path("/sys/kernel/tracing"), Path("/sys/kernel/debug/tracing"))

#: Section prefixes of each kind (libbpf's section names, ``SEC("kprobe/...")``).
_KPROBE_KINDS = ("kprobe", "kretprobe", "kprobe.multi", "kretprobe.multi", "ksyscall",
                 "kretsyscall")  # fmt: skip
_TRAMPOLINE_KINDS = ("fentry", "fexit", "fmod_ret", "tp_btf", "lsm", "fentry.s", "fexit.s",
                     "fmod_ret.s", "lsm.s", "lsm_cgroup", "iter", "iter.s", "freplace")  # fmt: skip


@functools.cache
def kprobes_available() -> bool:
    """Whether the kernel has kprobes (its kprobe PMU, or tracefs' kprobe_events)."""
    if os.path.exists("/sys/bus/event_source/devices/kprobe"):
        return True
    # os.path.exists: False, not PermissionError, where tracefs is root's only
    return any(os.path.exists(root / "kprobe_events") for root in _TRACEFS_ROOTS)


@functools.cache
def trampolines_refused() -> str | None:
    """Why loading an fentry program on ``vfs_read`` fails, or None when it loads (it is
    closed at once, never attached). Through bpf(2) itself: libbpf's call for it changed its
    options across 1.x, and the attribute block of the system call has not."""
    try:
        lib = libbpf()
    except LibbpfMissingError:
        return "libbpf is missing, so it could not be tried"
    btf = lib.btf__load_vmlinux_btf()
    if not btf:
        return "no kernel BTF"
    try:
        function = lib.btf__find_by_name_kind(btf, b"vfs_read", _BTF_KIND_FUNC)
    finally:
        lib.btf__free(btf)
    if function < 0:
        return "vfs_read is not in the kernel's BTF"
    code = ctypes.create_string_buffer(struct.pack("<BBhiBBhi", *_RETURN_ZERO))
    license_ = ctypes.create_string_buffer(b"GPL")
    attr = bytearray(128)  # union bpf_attr, as BPF_PROG_LOAD reads it
    struct.pack_into("<IIQQ", attr, 0, _BPF_PROG_TYPE_TRACING, 2, ctypes.addressof(code),
                     ctypes.addressof(license_))  # fmt: skip
    struct.pack_into("<I", attr, 68, _BPF_TRACE_FENTRY)  # expected_attach_type
    struct.pack_into("<I", attr, 108, function)  # attach_btf_id
    buffer = ctypes.create_string_buffer(bytes(attr), len(attr))
    fd = libc().syscall(_SYS_BPF[platform.machine()], _BPF_PROG_LOAD, buffer, len(attr))
    if fd < 0:
        return os.strerror(ctypes.get_errno())
    os.close(fd)
    return None


_SYS_BPF = collections.defaultdict(lambda: 321, {"x86_64": 321, "aarch64": 280})
_BPF_PROG_LOAD, _BPF_PROG_TYPE_TRACING, _BPF_TRACE_FENTRY, _BTF_KIND_FUNC = 5, 26, 24, 12
_RETURN_ZERO = (0xB7, 0, 0, 0, 0x95, 0, 0, 0)  # r0 = 0; exit

_SYSCALL_PREFIX = re.compile(r"^(__x64_sys_|__arm64_sys_|__se_sys_|__do_sys_|do_sys_|sys_|do_)")


def syscall_of(function: str) -> str | None:
    """The syscall whose tracepoints stand in for a probe on kernel function ``function``
    (``__x64_sys_openat``, ``do_sys_openat2``...), where this kernel has them; else None."""
    syscall = _SYSCALL_PREFIX.sub("", function.split("+")[0])
    for root in _TRACEFS_ROOTS:
        if os.path.isdir(root / "events" / "syscalls" / f"sys_enter_{syscall}"):
            return syscall
    return None


def _tracepoint_for(function: str) -> str:
    """The tracepoints to use in place of a probe on kernel function ``function``."""
    syscall = syscall_of(function)
    if syscall is not None:
        return (
            f'SEC("tracepoint/syscalls/sys_enter_{syscall}") or '
            f'SEC("tracepoint/syscalls/sys_exit_{syscall}")'
        )
    return 'a tracepoint (see /sys/kernel/tracing/events) or a raw tracepoint (SEC("raw_tp/..."))'


def unsupported_section(section: str) -> str | None:
    """Why the running kernel cannot run a program in ``section``, naming what to use instead;
    None when it can (or when it is not a kind aiobpf knows to be missing)."""
    kind, _, target = section.partition("/")
    if kind in _KPROBE_KINDS and not kprobes_available():
        return (
            f'SEC("{section}") is a kprobe, and this kernel was built without kprobes: '
            f"use {_tracepoint_for(target)}"
        )
    if kind in _TRAMPOLINE_KINDS:
        refused = trampolines_refused()
        if refused is None:
            return None
        if kind == "tp_btf":
            instead = f'SEC("raw_tp/{target}") (the same tracepoint, its arguments as u64s)'
        elif kind.startswith(("fentry", "fexit", "fmod_ret")):
            instead = _tracepoint_for(target)
        else:
            instead = "a tracepoint or a raw tracepoint"
        return (
            f'SEC("{section}") needs BPF trampolines, which this kernel refuses '
            f"({refused}): use {instead}"
        )
    return None
