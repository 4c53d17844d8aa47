"""Sweeper: maintenance that is safe to run in every worker at once.

Loop every ``sweep_interval`` (and once at start): :func:`sweep_once`, which
in one transaction, under a try-advisory lock (a sweep already running
elsewhere is skipped): deletes workers silent for three heartbeat intervals
(DEAD_WORKERS) -- only if this worker itself reached the database for all
of that time, so an outage that silenced everyone kills no one; rescues
running jobs whose worker is gone or that were not touched for
``max_active_secs`` (RESCUE_JOBS: the attempt is spent, so a job
that kills its worker every time ends failed after max_attempts); expires
unstarted jobs past their ``_ttl`` (EXPIRE_JOBS); deletes finished rows past
their result/failure TTL; resolves waiting jobs whose parents all ended (a
safety net for a worker that died between a commit and its resolution);
deletes stopped workers past ``stopped_worker_retention``
(DELETE_STOPPED_WORKERS). Then, in a transaction of its own under a second
try-lock, when no worker did it in the last ``stats_sample_interval``
(STATS_DUE), the statistics pass: a queue-depth sample (SAMPLE_QUEUES: one
row per queue), the per-minute and per-hour throughput roll-ups
(ROLLUP_THROUGHPUT, ROLLUP_THROUGHPUT_HOURS), the
recount of finished
rows by queue and status (RECOUNT_FINISHED: the one full read of the
finished rows, an index-only scan, once per interval) and the pruning of
samples and roll-ups past ``stats_retention`` (PRUNE_STATS).
On a connection error it logs, marks the worker's database trouble
(:meth:`DbHealth.trouble`) and tries again next interval.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import psycopg
import trio

from .._maintenance import sweep_once
from .._util import first_line
from .completer import CONNECTION_ERRORS
from .wiring import DbHealth, Pulse, WorkerSettings

if TYPE_CHECKING:
    from ..app import Werk

logger = logging.getLogger("werk_trio.worker")

__all__ = ["Sweeper", "sweep_once"]


class Sweeper:
    def __init__(self, app: Werk, settings: WorkerSettings, health: DbHealth) -> None:
        self.app = app
        self.settings = settings
        self.health = health
        #: Fires after every sweep that reached the database (tests await it).
        self.on_sweep = Pulse()
        self.sweeps = 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        name, interval = self.settings.name, self.settings.sweep_interval
        task_status.started()
        while True:
            try:
                await sweep_once(self.app, healthy_for=self.health.healthy_for())
                self.sweeps += 1
                self.on_sweep.fire()
            except CONNECTION_ERRORS as ex:
                self.health.trouble()
                logger.warning("worker %s: sweep failed (%s); next try in %ss",
                               name, first_line(ex), interval)
            except psycopg.Error as ex:
                # not the connection: a row or statement the database refused.
                # Never the worker's end; not database trouble either (the
                # sweeper's judgement of dead workers stays as it is)
                logger.error("worker %s: sweep failed (%s: %s); next try in %ss",
                             name, type(ex).__name__, first_line(ex), interval)
            await trio.sleep(interval)
