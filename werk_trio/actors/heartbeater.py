"""Heartbeater: keeps the worker row alive.

Loop every ``heartbeat_interval``: HEARTBEAT_WORKER (``last_seen = now()``),
then RELEASE_UNKNOWN_JOBS: jobs active for this worker that it does not hold
(``Worker.held``) and that were claimed over ``grace`` seconds ago came from a
claim whose reply was lost; they are queued again, attempt unspent (they never
started here), instead of waiting for ``max_active_secs``.

If the row is gone (a sweeper took this worker for dead), it registers again
and logs a warning: jobs it was running have been rescued, and their late
acks will be refused. On a connection error it logs, marks the worker's
database trouble (its sweeper then takes nobody for dead until it has seen
the database for three of their heartbeat intervals: everyone's beats were
failing too) and tries again at the next beat.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import psycopg
import trio

from ..sql import array_literal
from .completer import CONNECTION_ERRORS
from .poller import _line

if TYPE_CHECKING:
    from ..worker import Worker

logger = logging.getLogger("werk_trio.worker")

__all__ = ["Heartbeater"]


class Heartbeater:
    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.beats = 0
        #: Jobs given back by release_unknown().
        self.released = 0
        #: Seconds a claimed job may be active for this worker before it must be
        #: one the worker holds: a claim's reply is on its way for milliseconds.
        self.grace = max(30.0, 3 * worker.heartbeat_interval)

    async def release_unknown(self) -> int:
        """Give back jobs active for this worker that it does not hold (a claim
        that committed but whose reply was lost); return how many."""
        worker = self.worker
        sql = worker.app.sql
        params = {
            "worker_id": worker.id, "held": array_literal(worker.held), "grace": self.grace,
            "jobs_channel": sql.jobs_channel,
        }  # fmt: skip
        async with worker.app.pool.connection() as conn:
            cur = await conn.execute(sql.RELEASE_UNKNOWN_JOBS, params)
            released = await cur.fetchall()
        if released:
            self.released += len(released)
            logger.warning(
                "gave back %d job(s) this worker never received (a claim whose reply was lost); "
                "they are queued again, attempt unspent", len(released),
            )
        return len(released)

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        worker = self.worker
        task_status.started()
        while True:
            await trio.sleep(worker.heartbeat_interval)
            try:
                async with worker.app.pool.connection() as conn:
                    cur = await conn.execute(worker.app.sql.HEARTBEAT_WORKER, {"id": worker.id})
                    alive = await cur.fetchone()
                if alive is None:
                    logger.warning("worker %s was taken for dead; registering again", worker.name)
                    await worker.register()
                else:
                    await self.release_unknown()
                self.beats += 1
            except CONNECTION_ERRORS as ex:
                worker.db_trouble()
                logger.warning("worker %s: heartbeat failed (%s); next try in %ss",
                               worker.name, _line(ex), worker.heartbeat_interval)
            except psycopg.Error as ex:  # not the connection: never the worker's end
                logger.error("worker %s: heartbeat failed (%s: %s); next try in %ss",
                             worker.name, type(ex).__name__, _line(ex), worker.heartbeat_interval)
