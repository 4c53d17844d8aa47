"""Runners: ``concurrency`` tasks, each running one job at a time.

Loop: take a claimed job from the poller's channel; resolve its function
(UnknownTask without importing anything not allowed); run the before-hooks;
run the handler through the executor, where the job's ``_timeout``, the
abort-watcher and shutdown cancel it (through the runner's cancel scope,
which its jobs share until a stop reaches it: see :meth:`Runner._drive`);
touch ``_heartbeat`` jobs beside it; classify the end (complete / retry /
fail / abort / requeue-on-shutdown); run the after-hooks and, on failure,
the exception handlers; hand the outcome to the completer; free the slot.
No database query of its own except the job touches. While a job runs,
:data:`werk_trio._logging.current_job` holds its id, function and attempt,
so every log record made meanwhile carries them.

A failing handler, hook or exception handler never stops a runner.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
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


@dataclass(slots=True)
class _Ended:
    """A job's end, to hand over once out of the cancel scope it ran in."""

    job: Job
    ctx: Context
    outcome: Outcome
    exc: BaseException | None


def _ended(running: RunningJob, outcome: Outcome, exc: BaseException | None) -> _Ended:
    assert running.ctx is not None  # a runner's RunningJob always has its Context
    return _Ended(running.job, running.ctx, outcome, exc)


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
        #: The job between its registration and its end, for the code that
        #: catches the cancel of its scope (or of the worker) outside it.
        self._in_flight: RunningJob | None = None

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
        async with rows, self._outcomes:
            await self._drive(rows.receive, self._free_slot)

    def _free_slot(self) -> None:
        self.slots.release()
        wake = self.wake
        if wake.on_free:
            wake.nudge()

    async def _drive(self, receive: Callable[[], Awaitable[Row]], done: Callable[[], None]) -> None:
        """Run the rows ``receive`` returns until it raises EndOfChannel,
        calling ``done`` once for each row after its outcome is handed over.
        Each row's function is resolved (allowlist first) before anything is
        decoded, so a serializer whose ``loads`` can run code never sees a row
        it may not run; a row that does not resolve or decode ends ``failed``
        at once, final, with the reason.

        The jobs run one after another inside one cancel scope (entering and
        leaving a scope per job was the largest cost of a short job): while
        its handler runs, a job's RunningJob is armed, so its timeout, abort
        and shutdown cancel the scope; the job's end resets the deadline and
        deregisters it before anything else runs, so nothing else can cancel
        the scope. A scope a cancel reached (a stopped job, or a stop that came
        just after its job ended) is left, that job finished outside it, and
        the next rows get a new scope: a cancelled scope cannot be reused."""
        ledger = self.ledger
        while True:
            scope = trio.CancelScope()
            ended: _Ended | None = None
            held = False  # a row taken whose ``done`` is still due
            try:
                try:
                    with scope:
                        while ended is None:
                            try:
                                row = await receive()
                            except trio.EndOfChannel:
                                return
                            held = True
                            # stopping: a prefetched job that has not started stays
                            # ours until deregistration requeues it, attempt unspent
                            if ledger.shutdown_deadline is None:
                                ended = await self._step(row, scope)
                            if ended is None:
                                held = False
                                done()
                except Exception as error:
                    # what a nursery in the job raised beside the scope's own
                    # cancel (the scope took the Cancelled out of the group)
                    running = self._take_in_flight()
                    if running is None:
                        raise
                    ended = _ended(running, *classify(running.job, error=_unwrap(error)))
                if ended is None:  # the scope caught the cancel that stopped the job in flight
                    running = self._take_in_flight()
                    if running is None:  # (no job was in it: nothing to finish)
                        continue
                    ended = _ended(running, *classify(running.job, stop=running, now=trio.current_time()))
                job = ended.job
                token = current_job.set((str(job.id), job.function, job.attempts))
                try:
                    await self._finish(job, ended.ctx, ended.outcome, ended.exc)
                finally:
                    current_job.reset(token)
            except BaseException as error:
                running = self._take_in_flight()
                if running is not None:
                    if _only_cancelled(error):
                        # the whole worker is being cancelled (or Ctrl-C): put the job
                        # back unspent
                        self._hand_over_now(interrupted(running.job))
                    else:
                        # SystemExit (or another BaseException) out of the handler: the
                        # worker goes down with it, but the attempt is recorded as failed,
                        # so a job that stops its worker every time still runs out of attempts
                        self._hand_over_now(failed(running.job, _unwrap(error)))
                raise
            finally:
                if held:
                    done()

    def _take_in_flight(self) -> RunningJob | None:
        running, self._in_flight = self._in_flight, None
        return running

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

    async def _step(self, row: Row, scope: trio.CancelScope) -> _Ended | None:
        """Decode ``row`` and run its job inside ``scope`` (entered by the
        caller); None once its outcome is handed over, or the job's end when a
        cancel reached ``scope`` after the job ended (the caller finishes it
        outside). A cancel of ``scope`` while the job runs propagates, with
        the job in :attr:`_in_flight`."""
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
            return None
        # every log record made while the job runs (hooks included) carries it
        token = current_job.set((str(job.id), job.function, job.attempts))
        try:
            ended = await self._run_job(job, func, scope)
            if scope.cancel_called:
                return ended
            await self._finish(job, ended.ctx, ended.outcome, ended.exc)
            return None
        finally:
            current_job.reset(token)

    def _context(self, job: Job) -> Context:
        settings = self.settings
        return Context(job=job, app=self.app, worker=self._owner, worker_id=settings.id,
                       worker_name=settings.name)

    async def _run_job(self, job: Job, func: Any, scope: trio.CancelScope) -> _Ended:
        ledger, executor, settings = self.ledger, self.executor, self.settings
        ctx = Context(job=job, app=self.app, worker=self._owner, worker_id=settings.id,
                      worker_name=settings.name)
        progress = self.progress
        if progress.token is None:
            progress.token = trio.lowlevel.current_trio_token()
        ctx._progress = progress
        running = RunningJob(job, scope, ctx=ctx)
        if job.timeout_secs:  # counted from here: the before-hooks' time is the job's
            running.timeout_at = trio.current_time() + job.timeout_secs
        ledger.start(running)
        if self.metrics is not None:
            self.metrics.started(job)
        self._in_flight = running
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
                running.arm()  # its timeout, abort and shutdown cancel the scope from here
                if job.heartbeat_secs:
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(self._touch_loop, job, nursery.cancel_scope)
                        result = await executor.run(call)
                        nursery.cancel_scope.cancel()
                else:
                    result = await executor.run(call)
                if isinstance(result, Value):  # encoded where it ran (the executor's contract)
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
            except Exception as error:
                outcome, exc = classify(job, error=_unwrap(error))
        finally:
            # from here on nothing cancels the scope but the worker itself
            if scope.deadline != math.inf:  # (setting it costs more than reading it)
                scope.deadline = math.inf
            ledger.stop_running(job.id)
        self._in_flight = None
        return _Ended(job, ctx, outcome, exc)

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
        self, job: Job, ctx: Context, outcome: Outcome, exc: BaseException | None
    ) -> None:
        hooks = self.hooks
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
