"""Signals: SIGTERM / SIGINT start a graceful stop; a second one stops at once.

Graceful: stop claiming, give running jobs ``shutdown_timeout`` seconds, then
cancel them (they are requeued without spending an attempt). Only installed
when the worker runs in the main thread (``handle_signals=True``).
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable

import trio

from .wiring import WorkerSettings

logger = logging.getLogger("werk_trio.worker")

__all__ = ["SignalHandler"]


class SignalHandler:
    def __init__(self, settings: WorkerSettings, stop: Callable[..., None]) -> None:
        self.settings = settings
        self.stop = stop  # stop(now=False)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        name = self.settings.name
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            task_status.started()
            count = 0
            async for signum in signals:
                count += 1
                signame = signal.Signals(signum).name
                if count == 1:
                    logger.info(
                        "worker %s: %s: stopping; running jobs get %ss (send it again to stop now)",
                        name, signame, self.settings.shutdown_timeout,
                    )
                    self.stop()
                else:
                    logger.warning("worker %s: %s again: stopping now", name, signame)
                    self.stop(now=True)
