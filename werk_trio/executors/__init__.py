"""Executors: where a handler runs. One protocol, several implementations.

An executor gets a :class:`JobCall` (the resolved function, its arguments and
the Context to inject) and runs it under the runner's cancel scope:

* ``await executor.run(call)`` returns the handler's result or raises its
  exception. A Trio cancel of the caller must stop the work (or, for threads,
  abandon it on time) and propagate.
* ``async with executor.running(nursery):`` brackets the worker's life
  (pools, bridges) -- it is entered before the first job and left after the last.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from ..jobs import Context

__all__ = ["Executor", "HandlerKind", "JobCall", "asyncio_handler", "handler_kind", "wants_context"]

ASYNCIO_MARK = "__werk_asyncio__"


def asyncio_handler(func: Callable[..., Any]) -> Callable[..., Any]:
    """Mark an asyncio coroutine function: workers run it through trio-asyncio
    (``@asyncio_handler`` or ``@app.task(asyncio=True)``)."""
    if not inspect.iscoroutinefunction(inspect.unwrap(func)):
        from ..errors import ConfigError

        raise ConfigError(f"asyncio_handler needs an async def function, got {func!r}")
    setattr(func, ASYNCIO_MARK, True)
    return func


class HandlerKind:
    TRIO = "trio"
    SYNC = "sync"
    ASYNCIO = "asyncio"


def handler_kind(func: Callable[..., Any]) -> str:
    """``trio`` (async def), ``sync`` (plain def) or ``asyncio`` (marked for the bridge)."""
    target = inspect.unwrap(func)
    if getattr(func, ASYNCIO_MARK, False) or getattr(target, ASYNCIO_MARK, False):
        return HandlerKind.ASYNCIO
    if inspect.iscoroutinefunction(target) or inspect.iscoroutinefunction(
        getattr(target, "__call__", None)  # noqa: B004 - async callable objects
    ):
        return HandlerKind.TRIO
    return HandlerKind.SYNC


@functools.lru_cache(maxsize=4096)
def wants_context(func: Callable[..., Any]) -> bool:
    """True when the first parameter is named ``ctx`` or annotated ``Context``."""
    try:
        params = list(inspect.signature(func).parameters.values())
    except (TypeError, ValueError):
        return False
    if not params or params[0].kind not in (
        inspect.Parameter.POSITIONAL_ONLY,
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
    ):
        return False
    first = params[0]
    if first.name == "ctx":
        return True
    ann = first.annotation
    return ann is Context or ann == "Context" or (isinstance(ann, str) and ann.endswith(".Context"))


@dataclass(slots=True)
class JobCall:
    """Everything an executor needs to run one attempt."""

    func: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    ctx: Context | None
    kind: str

    def positional(self) -> tuple[Any, ...]:
        return (self.ctx, *self.args) if self.ctx is not None else self.args


class Executor(Protocol):
    name: str

    def running(self, nursery: Any) -> Any: ...

    async def run(self, call: JobCall) -> Any: ...


@asynccontextmanager
async def nothing_to_start(nursery: Any) -> AsyncIterator[None]:
    yield
