"""A bounded pool of Trio :class:`~werk_trio.db.connection.Connection` objects.

* At most ``max_size`` connections exist; ``getconn`` waits (cancellably, up to
  ``timeout``) when all are checked out and raises :class:`PoolTimeout` after.
* ``async with Pool(...) as pool:`` opens ``min_size`` connections on entry
  and closes the pool on exit (shielded, also when cancelled); ``open()`` and
  ``close()`` do the same for a pool whose life is not one block (``Werk``'s
  spans ``connect()`` .. ``disconnect()``). Connections found broken are
  discarded, and the next caller opens a replacement.
* Health check on checkout, with no round trip: an idle connection's socket
  should have nothing to read. If it has (the server closed it, or
  ``pg_terminate_backend`` killed it), libpq reads it; a connection that turns
  out broken is discarded and another one is tried.
* Reset on return: a connection returned inside a transaction is rolled back
  (shielded, bounded); one in an unknown state, mid-query or broken is closed.
  A connection is never handed out again mid-query.

Connections are in autocommit mode: each statement commits on its own, and
``async with conn.transaction():`` groups statements.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import psycopg
import trio
from psycopg import pq

from ..errors import ConfigError, PoolTimeout
from .connection import CANCEL_TIMEOUT, Connection, _ready_now

__all__ = ["Pool"]

logger = logging.getLogger("werk_trio.db")

_IDLE = pq.TransactionStatus.IDLE
_INTRANS = pq.TransactionStatus.INTRANS
_INERROR = pq.TransactionStatus.INERROR


class Pool:
    """A bounded, health-checked pool of autocommit connections.

    ``configure`` (optional) is awaited with each new connection before it is
    first handed out. ``connect_kwargs`` go to :meth:`Connection.connect`.
    """

    def __init__(
        self,
        conninfo: str,
        *,
        min_size: int = 2,
        max_size: int = 10,
        timeout: float = 30.0,
        configure: Callable[[Connection[Any]], Awaitable[None]] | None = None,
        name: str = "werk",
        **connect_kwargs: Any,
    ) -> None:
        if min_size < 0 or max_size < 1 or min_size > max_size:
            raise ConfigError(
                f"Pool sizes need 0 <= min_size <= max_size and max_size >= 1, got min_size={min_size}, "
                f"max_size={max_size}: raise max_size or lower min_size"
            )
        self.conninfo = conninfo
        self.min_size = min_size
        self.max_size = max_size
        self.timeout = timeout
        self.name = name
        self._configure = configure
        self._connect_kwargs = connect_kwargs
        self._idle: deque[Connection[Any]] = deque()
        self._slots = trio.Semaphore(max_size)
        self._closed = True
        self._open = 0
        #: Connections discarded because they were broken (for tests and stats).
        self.discarded = 0

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def size(self) -> int:
        """Connections open now (idle and checked out)."""
        return self._open

    async def open(self) -> None:
        """Open ``min_size`` connections. Idempotent."""
        if not self._closed:
            return
        self._closed = False
        self._open = 0
        try:
            for _ in range(self.min_size):
                self._idle.append(await self._new_connection())
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Close every idle connection; checked-out ones close when returned."""
        self._closed = True
        while self._idle:
            conn = self._idle.popleft()
            self._open -= 1
            await conn.close()

    async def __aenter__(self) -> Pool:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        with trio.CancelScope(shield=True):
            await self.close()

    async def _new_connection(self) -> Connection[Any]:
        conn = await Connection.connect(self.conninfo, autocommit=True, **self._connect_kwargs)
        try:
            if self._configure is not None:
                await self._configure(conn)
        except BaseException:
            await conn.close()
            raise
        self._open += 1
        return conn

    @staticmethod
    def _healthy(conn: Connection[Any]) -> bool:
        """Zero-round-trip check of an idle connection."""
        if conn.broken or conn.pgconn.transaction_status != _IDLE:
            return False
        # Something to read while idle: a notice, a notification, or the FATAL
        # message of a terminated backend followed by EOF. libpq reports the
        # loss only when a read hits the EOF, so keep reading while there is
        # more (a few rounds: a burst of notifications is not a reason to
        # wait), then parse what was read: a FATAL notice marks it broken.
        try:
            fd = conn.pgconn.socket
            for _ in range(8):
                if not _ready_now(fd, 1):
                    break
                conn.pgconn.consume_input()
                if conn.broken:
                    return False
            conn.pgconn.is_busy()
        except (psycopg.OperationalError, OSError):
            return False
        return not conn.broken

    async def getconn(self, timeout: float | None = None) -> Connection[Any]:
        """Check out a connection, waiting up to ``timeout`` (default: the pool's).

        Cancellation: cancelling while waiting for a free slot leaves the pool
        unchanged; cancelling while connecting closes the half-open connection.
        """
        if self._closed:
            raise psycopg.OperationalError(f"the {self.name} pool is closed: call connect() first")
        wait = self.timeout if timeout is None else timeout
        await trio.lowlevel.checkpoint_if_cancelled()
        scope: trio.CancelScope | None
        try:
            self._slots.acquire_nowait()  # fast path: a free slot, no scheduler round
        except trio.WouldBlock:
            with trio.move_on_after(wait) as scope:
                await self._slots.acquire()
        else:
            scope = None
        if scope is not None and scope.cancelled_caught:
            raise PoolTimeout(
                f"no database connection free after {wait:g}s: all {self.max_size} are in use "
                "(raise max_pool_size, or return connections sooner)"
            )
        try:
            while self._idle:
                conn = self._idle.pop()
                if self._healthy(conn):
                    return conn
                await self._discard(conn)
            return await self._new_connection()
        except BaseException:
            self._slots.release()
            raise

    async def putconn(self, conn: Connection[Any]) -> None:
        """Return a connection: reset it and keep it, or close it if it is unusable.

        Cancellation: shielded (bounded by the rollback's own limit), so a
        connection is never lost or kept in an unknown state.
        """
        if (
            not self._closed
            and conn._pipeline is None
            and conn.pgconn.pipeline_status == pq.PipelineStatus.OFF
            and conn.pgconn.transaction_status == _IDLE
            and conn.autocommit
            and not conn.broken
        ):
            # fast path: nothing to reset (the usual case), so no shielded await
            self._idle.append(conn)
            self._slots.release()
            return
        try:
            with trio.CancelScope(shield=True):
                keep = await self._reset(conn)
                if keep and not self._closed:
                    self._idle.append(conn)
                else:
                    await self._discard(conn, broken=not keep)
        finally:
            self._slots.release()

    async def _reset(self, conn: Connection[Any]) -> bool:
        if conn.broken:
            return False
        if conn._pipeline is not None or conn.pgconn.pipeline_status != pq.PipelineStatus.OFF:
            # a pipeline block cut off by a cancel: psycopg still routes the
            # connection's statements through it (though libpq may read IDLE),
            # so the next user would hit "another command is already in progress"
            return False
        status = conn.pgconn.transaction_status
        if status in (_INTRANS, _INERROR):
            with trio.move_on_after(CANCEL_TIMEOUT):
                try:
                    await conn.rollback()
                except psycopg.Error:
                    return False
            status = conn.pgconn.transaction_status
        if status != _IDLE or conn.broken:
            return False
        if not conn.autocommit:
            try:
                await conn.set_autocommit(True)
            except psycopg.Error:
                return False
        return True

    async def _discard(self, conn: Connection[Any], broken: bool = True) -> None:
        self._open -= 1
        if broken:
            self.discarded += 1
            logger.debug("%s pool: discarding a broken connection", self.name)
        with trio.CancelScope(shield=True):
            try:
                await conn.close()
            except psycopg.Error:  # pragma: no cover - close on a dead socket
                pass

    @asynccontextmanager
    async def connection(self, timeout: float | None = None) -> AsyncIterator[Connection[Any]]:
        """``async with pool.connection() as conn:`` -- check out, then return."""
        conn = await self.getconn(timeout)
        try:
            yield conn
        finally:
            await self.putconn(conn)

    def stats(self) -> dict[str, int]:
        return {
            "size": self._open,
            "idle": len(self._idle),
            "max_size": self.max_size,
            "discarded": self.discarded,
        }
