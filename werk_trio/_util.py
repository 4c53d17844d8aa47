"""Small helpers shared by the app, the database layer and the actors
(one copy each): :func:`first_line` of an exception for a log line,
:func:`call` for a sync-or-async callable, :data:`BACKOFF` for retries."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["BACKOFF", "Backoff", "call", "first_line"]


def first_line(ex: BaseException) -> str:
    """The first line of ``str(ex)``, or the exception's type name when empty."""
    text = str(ex).strip()
    return text.splitlines()[0] if text else type(ex).__name__


async def call(func: Callable[..., Any], *args: Any) -> Any:
    """Call a sync or async callable (hooks, handlers of exceptions, app hooks)."""
    result = func(*args)
    if hasattr(result, "__await__"):
        result = await result
    return result


@dataclass(frozen=True, slots=True)
class Backoff:
    """Capped doubling: ``first`` seconds, then twice the last, at most ``cap``."""

    first: float = 0.05
    cap: float = 5.0

    def next(self, delay: float) -> float:
        return min(delay * 2, self.cap)


#: The actors' retry delays after a database error.
BACKOFF = Backoff()
