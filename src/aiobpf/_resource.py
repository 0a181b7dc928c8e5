"""What every aiobpf resource shares: releasing runs every step even when one fails, and a
resource collected unclosed says so."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable

__all__ = ["release_all", "warn_unclosed"]


def release_all(
    callbacks: Iterable[Callable[[], None]], *, after: BaseException | None = None
) -> None:
    """Runs every release callback in order, even when one fails, so that one failing step
    (an unmap, say) never leaves a program attached behind it.

    The first failure is raised once all have run. With ``after``, the error that made the
    caller release, failures become notes on it instead: they must not hide it.
    """
    errors: list[BaseException] = []
    for callback in callbacks:
        try:
            callback()
        except BaseException as exc:
            errors.append(exc)
    if after is not None:
        for error in errors:
            after.add_note(f"and releasing what was built failed too: {error!r}")
    elif errors:
        raise errors[0]


def warn_unclosed(resource: object, what: str) -> None:
    """The :class:`ResourceWarning` of a resource collected before it was closed (called from
    its ``__del__``, which then releases it)."""
    warnings.warn(
        f"{what} was not closed; use 'async with' or aclose()",
        ResourceWarning,
        stacklevel=3,
        source=resource,
    )
