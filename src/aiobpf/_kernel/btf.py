"""Offsets of kernel struct members, read from the running kernel's BTF through libbpf.

BCC compiles against whatever headers the machine has, and those may belong to another kernel
version than the one running (Debian's headers package beside a newer kernel). A program that reads
``task->real_parent->tgid`` with header offsets would then read the wrong memory. The kernel's own
BTF (``/sys/kernel/btf/vmlinux``) describes the running layout, so aiobpf asks libbpf for the
offsets and passes them to the BPF C as ``-D`` constants.
"""

from __future__ import annotations

import ctypes
import functools

from ..errors import BtfError
from .libbpf import BtfMember, BtfType, libbpf

__all__ = ["member_offset"]

_KIND_STRUCT = 4
_KIND_UNION = 5


def _find(lib: ctypes.CDLL, btf: int, type_id: int, member: bytes) -> int | None:
    """Bit offset of ``member`` in the struct/union ``type_id``, looking into anonymous members."""
    entry = lib.btf__type_by_id(btf, type_id)
    kind = (entry.contents.info >> 24) & 0x1F
    if kind not in (_KIND_STRUCT, _KIND_UNION):
        return None
    vlen = entry.contents.info & 0xFFFF
    kind_flag = entry.contents.info >> 31
    members = ctypes.cast(
        ctypes.addressof(entry.contents) + ctypes.sizeof(BtfType), ctypes.POINTER(BtfMember)
    )
    for i in range(vlen):
        item = members[i]
        bits = item.offset & 0xFFFFFF if kind_flag else item.offset
        name = lib.btf__name_by_offset(btf, item.name_off) or b""
        if name == member:
            return int(bits)
        if not name:
            inner_id = lib.btf__resolve_type(btf, item.type)
            inner = _find(lib, btf, inner_id, member) if inner_id > 0 else None
            if inner is not None:
                return int(bits) + inner
    return None


@functools.cache
def member_offset(struct: str, member: str) -> int:
    """Byte offset of ``struct.member`` in the running kernel; raises :class:`aiobpf.BtfError`."""
    lib = libbpf()
    btf = lib.btf__load_vmlinux_btf()
    if not btf:
        raise BtfError(
            "cannot load the kernel's BTF from /sys/kernel/btf/vmlinux "
            "(a kernel built with CONFIG_DEBUG_INFO_BTF=y is needed)"
        )
    try:
        type_id = lib.btf__find_by_name_kind(btf, struct.encode(), _KIND_STRUCT)
        bits = _find(lib, btf, type_id, member.encode()) if type_id > 0 else None
    finally:
        lib.btf__free(btf)
    if bits is None:
        raise BtfError(f"the running kernel's BTF has no member {member!r} in struct {struct}")
    return bits // 8
