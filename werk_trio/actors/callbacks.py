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
from outcome import Error

from ..errors import WerkError
from ..executors import JobCall, handler_kind, unencodable, wants_context
from ..jobs import Callback, Context, Job, JobStatus
from ..serializers import decode

if TYPE_CHECKING:
    from ..app import Werk
    from ..executors.inline import InlineExecutor
    from .completer import Outcome
    from .wiring import WorkerSettings

logger = logging.getLogger("werk_trio.worker")

__all__ = ["Callbacks", "callback_of"]


def callback_of(job: Job, status: str) -> Callback | None:
    """The callback of ``job`` for the terminal ``status`` it reached (None: none)."""
    if status == "complete":
        return job.on_success
    if status == "failed":
        return job.on_failure
    if status == "aborted":
        return job.on_stopped
    return None


class Callbacks:
    """Runs the callbacks the completer sends, each in a task of its own. Its
    loop ends when the completer closes the channel; the worker then cancels
    what still runs."""

    def __init__(
        self, app: Werk, settings: WorkerSettings, due: trio.MemoryReceiveChannel[tuple[Outcome, str]],
        executor: InlineExecutor, owner: Any,
    ) -> None:
        self.app = app
        self.settings = settings
        self._due = due
        self.executor = executor
        self._owner = owner  # ctx.worker
        self.ran = 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        async with self._due, trio.open_nursery() as nursery:
            async for outcome, status in self._due:
                nursery.start_soon(self._run_one, outcome, status)

    async def _run_one(self, outcome: Outcome, status: str) -> None:
        app, settings = self.app, self.settings
        job = outcome.job
        cb = callback_of(job, status)
        assert cb is not None
        try:
            func = app.tasks.resolve(cb.func) if isinstance(cb.func, str) else cb.func
            # the callback sees the job as it ended, not as it was claimed (active, no result)
            done = status == "complete"
            ended = dataclasses.replace(
                job,
                status=JobStatus(status),
                result=decode(app.serializer, outcome.result, "result") if done else None,
                error=None if done else outcome.error,
            )
            ctx = Context(
                job=ended, app=app, worker=self._owner, worker_id=settings.id, worker_name=settings.name
            )
            if outcome.error and status != "complete":
                ctx.exception = WerkError(outcome.error.strip().splitlines()[-1])
            if wants_context(func):
                call = JobCall(func, (), {}, ctx, handler_kind(func))
            else:  # pgwerk passes the Job
                call = JobCall(func, (ended,), {}, None, handler_kind(func))
            limit = math.inf if cb.timeout is None else cb.timeout
            with trio.move_on_after(limit) as scope:
                returned = await self.executor.run(call)
            if not scope.cancelled_caught and isinstance(returned, Error) and not unencodable(returned.error):
                returned.unwrap()  # what the callback raised (its return value is ignored)
            if scope.cancelled_caught:
                logger.warning("worker %s: callback %s of job %s cut off after %ss",
                               settings.name, cb.func, job.id, cb.timeout)
            else:
                self.ran += 1
        except Exception:
            logger.exception("worker %s: callback %s of job %s raised", settings.name, cb.func, job.id)
