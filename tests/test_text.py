"""C strings as text (_core/text.py): the cached decoding of a batch's fields gives what
decoding each alone gives, for any bytes, and its cache stays bounded."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from aiobpf._core import text
from aiobpf._core.text import c_string, c_strings


@given(st.lists(st.binary(max_size=300), max_size=50))
def test_a_batch_decodes_as_each_field_alone(raws: list[bytes]) -> None:
    assert c_strings(raws) == [c_string(raw) for raw in raws]
    assert c_strings(raws) == [c_string(raw) for raw in raws]  # again, from the cache


def test_what_follows_the_nul_and_bytes_that_are_not_utf8() -> None:
    assert c_strings([b"ls\0junk", b"\xff\xfeab", b"", b"\0"]) == ["ls", "\ufffd\ufffdab", "", ""]


def test_the_cache_is_bounded_whatever_comes() -> None:
    for start in range(0, 20_000, 1000):
        c_strings([f"/tmp/unique-{n}".encode() for n in range(start, start + 1000)])
    assert len(text._SEEN) <= text._SEEN_MOST + 1000
