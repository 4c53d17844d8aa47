"""The app and job bodies of the reliability suite.

Worker processes load ``tests.reliability.relapp:app`` (DSN and schema from
``WERK_PROC_DSN`` / ``WERK_PROC_SCHEMA``). Every job body records its run in
the side table ``rel_history(job_id, attempt, pid, started_at, ended_at)``:
a row when it starts and ``ended_at`` when it finishes, each in a
transaction of its own, over a connection of the job's own process -- so the
history survives whatever happens to the worker, and works the same in every
executor (async, thread, process and fork children).
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import psycopg
import trio
from psycopg import sql

from werk_trio import Context, Werk

HISTORY = "rel_history"

app = Werk(
    os.environ.get("WERK_PROC_DSN") or None,
    schema=os.environ.get("WERK_PROC_SCHEMA") or None,
    task_modules=["tests"],
)

_local = threading.local()


def history_table(schema: str | None) -> sql.Composable:
    return sql.Identifier(schema, HISTORY) if schema else sql.Identifier(HISTORY)


def create_history(dsn: str, schema: str) -> None:
    """Create the side table (blocking; before the workers start)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        conn.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (run_id bigserial PRIMARY KEY, job_id uuid NOT NULL,"
                " attempt integer NOT NULL, pid integer NOT NULL,"
                " started_at timestamptz NOT NULL DEFAULT clock_timestamp(), ended_at timestamptz)"
            ).format(history_table(schema))
        )


def _conn() -> psycopg.Connection[Any]:
    """This process's (and thread's) own connection; a fork child opens a new one."""
    conn = getattr(_local, "conn", None)
    if conn is None or getattr(_local, "pid", None) != os.getpid() or conn.closed:
        conn = psycopg.connect(os.environ["WERK_PROC_DSN"], autocommit=True)
        _local.conn, _local.pid = conn, os.getpid()
    return conn


def _table() -> sql.Composable:
    return history_table(os.environ.get("WERK_PROC_SCHEMA") or None)


def _start(ctx: Context) -> int:
    row = _conn().execute(
        sql.SQL("INSERT INTO {} (job_id, attempt, pid) VALUES (%s, %s, %s) RETURNING run_id").format(_table()),
        (ctx.job.id, ctx.job.attempts, os.getpid()),
    ).fetchone()
    assert row is not None
    return int(row[0])


def _end(run_id: int) -> None:
    _conn().execute(
        sql.SQL("UPDATE {} SET ended_at = clock_timestamp() WHERE run_id = %s").format(_table()), (run_id,)
    )


def work(ctx: Context, ms: float = 0.0) -> int:
    """A plain job body: record the start, sleep ``ms`` milliseconds, record the end."""
    run_id = _start(ctx)
    if ms:
        time.sleep(ms / 1000)
    _end(run_id)
    return os.getpid()


async def awork(ctx: Context, ms: float = 0.0) -> int:
    """The Trio job body (for AsyncWorker): same records, Trio sleep."""
    run_id = await trio.to_thread.run_sync(_start, ctx)
    if ms:
        await trio.sleep(ms / 1000)
    await trio.to_thread.run_sync(_end, run_id)
    return os.getpid()


def kill_my_worker(ctx: Context) -> None:
    """Record the start, then end the process that runs it (a poison pill)."""
    _start(ctx)
    os._exit(13)
