"""The inline executor (AsyncWorker): handlers run in the worker's own Trio loop.

* Trio ``async def`` handlers are awaited directly; a cancel stops them at
  their next checkpoint. Their result is encoded here, in the loop (plain
  functions' in their thread).
* Plain functions run in a thread of the thread executor's pool (see
  ``thread.py``: long-lived threads, batched wake-ups) so the loop never
  blocks; a cancel abandons the thread on time and sets ``ctx.cancelled``
  for the handler to notice.
* asyncio coroutine functions marked for the bridge run through trio-asyncio
  in a loop the executor opens with ``running()``, for the worker's lifetime.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import outcome

from ..errors import WerkError
from . import HandlerKind, JobCall, encoded

__all__ = ["InlineExecutor"]

#: Threads for plain functions when no limit is given (Trio's own default).
DEFAULT_THREAD_LIMIT = 40


class InlineExecutor:
    name = "async"

    def __init__(self, *, thread_limit: int | None = None, serializer: Any = None) -> None:
        from .thread import ThreadExecutor


        #: Plain functions: the thread executor's pool (threads start only when
        #: a plain function first runs), at most ``thread_limit`` at once
        #: (Trio's default of 40 when not given).
        self.threads = ThreadExecutor(thread_limit or DEFAULT_THREAD_LIMIT, serializer, eager=False)
        self._aio_loop: Any = None

    @property
    def serializer(self) -> Any:
        """Encodes results (the app's serializer: a Worker sets it when not given)."""
        return self.threads.serializer

    @serializer.setter
    def serializer(self, serializer: Any) -> None:
        self.threads.serializer = serializer

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        import trio_asyncio

        async with self.threads.running(), trio_asyncio.open_loop() as loop:
            self._aio_loop = loop
            try:
                yield
            finally:
                self._aio_loop = None

    async def run(self, call: JobCall) -> outcome.Outcome[str]:
        kind = call.kind
        if kind == HandlerKind.SYNC:
            return await self.threads.run(call)
        try:
            if kind == HandlerKind.TRIO:
                value = await call.func(*call.positional(), **call.kwargs)
            else:
                value = await self._asyncio(call)
        except Exception as exc:  # a BaseException (a cancel) propagates
            return outcome.Error(exc)
        return encoded(self.serializer, value, call.function)

    async def _asyncio(self, call: JobCall) -> Any:
        import trio_asyncio

        if self._aio_loop is None:
            raise WerkError(
                "the asyncio bridge is not running: "
                "run jobs inside `async with executor.running():` (Worker.run does)"
            )
        return await trio_asyncio.aio_as_trio(call.func)(*call.positional(), **call.kwargs)
