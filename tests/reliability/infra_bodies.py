"""Job bodies for the infrastructure-fault scenarios (``test_infra_faults.py``).

They run in worker processes that load ``tests.reliability.relapp:app`` (its
``task_modules=["tests"]`` allows this module) and record their runs in the
same history side table as :mod:`tests.reliability.relapp`, so the checker
reads them like any other job. The difference: these survive a database
that goes away. A history write that meets a lost connection (a restarted
server) opens a new one and tries again, for up to a minute, so a job that
was running across a restart still records its start and its end -- the
history must outlive the fault it is there to judge.

Also here: bodies that fail their first attempts, return big or
unserializable results, and report the Python clock of the process that runs
them (for the clock-skew scenario).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg
import trio
from psycopg import sql

from werk_trio import Context

from .relapp import history_table

T = TypeVar("T")

_local = threading.local()

#: Seconds a history write keeps trying while the database is away.
HISTORY_RETRY_FOR = 60.0


def _conn() -> psycopg.Connection[Any]:
    conn = getattr(_local, "conn", None)
    if conn is None or getattr(_local, "pid", None) != os.getpid() or conn.closed:
        # no server-side prepared statements: the same bodies run through
        # PgBouncer in transaction mode (test_pgbouncer.py)
        conn = psycopg.connect(
            os.environ["WERK_PROC_DSN"],
            autocommit=True,
            connect_timeout=2,
            prepare_threshold=None,
            application_name="werk_rel_side",
        )
        _local.conn, _local.pid = conn, os.getpid()
    return conn


def _retrying(write: Callable[[psycopg.Connection[Any]], T]) -> T:
    deadline = time.monotonic() + HISTORY_RETRY_FOR
    while True:
        try:
            return write(_conn())
        except psycopg.OperationalError:
            conn = getattr(_local, "conn", None)
            _local.conn = None
            if conn is not None:
                try:
                    conn.close()
                except psycopg.Error:
                    pass
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _table() -> sql.Composable:
    return history_table(os.environ.get("WERK_PROC_SCHEMA") or None)


def _start(ctx: Context) -> int:
    def write(conn: psycopg.Connection[Any]) -> int:
        row = conn.execute(
            sql.SQL("INSERT INTO {} (job_id, attempt, pid) VALUES (%s, %s, %s) RETURNING run_id").format(
                _table()
            ),
            (ctx.job.id, ctx.job.attempts, os.getpid()),
        ).fetchone()
        assert row is not None
        return int(row[0])

    return _retrying(write)


def _end(run_id: int) -> None:
    def write(conn: psycopg.Connection[Any]) -> None:
        conn.execute(
            sql.SQL("UPDATE {} SET ended_at = clock_timestamp() WHERE run_id = %s").format(_table()),
            (run_id,),
        )

    _retrying(write)


def steady(ctx: Context, ms: float = 0.0) -> int:
    """Record the start, sleep ``ms`` milliseconds, record the end (in any executor)."""
    run_id = _start(ctx)
    if ms:
        time.sleep(ms / 1000)
    _end(run_id)
    return os.getpid()


async def asteady(ctx: Context, ms: float = 0.0) -> int:
    """The Trio version of :func:`steady` (AsyncWorker only): cancellable sleep."""
    run_id = await trio.to_thread.run_sync(_start, ctx)
    if ms:
        await trio.sleep(ms / 1000)
    await trio.to_thread.run_sync(_end, run_id)
    return os.getpid()


def fail_first(ctx: Context, failures: int = 1) -> int:
    """Record the run; raise on the first ``failures`` attempts, then succeed."""
    run_id = _start(ctx)
    _end(run_id)
    if ctx.job.attempts <= failures:
        raise RuntimeError(f"planned failure of attempt {ctx.job.attempts}")
    return ctx.job.attempts


def clock(ctx: Context, ms: float = 0.0) -> dict[str, Any]:
    """Record the run, sleep, and report this process's Python clock and pid."""
    run_id = _start(ctx)
    if ms:
        time.sleep(ms / 1000)
    _end(run_id)
    return {"time": time.time(), "pid": os.getpid()}


def big_result(mb: int = 10) -> str:
    """A result of ``mb`` MiB (a JSON string of that many characters)."""
    return "x" * (mb * 1024 * 1024)


async def abig_result(mb: int = 10) -> str:
    await trio.sleep(0)
    return "x" * (mb * 1024 * 1024)


def unserializable() -> Any:
    """A result the JSON serializer cannot encode."""
    return {"handle": object()}


async def aunserializable() -> Any:
    await trio.sleep(0)
    return {"handle": object()}


# --- bodies that record nothing (in-process tests) ---------------------------


def echo(value: Any) -> Any:
    return value


async def nap(seconds: float) -> float:
    await trio.sleep(seconds)
    return seconds


def fails_before(ctx: Context, attempt: int) -> int:
    """Raise until the job's attempt number reaches ``attempt``."""
    if ctx.job.attempts < attempt:
        raise RuntimeError(f"planned failure of attempt {ctx.job.attempts}")
    return ctx.job.attempts


def linger_at_exit(seconds: float) -> int:
    """Make this (pool child) process slow to exit: an exit hook that sleeps."""
    import atexit

    atexit.register(time.sleep, seconds)
    return os.getpid()
