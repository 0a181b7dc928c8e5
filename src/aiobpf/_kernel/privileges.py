"""Whether this process may load and attach tracing programs, said before trying: the kernel's
own refusal (EPERM, or EACCES, which the verifier also returns for a program it rejects) does
not tell a missing capability from a bad program."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import PrivilegeError

__all__ = ["CAPABILITIES", "check_privileges", "effective_capabilities", "may_trace"]

_CAP_SYS_ADMIN = 21
_CAP_PERFMON = 38
_CAP_BPF = 39

#: The capabilities tracing needs (either of the two ways), by name.
CAPABILITIES = {"CAP_BPF": _CAP_BPF, "CAP_PERFMON": _CAP_PERFMON, "CAP_SYS_ADMIN": _CAP_SYS_ADMIN}


def effective_capabilities() -> int:
    """This process's effective capabilities, as a bit set (``CapEff``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return int(line.split()[1], 16)
    return 0


def may_trace(caps: int) -> bool:
    """Whether capabilities ``caps`` allow loading and attaching tracing programs: CAP_BPF
    with CAP_PERFMON, or CAP_SYS_ADMIN (which kernels before 5.8 asked for)."""
    has_bpf = caps & (1 << _CAP_BPF) and caps & (1 << _CAP_PERFMON)
    return bool(has_bpf or caps & (1 << _CAP_SYS_ADMIN))


def check_privileges() -> None:
    """Raises :class:`PrivilegeError` unless the process may load and attach tracing programs."""
    caps = effective_capabilities()
    if not may_trace(caps):
        raise PrivilegeError(
            f"loading BPF programs needs root or CAP_BPF+CAP_PERFMON; this process "
            f"(uid {os.geteuid()}) has effective capabilities {caps:#x}; run it as root with full "
            f"capabilities (sudo), or grant it CAP_BPF and CAP_PERFMON"
        )
