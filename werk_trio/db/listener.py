"""A dedicated LISTEN connection that survives losing its backend.

:meth:`Listener.run` connects, issues ``LISTEN`` for every channel, reports
readiness through ``task_status``, then forwards each notification to a
:class:`Sink` -- a Trio memory channel, or an object that handles each one
at once on the listening task (a first connection that fails is retried the
same way as a lost one). When the connection is lost (server restart,
``pg_terminate_backend``, network cut) it logs, waits with capped exponential
back-off, reconnects, re-issues every ``LISTEN`` and sends :data:`RECONNECTED`
on the channel: notifications may have been missed meanwhile, so the receiver
should poll once.

Cancellation: cancelling ``run`` closes the connection and returns.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Final, Protocol

import psycopg
import trio
from psycopg.rows import Row

from .._util import first_line
from ..sql import listen
from .connection import Connection

__all__ = ["RECONNECTED", "Listener", "Notification", "Sink"]

logger = logging.getLogger("werk_trio.db")


class _Reconnected:
    __slots__ = ()

    def __repr__(self) -> str:
        return "RECONNECTED"


#: Sent on the channel after a reconnect (missed notifications are possible).
RECONNECTED: Final = _Reconnected()

Notification = psycopg.Notify


class Sink(Protocol):
    """Where a :class:`Listener` forwards: ``send_nowait(item)`` takes a
    notification or :data:`RECONNECTED` without waiting, and raises
    ``trio.WouldBlock`` to drop it (a memory channel that is full). A handler
    of its own saves the hop through a channel to another task: the poller's
    wake-up is one task switch shorter."""

    def send_nowait(self, value: Any, /) -> None: ...


class Listener:
    """LISTEN on ``channels`` and forward notifications to ``send_channel``.

    ``send_channel`` (a :class:`Sink`) receives :class:`psycopg.Notify`
    objects and :data:`RECONNECTED` through ``send_nowait``: when the
    receiver is behind and the buffer is full, the notification is dropped
    (the receiver is already due to look at the database), so a flood never
    blocks the connection. A sink that handles them itself runs on the
    listening task and must not block.
    """

    def __init__(
        self,
        conninfo: str,
        channels: Sequence[str],
        send_channel: Sink,
        *,
        backoff_initial: float = 0.1,
        backoff_max: float = 5.0,
        connect_kwargs: dict[str, Any] | None = None,
    ) -> None:
        self.conninfo = conninfo
        self.channels = list(channels)
        self._send = send_channel
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self._connect_kwargs = connect_kwargs or {}
        #: Times the connection was re-established after a loss.
        self.reconnects = 0
        #: The backend pid of the current LISTEN connection (None when down).
        self.backend_pid: int | None = None
        self._connected = trio.Event()

    async def wait_connected(self) -> None:
        """Return once a LISTEN connection is up (after a loss: the next one)."""
        await self._connected.wait()

    async def _open(self) -> Connection[Row]:
        conn: Connection[Row] = await Connection.connect(
            self.conninfo, autocommit=True, **self._connect_kwargs
        )
        try:
            for channel in self.channels:
                await conn.execute(listen(channel))
        except BaseException:
            await conn.close()
            raise
        self.backend_pid = conn.info.backend_pid
        self._connected.set()
        return conn

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen until cancelled. Readiness (``nursery.start``): LISTEN issued.

        A first connection that fails (the server is restarting, the network
        is cut) is retried with the same back-off as a reconnect: readiness
        waits for it instead of raising out of the caller's nursery.
        """
        delay = self.backoff_initial
        while True:
            try:
                conn = await self._open()
            except psycopg.Error as ex:  # the connection's trouble or another: retried, never fatal
                logger.warning("LISTEN connect failed (%s); next try in %.1fs", first_line(ex), delay)
                await trio.sleep(delay)
                delay = min(delay * 2, self.backoff_max)
                continue
            break
        task_status.started()
        delay = self.backoff_initial
        try:
            while True:
                try:
                    async for note in conn.notifies():
                        self._forward(note)
                except psycopg.Error as ex:
                    logger.warning("LISTEN connection lost (%s); reconnecting", first_line(ex))
                self.backend_pid = None
                self._connected = trio.Event()
                with trio.CancelScope(shield=True):
                    await conn.close()
                while True:
                    await trio.sleep(delay)
                    try:
                        conn = await self._open()
                    except psycopg.Error as ex:
                        delay = min(delay * 2, self.backoff_max)
                        logger.warning(
                            "LISTEN reconnect failed (%s); next try in %.1fs", first_line(ex), delay
                        )
                        continue
                    break
                delay = self.backoff_initial
                self.reconnects += 1
                logger.info("LISTEN connection restored (re-listening on %s)", ", ".join(self.channels))
                self._forward(RECONNECTED)
        finally:
            with trio.CancelScope(shield=True):
                await conn.close()

    def _forward(self, item: Any) -> None:
        try:
            self._send.send_nowait(item)
        except trio.WouldBlock:
            pass  # the receiver is already behind: it will look at the database

