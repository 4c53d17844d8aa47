"""Callbacks: ``_on_success`` / ``_on_failure`` / ``_on_stopped`` after a terminal outcome.

The completer schedules them after its commit, so each runs once per terminal
outcome. Each gets the Job as it ended -- or a Context, when its first
parameter asks for one (named ``ctx`` or annotated ``Context``, the rule of
handlers) -- and is cut off at its ``Callback.timeout`` (None: no limit); a
failing or slow callback is logged and never changes the job's outcome.
Callbacks resolve through the same allow-list as handlers.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from typing import TYPE_CHECKING, Any

import trio

from ..executors import JobCall, handler_kind, wants_context
from ..jobs import Context, JobStatus
from ..serializers import decode

if TYPE_CHECKING:
    from ..worker import Worker
    from .completer import Outcome

logger = logging.getLogger("werk_trio.worker")

__all__ = ["Callbacks"]


class Callbacks:
    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self._send, self._recv = trio.open_memory_channel[tuple[Any, str]](math.inf)
        self.ran = 0

    def schedule(self, outcome: Outcome, status: str) -> None:
        job = outcome.job
        cb = {"complete": job.on_success, "failed": job.on_failure, "aborted": job.on_stopped}.get(status)
        if cb is not None:
            self._send.send_nowait((outcome, status))

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        async with trio.open_nursery() as nursery:
            async for outcome, status in self._recv:
                nursery.start_soon(self._run_one, outcome, status)

    async def _run_one(self, outcome: Outcome, status: str) -> None:
        worker = self.worker
        job = outcome.job
        cb = {"complete": job.on_success, "failed": job.on_failure, "aborted": job.on_stopped}[status]
        try:
            func = worker.app.tasks.resolve(cb.func) if isinstance(cb.func, str) else cb.func
            # the callback sees the job as it ended, not as it was claimed (active, no result)
            done = status == "complete"
            ended = dataclasses.replace(
                job,
                status=JobStatus(status),
                result=decode(worker.app.serializer, outcome.result, "result") if done else None,
                error=None if done else outcome.error,
            )
            ctx = Context(
                job=ended, app=worker.app, worker=worker, worker_id=worker.id, worker_name=worker.name
            )
            if outcome.error and status != "complete":
                from ..errors import WerkError

                ctx.exception = WerkError(outcome.error.strip().splitlines()[-1])
            if wants_context(func):
                call = JobCall(func, (), {}, ctx, handler_kind(func))
            else:  # pgwerk passes the Job
                call = JobCall(func, (ended,), {}, None, handler_kind(func))
            limit = math.inf if cb.timeout is None else cb.timeout
            with trio.move_on_after(limit) as scope:
                await worker.executor_inline.run(call)
            if scope.cancelled_caught:
                logger.warning("callback %s of job %s cut off after %ss", cb.func, job.id, cb.timeout)
            else:
                self.ran += 1
        except Exception:
            logger.exception("callback %s of job %s raised", cb.func, job.id)
