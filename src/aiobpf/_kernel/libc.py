"""The C library through ctypes, loaded once: the calls aiobpf needs that Python does not wrap
(``perf_event_open`` through ``syscall``, ``ioctl`` on a perf event, ``vsnprintf`` for libbpf's
messages)."""

from __future__ import annotations

import ctypes
import functools

__all__ = ["libc"]


@functools.cache
def libc() -> ctypes.CDLL:
    """The process's C library, with ``errno`` kept for :func:`ctypes.get_errno`."""
    lib = ctypes.CDLL(None, use_errno=True)
    lib.vsnprintf.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_void_p]
    lib.vsnprintf.restype = ctypes.c_int
    return lib
