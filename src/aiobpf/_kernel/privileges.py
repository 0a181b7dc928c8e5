"""Whether this process may load and attach tracing programs, said before trying: the kernel's
own refusal (EPERM, or EACCES, which the verifier also returns for a program it rejects) does
not tell a missing capability from a bad program."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import PrivilegeError

__all__ = ["check_privileges"]

_CAP_SYS_ADMIN = 21
_CAP_PERFMON = 38
_CAP_BPF = 39


def _effective_capabilities() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return int(line.split()[1], 16)
    return 0


def check_privileges() -> None:
    """Raises :class:`PrivilegeError` unless the process may load and attach tracing programs."""
    caps = _effective_capabilities()
    has_bpf = caps & (1 << _CAP_BPF) and caps & (1 << _CAP_PERFMON)
    if not (has_bpf or caps & (1 << _CAP_SYS_ADMIN)):
        raise PrivilegeError(
            f"loading BPF programs needs root or CAP_BPF+CAP_PERFMON; this process "
            f"(uid {os.geteuid()}) has effective capabilities {caps:#x}; run it as root with full "
            f"capabilities (sudo), or grant it CAP_BPF and CAP_PERFMON"
        )
