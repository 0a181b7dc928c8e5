"""``aiobpf build FILE.bpf.c [-o FILE.bpf.o] [--btf FILE] [--check]``: BPF C of your own into
a CO-RE object :func:`aiobpf.load` loads (:mod:`aiobpf.build`); ``--check`` then has the kernel
verify it, and prints the verifier's words where it refuses."""

from __future__ import annotations

import argparse
import functools
from pathlib import Path
from typing import TextIO

import anyio.to_thread

from ._running import Stop

__all__ = ["add_parser"]


async def run(args: argparse.Namespace, out: TextIO, stop: Stop) -> int:
    from ..build import compile_object

    built = await anyio.to_thread.run_sync(
        lambda: compile_object(args.source, args.output, btf=args.btf, cflags=args.cflag)
    )
    print(f"built {built}", file=out, flush=True)
    if args.verify:
        from .._kernel.objects import BpfObject
        from ..sources._core_program import set_aside_unsupported

        def verify() -> None:
            refuse = functools.partial(set_aside_unsupported, refuse=True)
            BpfObject._load(built, None, refuse).close()

        await anyio.to_thread.run_sync(verify)
        print(f"the kernel verifies every program of {built.name}", file=out, flush=True)
    return 0


def add_parser(tools: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    build = tools.add_parser(
        "build",
        help="compile BPF C of your own into a CO-RE object for aiobpf.load()",
        description="Compile BPF C into a CO-RE object (clang and bpftool on this machine "
        "only; the hosts that load it need neither).",
    )
    build.add_argument("source", type=Path, metavar="FILE.bpf.c")
    build.add_argument(
        "-o", "--output", type=Path, help="the object to write (default: FILE.bpf.o beside it)"
    )
    build.add_argument(
        "--btf", type=Path, help="build against this BTF file, not the running kernel's"
    )
    build.add_argument(
        "--cflag",
        action="append",
        default=[],
        metavar="FLAG",
        help="one more flag for clang (repeatable), e.g. --cflag=-DMAX=64",
    )
    build.add_argument(
        "--check",
        dest="verify",
        action="store_true",
        help="then load it into the kernel (not attached): the verifier's words if it refuses",
    )
    build.set_defaults(run=run)
