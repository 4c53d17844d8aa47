"""The process executor (ProcessWorker): a pool of long-lived child processes.

The bridge is trio-parallel: ``concurrency`` worker processes (spawned, so
they share nothing with the worker's Trio loop or its connections), results
back over a pipe read with Trio's waits. A cancel (timeout, abort, shutdown)
kills that child at once and the pool starts a replacement. A child that dies
(segfault, ``os._exit``, SIGKILL) fails the attempt with an error naming the
exit code or signal; the worker goes on. When the worker stops, the pool's
children get 5 s to exit; slower ones are killed (logged, not an error).

Spawning a child takes about half a second, so the pool is filled before the
worker starts claiming, and a killed or dead child is replaced in the
background: otherwise that time would count against the next job's ``_timeout``.
"""

from __future__ import annotations

import contextlib
import logging
import math
import pickle
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio

from ..errors import WerkError
from . import ChildDied, JobCall, child_request, describe_exit, reply_to_result
from ._child import run_request

__all__ = ["ProcessExecutor"]

logger = logging.getLogger("werk_trio.worker")


class ProcessExecutor:
    name = "process"

    def __init__(self, concurrency: int, serializer: Any) -> None:
        self.limiter = trio.CapacityLimiter(concurrency)
        self.serializer = serializer
        self._ctx: Any = None
        self._spares: trio.Nursery | None = None
        self.crashes = 0

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        import trio_parallel

        clean = False
        try:
            async with trio_parallel.open_worker_context(idle_timeout=math.inf, grace_period=5.0) as ctx:
                self._ctx = ctx
                try:
                    async with trio.open_nursery() as warm:
                        # concurrent calls while the cache is empty: one spawn each
                        for _ in range(int(self.limiter.total_tokens)):
                            warm.start_soon(self._spawn_one)
                    async with trio.open_nursery() as spares:
                        self._spares = spares
                        try:
                            yield
                        finally:
                            self._spares = None
                            spares.cancel_scope.cancel()
                finally:
                    self._ctx = None
                clean = True
        except trio_parallel.BrokenWorkerError as ex:
            if not clean:
                raise
            # Closing the pool after every job ended: children slower to exit
            # than the grace period (a loaded machine, a slow exit hook) were
            # killed. Nothing was lost; the worker stops normally.
            logger.warning("process pool: %s (killed at shutdown)", ex.args[0] if ex.args else ex)

    async def _spawn_one(self) -> None:
        """Start a pool process ahead of the job that will need it (it stays cached)."""
        import trio_parallel

        if self._ctx is not None:
            with contextlib.suppress(trio_parallel.BrokenWorkerError):
                await self._ctx.run_sync(_ready, kill_on_cancel=True, limiter=self.limiter)

    def _replace(self) -> None:
        if self._spares is not None:
            self._spares.start_soon(self._spawn_one)

    async def run(self, call: JobCall) -> Any:
        import trio_parallel

        if self._ctx is None:
            raise WerkError(
                "the process pool is not running: "
                "run jobs inside `async with executor.running():` (Worker.run does)"
            )
        payload = pickle.dumps(child_request(call, self.serializer))
        try:
            reply = await self._ctx.run_sync(run_request, payload, kill_on_cancel=True, limiter=self.limiter)
        except trio.Cancelled:
            self._replace()  # kill_on_cancel: that child is gone
            raise
        except trio_parallel.BrokenWorkerError as ex:
            self.crashes += 1
            self._replace()
            proc = next((a for a in ex.args if hasattr(a, "exitcode")), None)
            code = getattr(proc, "exitcode", None)
            raise ChildDied(f"the job's worker process {describe_exit(code)}") from None
        return reply_to_result(pickle.loads(reply))


def _ready() -> None:
    """The no-op a fresh pool process runs to be started."""
