"""Abort-watcher: stops this worker's jobs that ``abort_job`` marked ``aborting``.

Loop every ``abort_interval`` while jobs run: ABORTING_JOBS for this worker;
each one still running here has its cancel scope cancelled, and the runner
reports it ``aborted`` (no retry). On a connection error it logs and tries
again next interval.
"""

from __future__ import annotations

import logging

import psycopg
import trio

from .._util import first_line
from ..errors import PoolTimeout
from .ledger import Ledger
from .wiring import Db, WorkerSettings

logger = logging.getLogger("werk_trio.worker")

__all__ = ["AbortWatcher"]


class AbortWatcher:
    def __init__(self, db: Db, settings: WorkerSettings, ledger: Ledger) -> None:
        self.db = db
        self.settings = settings
        self.ledger = ledger

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        db, settings, ledger = self.db, self.settings, self.ledger
        task_status.started()
        while True:
            await trio.sleep(settings.abort_interval)
            if not ledger.running:
                continue
            try:
                async with db.pool.connection() as conn:
                    cur = await conn.execute(db.sql.ABORTING_JOBS, {"worker_id": settings.id})
                    ids = [row[0] for row in await cur.fetchall()]
            except (psycopg.Error, PoolTimeout) as ex:  # never the worker's end
                logger.warning("worker %s: abort check failed (%s: %s); retrying",
                               settings.name, type(ex).__name__, first_line(ex))
                continue
            for job_id in ids:
                running = ledger.running_job(job_id)
                if running is not None and not running.aborted:
                    logger.info("worker %s: aborting job %s (%s) on request",
                                settings.name, job_id, running.job.function)
                    running.abort()
