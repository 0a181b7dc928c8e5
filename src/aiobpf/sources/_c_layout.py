"""Record types from the C struct a program writes: BCC's front end already parsed the struct
each ``ringbuf_output``/``ringbuf_reserve``/``perf_submit`` call passes, as a list of
``(name, C type)``; this module lays those out as C does (natural alignment, tail padding) in a
numpy dtype, so that the common case needs no hand-written record, and checks a declared record
against it.

BCC names a nested struct's type but not its fields, so a struct with a struct member cannot be
derived: the error says to declare the record.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import RecordLayoutError

__all__ = ["check_layout", "dtype_from_fields", "text_fields"]

#: C scalar types as BCC spells them, by numpy type (native byte order, as the kernel writes).
_SCALARS: dict[str, str] = {
    **dict.fromkeys(["char", "signed char", "s8", "__s8", "int8_t"], "i1"),
    **dict.fromkeys(["unsigned char", "u8", "__u8", "uint8_t", "_Bool", "bool"], "u1"),
    **dict.fromkeys(["short", "s16", "__s16", "int16_t"], "=i2"),
    **dict.fromkeys(["unsigned short", "u16", "__u16", "uint16_t"], "=u2"),
    **dict.fromkeys(["int", "s32", "__s32", "int32_t", "pid_t", "enum"], "=i4"),
    **dict.fromkeys(
        ["unsigned int", "unsigned", "u32", "__u32", "uint32_t", "uid_t", "gid_t"], "=u4"
    ),
    **dict.fromkeys(["long", "long long", "s64", "__s64", "int64_t", "ssize_t"], "=i8"),
    **dict.fromkeys(
        ["unsigned long", "unsigned long long", "u64", "__u64", "uint64_t", "size_t"], "=u8"
    ),
}
_ARRAY = re.compile(r"^(?P<base>[^\[]*?)\s*(?P<dims>(\[\d+\])+)$")


def _field_format(field: str, c_type: str) -> tuple[Any, bool]:
    """The numpy format of one field, and whether it is text (a char array)."""
    match = _ARRAY.match(c_type)
    base, dims = (
        (match["base"], [int(d) for d in re.findall(r"\d+", match["dims"])])
        if match
        else (c_type, [])
    )
    base = base.strip()
    if base.startswith("enum "):
        base = "enum"
    if base == "char" and len(dims) == 1:
        return f"S{dims[0]}", True  # text: NUL-padded bytes, decoded by the record type
    if base.endswith("*"):
        scalar = "=u8"  # a pointer: the address the program saw
    elif base in _SCALARS:
        scalar = _SCALARS[base]
    else:
        raise RecordLayoutError(
            f"field {field!r} is a {c_type!r}, whose layout BCC does not describe (a nested "
            "struct or union, or an unknown type): declare the record (record=...) instead"
        )
    return ((scalar, tuple(dims)) if dims else scalar), False


def dtype_from_fields(fields: Sequence[tuple[str, str]], what: str) -> np.dtype[np.void]:
    """The numpy dtype laid out as C lays out a struct of ``fields``; RecordLayoutError naming
    ``what`` when there are none or one cannot be laid out."""
    if not fields:
        raise RecordLayoutError(
            f"{what}: BCC saw no struct written into it (the program must pass a typed struct "
            "to ringbuf_output, ringbuf_reserve or perf_submit): declare the record "
            "(record=...) instead"
        )
    try:
        formats = [_field_format(name, c_type)[0] for name, c_type in fields]
    except RecordLayoutError as exc:
        raise RecordLayoutError(f"{what}: {exc}") from None
    names = [name for name, _ in fields]
    dtype: np.dtype[np.void] = np.dtype({"names": names, "formats": formats}, align=True)
    return dtype


def text_fields(fields: Sequence[tuple[str, str]]) -> list[str]:
    """The fields that are char arrays (handed out as text)."""
    return [name for name, c_type in fields if _field_format(name, c_type)[1]]


def _layout(dtype: np.dtype[Any]) -> list[tuple[int, int]]:
    """Offset and size of each top-level field, in order of offset."""
    fields: dict[str, Any] = dict(dtype.fields or {})
    return sorted((int(offset), int(field.itemsize)) for field, offset, *_ in fields.values())


def check_layout(declared: np.dtype[Any], program: np.dtype[Any], what: str) -> None:
    """RecordLayoutError unless a declared record has the size of the struct the program
    writes, and each of its fields sits where a field of the same size is in that struct
    (names may differ; fields left out are padding to the declared record)."""
    if declared.itemsize == program.itemsize and set(_layout(declared)) <= set(_layout(program)):
        return
    raise RecordLayoutError(
        f"{what}: the declared record ({declared.itemsize} bytes, fields at "
        f"{_describe(declared)}) is not the struct the program writes ({program.itemsize} "
        f"bytes, fields at {_describe(program)}); declare it as the C struct is, or leave "
        "record= out to use the program's"
    )


def _describe(dtype: np.dtype[Any]) -> str:
    fields: dict[str, Any] = dict(dtype.fields or {})
    ordered = sorted(fields.items(), key=lambda item: item[1][1])
    return ", ".join(f"{name}@{offset}+{field.itemsize}" for name, (field, offset, *_) in ordered)
