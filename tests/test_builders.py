"""Frozen attrs events built from their fields by position (_core/builders.py): the same
objects as the class's own __init__ makes, and refused where __init__ would run something."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from aiobpf import ExecveEvent
from aiobpf._core.builders import positional_builder

build = positional_builder(ExecveEvent)

FIELDS = st.tuples(
    *(st.integers(-(2**63), 2**64 - 1) for _ in range(5)),
    st.text(), st.text(), st.tuples(st.text()), st.integers(), st.integers(), st.floats(),
    st.sampled_from(["execve", "execveat"]), st.integers(), st.integers(), st.booleans(),
    st.booleans(), st.text(), st.integers(0, 2**64 - 1),
)  # fmt: skip


@given(FIELDS)
def test_built_events_equal_the_classes_own(fields: tuple[Any, ...]) -> None:
    built, made = build(*fields), ExecveEvent(*fields)
    assert type(built) is ExecveEvent
    assert attrs.astuple(built, recurse=False) == attrs.astuple(made, recurse=False)
    assert built == made or any(value != value for value in fields)  # NaN is not equal
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        built.pid = 1  # type: ignore[misc]


def test_every_field_is_needed() -> None:
    with pytest.raises(TypeError):
        build(1, 2, 3)


@attrs.frozen
class _Checked:
    value: int = attrs.field(validator=attrs.validators.ge(0))


@attrs.frozen
class _Converted:
    value: int = attrs.field(converter=int)


@attrs.frozen
class _PostInit:
    value: int

    def __attrs_post_init__(self) -> None:
        pass


@attrs.frozen(slots=False)
class _WithoutSlots:
    value: int


class _NotAttrs:
    pass


@pytest.mark.parametrize("cls", [_Checked, _Converted, _PostInit, _WithoutSlots, _NotAttrs])
def test_classes_whose_construction_runs_something_are_refused(cls: type) -> None:
    with pytest.raises(TypeError):
        positional_builder(cls)
