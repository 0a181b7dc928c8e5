"""Map decoding and reading arithmetic on synthetic data (no root needed)."""

from __future__ import annotations

import attrs
import numpy as np

from aiobpf._kernel.map_io import _sum_over_cpus
from aiobpf.sources._maps import _converter, _subtract


def test_per_cpu_values_are_summed_per_key() -> None:
    """Per-CPU values (shape keys x cpus) sum per key, for plain and structured values."""
    plain = np.array([[1, 2, 3], [10, 0, 5]], dtype="<u8")
    assert _sum_over_cpus(plain).tolist() == [6, 15]
    record = np.dtype([("calls", "<u8"), ("bytes", "<u8")])
    values = np.zeros((2, 2), dtype=record)
    values["calls"] = [[1, 2], [3, 4]]
    values["bytes"] = [[10, 20], [30, 40]]
    summed = _sum_over_cpus(values)
    assert summed["calls"].tolist() == [3, 7]
    assert summed["bytes"].tolist() == [30, 70]


def test_keys_and_values_decode_to_python_types() -> None:
    """Integers stay ints; structs become frozen, hashable attrs records usable as dict keys."""
    assert _converter(np.dtype("<u4"), "Key")(np.array([7, 8], dtype="<u4")) == [7, 8]
    key = np.dtype([("pid", "<u4"), ("comm", "S16")])
    array = np.array([(1, b"bash"), (2, b"ls")], dtype=key)
    decoded = _converter(key, "Key")(array)
    assert [(k.pid, k.comm) for k in decoded] == [(1, b"bash"), (2, b"ls")]
    assert len({decoded[0]: 1, decoded[1]: 2}) == 2


def test_deltas_subtract_numbers_and_records_field_by_field() -> None:
    """A delta is value - previous; a new key counts from zero; records subtract per field."""
    assert _subtract(10, 4) == 6
    assert _subtract(10, None) == 10

    @attrs.frozen
    class Value:
        calls: int
        bytes: int

    assert _subtract(Value(5, 50), Value(2, 20)) == Value(3, 30)
