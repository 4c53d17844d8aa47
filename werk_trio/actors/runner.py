"""Runners: ``concurrency`` tasks, each running one job at a time.

Loop: take a claimed job from the poller's channel; resolve its function
(UnknownTask without importing anything not allowed); run the before-hooks;
run the handler through the executor inside the job's own cancel scope, whose
deadline is the job's ``_timeout`` and which the abort-watcher and shutdown
cancel; touch ``_heartbeat`` jobs beside it; classify the end (complete /
retry / fail / abort / requeue-on-shutdown); run the after-hooks and, on
failure, the exception handlers; hand the outcome to the completer; free the
slot. No database query of its own except the job touches.

A failing handler, hook or exception handler never stops a runner.
"""

from __future__ import annotations

import logging
import math
import traceback
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import psycopg
import trio

from ..errors import JobTimeout, SerializationError, UnknownTask, WerkError, WorkerShutdown
from ..executors import JobCall, RemoteError, SerializedResult, handler_kind, wants_context
from ..flow import Cancel, Snooze
from ..jobs import Context, Job
from ..serializers import encode
from .completer import Outcome

if TYPE_CHECKING:
    from ..worker import Worker

logger = logging.getLogger("werk_trio.worker")

__all__ = ["Runner", "RunningJob", "format_error"]


@dataclass(slots=True)
class RunningJob:
    """A job in a runner, as the abort-watcher and shutdown see it."""

    job: Job
    scope: trio.CancelScope
    timeout_at: float = math.inf
    shutdown_at: float = math.inf
    aborted: bool = False
    ctx: Context | None = field(default=None)

    def abort(self) -> None:
        self.aborted = True
        self.scope.cancel()

    def shutdown(self, deadline: float) -> None:
        self.shutdown_at = min(self.shutdown_at, deadline)
        self.scope.deadline = min(self.scope.deadline, deadline)


def format_error(exc: BaseException) -> str:
    """The full traceback text of ``exc`` (what ``job.error`` holds); for an
    error from a child process, the child's own traceback."""
    if isinstance(exc, RemoteError):
        return exc.traceback_text
    return "".join(traceback.format_exception(exc)).rstrip()


def _qualified(exc_type: type[BaseException]) -> str:
    return f"{exc_type.__module__}.{exc_type.__qualname__}"


class Runner:
    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self._shapes: dict[Any, tuple[str, bool]] = {}

    def _shape(self, func: Any) -> tuple[str, bool]:
        """(handler kind, wants a Context) of ``func``, looked up once per function."""
        try:
            return self._shapes[func]
        except (KeyError, TypeError):
            shape = (handler_kind(func), wants_context(func))
            try:
                self._shapes[func] = shape
            except TypeError:  # an unhashable callable object
                pass
            return shape

    async def run(self, jobs: trio.MemoryReceiveChannel[Job], *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        async with jobs:
            async for job in jobs:
                try:
                    if self.worker.shutdown_deadline is not None:
                        # stopping: a prefetched job that has not started stays
                        # ours until deregistration requeues it, attempt unspent
                        continue
                    await self.run_job(job)
                finally:
                    self.worker.slots.release()
                    self.worker.nudge()

    async def run_job(self, job: Job) -> None:
        worker = self.worker
        ctx = Context(job=job, app=worker.app, worker=worker, worker_id=worker.id, worker_name=worker.name)
        if worker.progress.token is None:
            worker.progress.token = trio.lowlevel.current_trio_token()
        ctx._progress = worker.progress
        try:
            func = worker.app.tasks.resolve(job.function)
        except UnknownTask as ex:
            await self._finish(job, ctx, Outcome(job, "fail_final", error=format_error(ex)), ex)
            return
        scope = trio.CancelScope()
        running = RunningJob(job, scope, ctx=ctx)
        now = trio.current_time()
        if job.timeout_secs:
            running.timeout_at = now + job.timeout_secs
            scope.deadline = running.timeout_at
        if worker.shutdown_deadline is not None:
            running.shutdown(worker.shutdown_deadline)
        worker.running[job.id] = running
        outcome: Outcome | None = None
        exc: BaseException | None = None
        try:
            try:
                for hook in worker.before_process:
                    await _call(hook, ctx)
                kind, with_ctx = self._shape(func)
                call = JobCall(func, tuple(job.args), job.kwargs, ctx if with_ctx else None, kind)
                with scope:
                    if job.heartbeat_secs:
                        async with trio.open_nursery() as nursery:
                            nursery.start_soon(self._touch_loop, job, nursery.cancel_scope)
                            result = await worker.executor.run(call)
                            nursery.cancel_scope.cancel()
                    else:
                        result = await worker.executor.run(call)
                if scope.cancelled_caught:
                    outcome, exc = self._stopped(running)
                else:
                    try:
                        if isinstance(result, SerializedResult):  # encoded in a child process
                            text = result.text
                        else:
                            text = encode(worker.app.serializer, result, f"result of {job.function}")
                    except SerializationError as ser:
                        exc = ser
                        outcome = Outcome(job, "fail_final", error=format_error(ser))
                    else:
                        outcome = Outcome(job, "complete", result=text, delay=_repeat_delay(job))
            except trio.Cancelled:
                # the whole worker is being cancelled: put the job back unspent
                worker.completer.submit(Outcome(job, "requeue", error="interrupted by worker shutdown"))
                raise
            except Exception as error:
                exc = _unwrap(error)
                control = exc.original if isinstance(exc, RemoteError) else exc
                if isinstance(control, Snooze):  # back to the queue, attempt unspent
                    outcome = Outcome(job, "snooze", error=str(control), delay=control.seconds)
                elif isinstance(control, Cancel):  # ends aborted, no retry
                    outcome = Outcome(job, "abort", error=format_error(exc))
                elif isinstance(exc, RemoteError) and exc.final:
                    outcome = Outcome(job, "fail_final", error=format_error(exc))
                else:
                    outcome = self._failed(job, exc)
            except BaseException as error:
                inner = _unwrap(error)
                if _only_cancelled(error):
                    # a worker cancel seen through the heartbeat nursery (wrapped in
                    # a group), or Ctrl-C: put the job back unspent, as above
                    worker.completer.submit(Outcome(job, "requeue", error="interrupted by worker shutdown"))
                else:
                    # SystemExit (or another BaseException) out of the handler: the
                    # worker goes down with it, but the attempt is recorded as failed,
                    # so a job that stops its worker every time still runs out of attempts
                    worker.completer.submit(self._failed(job, inner))
                raise
        finally:
            worker.running.pop(job.id, None)
        await self._finish(job, ctx, outcome, exc)

    def _stopped(self, running: RunningJob) -> tuple[Outcome, BaseException]:
        job = running.job
        if running.aborted:
            reason = "aborted by request (abort_job)"
            return Outcome(job, "abort", error=reason), WerkError(reason)
        now = trio.current_time()
        if running.shutdown_at <= now and running.shutdown_at <= running.timeout_at:
            exc = WorkerShutdown(f"worker shut down while {job.function} ran; requeued")
            return Outcome(job, "requeue", error=str(exc)), exc
        timeout = JobTimeout(f"{job.function} ran longer than its timeout of {job.timeout_secs:g}s")
        return self._failed(job, timeout), timeout

    def _failed(self, job: Job, exc: BaseException) -> Outcome:
        error = format_error(exc)
        if job.attempts < job.max_attempts:
            intervals = job.retry_intervals or [0.0]
            delay = intervals[min(job.attempts - 1, len(intervals) - 1)]
            return Outcome(job, "fail", error=error, delay=delay)
        return Outcome(job, "fail", error=error)

    async def _finish(self, job: Job, ctx: Context, outcome: Outcome | None, exc: BaseException | None) -> None:
        worker = self.worker
        assert outcome is not None
        ctx.exception = exc if outcome.kind != "complete" else None
        if outcome.kind in ("fail", "fail_final") and exc is not None:
            for handler in reversed(worker.exception_handlers):
                try:
                    await _call(handler, job, exc)
                except Exception:
                    logger.exception("exception handler %r raised (job %s)", handler, job.id)
        for hook in worker.after_process:
            try:
                await _call(hook, ctx)
            except Exception:
                logger.exception("after_process hook %r raised (job %s)", hook, job.id)
        worker.completer.submit(outcome)
        worker.stats[outcome.kind] = worker.stats.get(outcome.kind, 0) + 1

    async def _touch_loop(self, job: Job, scope: trio.CancelScope) -> None:
        worker = self.worker
        interval = float(job.heartbeat_secs or 1.0)
        while True:
            await trio.sleep(interval)
            try:
                async with worker.app.pool.connection() as conn:
                    await conn.execute(
                        worker.app.sql.TOUCH_JOBS, {"ids": [job.id], "worker_id": worker.id}
                    )
            except psycopg.OperationalError as ex:
                logger.warning("could not touch job %s (%s); will retry", job.id, ex)


def _repeat_delay(job: Job) -> float | None:
    if job.repeat_remaining <= 0:
        return None
    if job.repeat_interval_secs is not None:
        return job.repeat_interval_secs
    intervals = job.repeat_intervals or [0.0]
    return intervals[max(0, min(len(intervals) - job.repeat_remaining, len(intervals) - 1))]


async def _call(func: Any, *args: Any) -> Any:
    result = func(*args)
    if hasattr(result, "__await__"):
        result = await result
    return result


def _only_cancelled(exc: BaseException) -> bool:
    """True for trio.Cancelled or KeyboardInterrupt, also when a nursery wrapped them."""
    if isinstance(exc, BaseExceptionGroup):
        return exc.split((trio.Cancelled, KeyboardInterrupt))[1] is None
    return isinstance(exc, trio.Cancelled | KeyboardInterrupt)


def _unwrap(exc: BaseException) -> BaseException:
    """The handler's own exception out of a one-member ExceptionGroup (nurseries wrap)."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc
