"""Completer: writes job outcomes in batches.

Loop: wait for the first outcome on the runners' channel, take every outcome
already waiting (up to BATCH_SIZE per write), then write them all in one
transaction. Batches form by themselves: while one write is in flight the
next outcomes pile up in the channel (group commit), so an idle worker acks
at once and a busy one acks hundreds per commit: COMPLETE_BATCH (complete /
retry with back-off / fail / abort / requeue, the execution rows, fenced by
worker id and attempt, and the NOTIFYs that wake workers and ``wait_for``),
LOCK_DEPENDENTS + RESOLVE_DEPENDENTS_OF (dependency promotion, same
transaction) and DELETE_FAILED (``failure_mode="delete"``) -- sent as one
pipeline, so a batch costs one round trip and one commit. Dependents failed
by the batch (DependencyFailed) cascade to their own dependents in a second
transaction, which also deletes the failed ones with
``failure_mode="delete"``. After the commits it sends the callbacks due (the
jobs' own and the dependency failures' ``_on_failure``) to the callbacks
actor's channel, and settles the batch in the ledger.

The runners' channel is bounded (twice ``capacity``) and the completer holds
at most ``max(capacity, BATCH_SIZE)`` outcomes of its own: when the database
stalls, runners wait to hand over, keep their slots, and claiming stops.
It returns by itself once every runner's clone of the channel is closed and
everything is written; returning closes its callbacks channel, which ends
the callbacks actor's loop.

On a database error the batch is kept and retried with capped back-off:
outcomes are never dropped. :meth:`Completer.flush_all` (shielded, for the
cancel path) writes whatever is left, the ledger's stranded outcomes too.
"""

from __future__ import annotations

import json
import logging
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import psycopg
import trio

from .._rows import storable
from .._transitions import jobs_ended
from .._util import BACKOFF, first_line
from ..errors import PoolTimeout
from ..sql import array_literal
from .callbacks import callback_of
from .wiring import Db, Pulse, Wake, WorkerSettings

if TYPE_CHECKING:
    from ..metrics import WorkerMetrics
    from .ledger import Ledger

logger = logging.getLogger("werk_trio.worker")

__all__ = ["CONNECTION_ERRORS", "OUTCOMES_PER_SLOT", "Completer", "Outcome", "OutcomeKind", "PlanAges"]

#: Errors that mean "the database cannot be reached just now": the actors
#: retry them with back-off. Any other database error is about the data or
#: the statement; it never ends a worker either (each actor logs it and goes on).
CONNECTION_ERRORS = (psycopg.OperationalError, PoolTimeout)
#: Most result + error characters in one completion batch (the rest wait for
#: the next write): Postgres refuses a parameter over 1 GB.
MAX_BATCH_CHARS = 64 * 1024 * 1024
#: Longest database message kept in the error of an outcome it refused.
MAX_REFUSAL_CHARS = 8192
#: Most outcomes in one write.
BATCH_SIZE = 200
#: Longest a connection runs the completion with plans made before (seconds):
#: a write on a connection whose plans are older first sends DISCARD PLANS,
#: and its statements are planned afresh for the table as it is now. After
#: a few runs a prepared statement runs the generic plan Postgres made for
#: it, kept until the table's statistics change. COMPLETE_BATCH finds its jobs
#: by primary key, but a plan made while the table held a few rows (a fresh
#: install, a truncate) reads the whole table instead -- the cheaper path
#: then -- and went on reading it in full at every write as the table grew,
#: until autovacuum's ANALYZE came: the first minute of a soak wrote 1,877
#: batches at 29.4 ms each (2.9 ms after), and with autovacuum off the writes
#: grew with the table, 18 -> 98 ms within two minutes (benchmarks/README.md).
#: Neither ``enable_seqscan = off`` (the plan then reads the whole primary key
#: index) nor custom plans (0.38 ms of planning per write, 1.48x the write's
#: server CPU at 125 a write) is a remedy; replanning every 10 s costs a few
#: plans per connection and bounds a stale plan to 10 s of a small table.
PLAN_MAX_AGE = 10.0


class PlanAges:
    """When each connection's plans were made (or last discarded), trio clock,
    for the replan of PLAN_MAX_AGE: :meth:`stale` says whether ``conn``'s
    plans are older (and restarts its clock: the caller sends DISCARD_PLANS
    before its statement -- in the same pipeline where it has one; the claim
    connection's one-statement claim sends it alone, once per PLAN_MAX_AGE)."""

    __slots__ = ("_made",)

    def __init__(self) -> None:
        self._made: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()

    def stale(self, conn: Any) -> bool:
        now = trio.current_time()
        made = self._made.setdefault(conn, now)
        if now - made > PLAN_MAX_AGE:
            self._made[conn] = now
            return True
        return False


#: The runners' outcome channel holds this many outcomes per slot of the
#: worker's capacity: enough for the outcomes that finish during one write's
#: round trip, so a runner waits to hand over only when the database stalls
#: (with one per slot, 13,000 of 20,000 hand-overs waited at c=10 and the
#: drain ran 20-25 % slower: benchmarks/README.md).
OUTCOMES_PER_SLOT = 2

#: How an attempt ended, as COMPLETE_BATCH takes it.
OutcomeKind = Literal["complete", "fail", "fail_final", "abort", "requeue", "snooze"]


@dataclass(slots=True)
class Outcome:
    """One attempt's end (see :data:`OutcomeKind`; ``snooze``: back to the
    queue after ``delay``, attempt unspent)."""

    job: Any
    kind: OutcomeKind
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
    """Batches outcomes from the runners' channel into writes. Returns by
    itself once every runner's clone of the channel is closed and everything
    received is written (or given up on after a stop's time ran out)."""

    def __init__(
        self, db: Db, settings: WorkerSettings, outcomes: trio.MemoryReceiveChannel[Outcome],
        callbacks: trio.MemorySendChannel[tuple[Outcome, str]], ledger: Ledger, wake: Wake,
        metrics: WorkerMetrics | None,
    ) -> None:
        self.db = db
        self.settings = settings
        self._outcomes = outcomes
        self._callbacks = callbacks
        self.ledger = ledger
        self.wake = wake
        self.metrics = metrics
        #: Most outcomes taken off the channel and not yet written: while the
        #: database stalls the channel fills, runners wait, claiming stops.
        self._limit = max(settings.capacity, BATCH_SIZE)
        self._pending: list[Outcome] = []
        #: Fires after every successful write (tests await it).
        self.on_write = Pulse()
        self.refused = 0
        #: Transactions written so far (a batch each; benchmarks divide by it).
        self.batches = 0
        self._plans = PlanAges()

    @property
    def written(self) -> int:
        """Outcomes the database accepted so far."""
        return self.ledger.writes

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        name = self.settings.name
        backoff = BACKOFF.first
        async with self._callbacks:
            while True:
                if not self._pending:
                    try:
                        self._pending.append(await self._outcomes.receive())
                    except trio.EndOfChannel:
                        return  # every runner is gone and everything is written
                    await trio.lowlevel.cancel_shielded_checkpoint()  # let finishing runners submit
                self._take_nowait()
                batch = self._next_batch()
                try:
                    due = await self._write_or_split(batch)
                except CONNECTION_ERRORS as ex:
                    if self.metrics is not None:
                        self.metrics.database_error("completer")
                    logger.warning(
                        "worker %s: completer: database unavailable (%s); retrying %d outcomes in %.2fs",
                        name, first_line(ex), len(self._pending), backoff,
                    )
                    await trio.sleep(backoff)
                    backoff = BACKOFF.next(backoff)
                    continue
                backoff = BACKOFF.first
                del self._pending[: len(batch)]
                for item in due:
                    try:
                        self._callbacks.send_nowait(item)
                    except trio.WouldBlock:
                        await self._callbacks.send(item)

    def _next_batch(self) -> list[Outcome]:
        """The pending outcomes of the next write: at most BATCH_SIZE of
        them, and at most MAX_BATCH_CHARS of result and error text (one at least)."""
        batch = self._pending[:BATCH_SIZE]
        total = 0
        for i, outcome in enumerate(batch):
            total += len(outcome.result or "") + len(outcome.error or "")
            if total > MAX_BATCH_CHARS and i > 0:
                return batch[:i]
        return batch

    async def _write_or_split(self, batch: list[Outcome]) -> list[tuple[Outcome, str]]:
        """Write ``batch``; if the database refuses it for anything but the
        connection (an outcome it cannot store), write its outcomes one by one,
        so only the offending one fails -- with the database's message. The
        batch is settled in the ledger either way; returns the callbacks due."""
        name = self.settings.name
        try:
            return await self._write(batch)
        except CONNECTION_ERRORS:
            raise
        except psycopg.Error as ex:
            logger.warning(
                "worker %s: completer: the database refused a batch of %d outcomes (%s: %s); "
                "writing them one by one", name, len(batch), type(ex).__name__, first_line(ex),
            )  # fmt: skip
        due: list[tuple[Outcome, str]] = []
        for outcome in batch:
            try:
                due += await self._write([outcome])
                continue
            except CONNECTION_ERRORS:
                raise
            except psycopg.Error as ex:
                refused = f"{type(ex).__name__}: {str(ex).strip()}"
            job = outcome.job
            logger.error(
                "worker %s: job %s (%s): the database refused its outcome (%s); failing the job",
                name, job.id, job.function, refused.splitlines()[0],
            )  # fmt: skip
            failed = Outcome(
                job, "fail_final",
                error=storable(
                    f"werk_trio could not store the outcome ({outcome.kind}) of this attempt: the "
                    f"database refused it: {refused}"
                )[:MAX_REFUSAL_CHARS],
            )  # fmt: skip
            try:
                due += await self._write([failed])
            except CONNECTION_ERRORS:
                raise
            except psycopg.Error as again:
                # left active: the sweeper rescues it after max_active_secs
                logger.error(
                    "worker %s: job %s: even its failure could not be stored (%s)",
                    name, job.id, first_line(again),
                )
                self.ledger.settled([outcome], 0)  # no longer ours to write
        return due

    def _take_nowait(self) -> None:
        """Take the outcomes already waiting, up to the limit of pending ones."""
        pending, limit = self._pending, self._limit
        while len(pending) < limit:
            try:
                pending.append(self._outcomes.receive_nowait())
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                return

    async def flush_all(self, timeout: float = 10.0) -> None:
        """Write every outcome not yet written (shielded, bounded by ``timeout``).
        Never raises: whatever it cannot write is logged."""
        name = self.settings.name
        with trio.CancelScope(shield=True), trio.move_on_after(timeout):
            self._pending += self.ledger.take_stranded()
            while True:
                self._take_nowait()
                if not self._pending:
                    break
                batch = self._next_batch()
                try:
                    due = await self._write_or_split(batch)
                except CONNECTION_ERRORS as ex:
                    logger.warning("worker %s: completer: final flush failed (%s); retrying",
                                   name, first_line(ex))
                    await trio.sleep(0.2)
                    continue
                except Exception:
                    logger.exception("worker %s: completer: final flush failed", name)
                    break
                del self._pending[: len(batch)]
                for item in due:  # the callbacks actor may be gone already: best effort
                    try:
                        self._callbacks.send_nowait(item)
                    except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
                        logger.info("worker %s: stopping: callback of job %s not run",
                                    name, item[0].job.id)
        self._outcomes.close()
        if self._pending:
            logger.error(
                "worker %s: completer: %d outcomes could not be written before shutdown; the "
                "sweeper of a live worker will requeue those jobs",
                name, len(self._pending),
            )

    async def _write(self, batch: list[Outcome]) -> list[tuple[Outcome, str]]:
        """One transaction, pipelined into one round trip and one commit;
        returns the callbacks due: (outcome, terminal status)."""
        db = self.db
        sql = db.sql
        rows_out = [o.as_row() for o in batch]
        payload = json.dumps(rows_out, separators=(",", ":"))
        ids = array_literal(r["id"] for r in rows_out)  # the ids as text already
        deletes = any(o.job.failure_mode == "delete" for o in batch)
        async with db.pool.connection() as conn:
            # One pipeline, one Sync: its statements run as one implicit
            # transaction (an error rolls all of them back), in one round trip.
            # An explicit transaction() here would cost two more round trips
            # of psycopg's nested-pipeline syncs (measured: benchmarks/README.md).
            async with conn.pipeline():
                if self._plans.stale(conn):  # see PLAN_MAX_AGE: plans for the table as it is
                    await conn.execute(sql.DISCARD_PLANS)
                main = await conn.execute(
                    sql.COMPLETE_BATCH,
                    {"outcomes": payload, "worker_id": self.settings.id, "ids": ids},
                )  # fmt: skip
                await conn.execute(sql.LOCK_DEPENDENTS, {"ids": ids})
                dep = await conn.execute(
                    sql.RESOLVE_DEPENDENTS_OF, {"ids": ids}
                )
                if deletes:
                    await conn.execute(sql.DELETE_FAILED, {"ids": ids})
            rows = await main.fetchall()
            failed_dependents = [r[0] for r in await dep.fetchall() if r[1] == "failed"]
            dependency_failures: list[Any] = []
            if failed_dependents:  # rare: they ended too (DependencyFailed)
                async with conn.transaction():
                    dependency_failures = await jobs_ended(
                        conn, sql, failed_dependents, decode=(db.serializer, db.decode_allowed)
                    )
        self.batches += 1
        self.ledger.settled(batch, len(rows))  # written, or refused: no longer ours
        refused = len(batch) - len(rows)
        if refused:
            self.refused += refused
            logger.info("worker %s: completer: %d late outcome(s) refused: the job is no longer ours",
                        self.settings.name, refused)
        due: list[tuple[Outcome, str]] = []
        # COMPLETE_BATCH's rows: id, status, has_callbacks, then the NOTIFY counts
        with_callbacks = {job_id: status for job_id, status, has_callbacks, *_ in rows if has_callbacks}
        if with_callbacks:
            for outcome in batch:
                status = with_callbacks.get(outcome.job.id)
                if status is not None and callback_of(outcome.job, status) is not None:
                    due.append((outcome, status))
        for job in dependency_failures:
            due.append((Outcome(job, "fail_final", error=job.error), "failed"))
        self.on_write.fire()
        self.wake.nudge()
        return due
