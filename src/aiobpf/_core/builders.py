"""Building frozen attrs events fast from fields the decoder already made right.

A frozen attrs class's ``__init__`` sets each field through ``object.__setattr__``, which looks
the name up on the class every time: for an exec event's 18 fields, most of what building one
costs. A decoder whose values are already the fields' types (it made them) can set the slots
through their descriptors directly, the same objects with the same values, in about two
thirds of the time. Only for classes with nothing to run at construction: no validators,
converters, defaults that compute, or ``__attrs_post_init__``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import attrs

__all__ = ["positional_builder"]

T = TypeVar("T")


def positional_builder(cls: type[T]) -> Callable[..., T]:
    """A function taking ``cls``'s fields by position, in their order, that builds an instance
    as ``cls(*fields)`` would. ``TypeError`` for a class that is not a slotted attrs class, or
    whose construction runs anything of its own."""
    if not attrs.has(cls):
        raise TypeError(f"{cls.__name__} is not an attrs class")
    fields = attrs.fields(cls)  # an attrs class, checked above
    if "__slots__" not in cls.__dict__ or any(
        hasattr(cls, hook) for hook in ("__attrs_pre_init__", "__attrs_post_init__")
    ):
        raise TypeError(f"{cls.__name__}: a slotted attrs class with no post-init is needed")
    for field in fields:
        if field.validator is not None or field.converter is not None or not field.init:
            raise TypeError(f"{cls.__name__}.{field.name} runs something at construction")
    names = [field.name for field in fields]
    if not all(name.isidentifier() for name in names):  # attrs' names are; said, not assumed
        raise TypeError(f"{cls.__name__}: a field name is not an identifier")
    scope: dict[str, Any] = {"_new": object.__new__, "_cls": cls}
    lines = [f"def build({', '.join(names)}):", "    built = _new(_cls)"]
    for index, name in enumerate(names):
        scope[f"_set{index}"] = getattr(cls, name).__set__  # the slot's own descriptor
        lines.append(f"    _set{index}(built, {name})")
    lines.append("    return built")
    exec("\n".join(lines), scope)  # the names are checked above; the code is this module's
    build: Callable[..., T] = scope["build"]
    build.__doc__ = f"A {cls.__name__} from its fields by position (see positional_builder)."
    return build
