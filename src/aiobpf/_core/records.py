"""Record types: how a payload the BPF program writes is described and handed to Python.

A record is declared as a numpy structured dtype or as a :class:`ctypes.Structure` subclass (what
BCC users already write). Batches are always numpy arrays of the dtype. Per-record iteration needs
Python objects, and building them is most of its cost, so each batch is decoded in one pass of C
operation: the batch becomes a ctypes array over its own memory, and each record is a
``ctypes.Structure`` created only when it is handed out (ints are ints, ``S`` fields are bytes).
Measured here, that costs a quarter of building a named tuple per record. A record shares its
batch's memory and keeps it alive. Custom decoders (typed events) plug in through
:class:`RecordType`.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar, cast

import attrs
import numpy as np
import numpy.typing as npt

__all__ = ["RecordType", "record_type", "structure_for", "with_text"]

R = TypeVar("R")

Decoder = Callable[[npt.NDArray[np.void]], Sequence[R]]


@attrs.frozen
class RecordType(Generic[R]):
    """A record's numpy dtype and the decoder that turns a batch into a sequence of ``R``."""

    dtype: np.dtype[np.void]
    decode: Decoder[R] = attrs.field(repr=False)


def _ctype(dtype: np.dtype[Any], name: str) -> Any:
    """The ctypes type laid out exactly as ``dtype`` (explicit padding, no implicit alignment)."""
    if dtype.subdtype is not None:
        base, shape = dtype.subdtype
        ctype = _ctype(base, name)
        for length in reversed(shape):
            ctype = ctype * length
        return ctype
    if dtype.fields is not None:
        fields: list[tuple[str, Any]] = []
        position = 0
        for index, (field, (field_dtype, offset, *_)) in enumerate(
            sorted(dtype.fields.items(), key=lambda item: item[1][1])
        ):
            if offset < position:
                raise TypeError(f"record field {field!r} overlaps the field before it")
            if offset > position:
                fields.append((f"_padding{index}", ctypes.c_char * (offset - position)))
            fields.append((field, _ctype(field_dtype, field)))
            position = offset + field_dtype.itemsize
        if dtype.itemsize > position:
            fields.append(("_padding_end", ctypes.c_char * (dtype.itemsize - position)))
        names = [field for field, _ in fields if not field.startswith("_padding")]

        def __repr__(self: ctypes.Structure) -> str:
            values = ", ".join(f"{field}={getattr(self, field)!r}" for field in names)
            return f"{type(self).__name__}({values})"

        return type(
            name,
            (ctypes.Structure,),
            {"_pack_": 1, "_fields_": fields, "__repr__": __repr__, "__slots__": ()},
        )
    if dtype.kind in "SV":
        return ctypes.c_char * dtype.itemsize
    return np.ctypeslib.as_ctypes_type(dtype)


def structure_for(dtype: np.dtype[np.void], name: str = "Record") -> type[ctypes.Structure]:
    """A ``ctypes.Structure`` with the fields, offsets and size of a structured ``dtype``.

    Raises :class:`TypeError` for a layout ctypes cannot express.
    """
    try:
        structure: type[ctypes.Structure] = _ctype(dtype, name)
    except NotImplementedError as exc:
        raise TypeError(f"record dtype {dtype} has a field ctypes cannot express: {exc}") from exc
    if ctypes.sizeof(structure) != dtype.itemsize:
        raise TypeError(
            f"record dtype {dtype}: the ctypes layout is {ctypes.sizeof(structure)} bytes, "
            f"not {dtype.itemsize}"
        )
    return structure


def with_text(structure: type[ctypes.Structure], names: Sequence[str]) -> type[ctypes.Structure]:
    """``structure`` whose char array fields ``names`` read as text (UTF-8, up to the first NUL;
    bytes that are not UTF-8 are replaced), decoded only when read."""

    def text(field: Any) -> property:
        return property(lambda self: field.__get__(self).decode("utf-8", "replace"))

    namespace: dict[str, Any] = {name: text(getattr(structure, name)) for name in names}
    namespace["__slots__"] = ()
    return type(structure.__name__, (structure,), namespace)


def structures(structure: type[ctypes.Structure]) -> Decoder[ctypes.Structure]:
    """A decoder to instances of ``structure`` sharing the batch's memory (kept alive by them)."""

    def decode(batch: npt.NDArray[np.void]) -> Sequence[ctypes.Structure]:
        array = (structure * len(batch)).from_buffer(cast(Any, batch))
        return cast(Sequence[ctypes.Structure], array)

    return decode


def record_type(
    record: np.dtype[Any] | type[ctypes.Structure] | RecordType[Any],
) -> RecordType[Any]:
    """Normalises a record declaration; raises :class:`TypeError` for anything else."""
    if isinstance(record, RecordType):
        return record
    if isinstance(record, type) and issubclass(record, ctypes.Structure):
        size = ctypes.sizeof(record)
        if size == 0:
            raise TypeError(f"record Structure {record.__name__} has no fields (size 0)")
        try:
            dtype = np.dtype(record)  # numpy reads the Structure's fields, offsets and padding
        except (TypeError, ValueError, NotImplementedError):
            dtype = np.dtype((np.void, size))  # bit fields and the like: opaque bytes
        if dtype.itemsize != size:
            raise TypeError(
                f"record Structure {record.__name__}: numpy sees {dtype.itemsize} bytes where "
                f"ctypes.sizeof says {size}"
            )
        return RecordType(dtype=cast(np.dtype[np.void], dtype), decode=structures(record))
    if isinstance(record, np.dtype):
        if record.itemsize == 0:
            raise TypeError(f"record dtype {record} has size 0")
        if record.fields is None:
            record = np.dtype([("value", record)])
        dtype = cast(np.dtype[np.void], record)
        return RecordType(dtype=dtype, decode=structures(structure_for(dtype)))
    raise TypeError(
        f"record must be a numpy dtype, a ctypes.Structure subclass or a RecordType, got {record!r}"
    )
