"""A CO-RE object's globals, typed by its BTF: parameters written before the load (checked:
ctypes itself would wrap a number that does not fit), and values read back."""

from __future__ import annotations

import ctypes
import difflib
from collections.abc import Mapping, Sequence
from typing import Any

from .._core.text import c_string
from .._kernel.btf_types import ObjectTypes, Variable
from .._kernel.libbpf import libbpf
from .._kernel.objects import BpfObject
from ..errors import UnknownVariableError, VariableTypeError

__all__ = ["python_value", "section_size", "variable_named", "write_params"]


def variable_named(types: ObjectTypes, name: str, what: str) -> Variable:
    variables = types.variables()
    if name in variables:
        return variables[name]
    close = difflib.get_close_matches(name, list(variables), n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    listed = ", ".join(sorted(variables)) or "none"
    raise UnknownVariableError(f"{what} has no global {name!r}{hint}; its globals: {listed}")


def section_size(loaded: BpfObject, section: str) -> int:
    size = ctypes.c_size_t(0)
    libbpf().bpf_map__initial_value(loaded.map_handle(section), ctypes.byref(size))
    return size.value


def write_params(loaded: BpfObject, types: ObjectTypes, params: Mapping[str, Any]) -> None:
    """Writes each parameter into its data section's initial value (before the load)."""
    what = f"the BPF object {loaded.path.name}"
    for name, value in params.items():
        variable = variable_named(types, name, what)
        ctype = types.ctype(variable.type_id, name)
        encoded = bytes(_encode(ctype, value, name))
        size = ctypes.c_size_t(0)
        memory = libbpf().bpf_map__initial_value(
            loaded.map_handle(variable.section), ctypes.byref(size)
        )
        if not memory or variable.offset + len(encoded) > size.value:
            raise VariableTypeError(f"global {name!r} cannot be set before the load")
        ctypes.memmove(memory + variable.offset, encoded, len(encoded))


_INTEGERS = {
    ctypes.c_int8: (-(1 << 7), (1 << 7) - 1),
    ctypes.c_int16: (-(1 << 15), (1 << 15) - 1),
    ctypes.c_int32: (-(1 << 31), (1 << 31) - 1),
    ctypes.c_int64: (-(1 << 63), (1 << 63) - 1),
    ctypes.c_uint8: (0, (1 << 8) - 1),
    ctypes.c_uint16: (0, (1 << 16) - 1),
    ctypes.c_uint32: (0, (1 << 32) - 1),
    ctypes.c_uint64: (0, (1 << 64) - 1),
}


def _encode(ctype: Any, value: Any, name: str) -> Any:
    """``value`` as an instance of ``ctype``, checked: ctypes itself wraps an int that does
    not fit, and a parameter silently set to another number is the worst outcome."""
    if ctype is ctypes.c_bool:
        if not isinstance(value, bool):
            raise VariableTypeError(f"global {name!r} is a bool, not {value!r}")
        return ctype(value)
    if ctype in _INTEGERS:
        low, high = _INTEGERS[ctype]
        if isinstance(value, bool) or not isinstance(value, int):
            raise VariableTypeError(
                f"global {name!r} is a {ctypes.sizeof(ctype) * 8}-bit integer, not {value!r}"
            )
        if not low <= value <= high:
            raise VariableTypeError(
                f"global {name!r} holds {low}..{high}; {value} does not fit its "
                f"{ctypes.sizeof(ctype)} bytes"
            )
        return ctype(value)
    if ctype in (ctypes.c_float, ctypes.c_double):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise VariableTypeError(f"global {name!r} is a floating-point number, not {value!r}")
        return ctype(value)
    if isinstance(ctype, type) and issubclass(ctype, ctypes.Array):
        length: int = getattr(ctype, "_length_")  # noqa: B009 (typeshed types it as a method)
        element: Any = getattr(ctype, "_type_")  # noqa: B009
        if element is ctypes.c_char:
            data = value.encode() if isinstance(value, str) else value
            if not isinstance(data, bytes):
                raise VariableTypeError(f"global {name!r} is text (char[{length}]), not {value!r}")
            if len(data) >= length:
                raise VariableTypeError(
                    f"global {name!r} holds at most {length - 1} bytes and a NUL; "
                    f"{value!r} is {len(data)} bytes"
                )
            return ctype(*data)
        if isinstance(value, str | bytes) or not isinstance(value, Sequence):
            raise VariableTypeError(f"global {name!r} is an array of {length}, not {value!r}")
        if len(value) != length:
            raise VariableTypeError(
                f"global {name!r} is an array of {length}, given {len(value)} values"
            )
        return ctype(*(_encode(element, item, f"{name}[{i}]") for i, item in enumerate(value)))
    if isinstance(ctype, type) and issubclass(ctype, ctypes.Structure | ctypes.Union):
        if not isinstance(value, Mapping):
            raise VariableTypeError(f"global {name!r} is a struct: give a dict of its fields")
        fields = {field: kind for field, kind, *_ in ctype._fields_ if not field.startswith("_")}
        unknown = set(value) - set(fields)
        if unknown:
            raise VariableTypeError(
                f"global {name!r} has no field {sorted(unknown)[0]!r}; its fields: "
                f"{', '.join(fields)}"
            )
        instance = ctype()
        for field, item in value.items():
            encoded = _encode(fields[field], item, f"{name}.{field}")
            offset = getattr(ctype, field).offset
            ctypes.memmove(
                ctypes.addressof(instance) + offset,
                ctypes.addressof(encoded),
                ctypes.sizeof(encoded),
            )
        return instance
    raise VariableTypeError(f"global {name!r} has a type parameters cannot set ({ctype})")


def python_value(value: Any) -> Any:
    """A ctypes value read from a data section, as Python: ints, floats, text, lists, or the
    structure itself."""
    if isinstance(value, ctypes.Array):
        if value._type_ is ctypes.c_char:
            return c_string(bytes(value))
        return [python_value(item) for item in value]
    if isinstance(value, ctypes._SimpleCData):
        return value.value
    return value
