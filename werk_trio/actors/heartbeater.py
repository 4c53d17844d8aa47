"""Heartbeater: keeps the worker row alive.

Loop every ``heartbeat_interval``: HEARTBEAT_WORKER (``last_seen = now()``).
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

if TYPE_CHECKING:
    from ..worker import Worker

logger = logging.getLogger("werk_trio.worker")

__all__ = ["Heartbeater"]


class Heartbeater:
    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.beats = 0

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
                self.beats += 1
            except psycopg.OperationalError as ex:
                worker.db_trouble()
                logger.warning("heartbeat failed (%s); next try in %ss", ex, worker.heartbeat_interval)
