"""Record types: how a payload the BPF program writes is described and handed to Python.

A record is declared either as a numpy structured dtype or as a :class:`ctypes.Structure` subclass
(what BCC users already write). Internally every record is a numpy dtype, because batches are numpy
arrays; a ctypes declaration is converted once, and per-record iteration then hands out instances
of the user's Structure that share the batch's memory (no copy per record).
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from typing import Any, Generic, TypeVar, cast

import attrs
import numpy as np
import numpy.typing as npt

__all__ = ["RecordType", "record_type"]

R = TypeVar("R")


@attrs.frozen
class RecordType(Generic[R]):
    """A record's numpy dtype and the way a batch of them becomes a sequence of ``R``."""

    dtype: np.dtype[np.void]
    structure: type[ctypes.Structure] | None = None

    def items(self, batch: npt.NDArray[np.void]) -> Sequence[R]:
        """The records of ``batch`` as ``R``: numpy records, or Structures over the batch memory."""
        if self.structure is None:
            return cast(Sequence[R], batch)
        array_type = self.structure * len(batch)
        return cast(Sequence[R], array_type.from_buffer(batch))


def record_type(record: np.dtype[Any] | type[ctypes.Structure]) -> RecordType[Any]:
    """Normalises a record declaration; raises :class:`TypeError` for anything else."""
    if isinstance(record, type) and issubclass(record, ctypes.Structure):
        size = ctypes.sizeof(record)
        if size == 0:
            raise TypeError(f"record Structure {record.__name__} has no fields (size 0)")
        try:
            dtype = np.dtype(record)  # numpy reads the Structure's fields, offsets and padding
        except (TypeError, ValueError, NotImplementedError):
            dtype = np.dtype((np.void, size))  # bit fields and the like: opaque bytes
        if dtype.itemsize != size:
            raise TypeError(f"record Structure {record.__name__}: numpy sees {dtype.itemsize} "
                            f"bytes where ctypes.sizeof says {size}")
        return RecordType(dtype=cast(np.dtype[np.void], dtype), structure=record)
    if isinstance(record, np.dtype):
        if record.itemsize == 0:
            raise TypeError(f"record dtype {record} has size 0")
        if record.fields is None:
            record = np.dtype([("value", record)])
        return RecordType(dtype=cast(np.dtype[np.void], record))
    raise TypeError(
        f"record must be a numpy dtype or a ctypes.Structure subclass, got {record!r}"
    )
