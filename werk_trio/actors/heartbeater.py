"""Heartbeater: keeps the worker row alive.

Loop every ``heartbeat_interval``: HEARTBEAT_WORKER (``last_seen = now()``),
then RELEASE_UNKNOWN_JOBS: jobs active for this worker that it does not hold
(:meth:`Ledger.held_ids`) and that were claimed over ``grace`` seconds ago came from a
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
from collections.abc import Awaitable, Callable

import psycopg
import trio

from .._util import first_line
from ..sql import array_literal
from .completer import CONNECTION_ERRORS
from .ledger import Ledger
from .wiring import Db, DbHealth, Pulse, WorkerSettings

logger = logging.getLogger("werk_trio.worker")

__all__ = ["Heartbeater"]


class Heartbeater:
    def __init__(
        self, db: Db, settings: WorkerSettings, ledger: Ledger, health: DbHealth,
        register: Callable[[], Awaitable[None]],
    ) -> None:
        self.db = db
        self.settings = settings
        self.ledger = ledger
        self.health = health
        self.register = register
        #: Fires after every beat that reached the database (tests await it).
        self.on_beat = Pulse()
        self.beats = 0
        #: Jobs given back by release_unknown().
        self.released = 0
        #: Seconds a claimed job may be active for this worker before it must be
        #: one the worker holds: a claim's reply is on its way for milliseconds.
        self.grace = max(30.0, 3 * settings.heartbeat_interval)

    async def release_unknown(self) -> int:
        """Give back jobs active for this worker that it does not hold (a claim
        that committed but whose reply was lost); return how many."""
        db = self.db
        params = {
            "worker_id": self.settings.id, "held": array_literal(self.ledger.held_ids()), "grace": self.grace,
        }  # fmt: skip
        async with db.pool.connection() as conn:
            cur = await conn.execute(db.sql.RELEASE_UNKNOWN_JOBS, params)
            released = await cur.fetchall()
        if released:
            self.released += len(released)
            logger.warning(
                "worker %s: gave back %d job(s) this worker never received (a claim whose reply was "
                "lost); they are queued again, attempt unspent", self.settings.name, len(released),
            )
        return len(released)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        db, settings = self.db, self.settings
        name, interval = settings.name, settings.heartbeat_interval
        task_status.started()
        while True:
            await trio.sleep(interval)
            try:
                async with db.pool.connection() as conn:
                    cur = await conn.execute(db.sql.HEARTBEAT_WORKER, {"id": settings.id})
                    alive = await cur.fetchone()
                if alive is None:
                    logger.warning("worker %s was taken for dead; registering again", name)
                    await self.register()
                else:
                    await self.release_unknown()
                self.beats += 1
                self.on_beat.fire()
            except CONNECTION_ERRORS as ex:
                self.health.trouble()
                logger.warning("worker %s: heartbeat failed (%s); next try in %ss",
                               name, first_line(ex), interval)
            except psycopg.Error as ex:  # not the connection: never the worker's end
                logger.error("worker %s: heartbeat failed (%s: %s); next try in %ss",
                             name, type(ex).__name__, first_line(ex), interval)
