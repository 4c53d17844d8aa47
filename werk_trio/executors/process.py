"""The process executor (ProcessWorker): a pool of long-lived child processes.

The bridge is trio-parallel: ``concurrency`` worker processes (spawned, so
they share nothing with the worker's Trio loop or its connections), results
back over a pipe read with Trio's waits. A cancel (timeout, abort, shutdown)
kills that child at once and the pool starts a replacement. A child that dies
(segfault, ``os._exit``, SIGKILL) fails the attempt with an error naming the
exit code or signal; the worker goes on.
"""

from __future__ import annotations

import math
import pickle
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio

from . import ChildDied, JobCall, child_request, describe_exit, reply_to_result
from ._child import run_request

__all__ = ["ProcessExecutor"]


class ProcessExecutor:
    name = "process"

    def __init__(self, concurrency: int, serializer: Any) -> None:
        self.limiter = trio.CapacityLimiter(concurrency)
        self.serializer = serializer
        self._ctx: Any = None
        self.crashes = 0

    @asynccontextmanager
    async def running(self, nursery: trio.Nursery) -> AsyncIterator[None]:
        import trio_parallel

        async with trio_parallel.open_worker_context(idle_timeout=math.inf, grace_period=5.0) as ctx:
            self._ctx = ctx
            try:
                yield
            finally:
                self._ctx = None

    async def run(self, call: JobCall) -> Any:
        import trio_parallel

        if self._ctx is None:
            raise RuntimeError("the process pool is not running")
        payload = pickle.dumps(child_request(call, self.serializer))
        try:
            reply = await self._ctx.run_sync(run_request, payload, kill_on_cancel=True, limiter=self.limiter)
        except trio_parallel.BrokenWorkerError as ex:
            self.crashes += 1
            proc = next((a for a in ex.args if hasattr(a, "exitcode")), None)
            code = getattr(proc, "exitcode", None)
            raise ChildDied(f"the job's worker process {describe_exit(code)}") from None
        return reply_to_result(pickle.loads(reply))  # noqa: S301 - from our own child
