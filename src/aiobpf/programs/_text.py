"""The BPF C programs shipped with aiobpf (beside this module), and the flags they are
compiled with."""

from __future__ import annotations

from importlib import resources

from ._constants import shared_flags

__all__ = ["include_flags", "program_text"]

_HERE = resources.files(__package__ or "aiobpf.programs")


def program_text(name: str) -> str:
    """The C text of ``aiobpf/programs/<name>.bpf.c``."""
    return _HERE.joinpath(f"{name}.bpf.c").read_text()


def include_flags() -> list[str]:
    """The flags every program is compiled with: ``-I`` for the directory holding ``aiobpf.h``,
    and the constants C and Python share (:mod:`aiobpf.programs._constants`)."""
    return [f"-I{_HERE}", *shared_flags()]
