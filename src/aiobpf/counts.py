"""``execve_counts()``: exec calls (execve and execveat) per uid, counted in the kernel."""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Iterable
from typing import Any

import anyio.to_thread

from ._bcc import Program
from ._libbpf import check, libbpf
from ._programs import include_flags, program_text
from .maps import MapPoller, Mode

__all__ = ["execve_counts"]


def _compile(uids: tuple[int, ...] | None) -> Program:
    flags = [*include_flags(), *([] if uids is None else ["-DAIOBPF_UID_FILTER"])]
    program = Program.compile(program_text("top_uids"), cflags=flags)
    try:
        if uids is not None:
            fd = program.bpf[b"uid_filter"].get_fd()
            present = ctypes.c_uint8(1)
            for uid in uids:
                key = ctypes.c_uint32(uid)
                check(
                    libbpf().bpf_map_update_elem(fd, ctypes.byref(key), ctypes.byref(present), 0),
                    f"adding uid {uid} to the filter",
                )
    except BaseException:
        program.close()
        raise
    return program


async def execve_counts(
    *, interval: float = 2.0, mode: Mode = "snapshot", uids: Iterable[int] | None = None
) -> MapPoller[int, int]:
    """A :class:`MapPoller` of ``{uid: exec calls}`` (``execve`` and ``execveat``, counted at
    their entry), kept in a kernel hash map; each reading's ``dropped`` counts the calls of uids
    the full map had no room for.

    ``uids`` counts only those users, filtering in the kernel (others cost one map lookup).
    ``mode`` as in :class:`aiobpf.MapPoller`; the default snapshot is cumulative since start.
    Raises what :meth:`aiobpf.Program.compile` raises.
    """
    wanted = None if uids is None else tuple(sorted({int(uid) for uid in uids}))
    program = await anyio.to_thread.run_sync(functools.partial(_compile, wanted))
    poller: MapPoller[Any, Any] = MapPoller.from_bcc(
        program.bpf, "counts", interval=interval, mode=mode, owned=[program.close]
    )
    try:
        await anyio.lowlevel.checkpoint_if_cancelled()
    except BaseException:
        await poller.aclose()
        raise
    return poller
