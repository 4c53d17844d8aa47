"""Runners: ``concurrency`` tasks, each running one job at a time.

Loop: take a claimed job from the poller's channel; resolve its function
(UnknownTask without importing anything not allowed); run the before-hooks;
run the handler through the executor inside the job's own cancel scope, whose
deadline is the job's ``_timeout`` and which the abort-watcher and shutdown
cancel; touch ``_heartbeat`` jobs beside it; classify the end (complete /
retry / fail / abort / requeue-on-shutdown); run the after-hooks and, on
failure, the exception handlers; hand the outcome to the completer; free the
slot. No database query of its own except the job touches. While a job
runs, :data:`werk_trio._logging.current_job` holds its id, function and
attempt, so every log record made meanwhile carries them.

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

from .._ids import uuid7
from .._logging import current_job
from .._rows import bare_job, job_from_row, storable, storable_encoded
from ..errors import JobTimeout, PoolTimeout, SerializationError, UnknownTask, WerkError, WorkerShutdown
from ..executors import JobCall, RemoteError, SerializedResult, handler_kind, wants_context
from ..flow import Cancel, Snooze
from ..jobs import Context, Job
from ..serializers import encode
from .completer import Outcome
from .poller import Row, _line

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
        text = exc.traceback_text
    else:
        try:
            text = "".join(traceback.format_exception(exc)).rstrip()
        except Exception as ex:  # an exception whose __str__ raises
            text = f"{_qualified(type(exc))}: <str() of the exception raised {type(ex).__name__}>"
    return error_text(text)


def error_text(text: str) -> str:
    """An error text Postgres can store and a batch can carry: NULs and lone
    surrogates replaced visibly (``\\x00``, ``\\udcff``); over
    MAX_ERROR_CHARS, the middle cut out (the start names the exception, the
    end is the innermost frame)."""
    text = storable(text)
    if len(text) > MAX_ERROR_CHARS:
        half = MAX_ERROR_CHARS // 2
        cut = len(text) - 2 * half
        note = f"[... {cut} characters cut: error texts are kept to {MAX_ERROR_CHARS} ...]"
        text = f"{text[:half]}\n{note}\n{text[-half:]}"
    return text


#: Longest error text stored (characters); longer ones lose their middle.
MAX_ERROR_CHARS = 64 * 1024


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

    async def run(
        self, rows: trio.MemoryReceiveChannel[Row], *, task_status: Any = trio.TASK_STATUS_IGNORED
    ) -> None:
        task_status.started()
        async with rows:
            async for row in rows:
                try:
                    if self.worker.shutdown_deadline is not None:
                        # stopping: a prefetched job that has not started stays
                        # ours until deregistration requeues it, attempt unspent
                        continue
                    await self.run_row(row)
                finally:
                    self.worker.slots.release()
                    self.worker.nudge()

    async def run_row(self, row: Row) -> None:
        """Decode a claimed row and run its job. The function is resolved
        (allowlist first) before anything is decoded, so a serializer whose
        ``loads`` can run code never sees a row it may not run; a row that does
        not resolve or decode ends ``failed`` at once, final, with the reason."""
        worker = self.worker
        try:
            func = worker.app.tasks.resolve(row[1])
            job = job_from_row(row, worker.app.serializer)
        except Exception as ex:
            # UnknownTask, SerializationError, or whatever the import of an
            # allowed module raised at its top level: that job fails, final
            job = bare_job(row)
            ctx = Context(
                job=job, app=worker.app, worker=worker, worker_id=worker.id, worker_name=worker.name
            )
            if not isinstance(ex, UnknownTask):
                logger.warning("worker %s: job %s (%s): %s: %s; failed", worker.name, job.id,
                               job.function, type(ex).__name__, ex)
            await self._finish(job, ctx, Outcome(job, "fail_final", error=format_error(ex)), ex)
            return
        await self.run_job(job, func)

    async def run_job(self, job: Job, func: Any) -> None:
        # every log record made while the job runs (hooks included) carries it
        token = current_job.set((str(job.id), job.function, job.attempts))
        try:
            await self._run_job(job, func)
        finally:
            current_job.reset(token)

    async def _run_job(self, job: Job, func: Any) -> None:
        worker = self.worker
        ctx = Context(job=job, app=worker.app, worker=worker, worker_id=worker.id, worker_name=worker.name)
        if worker.progress.token is None:
            worker.progress.token = trio.lowlevel.current_trio_token()
        ctx._progress = worker.progress
        scope = trio.CancelScope()
        running = RunningJob(job, scope, ctx=ctx)
        now = trio.current_time()
        if job.timeout_secs:
            running.timeout_at = now + job.timeout_secs
            scope.deadline = running.timeout_at
        if worker.shutdown_deadline is not None:
            running.shutdown(worker.shutdown_deadline)
        worker.running[job.id] = running
        if worker.metrics is not None:
            worker.metrics.started(job)
        outcome: Outcome | None = None
        exc: BaseException | None = None
        try:
            try:
                for hook in worker.before_process:
                    try:
                        await _call(hook, ctx)
                    except Exception:  # pgwerk's rule: logged, and the job still runs
                        logger.exception("before_process hook %r raised (job %s)", hook, job.id)
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
                        text = self._storable_result(job, text)
                    except SerializationError as ser:
                        exc = ser
                        outcome = Outcome(job, "fail_final", error=format_error(ser))
                    else:
                        outcome = Outcome(job, "complete", result=text, delay=_repeat_delay(job))
                        if job.repeat_remaining > 0:  # the next run is a row of its own
                            outcome.next_id = uuid7()
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

    def _storable_result(self, job: Job, text: str) -> str:
        """The encoded result as Postgres can store it, within max_result_bytes;
        SerializationError (the job fails, final) otherwise."""
        app = self.worker.app
        text = storable_encoded(app.serializer, text, f"result of {job.function}")
        limit = app.config.max_result_bytes
        if len(text) > limit // 4:  # cheap test first: a character is at most 4 bytes
            size = len(text) if text.isascii() else len(text.encode("utf-8"))
            if size > limit:
                raise SerializationError(
                    f"the result of {job.function} is {size} bytes encoded, over max_result_bytes "
                    f"({limit}); store large results elsewhere and return a reference, or raise "
                    "Werk(max_result_bytes=...)"
                )
        return text

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

    async def _finish(
        self, job: Job, ctx: Context, outcome: Outcome | None, exc: BaseException | None
    ) -> None:
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
        if worker.metrics is not None:
            worker.metrics.finished(job, outcome, exc)

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
            except (psycopg.Error, PoolTimeout) as ex:  # never the job's or the worker's end
                logger.warning("worker %s: could not touch job %s (%s: %s); will retry",
                               worker.name, job.id, type(ex).__name__, _line(ex))


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
