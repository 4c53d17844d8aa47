"""A psycopg connection that runs on Trio.

psycopg's ``AsyncConnection`` is written for asyncio, but every network wait it
does goes through one method, :meth:`AsyncConnection.wait`, which consumes a
generator from :mod:`psycopg.generators` yielding :class:`psycopg.waiting.Wait`
states. :class:`Connection` replaces exactly the asyncio touch points:

* ``wait`` -- drives the generator with :func:`trio.lowlevel.wait_readable` /
  :func:`trio.lowlevel.wait_writable` on the libpq socket;
* ``connect`` -- drives the connection generator the same way (its socket may
  change between steps), with ``connect_timeout`` as a Trio deadline;
* ``lock`` -- a :class:`trio.Lock` instead of an :class:`asyncio.Lock`;
* ``transaction`` -- the COMMIT/ROLLBACK ending a block is shielded (see below);
* cancellation -- see below.

Cancellation: when a Trio cancel arrives while a query is in flight, the
connection is mid-protocol. :meth:`Connection.wait` then, shielded and bounded
by :data:`CANCEL_TIMEOUT`, sends a cancel request to the server and drains the
query's result, so the connection is usable again; if that does not finish in
time the connection is closed. Either way the ``trio.Cancelled`` propagates,
and a connection is never left "another command is already in progress".

A cancel that interrupts an ``async with conn.transaction():`` block still
ends the block on the server: the ROLLBACK (or the COMMIT of a block that
finished) runs shielded, bounded by :data:`CANCEL_TIMEOUT`, so the server is
not left inside a dead transaction and psycopg's own bookkeeping of nested
blocks stays right.

This module leans on psycopg internals, which is why ``pyproject.toml`` pins
psycopg to a minor range and ``tests/integration/test_db.py`` tests the layer
directly.
"""

from __future__ import annotations

import inspect
import logging
import select
import time
import weakref
from collections.abc import AsyncIterator, Generator
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import psycopg
import trio
from psycopg import errors as pg_errors
from psycopg import pq
from psycopg.conninfo import conninfo_to_dict, make_conninfo, timeout_from_conninfo
from psycopg.rows import Row
from psycopg.waiting import Ready, Wait

__all__ = ["CANCEL_TIMEOUT", "Connection", "ConnectionLock", "Transaction", "connect"]

logger = logging.getLogger("werk_trio.db")

RV = TypeVar("RV")

#: Seconds a cancelled query may take to acknowledge the server-side cancel
#: before its connection is closed instead.
CANCEL_TIMEOUT = 5.0

_ACTIVE = pq.TransactionStatus.ACTIVE
_WAIT_R = Wait.R
_WAIT_W = Wait.W
_READY_R = Ready.R
_READY_W = Ready.W
_POLLIN = select.POLLIN | select.POLLERR | select.POLLHUP
_POLLOUT = select.POLLOUT | select.POLLERR | select.POLLHUP


def _ready_now(fd: int, state: int) -> int:
    """The readiness of ``fd`` for ``state`` right now, without waiting."""
    poller = select.poll()
    mask = 0
    if state & _WAIT_R:
        mask |= select.POLLIN
    if state & _WAIT_W:
        mask |= select.POLLOUT
    poller.register(fd, mask)
    ready = 0
    for _, ev in poller.poll(0):
        if ev & _POLLIN and state & _WAIT_R:
            ready |= _READY_R
        if ev & _POLLOUT and state & _WAIT_W:
            ready |= _READY_W
    return ready


#: Longest stretch (seconds) a connection may keep the loop serving sockets that
#: are already ready before it lets other tasks run (as psycopg does on asyncio).
MAX_BUSY_TIME = 0.005
_last_yield = 0.0


async def _wait_fd(fd: int, state: int) -> int:
    """Wait until ``fd`` is ready for ``state`` (R, W or RW); return the readiness.

    A socket that is ready already is served without a trip through the
    scheduler (a zero-timeout ``poll`` is much cheaper, and a pipeline of
    statements would otherwise let every other task run between its sends),
    unless the loop has been kept busy for ``MAX_BUSY_TIME``.
    """
    global _last_yield
    ready = _ready_now(fd, state)
    if ready:
        now = time.monotonic()
        if now - _last_yield < MAX_BUSY_TIME:
            return ready
        await trio.lowlevel.cancel_shielded_checkpoint()
        _last_yield = time.monotonic()
        return ready
    if state == _WAIT_R:
        await trio.lowlevel.wait_readable(fd)
        _last_yield = time.monotonic()
        return _READY_R
    if state == _WAIT_W:
        await trio.lowlevel.wait_writable(fd)
        _last_yield = time.monotonic()
        return _READY_W

    # RW: libpq is flushing a large send and may need to read to make room.
    async def _race(waiter: Any, value: int, cancel: trio.CancelScope) -> None:
        nonlocal ready
        await waiter(fd)
        ready |= value
        cancel.cancel()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(_race, trio.lowlevel.wait_readable, _READY_R, nursery.cancel_scope)
        nursery.start_soon(_race, trio.lowlevel.wait_writable, _READY_W, nursery.cancel_scope)
    _last_yield = time.monotonic()
    return ready or _ready_now(fd, state)


class ConnectionLock:
    """A connection's lock: a :class:`trio.Lock` whose uncontended acquire does
    not yield. psycopg takes its connection's lock around every step -- each
    ``execute``, a pipeline's start and end, a fetch in a pipeline -- and an
    acquire of a free ``trio.Lock`` yields to every other task before it
    returns: a completion write (a pipeline of three statements) took the lock
    seven times, seven scheduler turns for one round trip, and in a busy
    worker each turn waits for every runner that is ready to run. Here a free
    lock is taken at once, after a cancellation check (a cancelled caller
    raises before it sends anything, as with ``trio.Lock``); a held one is
    waited for, first come first served, as ``trio.Lock`` does. The real
    waits of the statement (the socket, in :func:`_wait_fd`) still yield."""

    __slots__ = ("_lock",)

    def __init__(self) -> None:
        self._lock = trio.Lock()

    async def __aenter__(self) -> None:
        await trio.lowlevel.checkpoint_if_cancelled()
        try:
            self._lock.acquire_nowait()
        except trio.WouldBlock:
            await self._lock.acquire()

    async def __aexit__(self, *exc: object) -> None:
        self._lock.release()

    def locked(self) -> bool:
        return self._lock.locked()


class _Driver:
    """Drives one psycopg generator; remembers where it stopped if interrupted."""

    __slots__ = ("gen", "state")

    def __init__(self, gen: Generator[Any, Any, Any]) -> None:
        self.gen = gen
        self.state: Any = None

    async def run_fd(self, fd: int) -> Any:
        """Drive a PQGen (yields Wait states on a fixed socket) to completion."""
        gen = self.gen
        try:
            if self.state is None:
                self.state = next(gen)
            while True:
                ready = await _wait_fd(fd, self.state)
                self.state = gen.send(ready)
        except StopIteration as ex:
            return ex.value
        except OSError as ex:
            raise pg_errors.OperationalError("connection socket closed") from ex

    async def run_conn(self) -> Any:
        """Drive a PQGenConn (yields (fd, Wait) pairs; the fd may change)."""
        gen = self.gen
        try:
            fd, state = next(gen)
            while True:
                ready = await _wait_fd(fd, state)
                fd, state = gen.send(ready)
        except StopIteration as ex:
            return ex.value
        except OSError as ex:
            raise pg_errors.OperationalError("connection socket closed") from ex


class Connection(psycopg.AsyncConnection[Row]):
    """A psycopg ``AsyncConnection`` whose waits, lock and cancellation are Trio's.

    Use it exactly like an ``AsyncConnection`` (``execute``, ``cursor``,
    ``transaction``, ``notifies``...), from Trio code. One connection serves one
    task at a time (its :class:`ConnectionLock` queues the others).
    """

    def __init__(self, pgconn: Any, row_factory: Any = None) -> None:
        if row_factory is None:
            super().__init__(pgconn)
        else:
            super().__init__(pgconn, row_factory)
        self.lock = ConnectionLock()  # type: ignore[assignment]
        # A backend that is terminated while the connection is idle sends a
        # FATAL message, which libpq hands to the notice handler (there is no
        # query to fail); remember it, so that ``broken`` knows before the EOF.
        self._server_fatal = False
        wself = weakref.ref(self)

        def on_notice(diag: psycopg.errors.Diagnostic) -> None:
            conn = wself()
            if conn is not None and diag.severity_nonlocalized in ("FATAL", "PANIC"):
                conn._server_fatal = True

        self.add_notice_handler(on_notice)

    @classmethod
    async def connect(
        cls,
        conninfo: str = "",
        *,
        autocommit: bool = False,
        prepare_threshold: int | None = 5,
        row_factory: Any = None,
        **kwargs: Any,
    ) -> Connection[Any]:
        """Open a connection. ``connect_timeout`` (seconds, in the conninfo or as a
        keyword) bounds each attempt. Cancellation: a cancel closes the half-open
        connection and propagates."""
        params = conninfo_to_dict(conninfo, **kwargs)
        timeout = timeout_from_conninfo(params)
        attempts = await _attempts(params)
        errors: list[Exception] = []
        rv: Connection[Any] | None = None
        for attempt in attempts:
            driver = _Driver(cls._connect_gen(make_conninfo("", **attempt)))
            try:
                with trio.move_on_after(timeout) as scope:
                    rv = await driver.run_conn()
                if scope.cancelled_caught:
                    driver.gen.close()
                    errors.append(psycopg.errors.ConnectionTimeout("connection timeout expired"))
                    continue
            except psycopg.Error as ex:
                errors.append(ex)
                continue
            except BaseException:
                driver.gen.close()
                raise
            break
        if rv is None:
            last = errors[-1] if errors else psycopg.OperationalError("no host to connect to")
            raise last.with_traceback(None)
        rv._autocommit = bool(autocommit)
        if row_factory is not None:
            rv.row_factory = row_factory
        rv.prepare_threshold = prepare_threshold
        return rv

    async def wait(
        self,
        gen: Generator[Any, Any, RV],
        interval: float | None = None,
        timeout: float | None = None,
    ) -> RV:
        """Run one psycopg generator on this connection's socket.

        Raises ``psycopg.errors._WaitTimeout`` after ``timeout`` seconds (used by
        ``notifies(timeout=)``). Cancellation: a query in flight is cancelled on
        the server and drained (or the connection closed) before the
        ``trio.Cancelled`` propagates.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        driver = _Driver(gen)
        fd = self.pgconn.socket
        try:
            if timeout is None:
                return await driver.run_fd(fd)  # type: ignore[no-any-return]
            with trio.move_on_after(timeout):
                return await driver.run_fd(fd)  # type: ignore[no-any-return]
            raise pg_errors._WaitTimeout("wait timeout expired")
        except (trio.Cancelled, KeyboardInterrupt):
            if self.pgconn.transaction_status == _ACTIVE:
                with trio.CancelScope(shield=True):
                    await self._cancel_and_drain(driver, fd)
            raise

    async def _cancel_and_drain(self, driver: _Driver, fd: int) -> None:
        """Ask the server to cancel the running query, then read its end."""
        with trio.move_on_after(CANCEL_TIMEOUT) as scope:
            try:
                await _Driver(self._cancel_gen()).run_conn()
                await driver.run_fd(fd)
            except pg_errors.QueryCanceled:
                pass  # expected: the server cancelled the statement
            except psycopg.Error as ex:
                logger.warning("connection lost while cancelling a query: %s", ex)
                self.pgconn.finish()
                return
        if scope.cancelled_caught or self.pgconn.transaction_status == _ACTIVE:
            logger.warning("query not ended %ss after cancel: closing connection", CANCEL_TIMEOUT)
            self.pgconn.finish()

    async def cancel_safe(self, *, timeout: float = 30.0) -> None:
        """Cancel the current operation on the server (Trio version)."""
        if not self._should_cancel():
            return
        with trio.move_on_after(timeout) as scope:
            await _Driver(self._cancel_gen()).run_conn()
        if scope.cancelled_caught:
            raise psycopg.errors.CancellationTimeout("cancellation timeout expired")

    @asynccontextmanager
    async def pipeline(self) -> AsyncIterator[psycopg.AsyncPipeline]:
        """psycopg's pipeline. When a statement in it fails, the server skips
        the rest -- a statement's first Parse as a prepared statement among
        them -- but psycopg (3.3) takes that statement for prepared from then
        on, and every later run of it on this connection fails ("prepared
        statement ... does not exist"). So after a refused pipeline the
        connection forgets its prepared statements (DEALLOCATE ALL before its
        next statement; they are prepared again as they are used).
        Cancellation: as psycopg's pipeline (the statements in flight are
        cancelled on the server and drained, see :meth:`wait`)."""
        try:
            async with super().pipeline() as pipeline:
                yield pipeline
        except psycopg.Error:
            self._prepared.clear()
            raise

    @asynccontextmanager
    async def transaction(
        self, savepoint_name: str | None = None, force_rollback: bool = False
    ) -> AsyncIterator[Transaction]:
        """``async with conn.transaction():`` -- BEGIN (or SAVEPOINT) now, COMMIT at
        the end, ROLLBACK on an exception. Cancellation: BEGIN is cancellable; the
        COMMIT or ROLLBACK ending the block is shielded (bounded by
        :data:`CANCEL_TIMEOUT`), so a cancelled block is always rolled back."""
        tx = Transaction(self, savepoint_name, force_rollback)
        if self._pipeline:
            async with self.pipeline(), tx, self.pipeline():
                yield tx
        else:
            async with tx:
                yield tx

    @property
    def broken(self) -> bool:
        """True when the connection can no longer be used (closed or lost, or
        its backend announced its end)."""
        return self.closed or self._server_fatal or self.pgconn.status != pq.ConnStatus.OK


class Transaction(psycopg.AsyncTransaction):
    """psycopg's transaction block with Trio cancellation semantics.

    psycopg ends a block with ``await conn.wait(commit-or-rollback)``; under a
    cancelled Trio scope that wait (and the lock before it) would raise at once,
    leaving the block open on the server and counted as open by psycopg. Here
    the end of a block runs in a shielded scope with its own deadline.
    """

    async def __aenter__(self) -> Transaction:
        async with self._conn.lock:
            self._check_enter()
            gen = self._enter_gen()
            try:
                await self._conn.wait(gen)
            except BaseException as ex:
                # undo a BEGIN/SAVEPOINT that started (__aexit__ will not run)
                if inspect.getgeneratorstate(gen) != inspect.GEN_CREATED:
                    await self._end(type(ex), ex, locked=True)
                raise
        return self

    async def __aexit__(self, exc_type: Any, exc_val: Any, exc_tb: Any) -> bool:
        return await self._end(exc_type, exc_val, locked=False)

    async def _end(self, exc_type: Any, exc_val: Any, *, locked: bool) -> bool:
        if self.pgconn.status != pq.ConnStatus.OK:
            self.status = self.Status.FAILED
            return False
        committing = exc_val is None and not self.force_rollback
        with trio.CancelScope(shield=True, deadline=trio.current_time() + CANCEL_TIMEOUT) as scope:
            if locked:
                return await self._conn.wait(self._exit_gen(exc_type, exc_val, None))
            async with self._conn.lock:
                return await self._conn.wait(self._exit_gen(exc_type, exc_val, None))
        # the deadline passed: the connection is in an unknown state
        logger.warning("transaction end took over %ss: closing the connection", CANCEL_TIMEOUT)
        self._conn.pgconn.finish()
        if committing and scope.cancelled_caught:
            raise pg_errors.OperationalError(
                f"COMMIT did not finish within {CANCEL_TIMEOUT}s; the connection was closed "
                "and the transaction may or may not have committed"
            )
        return False


async def _attempts(params: dict[str, Any]) -> list[dict[str, Any]]:
    """The connection attempts for ``params``; host names resolve in a thread."""
    from psycopg._conninfo_attempts import conninfo_attempts

    hosts = str(params.get("host") or "")
    if not hosts or all(h.startswith("/") or _is_ip(h) for h in hosts.split(",")):
        return conninfo_attempts(params)
    return await trio.to_thread.run_sync(conninfo_attempts, params, abandon_on_cancel=True)


def _is_ip(host: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


async def connect(conninfo: str, **kwargs: Any) -> Connection[Any]:
    """Open a :class:`Connection` (see :meth:`Connection.connect`)."""
    return await Connection.connect(conninfo, **kwargs)

