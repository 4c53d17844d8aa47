"""Poller: claims jobs for the free runner slots, in one statement per claim.

Loop: wait for at least one free slot (while a backlog exists, up to 2 ms
more for half the slots, so claims stay large); then claim up to the number of free
slots (CLAIM_PRIORITY, or CLAIM_BY_QUEUE with the queues rotated for
RoundRobin or shuffled for Random); hand the jobs to the runners. Claims run
on the poller's own connection, whose session has the claim's settings
(CLAIM_SESSION), as one statement; without LISTEN or prepared statements
(PgBouncer) on the app's pool, each with its settings in its pipeline. When a claim
finds nothing it waits for a nudge (a NOTIFY from the listener, a finished
job, a completer flush) or ``poll_interval``, whichever comes first. In burst
mode it returns once a claim finds nothing while nothing runs and the
completer has nothing left to write.

On a connection error it logs and retries with capped back-off; a concurrency
group race (two workers claiming one group) is retried at once.

Flow control: the poller keeps the controls of its queues (``QueueControls``,
loaded at start and again whenever the listener hears they changed, or a
claim's answer counts them differently); with limited queues each claim
takes their locks (LOCK_QUEUES) and runs CLAIM_LIMITED (CLAIM_LIMITED_BY_QUEUE
for RoundRobin and Random) in the same pipeline.
It also keeps the earliest due time of its queues: a short claim's answer
says when the next job becomes claimable (a job due later, a freed rate
slot), NOTIFYs of jobs due later lower it, and the idle wait ends at that
time instead of at ``poll_interval``.
"""

from __future__ import annotations

import logging
import random
import time
from typing import TYPE_CHECKING, Any

import psycopg
import trio
import trio.lowlevel

from .._util import BACKOFF, first_line
from ..db import Pool
from ..flow import PARTITION_SCAN, QueueControls
from ..jobs import DequeueStrategy
from ..sql import array_literal
from .completer import PlanAges
from .wiring import Db, Pulse, Wake, WorkerSettings

if TYPE_CHECKING:
    from ..metrics import WorkerMetrics
    from .ledger import Ledger

logger = logging.getLogger("werk_trio.worker")

#: A claimed job row, in JOB_COLUMNS order.
Row = tuple[Any, ...]

__all__ = ["Poller"]


class Poller:
    def __init__(
        self, db: Db, settings: WorkerSettings, wake: Wake, slots: trio.Semaphore, ledger: Ledger,
        burst_done: trio.Event, metrics: WorkerMetrics | None,
    ) -> None:
        self.db = db
        self.settings = settings
        self.wake = wake
        self.slots = slots
        self.ledger = ledger
        self.burst_done = burst_done
        self.metrics = metrics
        #: Fires after every claim (tests await it).
        self.on_claim = Pulse()
        self._turn = 0
        #: Seconds to wait for more free slots before claiming, when a backlog exists.
        self.gather_window = 0.002
        self.claims = 0
        self.claimed = 0
        #: The controls of this worker's queues (paused, limited).
        self.controls = QueueControls(list(settings.queues))
        self._reload_controls = True
        #: Trio time at which a job of these queues becomes claimable (None: unknown).
        self.next_due: float | None = None
        self._due_heard: float | None = None  # due times heard while a claim ran
        self._sleep: trio.CancelScope | None = None
        #: The database clock minus Trio's clock, in seconds (from each short
        #: claim's answer; until the first, the local wall clock stands in).
        self.db_offset: float | None = None
        #: The claim connection (a pool of one, settings of CLAIM_SESSION) while
        #: :meth:`run` runs; None: claims go through the app's pool.
        self.claim_pool: Pool | None = None
        self._plans = PlanAges()

    # --- flow control ---------------------------------------------------------

    def controls_changed(self) -> None:
        """The listener heard that a queue's controls changed: reload, claim."""
        self._reload_controls = True
        self.wake.nudge()

    def due_at(self, db_epoch: float) -> None:
        """A job of these queues is due at ``db_epoch`` (database clock)."""
        if self.db_offset is None:
            self.db_offset = time.time() - trio.current_time()
        self._due(db_epoch - self.db_offset)

    def _due(self, when: float) -> None:
        self._due_heard = when if self._due_heard is None else min(self._due_heard, when)
        if self.next_due is None or when < self.next_due:
            self.next_due = when
            if self._sleep is not None:
                self._sleep.deadline = min(self._sleep.deadline, when)

    async def load_controls(self) -> None:
        db = self.db
        self._reload_controls = False  # a change heard while this runs sets it again
        try:
            async with db.pool.connection() as conn:
                cur = await conn.execute(db.sql.QUEUE_CONTROLS, {"queues": list(self.settings.queues)})
                self.controls.load(await cur.fetchall())
        except BaseException:
            self._reload_controls = True
            raise
        self.wake.on_free = self.slot_nudges()

    def slot_nudges(self) -> bool:
        """Whether a runner that frees a slot wakes this poller. A claim that
        came back short found nothing more to claim, and what makes a job
        claimable wakes the poller already: a NOTIFY (an enqueue, a retry, a
        dependency resolved, a group job's end: COMPLETE_BATCH) or this
        worker's completer, once its write committed (its own group or limit
        freed). A nudge per freed slot cost an idle worker an empty claim per
        job it woke for. It stays where nothing else tells: without LISTEN
        (jobs enqueued while this worker is busy are found as its slots free,
        not at the next poll), with limited queues (another worker's end frees
        a limit without a NOTIFY) and in burst mode (the poller stops once
        nothing runs)."""
        config = self.db.config
        return self.settings.burst or not config.use_listen_notify or bool(self.controls.limited)

    def _answer(self, info: Any) -> None:
        """A short claim's extra row: the next due time, the database clock and
        how many of these queues have controls."""
        now = trio.current_time()
        db_now = info[8].timestamp()
        self.db_offset = db_now - now
        heard, self._due_heard = self._due_heard, None
        due = info[7]
        self.next_due = None if due is None else now + (due.timestamp() - db_now)
        if heard is not None:
            self.next_due = heard if self.next_due is None else min(self.next_due, heard)
        if info[4] != len(self.controls.controlled):
            self._reload_controls = True

    async def _wait(self) -> None:
        """Idle: until a nudge, the next due time, or ``poll_interval``."""
        deadline = trio.current_time() + self.settings.poll_interval
        if self.next_due is not None:
            deadline = min(deadline, self.next_due)
        with trio.move_on_at(deadline) as scope:
            self._sleep = scope
            try:
                await self.wake.wait()
            finally:
                self._sleep = None

    @property
    def waiting(self) -> bool:
        """Idle: waiting for a nudge (none pending), a due time or the poll."""
        return self._sleep is not None and not self.wake.pending

    def _queue_order(self) -> list[str]:
        queues = list(self.settings.queues)
        strategy = self.settings.dequeue_strategy
        if strategy is DequeueStrategy.RoundRobin:
            k = self._turn % len(queues)
            self._turn += 1
            return queues[k:] + queues[:k]
        if strategy is DequeueStrategy.Random:
            random.shuffle(queues)
        return queues

    async def claim(self, n: int) -> list[Row]:
        """Claim up to ``n`` jobs; their rows, undecoded: each runner decodes its
        own, so a row that does not decode fails that job alone."""
        db = self.db
        sql = db.sql
        by_priority = self.settings.dequeue_strategy is DequeueStrategy.Priority
        query = sql.CLAIM_PRIORITY if by_priority else sql.CLAIM_BY_QUEUE
        params = {"queues": array_literal(self._queue_order()), "n": n, "worker_id": self.settings.id}
        if self._reload_controls:
            await self.load_controls()
        limited = self.controls.limited
        if limited:
            query = sql.CLAIM_LIMITED if by_priority else sql.CLAIM_LIMITED_BY_QUEUE
            params["locked"] = array_literal(limited)
            params["scan"] = max(4 * n, PARTITION_SCAN)
        own = self.claim_pool
        async with (db.pool if own is None else own).connection() as conn:
            if own is not None and not limited:
                # the claim connection: its session has the settings, and a
                # claim is one statement (see CLAIM_SESSION in sql/queries.py)
                if self._plans.stale(conn):  # plans for the table as it is (completer.PLAN_MAX_AGE)
                    await conn.execute(sql.DISCARD_PLANS)
                cur = await conn.execute(query, params)
            else:
                # one round trip; the pipeline's statements are one implicit transaction
                async with conn.pipeline():
                    if own is None:  # set local to each claim: see CLAIM_SETTINGS in sql/queries.py
                        await conn.execute(sql.GENERIC_PLANS if db.config.durable_claims
                                           else sql.CLAIM_SETTINGS)  # fmt: skip
                    elif self._plans.stale(conn):
                        await conn.execute(sql.DISCARD_PLANS)
                    if limited:  # the limited queues' locks, before the claim's snapshot
                        await conn.execute(
                            sql.LOCK_QUEUES, {"key": sql.lock_key + ":queue:", "queues": params["locked"]}
                        )
                    cur = await conn.execute(query, params)
            rows = await cur.fetchall()
        if rows and rows[-1][0] is None:  # a short claim's answer (see _claim_answer)
            self._answer(rows.pop())
        self.claims += 1
        self.claimed += len(rows)
        if self.metrics is not None:
            self.metrics.claimed(len(rows))
        self.ledger.claimed(rows)
        self.on_claim.fire()
        return rows

    async def run(
        self, jobs: trio.MemorySendChannel[Row], *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        try:
            await self.load_controls()
        except psycopg.OperationalError:
            pass  # the first claim tries again
        self.claim_pool = self._claim_pool()
        if self.claim_pool is not None:
            await self.claim_pool.open()  # (min_size 0: connects at the first claim)
        try:
            task_status.started()
            await self._loop(jobs)
        finally:
            pool, self.claim_pool = self.claim_pool, None
            if pool is not None:
                with trio.CancelScope(shield=True):
                    await pool.close()

    def _claim_pool(self) -> Pool | None:
        """The poller's own claim connection, opened at the first claim (and
        again after a loss), its session set once (CLAIM_SESSION): one more
        connection per worker. None without LISTEN or without prepared
        statements (PgBouncer in transaction mode, docs/guides/pgbouncer.md:
        a session there is not the client's, and a session setting would
        reach other clients' transactions)."""
        db = self.db
        config = db.config
        if not config.use_listen_notify or config.prepare_threshold is None:
            return None

        async def configure(conn: Any) -> None:
            await conn.execute(db.sql.CLAIM_SESSION_DURABLE if config.durable_claims
                               else db.sql.CLAIM_SESSION)  # fmt: skip

        return Pool(db.dsn, min_size=0, max_size=1, timeout=config.pool_timeout, configure=configure,
                    name="claim", prepare_threshold=config.prepare_threshold)

    async def _loop(self, jobs: trio.MemorySendChannel[Row]) -> None:
        settings, ledger, wake = self.settings, self.ledger, self.wake
        slots = self.slots
        capacity = settings.capacity
        backoff = BACKOFF.first
        async with jobs:
            backlog = False
            while True:
                await slots.acquire()
                n = _take_free(slots, 1, settings.claim_batch)
                if backlog and n < (target := max(1, settings.claim_batch // 2)):
                    # the last claim was full, so more work is waiting: let a few
                    # more runners finish (briefly) to claim a worthwhile batch
                    with trio.move_on_after(self.gather_window):
                        while n < target:
                            await slots.acquire()  # parks until a runner frees one
                            n = _take_free(slots, n + 1, settings.claim_batch)
                wake.drain()
                written = ledger.writes
                try:
                    claimed = await self.claim(n)
                except psycopg.errors.UniqueViolation:
                    # two workers raced for one concurrency group: the loser retries
                    for _ in range(n):
                        slots.release()
                    await trio.lowlevel.checkpoint()
                    continue
                except psycopg.Error as ex:
                    # the connection's trouble, or any other database error: never
                    # the worker's end -- log, back off, claim again
                    for _ in range(n):
                        slots.release()
                    logger.warning(
                        "worker %s: poller: claim failed (%s: %s); retrying in %.2fs",
                        settings.name, type(ex).__name__, first_line(ex), backoff,
                    )
                    if self.metrics is not None:
                        self.metrics.database_error("poller")
                    await trio.sleep(backoff)
                    backoff = BACKOFF.next(backoff)
                    continue
                except BaseException:
                    for _ in range(n):
                        slots.release()
                    raise
                backoff = BACKOFF.first
                for _ in range(n - len(claimed)):
                    slots.release()
                for job in claimed:
                    jobs.send_nowait(job)
                backlog = len(claimed) == n
                if backlog:
                    continue  # there may be more: claim again as soon as slots free
                idle = not claimed and slots.value == capacity and ledger.idle
                if settings.burst and idle:
                    if ledger.writes != written:
                        # a completion committed while this claim ran: it may
                        # have freed a group or queued a dependent the claim
                        # could not see yet -- look once more
                        continue
                    logger.info("worker %s: burst: nothing left to claim; stopping", settings.name)
                    self.burst_done.set()
                    return
                await self._wait()


def _take_free(slots: trio.Semaphore, n: int, most: int) -> int:
    """``n`` slots held: take the free ones too, up to ``most``, without a
    checkpoint each (an ``acquire`` of a free slot yields to every other task
    before it returns: gathering 25 slots so cost 25 scheduler turns, and the
    claim went out 0.8 ms after the last runner freed its slot)."""
    while n < most:
        try:
            slots.acquire_nowait()
        except trio.WouldBlock:
            break
        n += 1
    return n
