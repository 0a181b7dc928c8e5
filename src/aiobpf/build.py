"""Compiling BPF C of your own into a CO-RE object that :func:`aiobpf.load` loads, on the
machine you develop on (``aiobpf build FILE.bpf.c``), so that the hosts that run it need no
clang, headers or BCC.

The flags are the ones CO-RE needs and aiobpf's own programs are built with: clang for the
``bpf`` target with BTF (``-g``) and the architecture's register names, against a
``vmlinux.h`` that bpftool dumps from the running kernel's BTF (or a BTF file given), then
linked by bpftool, which keeps the BTF and CO-RE relocations and drops the DWARF. ``#include
"vmlinux.h"``, ``<bpf/bpf_helpers.h>`` (libbpf-dev) and ``"aiobpf.h"`` (the counting helpers of
aiobpf's rings) all resolve.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from .errors import CompileError, SetupError
from .programs import _build

__all__ = ["compile_object", "default_output"]

_PROGRAMS = Path(__file__).resolve().parent / "programs"


def default_output(source: Path) -> Path:
    """``x.bpf.c`` -> ``x.bpf.o``; any other ``x.c`` -> ``x.o``."""
    return source.with_suffix(".o")


def _tool(name: str, package: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise SetupError(
            f"building a BPF object needs {name} on this machine (apt-get install {package}); "
            "the hosts that load the object need neither"
        )
    return found


def _cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "aiobpf"


def vmlinux_header(btf: Path | None = None) -> Path:
    """A ``vmlinux.h`` for ``btf`` (the running kernel's by default), dumped once by bpftool
    and kept in the user's cache, in a directory named by the BTF's digest."""
    source = btf or Path("/sys/kernel/btf/vmlinux")
    if not source.is_file():
        raise SetupError(
            f"no BTF at {source}: the kernel needs CONFIG_DEBUG_INFO_BTF, or give --btf FILE"
        )
    data = source.read_bytes()
    header = _cache() / f"btf-{hashlib.sha256(data).hexdigest()[:16]}" / "vmlinux.h"
    if not header.is_file():
        bpftool = _tool("bpftool", "bpftool")
        dumped = subprocess.run(
            [bpftool, "btf", "dump", "file", str(source), "format", "c"],
            capture_output=True,
        )
        if dumped.returncode != 0:
            raise SetupError(f"bpftool cannot read BTF from {source}: {dumped.stderr.decode()}")
        header.parent.mkdir(parents=True, exist_ok=True)
        partial = header.with_suffix(f".{os.getpid()}.tmp")
        partial.write_bytes(dumped.stdout)
        partial.replace(header)
    return header


def compile_object(
    source: str | os.PathLike[str],
    output: str | os.PathLike[str] | None = None,
    *,
    btf: str | os.PathLike[str] | None = None,
    cflags: Sequence[str] = (),
) -> Path:
    """Compiles ``source`` into ``output`` (``x.bpf.o`` beside ``x.bpf.c`` by default) and
    returns its path. ``btf``: a BTF file to build against instead of the running kernel's.

    Raises :class:`aiobpf.SetupError` when clang, bpftool or libbpf's headers are missing (what
    to install), :class:`aiobpf.CompileError` with clang's words when it refuses the C."""
    source_path = Path(source)
    if not source_path.is_file():
        raise SetupError(f"no BPF C file at {source_path}")
    target = Path(output) if output is not None else default_output(source_path)
    clang = _tool("clang", "clang")
    bpftool = _tool("bpftool", "bpftool")
    header = vmlinux_header(Path(btf) if btf is not None else None)
    try:
        arch = _build.target_arch()
    except _build.BuildError as exc:
        raise SetupError(str(exc)) from None
    compiled = target.with_name(f".{target.name}.{os.getpid()}.unlinked")
    command = [clang, "-g", "-O2", "-target", "bpf", f"-D__TARGET_ARCH_{arch}", "-Wall"]
    command += [f"-I{header.parent}", f"-I{_PROGRAMS}", f"-I{source_path.parent}"]
    command += _build.load_sibling("_constants").shared_flags()  # what aiobpf.h expects
    command += [*cflags, "-c", str(source_path), "-o", str(compiled)]
    result = subprocess.run(command, capture_output=True, text=True)
    try:
        if result.returncode != 0:
            words = result.stderr.strip()
            if "bpf/bpf_helpers.h' file not found" in words:
                raise SetupError(
                    "clang finds no <bpf/bpf_helpers.h>: apt-get install libbpf-dev\n" + words
                )
            raise CompileError(f"clang refused {source_path.name}:\n{words}")
        linked = subprocess.run(
            [bpftool, "gen", "object", str(target), str(compiled)], capture_output=True, text=True
        )
        if linked.returncode != 0:
            raise CompileError(f"bpftool cannot link {source_path.name}: {linked.stderr.strip()}")
    finally:
        compiled.unlink(missing_ok=True)
    return target
