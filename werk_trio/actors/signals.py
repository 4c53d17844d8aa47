"""Signals: SIGTERM / SIGINT start a graceful stop; a second one stops at once.

Graceful: stop claiming, give running jobs ``shutdown_timeout`` seconds, then
cancel them (they are requeued without spending an attempt). Only installed
when the worker runs in the main thread (``handle_signals=True``).
"""

from __future__ import annotations

import logging
import signal
from typing import TYPE_CHECKING, Any

import trio

if TYPE_CHECKING:
    from ..worker import Worker

logger = logging.getLogger("werk_trio.worker")

__all__ = ["SignalHandler"]


class SignalHandler:
    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            task_status.started()
            count = 0
            async for signum in signals:
                count += 1
                name = signal.Signals(signum).name
                if count == 1:
                    logger.info(
                        "%s: stopping; running jobs get %ss (send it again to stop now)",
                        name, self.worker.shutdown_timeout,
                    )
                    self.worker.stop()
                else:
                    logger.warning("%s again: stopping now", name)
                    self.worker.stop(now=True)
