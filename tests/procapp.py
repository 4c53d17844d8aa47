"""The app that worker processes started by the integration tests load.

``python -m werk_trio.cli worker tests.procapp:app`` imports this module in a
child process. The database comes from the environment: ``WERK_PROC_DSN``
and ``WERK_PROC_SCHEMA`` (set by the test that starts the child).

Every handler records its run in a side table, ``<schema>.proc_runs``
(``job_id, attempt, pid, started_at, ended_at``), in a transaction of its own,
so a test can prove what ran where and how often without trusting the jobs
table it is testing. Each write is one autocommit statement on the worker's
pool: committed when it returns, whatever happens to the worker next.
Handlers that may be killed insert the row when they start (``ended_at``
NULL) and fill ``ended_at`` when they finish.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import psycopg
import trio
from psycopg import sql

from werk_trio import Context, Werk

__all__ = [
    "RUNS_TABLE",
    "app",
    "create_runs_table",
    "die",
    "record",
    "record_sync",
    "runs_table",
    "sleep_job",
]

RUNS_TABLE = "proc_runs"

app = Werk(
    os.environ.get("WERK_PROC_DSN") or None,
    schema=os.environ.get("WERK_PROC_SCHEMA") or None,
    task_modules=["tests"],
)


def runs_table(schema: str | None) -> sql.Composable:
    """The side table's qualified name."""
    if schema:
        return sql.Identifier(schema, RUNS_TABLE)
    return sql.Identifier(RUNS_TABLE)


def create_runs_table(dsn: str, schema: str) -> None:
    """Create the side table (blocking; the test calls it before starting workers)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        conn.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} ("
                " run_id bigserial PRIMARY KEY, job_id uuid NOT NULL, attempt integer NOT NULL,"
                " pid integer NOT NULL, started_at timestamptz NOT NULL DEFAULT clock_timestamp(),"
                " ended_at timestamptz)"
            ).format(runs_table(schema))
        )


def _table(ctx: Context) -> sql.Composable:
    assert ctx.app is not None
    return runs_table(ctx.app.config.schema)


async def _start(ctx: Context) -> int:
    """Insert this run's row (committed at once); return its run_id."""
    assert ctx.app is not None
    async with ctx.app.connection() as conn:  # autocommit: the INSERT is its own transaction
        cur = await conn.execute(
            sql.SQL(
                "INSERT INTO {} (job_id, attempt, pid)"
                " VALUES (%(job)s, %(attempt)s, %(pid)s) RETURNING run_id"
            ).format(_table(ctx)),
            {"job": ctx.job.id, "attempt": ctx.job.attempts, "pid": os.getpid()},
        )
        row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def _end(ctx: Context, run_id: int) -> None:
    assert ctx.app is not None
    async with ctx.app.connection() as conn:
        await conn.execute(
            sql.SQL("UPDATE {} SET ended_at = clock_timestamp() WHERE run_id = %(run)s").format(_table(ctx)),
            {"run": run_id},
        )


async def record(ctx: Context) -> int:
    """A no-op job that records its run in one statement (one transaction)."""
    assert ctx.app is not None
    async with ctx.app.connection() as conn:
        await conn.execute(
            sql.SQL(
                "INSERT INTO {} (job_id, attempt, pid, ended_at)"
                " VALUES (%(job)s, %(attempt)s, %(pid)s, clock_timestamp())"
            ).format(_table(ctx)),
            {"job": ctx.job.id, "attempt": ctx.job.attempts, "pid": os.getpid()},
        )
    return os.getpid()


def record_sync(ctx: Context) -> dict[str, Any]:
    """A plain-function job (for thread workers): records its run over a
    connection of its own, in one transaction."""
    with psycopg.connect(os.environ["WERK_PROC_DSN"], autocommit=True) as conn:
        conn.execute(
            sql.SQL(
                "INSERT INTO {} (job_id, attempt, pid, ended_at)"
                " VALUES (%(job)s, %(attempt)s, %(pid)s, clock_timestamp())"
            ).format(_table(ctx)),
            {"job": ctx.job.id, "attempt": ctx.job.attempts, "pid": os.getpid()},
        )
    return {"pid": os.getpid(), "thread": threading.current_thread().name}


async def sleep_job(ctx: Context, seconds: float, first_attempt_only: bool = False) -> dict[str, Any]:
    """Record the start, sleep ``seconds`` (on the first attempt only, if asked),
    record the end; return where it ran."""
    run_id = await _start(ctx)
    if not first_attempt_only or ctx.job.attempts == 1:
        await trio.sleep(seconds)
    await _end(ctx, run_id)
    return {"pid": os.getpid(), "attempt": ctx.job.attempts}


async def die(ctx: Context) -> None:
    """Record the start, then kill the worker process that runs it (every time)."""
    await _start(ctx)
    os._exit(17)
