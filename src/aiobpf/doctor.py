"""What this host has of what aiobpf needs, checked one by one, each with its remedy:
``aiobpf doctor`` (and ``--json``, for CI and support tickets).

A check reads what the kernel shows (BTF, capabilities, mounts, PMUs) or, where nothing shows
it, tries it: this kernel's config says fentry is built in, and loading an fentry program is
refused all the same, so fentry is probed with a two-instruction program that is never
attached. Checks the shipped tools need decide the verdict; the others (BCC and headers for
your own programs, kprobes, fentry, cgroup v2) say what works and what to use instead.
"""

from __future__ import annotations

import os
import platform
import resource
from collections.abc import Callable
from pathlib import Path

import attrs

from ._kernel.features import kprobes_available, trampolines_refused
from ._kernel.libbpf import libbpf
from ._kernel.mounts import mount_points
from ._kernel.objects import check_built_for
from ._kernel.privileges import CAPABILITIES, effective_capabilities, may_trace
from .errors import AiobpfError, LibbpfMissingError, UnsupportedMachineError

__all__ = ["Check", "checks", "ready"]


@attrs.frozen
class Check:
    """One thing checked: whether it is ``ok``, what was ``found``, and, when it is not ok,
    the ``remedy``. ``needed``: the shipped tools (``execsnoop``, ``serve``...) need it."""

    name: str
    ok: bool
    needed: bool
    found: str
    remedy: str = ""


def _btf() -> Check:
    path = Path("/sys/kernel/btf/vmlinux")
    ok = os.access(path, os.R_OK)
    return Check(
        "kernel BTF",
        ok,
        True,
        f"{path} ({path.stat().st_size // 1024} KiB)" if ok else f"no readable {path}",
        "" if ok else "a kernel built with CONFIG_DEBUG_INFO_BTF=y (Debian's kernels are)",
    )


def _libbpf() -> Check:
    try:
        lib = libbpf()
    except LibbpfMissingError as exc:
        return Check("libbpf", False, True, "libbpf.so.1 cannot be loaded", str(exc))
    major, minor = lib.libbpf_major_version(), lib.libbpf_minor_version()
    return Check(
        "libbpf",
        major >= 1,
        True,
        f"libbpf {major}.{minor}",
        "" if major >= 1 else "libbpf 1.0 or newer: apt-get install libbpf1",
    )


def _privileges() -> Check:
    caps = effective_capabilities()
    held = [name for name, bit in CAPABILITIES.items() if caps & (1 << bit)]
    ok = may_trace(caps)
    return Check(
        "privileges",
        ok,
        True,
        f"uid {os.geteuid()}, with " + (", ".join(held) or f"none of {', '.join(CAPABILITIES)}"),
        "" if ok else "run as root (sudo aiobpf ...), or grant CAP_BPF and CAP_PERFMON",
    )


def _lockdown() -> Check:
    path = Path("/sys/kernel/security/lockdown")
    try:
        text = path.read_text().strip()
    except OSError:
        return Check("lockdown", True, True, "no lockdown interface: not locked down")
    mode = text[text.find("[") + 1 : text.find("]")] if "[" in text else text
    ok = mode != "confidentiality"
    return Check(
        "lockdown",
        ok,
        True,
        f"lockdown={mode}",
        ""
        if ok
        else "lockdown=confidentiality refuses reading kernel memory from BPF: boot "
        "with lockdown=integrity or none (Secure Boot may set it)",
    )


def _unprivileged_bpf() -> Check:
    try:
        value = Path("/proc/sys/kernel/unprivileged_bpf_disabled").read_text().strip()
    except OSError:
        value = "unknown"
    meaning = {"0": "any user may load some BPF programs", "1": "only privileged users load BPF"
               " (for good)", "2": "only privileged users load BPF"}.get(value, "")  # fmt: skip
    return Check(
        "unprivileged BPF",
        True,
        False,
        f"kernel.unprivileged_bpf_disabled={value}"
        + (f": {meaning}" if meaning else "")
        + "; aiobpf runs privileged either way",
    )


def _tracefs() -> Check:
    mounts = mount_points("tracefs")
    if not mounts:
        return Check(
            "tracefs",
            os.geteuid() == 0,
            True,
            "not mounted; aiobpf mounts it at /sys/kernel/tracing when run as root",
            "mount -t tracefs tracefs /sys/kernel/tracing",
        )
    readable = os.access(mounts[0] / "events", os.R_OK | os.X_OK)
    return Check(
        "tracefs",
        readable,
        True,
        f"mounted at {mounts[0]}" + ("" if readable else f", not readable by uid {os.geteuid()}"),
        "" if readable else "run as root (tracepoints' ids and formats are read there)",
    )


def _debugfs() -> Check:
    mounts = mount_points("debugfs")
    if mounts:
        return Check("debugfs", True, False, f"mounted at {mounts[0]} (BCC looks there too)")
    return Check(
        "debugfs",
        False,
        False,
        "not mounted: aiobpf needs only tracefs; some BCC tools look for tracepoints here",
        "mount -t debugfs debugfs /sys/kernel/debug",
    )


def _kprobes() -> Check:
    if kprobes_available():
        return Check("kprobes", True, False, "the kprobe PMU is there")
    return Check(
        "kprobes",
        False,
        False,
        "this kernel has no kprobes (no kprobe PMU)",
        "use tracepoints (syscalls:sys_enter_* and sys_exit_*, sched:*), raw tracepoints or "
        "uprobes; aiobpf's programs use tracepoints only",
    )


def _fentry() -> Check:
    refused = trampolines_refused()
    if refused is None:
        return Check("fentry/fexit", True, False, "an fentry program loads")
    return Check(
        "fentry/fexit",
        False,
        False,
        f"loading an fentry program is refused: {refused}",
        "use tracepoints or raw tracepoints (tp_btf and fentry need BPF trampolines)",
    )


def _memlock() -> Check:
    soft, _ = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    shown = "unlimited" if soft == resource.RLIM_INFINITY else f"{soft // 1024} KiB"
    return Check(
        "memlock",
        True,
        False,
        f"RLIMIT_MEMLOCK {shown}; kernels since 5.11 charge BPF memory to the cgroup instead",
    )


def _machine() -> Check:
    directory = Path(__file__).parent / "programs"
    objects = sorted(directory.glob("*.bpf.o"))
    if not objects:
        return Check(
            "aiobpf's programs",
            False,
            True,
            f"no compiled programs in {directory}",
            "install a wheel built by python -m build, or run scripts/setup.sh in a checkout",
        )
    from .sources._ring import require_tso

    try:
        check_built_for(objects[0])
        require_tso("aiobpf's ring reading")
    except UnsupportedMachineError as exc:
        return Check("aiobpf's programs", False, True, f"{len(objects)} programs", str(exc))
    return Check(
        "aiobpf's programs", True, True, f"{len(objects)} programs, for {platform.machine()}"
    )


def _bcc() -> Check:
    from ._kernel.bcc import import_bcc

    try:
        module = import_bcc()
    except AiobpfError as exc:
        return Check("BCC", False, False, "not found (your own BCC programs need it)", str(exc))
    return Check("BCC", True, False, f"{module.__file__} (for your own BCC programs)")


def _kernel_headers() -> Check:
    build = Path("/lib/modules") / os.uname().release / "build" / "include"
    if build.is_dir():
        return Check("kernel headers", True, False, f"{build.parent} (BCC compiles against them)")
    return Check(
        "kernel headers",
        False,
        False,
        f"none at {build.parent} (only BCC programs need them)",
        f"apt-get install linux-headers-{os.uname().release}, or scripts/setup.sh bcc",
    )


def _cgroup2() -> Check:
    from ._kernel.cgroups import cgroup_root

    try:
        root = cgroup_root()
    except AiobpfError as exc:
        return Check("cgroup v2", False, False, "not mounted (cgroup filters need it)", str(exc))
    return Check("cgroup v2", True, False, f"mounted at {root}")


_CHECKS: tuple[Callable[[], Check], ...] = (
    _machine, _btf, _libbpf, _privileges, _lockdown, _tracefs, _debugfs, _unprivileged_bpf,
    _kprobes, _fentry, _memlock, _cgroup2, _bcc, _kernel_headers,
)  # fmt: skip


def checks() -> list[Check]:
    """Every check, in the order ``aiobpf doctor`` shows them."""
    return [check() for check in _CHECKS]


def ready(results: list[Check]) -> bool:
    """Whether the shipped tools can run: every check they need passed."""
    return all(check.ok for check in results if check.needed)
