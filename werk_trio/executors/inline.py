"""The inline executor (AsyncWorker): handlers run in the worker's own Trio loop.

* Trio ``async def`` handlers are awaited directly; a cancel stops them at
  their next checkpoint.
* Plain functions run in a thread (``trio.to_thread.run_sync``) so the loop
  never blocks; a cancel abandons the thread on time and sets
  ``ctx.cancelled`` for the handler to notice.
* asyncio coroutine functions marked for the bridge run through trio-asyncio
  in a loop the executor opens for the worker's lifetime (only when such a
  handler first appears, or at start when ``asyncio_bridge=True``).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio

from . import HandlerKind, JobCall

__all__ = ["InlineExecutor"]


class InlineExecutor:
    name = "async"

    def __init__(self, *, thread_limit: int | None = None) -> None:
        self._limiter = trio.CapacityLimiter(thread_limit) if thread_limit else None
        self._aio_loop: Any = None

    @asynccontextmanager
    async def running(self, nursery: trio.Nursery) -> AsyncIterator[None]:
        import trio_asyncio

        async with trio_asyncio.open_loop() as loop:
            self._aio_loop = loop
            try:
                yield
            finally:
                self._aio_loop = None

    async def run(self, call: JobCall) -> Any:
        if call.kind == HandlerKind.TRIO:
            return await call.func(*call.positional(), **call.kwargs)
        if call.kind == HandlerKind.ASYNCIO:
            import trio_asyncio

            if self._aio_loop is None:
                raise RuntimeError("the asyncio bridge is not running")
            return await trio_asyncio.aio_as_trio(call.func)(*call.positional(), **call.kwargs)
        return await run_sync_abandoning(call, self._limiter)


async def run_sync_abandoning(call: JobCall, limiter: trio.CapacityLimiter | None) -> Any:
    """Run a plain function in a thread; on cancel, flag ``ctx.cancelled`` and
    abandon the thread (it cannot be killed)."""
    flag = threading.Event()
    if call.ctx is not None:
        call.ctx._cancelled = flag
    fn = functools.partial(call.func, *call.positional(), **call.kwargs)
    try:
        return await trio.to_thread.run_sync(fn, abandon_on_cancel=True, limiter=limiter)
    except trio.Cancelled:
        flag.set()
        raise
