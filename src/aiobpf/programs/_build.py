"""Compiling aiobpf's CO-RE programs into the ``.bpf.o`` objects libbpf loads: what the wheel's
build runs (``setup.py``) and what set-up runs for a checkout (``scripts/build_programs.sh``).

It is run by path, not imported from an installed aiobpf: a PEP 517 build runs in an environment
of its own, where aiobpf is not installed, and must not reach into a ``.venv``. So it imports
nothing of aiobpf's and takes the shared constants from its caller (``_constants.py``, which
imports nothing either, loaded beside it by :func:`load_sibling`).

clang and bpftool are needed here only, on the machine that builds: clang compiles each program
against a ``vmlinux.h`` that bpftool dumps from the running kernel's BTF (or from a BTF file
given as ``AIOBPF_BTF``; a ready header may be given as ``AIOBPF_VMLINUX_H``), and bpftool links
the object, which keeps its BTF and CO-RE relocations and drops the DWARF. libbpf relocates every
field read for the kernel that loads the object, so one build serves every kernel with BTF of
the same architecture.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

__all__ = ["BUILT_FOR", "PREBUILT", "BuildError", "build_all", "load_sibling", "target_arch"]

#: The CO-RE objects the build makes (``<name>.bpf.o`` beside the C), each from
#: ``<source>.bpf.c`` with its own flags. The other programs are BCC's to compile.
PREBUILT: dict[str, tuple[str, tuple[str, ...]]] = {
    "execve": ("execve", ()),
    "hello": ("hello", ()),
    "top_uids": ("top_uids", ()),
    "execve_window_uid": ("execve_window", ()),
    "execve_window_comm": ("execve_window", ("-DAIOBPF_KEY_COMM",)),
    "dispatch": ("dispatch", ()),
    "process": ("process", ()),
    "opens": ("opens", ()),
    "connects": ("connects", ()),
    "runqlat": ("runqlat", ()),
    "biolatency": ("biolatency", ()),
}

#: Beside the objects: the machine (``uname -m``) they were compiled for.
BUILT_FOR = "BUILT_FOR"

#: clang's name for each architecture's registers (``__TARGET_ARCH_*``, bpf_tracing.h).
_ARCHES = {"x86_64": "x86", "aarch64": "arm64", "arm64": "arm64", "s390x": "s390",
           "ppc64le": "powerpc", "riscv64": "riscv"}  # fmt: skip

_HERE = Path(__file__).resolve().parent


class BuildError(Exception):
    """A tool is missing or refused: the message says which and how to get it."""


def target_arch(machine: str | None = None) -> str:
    machine = machine or platform.machine()
    try:
        return _ARCHES[machine]
    except KeyError:
        raise BuildError(f"aiobpf's programs cannot be built for {machine}") from None


def _tool(name: str, package: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise BuildError(
            f"building aiobpf's BPF programs needs {name} on the build machine only "
            f"(apt-get install {package}); running them needs neither"
        )
    return found


def _vmlinux_header(build: Path) -> Path:
    given = os.environ.get("AIOBPF_VMLINUX_H")
    if given:
        return Path(given)
    btf = Path(os.environ.get("AIOBPF_BTF", "/sys/kernel/btf/vmlinux"))
    if not btf.is_file():
        raise BuildError(
            f"no kernel BTF at {btf}: building needs a kernel with CONFIG_DEBUG_INFO_BTF, or "
            "AIOBPF_BTF (a BTF file) or AIOBPF_VMLINUX_H (a ready vmlinux.h)"
        )
    header = build / "vmlinux.h"
    if not header.is_file() or header.stat().st_mtime < btf.stat().st_mtime:
        bpftool = _tool("bpftool", "bpftool")
        dumped = subprocess.run(
            [bpftool, "btf", "dump", "file", str(btf), "format", "c"],
            check=True,
            capture_output=True,
        ).stdout
        partial = header.with_suffix(".tmp")
        partial.write_bytes(dumped)
        partial.replace(header)
    return header


def _stale(target: Path, sources: Sequence[Path]) -> bool:
    return not target.is_file() or any(
        source.stat().st_mtime >= target.stat().st_mtime for source in sources
    )


def build_all(out: Path, build: Path, flags: Sequence[str], *, say: bool = True) -> list[Path]:
    """Compiles every program of :data:`PREBUILT` into ``out`` (temporary files in ``build``),
    skipping an object newer than everything it is made from; returns the objects' paths.
    ``flags``: the shared constants as ``-D`` flags (``_constants.shared_flags()``)."""
    clang = _tool("clang", "clang")
    bpftool = _tool("bpftool", "bpftool")
    arch = target_arch()
    build.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    header = _vmlinux_header(build)
    made = []
    for name, (source_name, extra) in PREBUILT.items():
        source = _HERE / f"{source_name}.bpf.c"
        target = out / f"{name}.bpf.o"
        made.append(target)
        inputs = [
            source,
            _HERE / "aiobpf.h",
            _HERE / "aiobpf_log2.h",
            _HERE / "_constants.py",
            Path(__file__),
            header,
        ]
        if not _stale(target, inputs):
            continue
        if say:
            print(f"build_programs: clang {source.name} -> {target.name}", file=sys.stderr)
        compiled, linked = build / f"{name}.o", build / f"{name}.linked.o"
        command = [clang, "-g", "-O2", "-target", "bpf", f"-D__TARGET_ARCH_{arch}"]
        command += [f"-I{header.parent}", f"-I{_HERE}", *flags, *extra]
        command += ["-c", str(source), "-o", str(compiled)]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise BuildError(f"clang refused {source.name}:\n{result.stderr}")
        # linked by bpftool: the BTF and CO-RE relocations stay, the DWARF goes
        subprocess.run([bpftool, "gen", "object", str(linked), str(compiled)], check=True)
        linked.replace(target)
    (out / BUILT_FOR).write_text(platform.machine() + "\n")
    return made


def load_sibling(name: str) -> ModuleType:
    """Module ``name`` of this directory, loaded by path (it must import nothing of aiobpf's)."""
    spec = importlib.util.spec_from_file_location(f"_aiobpf_build_{name}", _HERE / f"{name}.py")
    if spec is None or spec.loader is None:
        raise BuildError(f"cannot load {name}.py from {_HERE}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv: Sequence[str]) -> int:
    """``python _build.py OUT BUILD``: what scripts/build_programs.sh runs."""
    out, build = (Path(arg) for arg in argv)
    try:
        build_all(out, build, load_sibling("_constants").shared_flags())
    except BuildError as exc:
        print(f"build_programs: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
