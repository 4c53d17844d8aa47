"""Listener: LISTEN on the jobs channel and nudge the poller.

Runs a :class:`werk_trio.db.Listener` (its own connection; reconnects with
back-off and re-LISTENs after a loss). Each notification whose payload is one
of the worker's queues, and every reconnect (notifications may have been
missed), nudges the poller through its size-1 channel, so a burst of NOTIFYs
costs one claim. Readiness: LISTEN issued.

It also listens on the control channel (flow control): ``queue:<name>`` (a
queue's controls changed: the poller reloads them and claims) and
``due:<epoch>:<queue>`` (a job due later: the poller wakes at that time).
A reconnect reloads the controls too.
"""

from __future__ import annotations

from typing import Any

import trio

from ..db import RECONNECTED, Listener
from .poller import Poller
from .wiring import Db, Wake, WorkerSettings

__all__ = ["QueueListener"]


class QueueListener:
    """The worker's :class:`werk_trio.db.Listener` and its sink (``Sink``):
    each notification is handled as it arrives, on the listening task (a
    nudge, a reload, a due time: no awaiting), one task switch before the
    poller's claim instead of two."""

    def __init__(self, db: Db, settings: WorkerSettings, wake: Wake, poller: Poller) -> None:
        self.db = db
        self.settings = settings
        self.wake = wake
        self.poller = poller
        self.listener: Listener | None = None
        self._queues = frozenset(settings.queues)
        self._control = db.sql.control_channel

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        sql = self.db.sql
        # the jobs channel last: its LISTEN stays the connection's last query,
        # which is how tools (and tests) spot a listening worker in pg_stat_activity
        self.listener = Listener(self.db.dsn, [sql.control_channel, sql.jobs_channel], self)
        await self.listener.run(task_status=task_status)

    def send_nowait(self, note: Any, /) -> None:
        """Handle one notification (or RECONNECTED) from the listener."""
        queues, poller = self._queues, self.poller
        if note is RECONNECTED:
            poller.controls_changed()
        elif note.channel == self._control:
            kind, _, rest = note.payload.partition(":")
            if kind == "queue":
                if rest in queues:
                    poller.controls_changed()
            elif kind == "due":
                epoch, _, queue = rest.partition(":")
                if queue in queues:
                    try:
                        poller.due_at(float(epoch))
                    except ValueError:
                        pass  # not ours
        elif note.payload in queues:
            self.wake.nudge()
