"""The Trio-native psycopg layer (werk_trio.db), tested directly on a real server.

Transports: the DSN as given; a Unix socket and TCP, each directly when the
DSN is of that kind and always through a small byte-pipe proxy listening on a
socket of that kind (so both of libpq's connection paths run on Trio whatever
the test server is; the proxy only forwards bytes, the server is real).
"""

from __future__ import annotations

import os
import socket
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
import pytest
import trio
import trio.testing
from psycopg import pq
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from werk_trio import ConfigError, PoolTimeout, WerkError
from werk_trio.db import RECONNECTED, Connection, Listener, Pool, connect
from werk_trio.testing import until

IDLE = pq.TransactionStatus.IDLE

# --- helpers ------------------------------------------------------------------


def _upstream(dsn: str) -> tuple[str, Any]:
    """Where the server of ``dsn`` listens: ("unix", path) or ("tcp", (host, port))."""
    params = conninfo_to_dict(dsn)
    host = str(params.get("host") or "/tmp").split(",")[0]
    port = int(str(params.get("port") or 5432).split(",")[0])
    if host.startswith("/"):
        return "unix", f"{host}/.s.PGSQL.{port}"
    return "tcp", (str(params.get("hostaddr") or host), port)


def _with_host(dsn: str, host: str, port: int) -> str:
    params = conninfo_to_dict(dsn)
    params.pop("hostaddr", None)
    params.update(host=host, port=str(port))
    return make_conninfo("", **params)


def _is_socket_dsn(dsn: str) -> bool:
    return _upstream(dsn)[0] == "unix"


class Proxy:
    """Forwards every accepted connection, byte for byte, to the real server."""

    def __init__(self, dsn: str, *, hold_eof: bool = False) -> None:
        self.kind, self.target = _upstream(dsn)
        self.accepted = 0
        #: Keep the client's side open when the server closes (a FIN "in flight").
        self.hold_eof = hold_eof
        #: Set when a server connection has closed and its last bytes were forwarded.
        self.server_closed = trio.Event()
        #: Bytes that, seen in what the server sends, make the proxy drop that
        #: chunk and cut the connection instead (once): a reply lost on its way.
        self.cut_reply_containing: bytes | None = None
        self.cuts = 0

    async def _open_upstream(self) -> trio.SocketStream:
        if self.kind == "unix":
            return await trio.open_unix_socket(self.target)
        return await trio.open_tcp_stream(*self.target)

    async def handle(self, client: trio.SocketStream) -> None:
        self.accepted += 1
        async with client, await self._open_upstream() as server, trio.open_nursery() as nursery:

            async def pipe(src: trio.SocketStream, dst: trio.SocketStream) -> None:
                try:
                    async for chunk in src:
                        marker = self.cut_reply_containing
                        if src is server and marker is not None and marker in chunk:
                            self.cut_reply_containing = None
                            self.cuts += 1
                            break  # the reply never reaches the client
                        await dst.send_all(chunk)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass
                if src is server:
                    self.server_closed.set()
                    if self.hold_eof:
                        await trio.sleep_forever()  # until the client closes its side
                nursery.cancel_scope.cancel()

            nursery.start_soon(pipe, client, server)
            nursery.start_soon(pipe, server, client)


@asynccontextmanager
async def tcp_proxy(dsn: str, *, hold_eof: bool = False) -> AsyncIterator[tuple[str, Proxy]]:
    """A DSN that reaches the test server over TCP on 127.0.0.1."""
    proxy = Proxy(dsn, hold_eof=hold_eof)
    async with trio.open_nursery() as nursery:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        port = listeners[0].socket.getsockname()[1]
        await nursery.start(trio.serve_listeners, proxy.handle, listeners)
        yield _with_host(dsn, "127.0.0.1", port), proxy
        nursery.cancel_scope.cancel()


@asynccontextmanager
async def unix_proxy(dsn: str) -> AsyncIterator[tuple[str, Proxy]]:
    """A DSN that reaches the test server over a Unix socket in a fresh directory."""
    proxy = Proxy(dsn)
    directory = tempfile.mkdtemp(prefix="werk-", dir="/tmp")
    port = 6543
    path = os.path.join(directory, f".s.PGSQL.{port}")
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        await sock.bind(path)
        sock.listen(16)
        async with trio.open_nursery() as nursery:
            await nursery.start(trio.serve_listeners, proxy.handle, [trio.SocketListener(sock)])
            yield _with_host(dsn, directory, port), proxy
            nursery.cancel_scope.cancel()
    finally:
        sock.close()
        if os.path.exists(path):
            os.unlink(path)
        os.rmdir(directory)


async def _scalar(conn: Connection[Any], query: str, params: Any = None) -> Any:
    cur = await conn.execute(query, params)
    row = await cur.fetchone()
    assert row is not None
    return row[0]


async def backend_gone(dsn: str, pid: int) -> None:
    async with await connect(dsn, autocommit=True) as probe:

        async def gone() -> bool:
            return not await _scalar(probe, "SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,))

        await until(gone, interval=0.01)


async def activity(dsn: str, pid: int) -> tuple[str, str] | None:
    """(state, query) of backend ``pid``, None when it is gone."""
    async with await connect(dsn, autocommit=True) as probe:
        cur = await probe.execute("SELECT state, query FROM pg_stat_activity WHERE pid = %s", (pid,))
        row = await cur.fetchone()
        return None if row is None else (row[0], row[1])


async def terminate(dsn: str, pid: int) -> None:
    async with await connect(dsn, autocommit=True) as killer:
        assert await _scalar(killer, "SELECT pg_terminate_backend(%s)", (pid,)) is True
    await backend_gone(dsn, pid)


# --- connecting -----------------------------------------------------------------


async def test_connect_with_the_dsn(dsn: str) -> None:
    with trio.fail_after(10):
        conn = await connect(dsn)
        async with conn:
            assert isinstance(conn, Connection)
            assert await _scalar(conn, "SELECT %s::int + 1", (41,)) == 42
            assert conn.pgconn.status == pq.ConnStatus.OK
            assert not conn.broken
        assert conn.closed and conn.broken


async def test_connect_over_a_unix_socket(dsn: str) -> None:
    with trio.fail_after(10):
        if _is_socket_dsn(dsn):
            async with await connect(dsn) as conn:
                assert conn.info.host.startswith("/")
                assert await _scalar(conn, "SELECT inet_server_addr() IS NULL") is True
        async with unix_proxy(dsn) as (socket_dsn, proxy):
            async with await connect(socket_dsn) as conn:
                assert conn.info.host.startswith("/tmp/werk-")
                assert await _scalar(conn, "SELECT 'over a socket'") == "over a socket"
            assert proxy.accepted >= 1


async def test_connect_over_tcp(dsn: str) -> None:
    with trio.fail_after(10):
        if not _is_socket_dsn(dsn):
            async with await connect(dsn) as conn:
                assert await _scalar(conn, "SELECT 1") == 1
        async with tcp_proxy(dsn) as (tcp_dsn, proxy):
            async with await connect(tcp_dsn, autocommit=True) as conn:
                assert conn.info.host == "127.0.0.1"
                assert conn.autocommit
                assert await _scalar(conn, "SELECT 'over tcp'") == "over tcp"
            # host names resolve too (in a thread, never blocking Trio)
            async with await connect(tcp_dsn.replace("127.0.0.1", "localhost")) as conn:
                assert await _scalar(conn, "SELECT 2") == 2
            assert proxy.accepted >= 2


async def test_connect_timeout_on_a_server_that_never_answers() -> None:
    """A TCP listener that accepts and stays silent: ConnectionTimeout on time,
    and the half-open connection is closed, not leaked."""
    accepted: list[trio.SocketStream] = []
    closed_by_client = trio.Event()

    async def silent(stream: trio.SocketStream) -> None:
        accepted.append(stream)
        async for _ in stream:  # swallow the startup/SSL request, never reply
            pass
        closed_by_client.set()

    with trio.fail_after(15):
        async with trio.open_nursery() as nursery:
            listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
            port = listeners[0].socket.getsockname()[1]
            await nursery.start(trio.serve_listeners, silent, listeners)
            silent_dsn = f"host=127.0.0.1 port={port} dbname=x user=x sslmode=disable gssencmode=disable"

            start = time.monotonic()
            with pytest.raises(psycopg.errors.ConnectionTimeout):
                await connect(silent_dsn + " connect_timeout=2")
            elapsed = time.monotonic() - start
            assert 1.9 <= elapsed < 3.5, elapsed
            assert accepted, "the client never reached the listener"
            await closed_by_client.wait()

            # the keyword form works the same way
            start = time.monotonic()
            with pytest.raises(psycopg.errors.ConnectionTimeout):
                await connect(silent_dsn, connect_timeout=2)
            assert 1.9 <= time.monotonic() - start < 3.5
            nursery.cancel_scope.cancel()


async def test_connect_refused_is_an_operational_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: connections are refused
        with trio.fail_after(10):
            start = time.monotonic()
            with pytest.raises(psycopg.OperationalError):
                await connect(f"host=127.0.0.1 port={port} dbname=x user=x connect_timeout=5")
            assert time.monotonic() - start < 2


async def test_cancelling_a_connect_returns_at_once() -> None:
    closed_by_client = trio.Event()

    async def silent(stream: trio.SocketStream) -> None:
        async for _ in stream:
            pass
        closed_by_client.set()

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
            port = listeners[0].socket.getsockname()[1]
            await nursery.start(trio.serve_listeners, silent, listeners)
            start = time.monotonic()
            with trio.move_on_after(0.2) as scope:
                await connect(
                    f"host=127.0.0.1 port={port} dbname=x user=x sslmode=disable connect_timeout=30"
                )
            assert scope.cancelled_caught
            assert time.monotonic() - start < 1.5
            await closed_by_client.wait()  # the half-open connection was closed
            nursery.cancel_scope.cancel()


# --- statements and transactions --------------------------------------------------


@pytest.fixture
async def table(dsn: str, schema: str) -> str:
    """A table ``{schema}.items`` (the schema fixture drops it afterwards)."""
    name = f'"{schema}".items'
    async with await connect(dsn, autocommit=True) as conn:
        await conn.execute(f'CREATE SCHEMA "{schema}"')
        await conn.execute(f"CREATE TABLE {name} (n integer PRIMARY KEY, v text)")
    return name


async def _count(dsn: str, table: str) -> int:
    async with await connect(dsn, autocommit=True) as conn:
        return int(await _scalar(conn, f"SELECT count(*) FROM {table}"))


async def test_transaction_commit_and_rollback(dsn: str, table: str) -> None:
    with trio.fail_after(10):
        async with await connect(dsn, autocommit=True) as conn:
            async with conn.transaction():
                await conn.execute(f"INSERT INTO {table} VALUES (1, 'a')")
                await conn.execute(f"INSERT INTO {table} VALUES (2, 'b')")
                assert conn.pgconn.transaction_status == pq.TransactionStatus.INTRANS
            assert await _count(dsn, table) == 2

            with pytest.raises(ZeroDivisionError):
                async with conn.transaction():
                    await conn.execute(f"INSERT INTO {table} VALUES (3, 'c')")
                    1 / 0  # noqa: B018
            assert await _count(dsn, table) == 2
            assert conn.pgconn.transaction_status == IDLE

            # a failed statement rolls back the whole block
            with pytest.raises(psycopg.errors.UniqueViolation):
                async with conn.transaction():
                    await conn.execute(f"INSERT INTO {table} VALUES (4, 'd')")
                    await conn.execute(f"INSERT INTO {table} VALUES (1, 'dup')")
            assert await _count(dsn, table) == 2

            # a nested block is a savepoint
            async with conn.transaction():
                await conn.execute(f"INSERT INTO {table} VALUES (5, 'e')")
                with pytest.raises(psycopg.errors.UniqueViolation):
                    async with conn.transaction():
                        await conn.execute(f"INSERT INTO {table} VALUES (1, 'dup')")
                await conn.execute(f"INSERT INTO {table} VALUES (6, 'f')")
            assert await _count(dsn, table) == 4

            async with conn.transaction(force_rollback=True):
                await conn.execute(f"INSERT INTO {table} VALUES (7, 'g')")
            assert await _count(dsn, table) == 4


async def test_explicit_commit_and_rollback(dsn: str, table: str) -> None:
    with trio.fail_after(10):
        async with await connect(dsn) as conn:
            assert not conn.autocommit
            await conn.execute(f"INSERT INTO {table} VALUES (1, 'a')")
            assert await _count(dsn, table) == 0  # not committed yet
            await conn.commit()
            assert await _count(dsn, table) == 1
            await conn.execute(f"INSERT INTO {table} VALUES (2, 'b')")
            await conn.rollback()
            assert await _count(dsn, table) == 1


async def test_a_statement_prepared_in_a_refused_pipeline_still_runs(dsn: str) -> None:
    """A pipeline whose first statement fails skips the rest, a Parse of a
    statement that reached prepare_threshold among them; psycopg (3.3) still
    takes that statement for prepared, so every later run of it failed on
    that connection ("prepared statement ... does not exist": the completer's
    writes after a refused batch). The connection forgets its prepared
    statements after a refused pipeline instead."""
    later = "SELECT count(*) FROM pg_class WHERE relname = %s"
    with trio.fail_after(10):
        async with await connect(dsn, prepare_threshold=2, autocommit=True) as conn:
            for _ in range(2):
                assert (await (await conn.execute(later, ("pg_type",))).fetchone()) == (1,)
            with pytest.raises(psycopg.errors.DivisionByZero):
                async with conn.pipeline():
                    await conn.execute("SELECT 1 / (%s - 1)", (1,))
                    await conn.execute(later, ("pg_type",))  # its third run: prepared here
            for _ in range(3):  # prepared again on the way, and used
                assert (await (await conn.execute(later, ("pg_class",))).fetchone()) == (1,)
            async with conn.pipeline():
                cur = await conn.execute(later, ("pg_proc",))
            assert await cur.fetchone() == (1,)


async def test_executemany_cursor_and_large_values(dsn: str, table: str) -> None:
    with trio.fail_after(20):
        async with await connect(dsn, autocommit=True) as conn:
            async with conn.cursor() as cur:
                await cur.executemany(
                    f"INSERT INTO {table} VALUES (%s, %s)", [(i, str(i)) for i in range(200)]
                )
                await cur.execute(f"SELECT n FROM {table} ORDER BY n")
                assert [r[0] async for r in cur] == list(range(200))
            # a value far larger than the socket buffers: libpq must flush while reading
            big = "x" * (8 * 1024 * 1024)
            assert await _scalar(conn, "SELECT length(%s::text)", (big,)) == len(big)
            assert len(await _scalar(conn, "SELECT repeat('y', 8 * 1024 * 1024)")) == 8 * 1024 * 1024


# --- cancellation -------------------------------------------------------------------


async def test_cancel_mid_query_on_a_connection(dsn: str) -> None:
    with trio.fail_after(10):
        async with await connect(dsn, autocommit=True) as conn:
            pid = conn.info.backend_pid
            start = time.monotonic()
            with trio.move_on_after(0.3) as scope:
                await conn.execute("SELECT pg_sleep(10)")
            assert scope.cancelled_caught
            assert time.monotonic() - start < 3
            # clean: not mid-protocol, not closed, the same backend
            assert not conn.broken
            assert conn.pgconn.transaction_status == IDLE
            assert await _scalar(conn, "SELECT 'still usable'") == "still usable"
            assert conn.info.backend_pid == pid
            state = await activity(dsn, pid)
            assert state is not None and state[0] == "idle", state


async def test_cancel_mid_query_then_the_same_pool_works(dsn: str) -> None:
    with trio.fail_after(10):
        async with Pool(dsn, min_size=1, max_size=1) as pool:
            async with pool.connection() as conn:
                pid = conn.info.backend_pid
                with trio.move_on_after(0.3) as scope:
                    await conn.execute("SELECT pg_sleep(10)")
                assert scope.cancelled_caught
            # the server-side query is gone: the backend is idle or closed, never still sleeping
            state = await activity(dsn, pid)
            assert state is None or state[0] != "active", state
            async with pool.connection() as conn:
                assert await _scalar(conn, "SELECT 1") == 1
            assert pool.size == 1


async def test_cancel_inside_a_transaction_rolls_it_back(dsn: str, table: str) -> None:
    with trio.fail_after(10):
        async with Pool(dsn, min_size=1, max_size=1) as pool:
            async with pool.connection() as conn:
                pid = conn.info.backend_pid
                with trio.move_on_after(0.3) as scope:
                    async with conn.transaction():
                        await conn.execute(f"INSERT INTO {table} VALUES (1, 'never')")
                        await conn.execute("SELECT pg_sleep(10)")
                assert scope.cancelled_caught
                # the block was rolled back on the way out, even though it was cancelled
                assert conn.pgconn.transaction_status == IDLE
                assert await _scalar(conn, "SELECT 'usable'") == "usable"
                async with conn.transaction():  # a fresh BEGIN, not a savepoint of a dead block
                    await conn.execute(f"INSERT INTO {table} VALUES (2, 'kept')")
            assert await _count(dsn, table) == 1
            async with pool.connection() as conn:
                assert conn.info.backend_pid == pid  # kept, not discarded
                assert await _scalar(conn, f"SELECT v FROM {table}") == "kept"
            assert pool.discarded == 0


async def test_connection_returned_mid_transaction_is_rolled_back(dsn: str, table: str) -> None:
    with trio.fail_after(10):
        async with Pool(dsn, min_size=1, max_size=1) as pool:
            async with pool.connection() as conn:
                await conn.execute("BEGIN")
                await conn.execute(f"INSERT INTO {table} VALUES (1, 'open')")
            async with pool.connection() as conn:
                assert conn.pgconn.transaction_status == IDLE
                assert await _scalar(conn, f"SELECT count(*) FROM {table}") == 0
            # a connection switched out of autocommit comes back in autocommit
            async with pool.connection() as conn:
                await conn.set_autocommit(False)
            async with pool.connection() as conn:
                assert conn.autocommit


# --- broken connections -------------------------------------------------------------


async def test_terminated_idle_connection_is_replaced(dsn: str) -> None:
    with trio.fail_after(10):
        async with Pool(dsn, min_size=1, max_size=1) as pool:
            async with pool.connection() as conn:
                old_pid = conn.info.backend_pid
            await terminate(dsn, old_pid)
            async with pool.connection() as conn:
                assert await _scalar(conn, "SELECT 1") == 1
                assert conn.info.backend_pid != old_pid
            assert pool.discarded == 1
            assert pool.size == 1


async def test_terminated_idle_connection_is_replaced_before_its_eof_arrives(dsn: str) -> None:
    """The FATAL message of a terminated backend has arrived, the end of the
    stream not yet: the checkout must already know the connection is dead."""
    with trio.fail_after(10):
        async with tcp_proxy(dsn, hold_eof=True) as (tcp_dsn, proxy), \
                Pool(tcp_dsn, min_size=1, max_size=1) as pool:  # fmt: skip
            async with pool.connection() as conn:
                old_pid = conn.info.backend_pid
            await terminate(dsn, old_pid)
            await proxy.server_closed.wait()  # the FATAL was forwarded; no FIN follows
            async with pool.connection() as conn:
                assert await _scalar(conn, "SELECT 1") == 1
                assert conn.info.backend_pid != old_pid
            assert pool.discarded == 1


async def test_connection_killed_while_checked_out_is_discarded(dsn: str) -> None:
    with trio.fail_after(10):
        async with Pool(dsn, min_size=1, max_size=1) as pool:
            with pytest.raises(psycopg.OperationalError):
                async with pool.connection() as conn:
                    pid = conn.info.backend_pid
                    await terminate(dsn, pid)
                    await conn.execute("SELECT 1")
            async with pool.connection() as conn:
                assert conn.info.backend_pid != pid
                assert await _scalar(conn, "SELECT 1") == 1
            assert pool.discarded == 1


# --- the pool -------------------------------------------------------------------------


async def test_pool_opens_min_size_and_never_exceeds_max(dsn: str) -> None:
    with trio.fail_after(10):
        async with Pool(dsn, min_size=2, max_size=3) as pool:
            assert pool.stats()["idle"] == 2
            peak = 0
            in_use = 0

            async def user() -> None:
                nonlocal peak, in_use
                async with pool.connection() as conn:
                    in_use += 1
                    peak = max(peak, in_use)
                    await conn.execute("SELECT pg_sleep(0.05)")
                    in_use -= 1

            async with trio.open_nursery() as nursery:
                for _ in range(12):
                    nursery.start_soon(user)
            assert peak == 3
            assert pool.size == 3
        assert pool.closed
        with pytest.raises(psycopg.OperationalError, match="closed"):
            await pool.getconn()


async def test_pool_as_a_context_manager_closes_even_when_the_block_is_cancelled(dsn: str) -> None:
    """``async with Pool(...)`` opens on entry; on exit -- an error or a cancel
    of the block included -- its connections are closed on the server."""
    with trio.fail_after(10):
        with pytest.raises(RuntimeError, match="the block failed"):
            async with Pool(dsn, min_size=2, max_size=2) as pool:
                assert not pool.closed and pool.stats()["idle"] == 2
                async with pool.connection() as conn:
                    first = conn.info.backend_pid
                raise RuntimeError("the block failed")
        assert pool.closed and pool.size == 0
        await backend_gone(dsn, first)
        with trio.move_on_after(0.2) as scope:
            async with Pool(dsn, min_size=1, max_size=1) as pool:
                async with pool.connection() as conn:
                    second = conn.info.backend_pid
                await trio.sleep_forever()
        assert scope.cancelled_caught
        assert pool.closed and pool.size == 0
        await backend_gone(dsn, second)
        # the explicit calls still work, for a pool whose life is not one block
        await pool.open()
        try:
            async with pool.connection() as conn:
                assert await _scalar(conn, "SELECT 1") == 1
        finally:
            await pool.close()
        assert pool.closed


async def test_pool_exhaustion_waits_for_a_returned_connection(dsn: str) -> None:
    with trio.fail_after(10):
        async with Pool(dsn, min_size=0, max_size=1) as pool:
            got: list[int] = []
            held = await pool.getconn()
            held_pid = held.info.backend_pid

            async def waiter() -> None:
                async with pool.connection() as conn:
                    got.append(conn.info.backend_pid)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(waiter)
                await trio.testing.wait_all_tasks_blocked()
                assert got == []  # still waiting: the only connection is out
                await pool.putconn(held)
            assert got == [held_pid]


async def test_pool_exhaustion_honours_cancellation_and_times_out(dsn: str) -> None:
    with trio.fail_after(10):
        async with Pool(dsn, min_size=0, max_size=2, timeout=30) as pool:
            a, b = await pool.getconn(), await pool.getconn()

            start = time.monotonic()
            with trio.move_on_after(0.2) as scope:
                await pool.getconn()
            assert scope.cancelled_caught
            assert time.monotonic() - start < 1

            start = time.monotonic()
            with pytest.raises(PoolTimeout) as info:
                await pool.getconn(timeout=0.3)
            assert 0.25 <= time.monotonic() - start < 2
            assert isinstance(info.value, WerkError) and isinstance(info.value, TimeoutError)
            assert "max_pool_size" in str(info.value)

            # the cancelled and timed-out waiters took nothing: both slots come back
            await pool.putconn(a)
            await pool.putconn(b)
            c, d = await pool.getconn(timeout=1), await pool.getconn(timeout=1)
            assert {c.info.backend_pid, d.info.backend_pid} == {a.info.backend_pid, b.info.backend_pid}
            await pool.putconn(c)
            await pool.putconn(d)
            assert pool.stats() == {"size": 2, "idle": 2, "max_size": 2, "discarded": 0}


async def test_a_connection_closed_by_its_user_is_replaced(dsn: str) -> None:
    with trio.fail_after(10):
        async with Pool(dsn, min_size=1, max_size=1) as pool:
            async with pool.connection() as conn:
                await conn.close()
            assert (pool.size, pool.discarded) == (0, 1)
            async with pool.connection() as conn:
                assert await _scalar(conn, "SELECT 1") == 1
            assert pool.size == 1


async def test_failed_connects_do_not_use_up_the_pool() -> None:
    missing = tempfile.mkdtemp(prefix="werk-nopg-", dir="/tmp")
    pool = Pool(f"host={missing} port=5999 dbname=x user=x", min_size=0, max_size=2, timeout=0.5)
    with trio.fail_after(10):
        await pool.open()
        for _ in range(5):  # more than max_size: a slot leaked by a failure would time out
            with pytest.raises(psycopg.OperationalError) as info:
                await pool.getconn()
            assert not isinstance(info.value, PoolTimeout)
        assert pool.size == 0
        await pool.close()
    os.rmdir(missing)


async def test_pool_configure_runs_once_per_new_connection(dsn: str) -> None:
    seen: list[int] = []

    async def configure(conn: Connection[Any]) -> None:
        await conn.execute("SET application_name = 'configured'")
        seen.append(conn.info.backend_pid)

    with trio.fail_after(10):
        async with Pool(dsn, min_size=1, max_size=2, configure=configure) as pool:
            for _ in range(3):
                async with pool.connection() as conn:
                    assert await _scalar(conn, "SHOW application_name") == "configured"
            assert len(seen) == 1


def test_pool_rejects_bad_sizes() -> None:
    for lo, hi in ((-1, 2), (3, 2), (0, 0)):
        with pytest.raises(ConfigError, match="min_size"):  # a WerkError, as every bad argument
            Pool("host=/tmp", min_size=lo, max_size=hi)


# --- tasks sharing a connection ---------------------------------------------------------


async def test_tasks_share_one_connection_behind_its_lock(dsn: str) -> None:
    with trio.fail_after(10):
        async with await connect(dsn, autocommit=True) as conn:
            results: dict[int, Any] = {}

            async def task(i: int) -> None:
                cur = await conn.execute("SELECT %s::int, pg_sleep(0.02)", (i,))
                results[i] = (await cur.fetchone())[0]  # type: ignore[index]

            start = time.monotonic()
            async with trio.open_nursery() as nursery:
                for i in range(10):
                    nursery.start_soon(task, i)
            assert results == {i: i for i in range(10)}
            assert time.monotonic() - start >= 10 * 0.02  # one at a time
            assert not conn.broken


class _Turns(trio.abc.Instrument):
    """Counts the scheduler turns of one task."""

    def __init__(self, task: trio.lowlevel.Task) -> None:
        self.task = task
        self.turns = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        if task is self.task:
            self.turns += 1


async def test_a_pipeline_yields_to_other_tasks_only_while_it_waits_for_the_server(dsn: str) -> None:
    """psycopg takes the connection's lock around every step of a pipeline
    (its start, each statement, its end); a free lock is taken without a
    scheduler turn, so a pipeline of three statements gives way to the other
    tasks while it waits for the server's answer, not once per step (eight
    turns with a ``trio.Lock``, whose every acquire yields)."""
    with trio.fail_after(10):
        async with await connect(dsn, autocommit=True) as conn:
            turns = _Turns(trio.lowlevel.current_task())
            trio.lowlevel.add_instrument(turns)
            try:
                async with conn.pipeline():
                    curs = [await conn.execute("SELECT %s::int", (i,)) for i in range(3)]
                values = [(await cur.fetchone())[0] for cur in curs]  # type: ignore[index]
            finally:
                trio.lowlevel.remove_instrument(turns)
            assert values == [0, 1, 2]
            # the wait for the answer (and at most one more, should it come in two reads)
            assert turns.turns <= 2, f"{turns.turns} scheduler turns for one pipeline"


async def test_a_cancelled_callers_statement_never_reaches_the_server(dsn: str, table: str) -> None:
    """A statement of a cancelled caller raises ``Cancelled`` without reaching
    the server: the connection checks for a cancel before it sends (its
    ``wait``; its lock, which no longer yields when free, checks too). An
    INSERT in autocommit would otherwise commit while the cancel request was
    on its way."""
    with trio.fail_after(10):
        async with await connect(dsn, autocommit=True) as conn:
            with trio.CancelScope() as scope:
                scope.cancel()
                await conn.execute(f"INSERT INTO {table} VALUES (1, 'sent')")
            assert scope.cancelled_caught
            assert conn.pgconn.transaction_status == IDLE
            assert await _scalar(conn, f"SELECT count(*) FROM {table}") == 0


async def test_notifies_timeout_returns_without_notifications(dsn: str) -> None:
    with trio.fail_after(10):
        async with await connect(dsn, autocommit=True) as conn:
            await conn.execute("LISTEN werk_quiet_channel")
            start = time.monotonic()
            notes = [n async for n in conn.notifies(timeout=0.3)]
            assert notes == []
            assert 0.25 <= time.monotonic() - start < 2
            assert await _scalar(conn, "SELECT 1") == 1


# --- LISTEN -----------------------------------------------------------------------------


async def _notify(dsn: str, channel: str, payload: str) -> None:
    async with await connect(dsn, autocommit=True) as conn:
        await conn.execute("SELECT pg_notify(%s, %s)", (channel, payload))


async def test_listener_survives_a_backend_kill(dsn: str) -> None:
    channel = f"werk_test_{uuid.uuid4().hex[:8]}"
    send, receive = trio.open_memory_channel[Any](16)
    listener = Listener(dsn, [channel, channel + "_b"], send, backoff_initial=0.05)
    with trio.fail_after(15):
        async with trio.open_nursery() as nursery:
            await nursery.start(listener.run)
            first_pid = listener.backend_pid
            assert first_pid is not None

            await _notify(dsn, channel, "one")
            note = await receive.receive()
            assert (note.channel, note.payload) == (channel, "one")

            await terminate(dsn, first_pid)
            assert await receive.receive() is RECONNECTED
            await listener.wait_connected()
            assert listener.reconnects == 1
            assert listener.backend_pid not in (None, first_pid)

            # every channel is listened to again
            await _notify(dsn, channel + "_b", "two")
            note = await receive.receive()
            assert (note.channel, note.payload) == (channel + "_b", "two")
            await _notify(dsn, channel, "three")
            assert (await receive.receive()).payload == "three"

            second_pid = listener.backend_pid
            nursery.cancel_scope.cancel()
        # cancelling run closes its connection
        assert second_pid is not None
        await backend_gone(dsn, second_pid)
