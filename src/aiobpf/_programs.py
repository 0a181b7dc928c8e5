"""The BPF C programs shipped with aiobpf, and the flags they are compiled with."""

from __future__ import annotations

from importlib import resources

__all__ = ["include_flags", "program_text"]


def program_text(name: str) -> str:
    """The C text of ``aiobpf/bpf/<name>.bpf.c``."""
    return resources.files("aiobpf").joinpath("bpf", f"{name}.bpf.c").read_text()


def include_flags() -> list[str]:
    """``-I`` for the directory holding ``aiobpf.h``."""
    return [f"-I{resources.files('aiobpf').joinpath('bpf')}"]
