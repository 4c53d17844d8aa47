"""Abort-watcher: stops this worker's jobs that ``abort_job`` marked ``aborting``.

Loop every ``abort_interval`` while jobs run: ABORTING_JOBS for this worker;
each one still running here has its cancel scope cancelled, and the runner
reports it ``aborted`` (no retry). On a connection error it logs and tries
again next interval.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import psycopg
import trio

from ..errors import PoolTimeout
from .poller import _line

if TYPE_CHECKING:
    from ..worker import Worker

logger = logging.getLogger("werk_trio.worker")

__all__ = ["AbortWatcher"]


class AbortWatcher:
    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        worker = self.worker
        task_status.started()
        while True:
            await trio.sleep(worker.abort_interval)
            if not worker.running:
                continue
            try:
                async with worker.app.pool.connection() as conn:
                    cur = await conn.execute(worker.app.sql.ABORTING_JOBS, {"worker_id": worker.id})
                    ids = [row[0] for row in await cur.fetchall()]
            except (psycopg.Error, PoolTimeout) as ex:  # never the worker's end
                logger.warning("worker %s: abort check failed (%s: %s); retrying",
                               worker.name, type(ex).__name__, _line(ex))
                continue
            for job_id in ids:
                running = worker.running.get(job_id)
                if running is not None and not running.aborted:
                    logger.info("aborting job %s (%s) on request", job_id, running.job.function)
                    running.abort()
