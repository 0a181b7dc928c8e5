"""Items as JSON: aiobpf's events, counts and histograms are attrs classes, numpy records or
plain values; each becomes a JSON object of its fields.

The C encoder of the standard library does the work: Python is called back only for what it
does not know (an attrs instance: its fields, looked up once per class; bytes; numpy values),
so that a batch of plain or attrs events costs little more than ``json.dumps`` itself.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from typing import Any

import attrs

from ..programs import ExecveEvent, ProcessExec, ProcessExit, ProcessFork
from ..redaction import DEFAULT, Redaction
from ..schema import exec_record, process_record

__all__ = ["jsonable", "to_json"]

_FIELDS: dict[type, tuple[str, ...]] = {}


def _fields_of(kind: type) -> tuple[str, ...] | None:
    names = _FIELDS.get(kind)
    if names is None and attrs.has(kind):
        names = _FIELDS[kind] = tuple(field.name for field in attrs.fields(kind))
    return names


def _default(item: Any, redaction: Redaction = DEFAULT) -> Any:
    """What the encoder does not know, as something it does (one level down): an exec or
    process event as its record of :mod:`aiobpf.schema` (argv's secrets hidden by
    ``redaction``), another attrs instance as its fields."""
    kind = type(item)
    if kind is ExecveEvent:
        return exec_record(item, redaction=redaction)
    if kind is ProcessExit or kind is ProcessExec or kind is ProcessFork:
        return process_record(item)
    names = _fields_of(type(item))
    if names is not None:
        return {name: getattr(item, name) for name in names}
    if isinstance(item, bytes):
        return item.split(b"\0", 1)[0].decode(errors="replace")  # a C string, up to its NUL
    if isinstance(item, set | frozenset):
        return list(item)
    record_names = getattr(getattr(item, "dtype", None), "names", None)
    if record_names is not None:  # a numpy record
        return {name: item[name] for name in record_names}
    tolist = getattr(item, "tolist", None)  # numpy scalars and arrays
    if tolist is not None:
        return tolist()
    raise TypeError(f"cannot encode {type(item).__name__} as JSON")


def jsonable(item: Any, redaction: Redaction = DEFAULT) -> Any:
    """``item`` as plain JSON values throughout, keys made text (a window count's tuple keys
    among them): what :func:`to_json` falls back on when the encoder refuses a key."""
    if isinstance(item, str | int | float | bool) or item is None:
        return item
    if isinstance(item, Mapping):
        return {
            key
            if isinstance(key, str)
            else json.dumps(jsonable(key, redaction), separators=(",", ":")): jsonable(
                value, redaction
            )
            for key, value in item.items()
        }
    if isinstance(item, list | tuple):
        return [jsonable(value, redaction) for value in item]
    return jsonable(_default(item, redaction), redaction)


def to_json(message: Any, *, redaction: Redaction = DEFAULT) -> bytes:
    """``message`` as compact JSON, exec events' argv secrets hidden by ``redaction``. Raises
    :class:`TypeError` for a value that has no JSON form."""
    default = _default if redaction is DEFAULT else functools.partial(_default, redaction=redaction)
    try:
        text = json.dumps(message, default=default, separators=(",", ":"))
    except TypeError:  # keys JSON cannot take as they are (tuples): made text first
        text = json.dumps(jsonable(message, redaction), separators=(",", ":"))
    return text.encode()
