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
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import psycopg
import trio
from outcome import Error, Value

from .._logging import current_job
from .._rows import bare_job, job_from_row, storable_encoded
from .._util import call as _call
from .._util import first_line
from ..errors import PoolTimeout, SerializationError, UnknownTask, WerkError
from ..executors import JobCall, handler_kind, wants_context
from ..jobs import Context, Job
from .classify import MAX_ERROR_CHARS, classify, failed, format_error, interrupted
from .completer import Outcome
from .ledger import Ledger, RunningJob
from .poller import Row
from .wiring import Db, Wake, WorkerSettings

if TYPE_CHECKING:
    from .._progress import WorkerProgress
    from ..app import Werk
    from ..executors import Executor
    from ..metrics import WorkerMetrics

logger = logging.getLogger("werk_trio.worker")

__all__ = ["MAX_ERROR_CHARS", "Hooks", "Runner", "RunningJob", "format_error"]

Hook = Callable[..., Any]
_NO_PAYLOAD: dict[str, Any] = {}
_NO_KWARGS: dict[str, Any] = {}


@dataclass(frozen=True, slots=True)
class Hooks:
    """The worker's hook lists (the worker appends to them; runners read)."""

    before_process: list[Hook]
    after_process: list[Hook]
    exception_handlers: list[Hook]


class Runner:
    """One job at a time, from the poller's channel to the completer's."""

    def __init__(
        self, app: Werk, db: Db, settings: WorkerSettings, executor: Executor, ledger: Ledger,
        slots: trio.Semaphore, wake: Wake, outcomes: trio.MemorySendChannel[Outcome], hooks: Hooks,
        progress: WorkerProgress, metrics: WorkerMetrics | None, owner: Any,
    ) -> None:
        self.app = app
        self.db = db
        self.settings = settings
        self.executor = executor
        self.ledger = ledger
        self.slots = slots
        self.wake = wake
        self._outcomes = outcomes
        self.hooks = hooks
        self.progress = progress
        self.metrics = metrics
        self._owner = owner  # ctx.worker
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
        self, rows: trio.MemoryReceiveChannel[Row], *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        task_status.started()
        ledger, slots, wake = self.ledger, self.slots, self.wake
        async with rows, self._outcomes:
            async for row in rows:
                try:
                    if ledger.shutdown_deadline is not None:
                        # stopping: a prefetched job that has not started stays
                        # ours until deregistration requeues it, attempt unspent
                        continue
                    await self.run_row(row)
                finally:
                    slots.release()
                    wake.nudge()

    def _hand_over_now(self, outcome: Outcome) -> None:
        """Hand over without waiting (being cancelled): to the ledger when the
        channel is full or gone, for the completer's final flush."""
        try:
            self._outcomes.send_nowait(outcome)
        except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
            self.ledger.strand(outcome)

    async def _hand_over_later(self, outcome: Outcome) -> None:
        """The channel is full (the completer is behind): wait, keeping the slot."""
        try:
            await self._outcomes.send(outcome)
        except trio.Cancelled:
            self.ledger.strand(outcome)
            raise

    async def run_row(self, row: Row) -> None:
        """Decode a claimed row and run its job. The function is resolved
        (allowlist first) before anything is decoded, so a serializer whose
        ``loads`` can run code never sees a row it may not run; a row that does
        not resolve or decode ends ``failed`` at once, final, with the reason."""
        try:
            func = self.app.tasks.resolve(row[1])
            job = job_from_row(row, self.db.serializer)
        except Exception as ex:
            # UnknownTask, SerializationError, or whatever the import of an
            # allowed module raised at its top level: that job fails, final
            job = bare_job(row)
            ctx = self._context(job)
            if not isinstance(ex, UnknownTask):
                logger.warning("worker %s: job %s (%s): %s: %s; failed", self.settings.name, job.id,
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

    def _context(self, job: Job) -> Context:
        settings = self.settings
        return Context(job=job, app=self.app, worker=self._owner, worker_id=settings.id,
                       worker_name=settings.name)

    async def _run_job(self, job: Job, func: Any) -> None:
        ledger, executor, settings = self.ledger, self.executor, self.settings
        ctx = Context(job=job, app=self.app, worker=self._owner, worker_id=settings.id,
                      worker_name=settings.name)
        progress = self.progress
        if progress.token is None:
            progress.token = trio.lowlevel.current_trio_token()
        ctx._progress = progress
        scope = trio.CancelScope()
        running = RunningJob(job, scope, ctx=ctx)
        if job.timeout_secs:
            running.timeout_at = trio.current_time() + job.timeout_secs
            scope.deadline = running.timeout_at
        ledger.start(running)
        if self.metrics is not None:
            self.metrics.started(job)
        outcome: Outcome | None = None
        exc: BaseException | None = None
        try:
            try:
                for hook in self.hooks.before_process:
                    try:
                        await _call(hook, ctx)
                    except Exception:  # pgwerk's rule: logged, and the job still runs
                        logger.exception("worker %s: before_process hook %r raised (job %s)",
                                         self.settings.name, hook, job.id)
                kind, with_ctx = self._shape(func)
                payload = job.payload or _NO_PAYLOAD
                # copies (as job.args / job.kwargs make), so a handler changing them leaves the Job be
                call = JobCall(func, tuple(payload.get("args", ())), dict(payload.get("kwargs", _NO_KWARGS)),
                               ctx if with_ctx else None, kind, job.function)
                with scope:
                    if job.heartbeat_secs:
                        async with trio.open_nursery() as nursery:
                            nursery.start_soon(self._touch_loop, job, nursery.cancel_scope)
                            result = await executor.run(call)
                            nursery.cancel_scope.cancel()
                    else:
                        result = await executor.run(call)
                if scope.cancelled_caught:
                    outcome, exc = classify(job, stop=running, now=trio.current_time())
                elif isinstance(result, Value):  # encoded where it ran (the executor's contract)
                    try:
                        text = self._storable_result(job, result.value)
                    except SerializationError as ser:
                        outcome, exc = classify(job, error=ser, final=True)
                    else:
                        outcome, exc = classify(job, result=text)
                elif isinstance(result, Error):
                    outcome, exc = classify(job, error=_unwrap(result.error))
                else:  # an executor written for the old contract (a bare result)
                    outcome, exc = classify(job, error=_not_an_outcome(executor, result), final=True)
            except trio.Cancelled:
                # the whole worker is being cancelled: put the job back unspent
                self._hand_over_now(interrupted(job))
                raise
            except Exception as error:
                outcome, exc = classify(job, error=_unwrap(error))
            except BaseException as error:
                inner = _unwrap(error)
                if _only_cancelled(error):
                    # a worker cancel seen through the heartbeat nursery (wrapped in
                    # a group), or Ctrl-C: put the job back unspent, as above
                    self._hand_over_now(interrupted(job))
                else:
                    # SystemExit (or another BaseException) out of the handler: the
                    # worker goes down with it, but the attempt is recorded as failed,
                    # so a job that stops its worker every time still runs out of attempts
                    self._hand_over_now(failed(job, inner))
                raise
        finally:
            ledger.stop_running(job.id)
        await self._finish(job, ctx, outcome, exc)

    def _storable_result(self, job: Job, text: str) -> str:
        """The encoded result as Postgres can store it, within max_result_bytes;
        SerializationError (the job fails, final) otherwise."""
        db = self.db
        text = storable_encoded(db.serializer, text, f"result of {job.function}")
        limit = db.config.max_result_bytes
        if len(text) > limit // 4:  # cheap test first: a character is at most 4 bytes
            size = len(text) if text.isascii() else len(text.encode("utf-8"))
            if size > limit:
                raise SerializationError(
                    f"the result of {job.function} is {size} bytes encoded, over max_result_bytes "
                    f"({limit}); store large results elsewhere and return a reference, or raise "
                    "Werk(max_result_bytes=...)"
                )
        return text

    async def _finish(
        self, job: Job, ctx: Context, outcome: Outcome | None, exc: BaseException | None
    ) -> None:
        hooks = self.hooks
        assert outcome is not None
        ctx.exception = exc if outcome.kind != "complete" else None
        if outcome.kind in ("fail", "fail_final") and exc is not None:
            for handler in reversed(hooks.exception_handlers):
                try:
                    await _call(handler, job, exc)
                except Exception:
                    logger.exception("worker %s: exception handler %r raised (job %s)",
                                     self.settings.name, handler, job.id)
        for hook in hooks.after_process:
            try:
                await _call(hook, ctx)
            except Exception:
                logger.exception("worker %s: after_process hook %r raised (job %s)",
                                 self.settings.name, hook, job.id)
        try:
            self._outcomes.send_nowait(outcome)
        except trio.WouldBlock:
            await self._hand_over_later(outcome)
        self.ledger.count(outcome.kind)
        if self.metrics is not None:
            self.metrics.finished(job, outcome, exc)

    async def _touch_loop(self, job: Job, scope: trio.CancelScope) -> None:
        db, settings = self.db, self.settings
        interval = float(job.heartbeat_secs or 1.0)
        while True:
            await trio.sleep(interval)
            try:
                async with db.pool.connection() as conn:
                    await conn.execute(db.sql.TOUCH_JOBS, {"ids": [job.id], "worker_id": settings.id})
            except (psycopg.Error, PoolTimeout) as ex:  # never the job's or the worker's end
                logger.warning("worker %s: could not touch job %s (%s: %s); will retry",
                               settings.name, job.id, type(ex).__name__, first_line(ex))


def _not_an_outcome(executor: Any, result: Any) -> WerkError:
    return WerkError(
        f"{type(executor).__name__}.run() returned {type(result).__name__}, not an outcome.Outcome: "
        "an executor returns outcome.Value(the result encoded with the app's serializer) "
        "or outcome.Error(the handler's exception) -- see werk_trio.executors.Executor"
    )


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
