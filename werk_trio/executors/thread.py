"""The thread executor (ThreadWorker): every handler in a worker thread.

``trio.to_thread.run_sync`` under a ``CapacityLimiter(concurrency)``; async
handlers (Trio or asyncio) run in the thread's own event loop. A thread cannot
be killed: on timeout, abort or shutdown the job is ended on time, the thread
is abandoned (``ctx.cancelled`` becomes true for the handler to notice) and
counted in ``stuck``. The limiter's token is held until the abandoned thread
really returns, so no more than ``concurrency`` handlers ever run at once.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio

from . import HandlerKind, JobCall

logger = logging.getLogger("werk_trio.worker")

__all__ = ["ThreadExecutor"]


def _in_thread(call: JobCall) -> Any:
    args = call.positional()
    if call.kind == HandlerKind.TRIO:
        return trio.run(functools.partial(call.func, *args, **call.kwargs))
    if call.kind == HandlerKind.ASYNCIO:
        return asyncio.run(call.func(*args, **call.kwargs))
    return call.func(*args, **call.kwargs)


class ThreadExecutor:
    name = "thread"

    def __init__(self, concurrency: int) -> None:
        self.limiter = trio.CapacityLimiter(concurrency)
        #: Threads abandoned after a timeout/abort/shutdown that have not returned yet.
        self.stuck = 0
        self._lock = threading.Lock()

    @asynccontextmanager
    async def running(self, nursery: trio.Nursery) -> AsyncIterator[None]:
        yield

    async def run(self, call: JobCall) -> Any:
        flag = threading.Event()
        if call.ctx is not None:
            call.ctx._cancelled = flag
        await self.limiter.acquire_on_behalf_of(flag)
        token = trio.lowlevel.current_trio_token()
        released = threading.Event()

        def release() -> None:
            if not released.is_set():
                released.set()
                self.limiter.release_on_behalf_of(flag)

        state = {"done": False}

        def body() -> Any:
            try:
                return _in_thread(call)
            finally:
                with self._lock:
                    state["done"] = True
                    abandoned = flag.is_set()
                    if abandoned:
                        self.stuck -= 1
                if abandoned:  # the job already ended: give the slot back only now
                    try:
                        token.run_sync_soon(release)
                    except trio.RunFinishedError:
                        pass

        try:
            result = await trio.to_thread.run_sync(body, abandon_on_cancel=True, limiter=_UNLIMITED)
        except trio.Cancelled:
            with self._lock:
                flag.set()
                finished = state["done"]
                if not finished:
                    self.stuck += 1
            if finished:
                release()
            else:
                logger.warning(
                    "a %s handler thread did not stop on cancel; abandoned (it keeps its slot)",
                    getattr(call.func, "__qualname__", call.func),
                )
            raise
        release()
        return result


_UNLIMITED = trio.CapacityLimiter(10_000)
