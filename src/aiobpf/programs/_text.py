"""The BPF C programs shipped with aiobpf (beside this module), and the flags they are
compiled with."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from ._build import PREBUILT
from ._constants import shared_flags

__all__ = ["PREBUILT", "execve_object", "include_flags", "prebuilt_path", "program_text"]

_HERE = resources.files(__package__ or "aiobpf.programs")


def program_text(name: str) -> str:
    """The C text of ``aiobpf/programs/<name>.bpf.c``."""
    return _HERE.joinpath(f"{name}.bpf.c").read_text()


def prebuilt_path(name: str) -> Path:
    """Where the CO-RE object of program ``name`` is (``aiobpf/programs/<name>.bpf.o``)."""
    return Path(str(_HERE.joinpath(f"{name}.bpf.o")))


def execve_object(ring_size: int) -> tuple[Path, dict[str, int]]:
    """The execve object and its map sizes for a ring of ``ring_size`` bytes: what
    ``execve_events()`` loads and what ``aiobpf execsnoop`` preloads (here, away from numpy,
    so that both ask for the same)."""
    return prebuilt_path("execve"), {"events": ring_size}


def include_flags() -> list[str]:
    """The flags every program is compiled with: ``-I`` for the directory holding ``aiobpf.h``,
    and the constants C and Python share (:mod:`aiobpf.programs._constants`)."""
    return [f"-I{_HERE}", *shared_flags()]
