"""libbpf through ctypes: the BPF syscalls aiobpf makes on map fds, and kernel BTF.

BCC covers compiling and attaching; for reading maps in batches and for BTF, libbpf (Debian's
``libbpf1``) is the maintained implementation, so aiobpf calls it rather than issuing ``bpf(2)``
itself. libbpf 1.x functions return a negative errno on failure (and set ``errno``); every call
goes through :func:`check`, which raises :class:`aiobpf.MapError` (an OSError) with that errno.
"""

from __future__ import annotations

import ctypes
import functools
import os

from ..errors import LibbpfMissingError, MapError

__all__ = ["BtfMember", "BtfType", "check", "libbpf", "write_element"]


class BtfType(ctypes.Structure):
    _fields_ = [("name_off", ctypes.c_uint32), ("info", ctypes.c_uint32), ("size", ctypes.c_uint32)]


class BtfMember(ctypes.Structure):
    _fields_ = [
        ("name_off", ctypes.c_uint32),
        ("type", ctypes.c_uint32),
        ("offset", ctypes.c_uint32),
    ]


_P = ctypes.c_void_p
_U32P = ctypes.POINTER(ctypes.c_uint32)
_PROTOTYPES: dict[str, tuple[list[type], type | None]] = {
    "btf__load_vmlinux_btf": ([], ctypes.c_void_p),
    "btf__free": ([_P], None),
    "btf__find_by_name_kind": ([_P, ctypes.c_char_p, ctypes.c_uint32], ctypes.c_int32),
    "btf__type_by_id": ([_P, ctypes.c_uint32], ctypes.POINTER(BtfType)),
    "btf__name_by_offset": ([_P, ctypes.c_uint32], ctypes.c_char_p),
    "btf__resolve_type": ([_P, ctypes.c_uint32], ctypes.c_int32),
    "bpf_map_get_next_key": ([ctypes.c_int, _P, _P], ctypes.c_int),
    "bpf_map_lookup_elem": ([ctypes.c_int, _P, _P], ctypes.c_int),
    "bpf_map_lookup_and_delete_elem": ([ctypes.c_int, _P, _P], ctypes.c_int),
    "bpf_map_update_elem": ([ctypes.c_int, _P, _P, ctypes.c_uint64], ctypes.c_int),
    "bpf_map_delete_elem": ([ctypes.c_int, _P], ctypes.c_int),
    "bpf_map_lookup_batch": ([ctypes.c_int, _P, _P, _P, _P, _U32P, _P], ctypes.c_int),
    "bpf_map_lookup_and_delete_batch": ([ctypes.c_int, _P, _P, _P, _P, _U32P, _P], ctypes.c_int),
    "bpf_prog_get_next_id": ([ctypes.c_uint32, _U32P], ctypes.c_int),
    "bpf_map_get_next_id": ([ctypes.c_uint32, _U32P], ctypes.c_int),
    "bpf_link_get_next_id": ([ctypes.c_uint32, _U32P], ctypes.c_int),
    "libbpf_num_possible_cpus": ([], ctypes.c_int),
    "libbpf_major_version": ([], ctypes.c_uint32),
    "libbpf_minor_version": ([], ctypes.c_uint32),
    # the object API: prebuilt CO-RE objects (objects.py)
    "bpf_object__open_file": ([ctypes.c_char_p, _P], _P),
    "bpf_object__load": ([_P], ctypes.c_int),
    "bpf_object__close": ([_P], None),
    "bpf_object__find_map_by_name": ([_P, ctypes.c_char_p], _P),
    "bpf_map__set_max_entries": ([_P, ctypes.c_uint32], ctypes.c_int),
    "bpf_map__fd": ([_P], ctypes.c_int),
    "bpf_object__next_program": ([_P, _P], _P),
    "bpf_program__section_name": ([_P], ctypes.c_char_p),
    "bpf_program__attach": ([_P], _P),
    "bpf_object__find_program_by_name": ([_P, ctypes.c_char_p], _P),
    "bpf_program__fd": ([_P], ctypes.c_int),
    "bpf_link__destroy": ([_P], ctypes.c_int),
    "libbpf_set_print": ([_P], _P),
    # objects of your own (aiobpf.load): memory, BTF, globals, programs not to load, uprobes
    "bpf_object__open_mem": ([_P, ctypes.c_size_t, _P], _P),
    "bpf_object__btf": ([_P], _P),
    "btf__type_cnt": ([_P], ctypes.c_uint32),
    "bpf_object__next_map": ([_P, _P], _P),
    "bpf_map__name": ([_P], ctypes.c_char_p),
    "bpf_map__type": ([_P], ctypes.c_int),
    "bpf_map__btf_key_type_id": ([_P], ctypes.c_uint32),
    "bpf_map__btf_value_type_id": ([_P], ctypes.c_uint32),
    "bpf_map__initial_value": ([_P, ctypes.POINTER(ctypes.c_size_t)], _P),
    "bpf_program__name": ([_P], ctypes.c_char_p),
    "bpf_program__autoload": ([_P], ctypes.c_bool),
    "bpf_program__set_autoload": ([_P, ctypes.c_bool], ctypes.c_int),
    "bpf_enable_stats": ([ctypes.c_int], ctypes.c_int),
    "bpf_map__reuse_fd": ([_P, ctypes.c_int], ctypes.c_int),
    "bpf_program__attach_uprobe_opts": (
        [_P, ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t, _P],
        _P,
    ),
}


@functools.cache
def libbpf() -> ctypes.CDLL:
    """The loaded library, with prototypes declared; raises
    :class:`aiobpf.LibbpfMissingError` if missing."""
    try:
        lib = ctypes.CDLL("libbpf.so.1", use_errno=True)
    except OSError as exc:
        raise LibbpfMissingError(
            "libbpf (libbpf.so.1) loads aiobpf's programs and reads BPF maps, and this host "
            "has none: apt-get install libbpf1 (Debian and Ubuntu; iproute2 brings it too)"
        ) from exc
    for name, (argtypes, restype) in _PROTOTYPES.items():
        function = getattr(lib, name)
        function.argtypes = argtypes
        function.restype = restype
    return lib


def check(result: int, what: str) -> int:
    """``result`` if it is not an error; else :class:`aiobpf.MapError` (an OSError with the
    errno) naming ``what``."""
    if result < 0:
        err = -result if result != -1 else ctypes.get_errno()
        raise MapError(err, f"{what}: {os.strerror(err)}")
    return result


def write_element(fd: int, key: bytes, value: bytes, what: str) -> None:
    """Puts ``value`` at ``key`` in map ``fd`` (both laid out as the map holds them);
    :class:`aiobpf.MapError` names ``what`` when the kernel refuses."""
    check(libbpf().bpf_map_update_elem(fd, key, value, 0), what)
