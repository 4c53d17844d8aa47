"""Listener: LISTEN on the jobs channel and nudge the poller.

Runs a :class:`werk_trio.db.Listener` (its own connection; reconnects with
back-off and re-LISTENs after a loss). Each notification whose payload is one
of the worker's queues, and every reconnect (notifications may have been
missed), nudges the poller through its size-1 channel, so a burst of NOTIFYs
costs one claim. Readiness: LISTEN issued.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import trio

from ..db import RECONNECTED, Listener

if TYPE_CHECKING:
    from ..worker import Worker

__all__ = ["QueueListener"]


class QueueListener:
    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.listener: Listener | None = None

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        worker = self.worker
        send, recv = trio.open_memory_channel[Any](64)
        self.listener = Listener(worker.app.dsn, [worker.app.sql.jobs_channel], send)
        queues = set(worker.queues)
        async with trio.open_nursery() as nursery:
            await nursery.start(self.listener.run)
            task_status.started()
            async for note in recv:
                if note is RECONNECTED or note.payload in queues:
                    worker.nudge()
