"""Poller: claims jobs for the free runner slots, in one statement per claim.

Loop: wait for at least one free slot (while a backlog exists, up to 2 ms
more for half the slots, so claims stay large); then claim up to the number of free
slots (CLAIM_PRIORITY, or CLAIM_BY_QUEUE with the queues rotated for
RoundRobin or shuffled for Random); hand the jobs to the runners. When a claim
finds nothing it waits for a nudge (a NOTIFY from the listener, a finished
job, a completer flush) or ``poll_interval``, whichever comes first. In burst
mode it returns once a claim finds nothing while nothing runs and the
completer has nothing left to write.

On a connection error it logs and retries with capped back-off; a concurrency
group race (two workers claiming one group) is retried at once.
"""

from __future__ import annotations

import logging
import random
from typing import TYPE_CHECKING, Any

import psycopg
import trio
import trio.lowlevel

from .._rows import job_from_row
from ..jobs import DequeueStrategy, Job
from ..sql import array_literal

if TYPE_CHECKING:
    from ..worker import Worker

logger = logging.getLogger("werk_trio.worker")

__all__ = ["Poller"]


class Poller:
    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self._turn = 0
        #: Seconds to wait for more free slots before claiming, when a backlog exists.
        self.gather_window = 0.002
        self.claims = 0
        self.claimed = 0

    def _queue_order(self) -> list[str]:
        queues = list(self.worker.queues)
        strategy = self.worker.dequeue_strategy
        if strategy is DequeueStrategy.RoundRobin:
            k = self._turn % len(queues)
            self._turn += 1
            return queues[k:] + queues[:k]
        if strategy is DequeueStrategy.Random:
            random.shuffle(queues)
        return queues

    async def claim(self, n: int) -> list[Job]:
        worker = self.worker
        sql = worker.app.sql
        by_priority = worker.dequeue_strategy is DequeueStrategy.Priority
        query = sql.CLAIM_PRIORITY if by_priority else sql.CLAIM_BY_QUEUE
        params = {"queues": array_literal(self._queue_order()), "n": n, "worker_id": worker.id}
        # sent with every claim: see CLAIM_SETTINGS in sql/queries.py
        settings = sql.GENERIC_PLANS if worker.app.config.durable_claims else sql.CLAIM_SETTINGS
        async with worker.app.pool.connection() as conn:
            # one round trip; the pipeline's statements are one implicit transaction
            async with conn.pipeline():
                await conn.execute(settings)
                cur = await conn.execute(query, params)
            rows = await cur.fetchall()
        self.claims += 1
        self.claimed += len(rows)
        if worker.metrics is not None:
            worker.metrics.claimed(len(rows))
        serializer = worker.app.serializer
        jobs = [job_from_row(row, serializer) for row in rows]
        worker.held.update(job.id for job in jobs)
        return jobs

    async def run(
        self, jobs: trio.MemorySendChannel[Job], *, task_status: Any = trio.TASK_STATUS_IGNORED
    ) -> None:
        worker = self.worker
        slots = worker.slots
        backoff = 0.05
        task_status.started()
        async with jobs:
            backlog = False
            while True:
                await slots.acquire()
                n = 1
                if backlog:
                    # the last claim was full, so more work is waiting: let a few
                    # more runners finish (briefly) to claim a worthwhile batch
                    target = max(1, worker.claim_batch // 2)
                    with trio.move_on_after(self.gather_window):
                        while n < target:
                            await slots.acquire()
                            n += 1
                while n < worker.claim_batch:
                    try:
                        slots.acquire_nowait()
                    except trio.WouldBlock:
                        break
                    n += 1
                worker.drain_nudges()
                written = worker.completer.written
                try:
                    claimed = await self.claim(n)
                except psycopg.errors.UniqueViolation:
                    # two workers raced for one concurrency group: the loser retries
                    for _ in range(n):
                        slots.release()
                    await trio.lowlevel.checkpoint()
                    continue
                except psycopg.OperationalError as ex:
                    for _ in range(n):
                        slots.release()
                    logger.warning("poller: claim failed (%s); retrying in %.2fs", _line(ex), backoff)
                    if worker.metrics is not None:
                        worker.metrics.database_error("poller")
                    await trio.sleep(backoff)
                    backoff = min(backoff * 2, 5.0)
                    continue
                except BaseException:
                    for _ in range(n):
                        slots.release()
                    raise
                backoff = 0.05
                for _ in range(n - len(claimed)):
                    slots.release()
                for job in claimed:
                    jobs.send_nowait(job)
                backlog = len(claimed) == n
                if backlog:
                    continue  # there may be more: claim again as soon as slots free
                idle = not claimed and slots.value == worker.capacity and worker.completer.idle
                if worker.burst and idle:
                    if worker.completer.written != written:
                        # a completion committed while this claim ran: it may
                        # have freed a group or queued a dependent the claim
                        # could not see yet -- look once more
                        continue
                    logger.info("burst: nothing left to claim; stopping")
                    worker.burst_done.set()
                    return
                await worker.wait_nudge(worker.poll_interval)


def _line(ex: BaseException) -> str:
    text = str(ex).strip()
    return text.splitlines()[0] if text else type(ex).__name__
