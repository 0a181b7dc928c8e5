"""The shape every aiobpf async resource shares: ``async with`` closes it with ``aclose()``,
and releasing runs every release step even when one fails."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Self

__all__ = ["AsyncResource", "release_all"]


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


class AsyncResource:
    """Base class: entering returns the resource, leaving awaits its idempotent ``aclose()``."""

    async def aclose(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
