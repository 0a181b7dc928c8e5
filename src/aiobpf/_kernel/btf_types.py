"""C types from an object's BTF, as ctypes types: records, map keys and values, and globals.

A CO-RE object carries the BTF of every type its programs use (clang's ``-g``), so the struct a
program writes into a ring, a map's key and value, and each global's type are there to read:
nobody declares them a second time in Python. Each type becomes a ctypes type laid out at BTF's
own offsets (explicit padding, packed), so packed and aligned structs come out as the object
has them. Char arrays read as text at every depth; pointers are the address as an integer.
"""

from __future__ import annotations

import ctypes
import difflib
from typing import Any

import attrs

from .._core.records import with_text
from ..errors import RecordLayoutError, UnknownTypeError
from .libbpf import BtfMember, BtfType, libbpf

__all__ = ["ObjectTypes", "Variable"]

# BTF kinds (include/uapi/linux/btf.h)
_INT, _PTR, _ARRAY, _STRUCT, _UNION, _ENUM, _FWD, _TYPEDEF = 1, 2, 3, 4, 5, 6, 7, 8
_VOLATILE, _CONST, _RESTRICT, _VAR, _DATASEC, _FLOAT, _TYPE_TAG, _ENUM64 = (
    9,
    10,
    11,
    14,
    15,
    16,
    18,
    19,
)
_QUALIFIERS = frozenset({_TYPEDEF, _VOLATILE, _CONST, _RESTRICT, _TYPE_TAG})
_INT_SIGNED, _INT_BOOL = 0x1, 0x4

_SIGNED = {1: ctypes.c_int8, 2: ctypes.c_int16, 4: ctypes.c_int32, 8: ctypes.c_int64}
_UNSIGNED = {1: ctypes.c_uint8, 2: ctypes.c_uint16, 4: ctypes.c_uint32, 8: ctypes.c_uint64}


class _Array(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_uint32),
        ("index_type", ctypes.c_uint32),
        ("nelems", ctypes.c_uint32),
    ]


class _SectionVariable(ctypes.Structure):
    _fields_ = [("type", ctypes.c_uint32), ("offset", ctypes.c_uint32), ("size", ctypes.c_uint32)]


@attrs.frozen
class Variable:
    """A global of the object: the data section holding it, where, and its type."""

    name: str
    section: str
    offset: int
    size: int
    type_id: int


def _shown(value: Any) -> Any:
    """An array field as a list, for a record's repr."""
    return [_shown(item) for item in value] if isinstance(value, ctypes.Array) else value


class ObjectTypes:
    """The BTF of one opened object (``bpf_object__btf``), valid while the object is."""

    def __init__(self, btf: int, what: str) -> None:
        self._btf = btf
        self._what = what
        self._cache: dict[int, Any] = {}

    # -- reading BTF ----------------------------------------------------------------------------

    def _type(self, type_id: int) -> BtfType:
        entry: BtfType = libbpf().btf__type_by_id(self._btf, type_id).contents
        return entry

    def _name(self, offset: int) -> str:
        name: bytes | None = libbpf().btf__name_by_offset(self._btf, offset)
        return (name or b"").decode()

    @staticmethod
    def _kind(entry: BtfType) -> int:
        return int(entry.info >> 24) & 0x1F

    def _after(self, entry: BtfType, kind: type[Any], count: int) -> Any:
        """The ``count`` records of ``kind`` that follow ``entry`` in BTF."""
        address = ctypes.addressof(entry) + ctypes.sizeof(BtfType)
        return ctypes.cast(address, ctypes.POINTER(kind * count)).contents

    def _resolved(self, type_id: int) -> int:
        """``type_id`` through typedefs and qualifiers."""
        while type_id and self._kind(self._type(type_id)) in _QUALIFIERS:
            type_id = self._type(type_id).size  # ``type`` shares the field with ``size``
        return type_id

    def _count(self) -> int:
        return int(libbpf().btf__type_cnt(self._btf))

    # -- names ----------------------------------------------------------------------------------

    def find(self, name: str) -> int:
        """The id of struct, union or typedef ``name``; :class:`aiobpf.UnknownTypeError` naming
        the object's structs that come close."""
        for kind in (_STRUCT, _UNION, _TYPEDEF):
            found = libbpf().btf__find_by_name_kind(self._btf, name.encode(), kind)
            if found > 0:
                return int(found)
        structs = sorted(
            self._name(entry.name_off)
            for entry in (self._type(i) for i in range(1, self._count()))
            if self._kind(entry) in (_STRUCT, _UNION) and entry.name_off
        )
        close = difflib.get_close_matches(name, structs, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        listed = ", ".join(structs[:12]) + (", ..." if len(structs) > 12 else "")
        raise UnknownTypeError(
            f"{self._what} has no struct {name!r} in its BTF{hint}; it has: {listed or 'none'}. "
            "A struct only locals use is dropped by the compiler: keep it with an unused typed "
            f"global, e.g. 'struct {name} *unused_{name} __attribute__((unused));'"
        )

    def variables(self) -> dict[str, Variable]:
        """Every global in a data section (``.rodata``, ``.data``, ``.bss`` and their named
        variants), by name."""
        found: dict[str, Variable] = {}
        for type_id in range(1, self._count()):
            entry = self._type(type_id)
            if self._kind(entry) != _DATASEC:
                continue
            section = self._name(entry.name_off)
            if not section.startswith((".rodata", ".data", ".bss")):
                continue
            count = entry.info & 0xFFFF
            for item in self._after(entry, _SectionVariable, count) if count else ():
                variable = self._type(item.type)
                if self._kind(variable) != _VAR:
                    continue
                name = self._name(variable.name_off)
                found[name] = Variable(name, section, item.offset, item.size, variable.size)
        return found

    # -- ctypes ---------------------------------------------------------------------------------

    def ctype(self, type_id: int, name: str = "value") -> Any:
        """The ctypes type of BTF type ``type_id``; :class:`aiobpf.RecordLayoutError` for what
        ctypes cannot hold (bit fields, functions, incomplete types)."""
        type_id = self._resolved(type_id)
        if type_id not in self._cache:
            self._cache[type_id] = self._build(type_id, name)
        return self._cache[type_id]

    def is_text(self, type_id: int) -> bool:
        """Whether ``type_id`` is a one-dimensional array of ``char``."""
        entry = self._type(self._resolved(type_id))
        if self._kind(entry) != _ARRAY:
            return False
        element = self._type(self._resolved(self._after(entry, _Array, 1)[0].type))
        return self._kind(element) == _INT and self._name(element.name_off) == "char"

    def _build(self, type_id: int, name: str) -> Any:
        entry = self._type(type_id)
        kind = self._kind(entry)
        if kind == _INT:
            encoding = self._after(entry, ctypes.c_uint32, 1)[0]
            size, bits = entry.size, encoding & 0xFF
            if bits != size * 8 or size not in _SIGNED:
                raise RecordLayoutError(f"{name}: a {bits}-bit integer ctypes cannot hold")
            if encoding >> 24 & _INT_BOOL:
                return ctypes.c_bool
            return (_SIGNED if encoding >> 24 & _INT_SIGNED else _UNSIGNED)[size]
        if kind in (_ENUM, _ENUM64):
            signed = bool(entry.info >> 31)
            return (_SIGNED if signed else _UNSIGNED)[entry.size]
        if kind == _PTR:
            return ctypes.c_uint64  # the address the program saw
        if kind == _FLOAT:
            return {4: ctypes.c_float, 8: ctypes.c_double}[entry.size]
        if kind == _ARRAY:
            array = self._after(entry, _Array, 1)[0]
            element = self.ctype(array.type, name)
            if self.is_text(type_id):
                return ctypes.c_char * array.nelems
            return element * array.nelems
        if kind in (_STRUCT, _UNION):
            return self._structure(type_id, entry, kind, name)
        what = {_FWD: "a declared but not defined struct", _VAR: "a variable"}.get(
            kind, f"BTF kind {kind}"
        )
        raise RecordLayoutError(f"{name}: {what} has no layout to read")

    def _structure(self, type_id: int, entry: BtfType, kind: int, name: str) -> Any:
        struct_name = self._name(entry.name_off) or f"anonymous_{type_id}"
        count = entry.info & 0xFFFF
        kind_flag = entry.info >> 31
        fields: list[tuple[str, Any]] = []
        texts: list[str] = []
        position = 0
        for index, member in enumerate(self._after(entry, BtfMember, count) if count else ()):
            member_name = self._name(member.name_off) or f"_anonymous{index}"
            bit_size = member.offset >> 24 if kind_flag else 0
            bits = member.offset & 0xFFFFFF if kind_flag else member.offset
            if bit_size or bits % 8:
                raise RecordLayoutError(
                    f"struct {struct_name}: field {member_name!r} is a bit field, which "
                    "ctypes cannot place at BTF's offsets: declare the record (record=...)"
                )
            member_type = self.ctype(member.type, f"{struct_name}.{member_name}")
            offset = bits // 8
            if kind == _STRUCT and offset > position:
                fields.append((f"_padding{index}", ctypes.c_char * (offset - position)))
            fields.append((member_name, member_type))
            if self.is_text(member.type):
                texts.append(member_name)
            position = max(position, offset + ctypes.sizeof(member_type))
        if kind == _STRUCT and entry.size > position:
            fields.append(("_padding_end", ctypes.c_char * (entry.size - position)))
        names = [field for field, _ in fields if not field.startswith("_padding")]

        def __repr__(self: Any) -> str:
            values = ", ".join(f"{field}={_shown(getattr(self, field))!r}" for field in names)
            return f"{type(self).__name__}({values})"

        base = ctypes.Structure if kind == _STRUCT else ctypes.Union
        built = type(
            struct_name,
            (base,),
            {"_pack_": 1, "_fields_": fields, "__repr__": __repr__, "__slots__": ()},
        )
        if ctypes.sizeof(built) != entry.size:
            raise RecordLayoutError(
                f"struct {struct_name}: laid out in {ctypes.sizeof(built)} bytes where BTF says "
                f"{entry.size}: declare the record (record=...)"
            )
        return with_text(built, texts) if texts else built
