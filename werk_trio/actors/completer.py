"""Completer: writes job outcomes in batches.

Loop: wait for the first outcome, take every outcome already waiting (up to
``batch_size``; with ``flush_interval`` > 0 it also waits that long for more),
then write them all in one transaction. Batches form by themselves: while one
write is in flight the next outcomes pile up (group commit), so an idle
worker acks at once and a busy one acks hundreds per commit:
COMPLETE_BATCH (complete / retry with back-off / fail / abort / requeue, the
execution rows, fenced by worker id and attempt, and the NOTIFYs that wake
workers and ``wait_for``), LOCK_DEPENDENTS + RESOLVE_DEPENDENTS_OF
(dependency promotion, same transaction) and DELETE_FAILED
(``failure_mode="delete"``) -- sent as one pipeline, so a batch costs one
round trip and one commit. Dependents failed by the batch (DependencyFailed)
cascade to their own dependents in a second transaction, which also deletes
the failed ones with ``failure_mode="delete"``. After the commits it
schedules the callbacks: the jobs' own and the dependency failures' ``_on_failure``.

On a database error the batch is kept and retried with capped back-off:
outcomes are never dropped. :meth:`Completer.flush_all` (shielded, called when
the worker stops) writes whatever is left.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import psycopg
import trio

from .._rows import job_from_row, storable
from ..errors import PoolTimeout, SerializationError
from ..sql import array_literal
from .poller import _line

if TYPE_CHECKING:
    from ..worker import Worker

logger = logging.getLogger("werk_trio.worker")

__all__ = ["CONNECTION_ERRORS", "Completer", "Outcome"]

#: Errors that mean "the database cannot be reached just now": the actors
#: retry them with back-off. Any other database error is about the data or
#: the statement; it never ends a worker either (each actor logs it and goes on).
CONNECTION_ERRORS = (psycopg.OperationalError, PoolTimeout)
#: Most result + error characters in one completion batch (the rest wait for
#: the next write): Postgres refuses a parameter over 1 GB.
MAX_BATCH_CHARS = 64 * 1024 * 1024
#: Longest database message kept in the error of an outcome it refused.
MAX_REFUSAL_CHARS = 8192


@dataclass(slots=True)
class Outcome:
    """One attempt's end. ``kind``: complete | fail | fail_final | abort | requeue."""

    job: Any
    kind: str
    result: str | None = None
    error: str | None = None
    delay: float | None = None
    #: The id of the next run of a repeating job that completed (its new row).
    next_id: Any = None

    def as_row(self) -> dict[str, Any]:
        row: dict[str, Any] = {"id": str(self.job.id), "attempt": self.job.attempts, "kind": self.kind}
        if self.result is not None:
            row["result"] = self.result
        if self.error is not None:
            row["error"] = self.error
        if self.delay:
            row["delay"] = self.delay
        if self.next_id is not None:
            row["next"] = str(self.next_id)
        return row


class Completer:
    def __init__(self, worker: Worker, *, batch_size: int = 200, flush_interval: float = 0.0) -> None:
        self.worker = worker
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self._send, self._recv = trio.open_memory_channel[Outcome](math.inf)
        self._pending: list[Outcome] = []
        #: Set after every successful write (tests and burst mode wait on it).
        self.flushed = trio.Event()
        self.written = 0
        self.refused = 0

    def submit(self, outcome: Outcome) -> None:
        """Hand over an outcome (never blocks, never fails)."""
        self._send.send_nowait(outcome)

    @property
    def idle(self) -> bool:
        return not self._pending and self._recv.statistics().current_buffer_used == 0

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        backoff = 0.05
        while True:
            if not self._pending:
                self._pending.append(await self._recv.receive())
                if self.flush_interval > 0:
                    with trio.move_on_after(self.flush_interval):
                        while len(self._pending) < self.batch_size:
                            self._pending.append(await self._recv.receive())
                else:
                    await trio.lowlevel.cancel_shielded_checkpoint()  # let finishing runners submit
            self._drain_nowait()
            batch = self._next_batch()
            try:
                await self._write_or_split(batch)
            except CONNECTION_ERRORS as ex:
                if self.worker.metrics is not None:
                    self.worker.metrics.database_error("completer")
                logger.warning(
                    "worker %s: completer: database unavailable (%s); retrying %d outcomes in %.2fs",
                    self.worker.name, _line(ex), len(self._pending), backoff,
                )
                await trio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            backoff = 0.05
            del self._pending[: len(batch)]

    def _next_batch(self) -> list[Outcome]:
        """The pending outcomes of the next write: at most ``batch_size`` of
        them, and at most MAX_BATCH_CHARS of result and error text (one at least)."""
        batch = self._pending[: self.batch_size]
        total = 0
        for i, outcome in enumerate(batch):
            total += len(outcome.result or "") + len(outcome.error or "")
            if total > MAX_BATCH_CHARS and i > 0:
                return batch[:i]
        return batch

    async def _write_or_split(self, batch: list[Outcome]) -> None:
        """Write ``batch``; if the database refuses it for anything but the
        connection (an outcome it cannot store), write its outcomes one by one,
        so only the offending one fails -- with the database's message."""
        try:
            await self._write(batch)
            return
        except CONNECTION_ERRORS:
            raise
        except psycopg.Error as ex:
            logger.warning(
                "worker %s: completer: the database refused a batch of %d outcomes (%s: %s); "
                "writing them one by one", self.worker.name, len(batch), type(ex).__name__, _line(ex),
            )  # fmt: skip
        for outcome in batch:
            try:
                await self._write([outcome])
                continue
            except CONNECTION_ERRORS:
                raise
            except psycopg.Error as ex:
                refused = f"{type(ex).__name__}: {str(ex).strip()}"
            job = outcome.job
            logger.error(
                "worker %s: job %s (%s): the database refused its outcome (%s); failing the job",
                self.worker.name, job.id, job.function, refused.splitlines()[0],
            )  # fmt: skip
            failed = Outcome(
                job, "fail_final",
                error=storable(
                    f"werk_trio could not store the outcome ({outcome.kind}) of this attempt: the "
                    f"database refused it: {refused}"
                )[:MAX_REFUSAL_CHARS],
            )  # fmt: skip
            try:
                await self._write([failed])
            except CONNECTION_ERRORS:
                raise
            except psycopg.Error as again:
                # left active: the sweeper rescues it after max_active_secs
                logger.error(
                    "worker %s: job %s: even its failure could not be stored (%s)",
                    self.worker.name, job.id, _line(again),
                )

    def _drain_nowait(self) -> None:
        while True:
            try:
                self._pending.append(self._recv.receive_nowait())
            except trio.WouldBlock:
                return

    async def flush_all(self, timeout: float = 10.0) -> None:
        """Write every outcome not yet written (shielded, bounded by ``timeout``).
        Never raises: whatever it cannot write is logged."""
        with trio.CancelScope(shield=True), trio.move_on_after(timeout):
            self._drain_nowait()
            while self._pending:
                batch = self._next_batch()
                try:
                    await self._write_or_split(batch)
                except CONNECTION_ERRORS as ex:
                    logger.warning("worker %s: completer: final flush failed (%s); retrying",
                                   self.worker.name, _line(ex))
                    await trio.sleep(0.2)
                    continue
                except Exception:
                    logger.exception("worker %s: completer: final flush failed", self.worker.name)
                    break
                del self._pending[: len(batch)]
        if self._pending:
            logger.error(
                "worker %s: completer: %d outcomes could not be written before shutdown; the "
                "sweeper of a live worker will requeue those jobs",
                self.worker.name, len(self._pending),
            )

    async def _write(self, batch: list[Outcome]) -> None:
        """One transaction, pipelined into one round trip and one commit."""
        worker = self.worker
        sql = worker.app.sql
        payload = json.dumps([o.as_row() for o in batch], separators=(",", ":"))
        ids = array_literal(o.job.id for o in batch)
        deletes = any(o.job.failure_mode == "delete" for o in batch)
        async with worker.app.pool.connection() as conn:
            # One pipeline, one Sync: its statements run as one implicit
            # transaction (an error rolls all of them back), in one round trip.
            # An explicit transaction() here would cost two more round trips
            # of psycopg's nested-pipeline syncs (~130 us of CPU per batch).
            async with conn.pipeline():
                main = await conn.execute(
                    sql.COMPLETE_BATCH,
                    {"outcomes": payload, "worker_id": worker.id, "jobs_channel": sql.jobs_channel,
                     "done_channel": sql.done_channel, "control_channel": sql.control_channel},
                )  # fmt: skip
                await conn.execute(sql.LOCK_DEPENDENTS, {"ids": ids})
                dep = await conn.execute(
                    sql.RESOLVE_DEPENDENTS_OF, {"ids": ids, "channel": sql.jobs_channel}
                )
                if deletes:
                    await conn.execute(sql.DELETE_FAILED, {"ids": ids})
            rows = await main.fetchall()
            failed_dependents = [r[0] for r in await dep.fetchall() if r[1] == "failed"]
            dependency_failures: list[Any] = []
            if failed_dependents:  # rare: cascade to their own dependents
                async with conn.transaction():
                    await notify_done(conn, sql, failed_dependents)
                    failed = failed_dependents + await resolve_dependents(conn, sql, failed_dependents)
                    dependency_failures = await _end_dependency_failures(conn, worker.app, failed)
        self.written += len(rows)
        held = worker.held
        for outcome in batch:  # written (or refused: no longer ours)
            held.discard(outcome.job.id)
        refused = len(batch) - len(rows)
        if refused:
            self.refused += refused
            logger.info("completer: %d late outcome(s) refused: the job is no longer ours", refused)
        by_id = {r[0]: r for r in rows}
        for outcome in batch:
            row = by_id.get(outcome.job.id)
            if row is not None and row[6] and row[1] in ("complete", "failed", "aborted"):
                worker.callbacks.schedule(outcome, row[1])
        for job in dependency_failures:
            worker.callbacks.schedule(Outcome(job, "fail_final", error=job.error), "failed")
        flushed, self.flushed = self.flushed, trio.Event()
        flushed.set()
        worker.nudge()


async def _end_dependency_failures(conn: Any, app: Any, ids: list[Any]) -> list[Any]:
    """Jobs just failed with DependencyFailed, in the transaction that failed
    them: delete those with ``failure_mode="delete"`` and return (as Jobs) those
    with an ``_on_failure`` callback, which the worker then runs once (a row
    that does not decode has none)."""
    cur = await conn.execute(app.sql.GET_JOBS, {"ids": ids})
    jobs = []
    for row in await cur.fetchall():
        try:
            jobs.append(job_from_row(row, app.serializer, app.decode_allowed))
        except SerializationError as ex:
            logger.warning("job %s failed (a dependency failed); its row does not decode: %s", row[0], ex)
    await conn.execute(app.sql.DELETE_FAILED, {"ids": ids})
    return [job for job in jobs if job.on_failure is not None]


async def resolve_dependents(conn: Any, sql: Any, parents: list[Any]) -> list[Any]:
    """Queue (or fail) the waiting dependents of ``parents``, cascading failures;
    return the ids of the jobs it failed (DependencyFailed), at every level.

    Runs inside the caller's transaction: the dependents are locked first, then
    resolved by a new statement, which sees every committed parent status. The
    caller deletes the failed ``failure_mode="delete"`` ones (DELETE_FAILED)
    once this returns: their own dependents must see them failed first."""
    failed: list[Any] = []
    ids = parents
    while ids:
        cur = await conn.execute(sql.LOCK_DEPENDENTS, {"ids": ids})
        dependents = [r[0] for r in await cur.fetchall()]
        if not dependents:
            break
        cur = await conn.execute(sql.RESOLVE_WAITING, {"ids": dependents, "channel": sql.jobs_channel})
        ids = [r[0] for r in await cur.fetchall() if r[1] == "failed"]
        if ids:
            failed += ids
            await notify_done(conn, sql, ids)
    return failed


async def notify_done(conn: Any, sql: Any, ids: list[Any]) -> None:
    """One NOTIFY for a batch of finished jobs: comma-joined ids, or ``*`` when
    they would not fit in a payload."""
    text = ",".join(str(i) for i in ids)
    if len(text) > 7000:
        text = "*"
    await conn.execute(sql.NOTIFY_DONE, {"channel": sql.done_channel, "payload": text})

