"""The wheel's build: compiles aiobpf's CO-RE programs into the package (aiobpf/programs/*.bpf.o)
and tags the wheel for the architecture they were compiled for, for any Python 3
(``py3-none-linux_x86_64``). Everything else is declared in pyproject.toml.

clang and bpftool are needed here, on the machine that builds, and nowhere else: an installed
aiobpf loads the objects with libbpf. The compiling is aiobpf/programs/_build.py's, run by path:
the build environment has no aiobpf to import.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from setuptools import Distribution, setup
from setuptools.command.bdist_wheel import bdist_wheel
from setuptools.command.build_py import build_py

PROGRAMS = Path(__file__).resolve().parent / "src" / "aiobpf" / "programs"


def _build_module() -> ModuleType:
    """aiobpf/programs/_build.py, loaded by path (it then loads its own siblings)."""
    spec = importlib.util.spec_from_file_location("_aiobpf_build", PROGRAMS / "_build.py")
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot load {PROGRAMS / '_build.py'}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class BuildWithPrograms(build_py):
    """build_py, then the BPF objects compiled into the built package."""

    def run(self) -> None:
        super().run()
        if self.editable_mode:  # a checkout: scripts/build_programs.sh compiles into src/
            return
        build = _build_module()
        flags = build.load_sibling("_constants").shared_flags()
        out = Path(self.build_lib) / "aiobpf" / "programs"
        try:
            build.build_all(out, Path("build") / "bpf", flags)
        except build.BuildError as exc:
            raise SystemExit(f"error: {exc}") from exc


class ArchitectureDistribution(Distribution):
    """Not pure Python: the BPF objects are for one architecture (installed as platlib)."""

    def has_ext_modules(self) -> bool:
        return True


class ArchitectureWheel(bdist_wheel):
    """A wheel for one architecture (its BPF objects) and every Python 3 (no extension)."""

    def get_tag(self) -> tuple[str, str, str]:
        _, _, platform = super().get_tag()
        return "py3", "none", platform


setup(
    distclass=ArchitectureDistribution,
    cmdclass={"build_py": BuildWithPrograms, "bdist_wheel": ArchitectureWheel},
)
