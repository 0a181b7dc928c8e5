"""Record types from the C struct a program writes (sources/_c_layout.py), from the
``(name, C type)`` lists BCC's front end gives; the kernel tests are in test_records_from_c.py."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest

from aiobpf import RecordLayoutError
from aiobpf._core.records import structure_for, with_text
from aiobpf.sources._c_layout import check_layout, dtype_from_fields, text_fields

FIELDS = [
    ("pid", "u32"),
    ("comm", "char[16]"),
    ("grid", "u64[2][3]"),
    ("flag", "s8"),
    ("small", "unsigned short[3]"),
    ("ptr", "int *"),
    ("kind", "enum event_kind"),
]


class Event(ctypes.Structure):
    """The same struct as C (and ctypes) lay it out."""

    _fields_ = [
        ("pid", ctypes.c_uint32),
        ("comm", ctypes.c_char * 16),
        ("grid", (ctypes.c_uint64 * 3) * 2),
        ("flag", ctypes.c_int8),
        ("small", ctypes.c_uint16 * 3),
        ("ptr", ctypes.c_void_p),
        ("kind", ctypes.c_int),
    ]


def test_a_struct_is_laid_out_as_c_lays_it_out() -> None:
    """Offsets, alignment and tail padding match the C compiler's (here ctypes', which follows
    the platform ABI), nested arrays keep their shape."""
    dtype = dtype_from_fields(FIELDS, "ring 'events'")
    assert dtype.itemsize == ctypes.sizeof(Event)
    for name, *_ in Event._fields_:
        assert dtype.fields is not None
        assert dtype.fields[name][1] == getattr(Event, name).offset, name
    assert dtype["grid"].shape == (2, 3)
    assert dtype["comm"] == np.dtype("S16")


def test_char_arrays_read_as_text() -> None:
    """A derived record's char arrays are text; its other fields are what ctypes gives."""
    dtype = dtype_from_fields(FIELDS, "ring 'events'")
    assert text_fields(FIELDS) == ["comm"]
    structure = with_text(structure_for(dtype), text_fields(FIELDS))
    batch = np.zeros(1, dtype=dtype)
    batch["comm"] = b"bash"
    batch["pid"] = 42
    batch["grid"] = np.arange(6).reshape(2, 3)
    record = structure.from_buffer(batch.data)
    assert (record.comm, record.pid, [list(row) for row in record.grid]) == (
        "bash",
        42,
        [[0, 1, 2], [3, 4, 5]],
    )
    assert "comm='bash'" in repr(record)


def test_bytes_that_are_not_utf8_are_replaced() -> None:
    dtype = dtype_from_fields([("comm", "char[4]")], "ring 'events'")
    structure = with_text(structure_for(dtype), ["comm"])
    batch = np.array([(b"a\xffb",)], dtype=dtype)
    assert structure.from_buffer(batch.data).comm == "a\ufffdb"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ([], "BCC saw no struct written into it"),
        ([("inner", "struct inner_t")], "field 'inner' is a 'struct inner_t'"),
        ([("many", "struct inner_t[2]")], "field 'many' is a 'struct inner_t\\[2\\]'"),
        ([("odd", "float128")], "declare the record"),
    ],
)
def test_what_cannot_be_derived_says_to_declare_the_record(
    fields: list[tuple[str, str]], message: str
) -> None:
    with pytest.raises(RecordLayoutError, match=message):
        dtype_from_fields(fields, "ring 'events'")


def test_a_declared_record_is_checked_against_the_program_struct() -> None:
    """The same layout under other names passes, and so does one that leaves a field out as
    padding; another size, or a field moved, does not, and the message shows both layouts."""
    program = dtype_from_fields([("pid", "u32"), ("uid", "u32"), ("ts", "u64")], "ring 'events'")
    renamed = np.dtype([("a", "<u4"), ("b", "<u4"), ("c", "<u8")])
    check_layout(renamed, program, "ring 'events'")
    padded = np.dtype({"names": ["pid", "ts"], "formats": ["<u4", "<u8"], "offsets": [0, 8]})
    check_layout(padded, program, "ring 'events'")
    shorter = np.dtype([("pid", "<u4"), ("uid", "<u4")])
    with pytest.raises(RecordLayoutError, match=r"declared record \(8 bytes.*writes \(16 bytes"):
        check_layout(shorter, program, "ring 'events'")
    moved = np.dtype([("ts", "<u8"), ("pid", "<u4"), ("uid", "<u4")])
    with pytest.raises(RecordLayoutError, match="pid@0\\+4, uid@4\\+4, ts@8\\+8"):
        check_layout(moved, program, "ring 'events'")
