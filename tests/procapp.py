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
import time
from typing import Any

import psycopg
import trio
from psycopg import sql

from werk_trio import Context, Werk

__all__ = [
    "EVENTS_TABLE",
    "RUNS_TABLE",
    "app",
    "cb_raise",
    "cb_record",
    "cb_record_sync",
    "cb_slow",
    "create_events_table",
    "create_runs_table",
    "die",
    "enqueue_keys",
    "events_table",
    "fail",
    "fail_first",
    "maybe_fail",
    "noop_job",
    "record",
    "record_sync",
    "runs_table",
    "sleep_job",
    "sleep_until",
]

RUNS_TABLE = "proc_runs"
EVENTS_TABLE = "proc_events"

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


# --- added for the job-semantics tests (test_semantics*.py) ------------------------
#
# ``proc_events(job_id, kind, detail, pid, at)`` records what callbacks saw:
# one row per callback run (``kind`` is the callback's name, ``detail`` what
# its Context said), in a transaction of its own like ``proc_runs``.


def events_table(schema: str | None) -> sql.Composable:
    """The callbacks' side table's qualified name."""
    if schema:
        return sql.Identifier(schema, EVENTS_TABLE)
    return sql.Identifier(EVENTS_TABLE)


def create_events_table(dsn: str, schema: str) -> None:
    """Create ``proc_events`` (blocking; call before starting workers)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        conn.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} ("
                " event_id bigserial PRIMARY KEY, job_id uuid NOT NULL, kind text NOT NULL,"
                " detail text, pid integer NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp())"
            ).format(events_table(schema))
        )


async def _event(ctx: Context, kind: str, detail: str | None) -> None:
    assert ctx.app is not None
    async with ctx.app.connection() as conn:
        await conn.execute(
            sql.SQL(
                "INSERT INTO {} (job_id, kind, detail, pid) VALUES (%(job)s, %(kind)s, %(detail)s, %(pid)s)"
            ).format(events_table(ctx.app.config.schema)),
            {"job": ctx.job.id, "kind": kind, "detail": detail, "pid": os.getpid()},
        )


def _describe(ctx: Context) -> str:
    exc = ctx.exception
    return (
        f"status={ctx.job.status.value} result={ctx.job.result!r} worker={ctx.worker_name} "
        f"app={ctx.app is not None} exception={'' if exc is None else str(exc)}"
    )


async def sleep_until(ctx: Context, at: float) -> dict[str, Any]:
    """Record the run (its start; ``ended_at`` stays NULL: the job's own
    ``completed_at`` says when it ended), sleep until the wall-clock time ``at``
    (``time.time()`` on this host) and return at once, with no query after the
    sleep: jobs given the same ``at`` end in the same instant on every worker."""
    await _start(ctx)
    await trio.sleep(max(0.0, at - time.time()))
    return {"pid": os.getpid(), "woke": time.time()}


async def fail(ctx: Context, message: str = "boom") -> None:
    """Record the run, then raise ValueError(message)."""
    await record(ctx)
    raise ValueError(message)


async def maybe_fail(ctx: Context, x: int) -> int:
    """Record the run; ``x < 0`` raises ValueError, else return ``2 * x``."""
    await record(ctx)
    if x < 0:
        raise ValueError(f"negative: {x}")
    return 2 * x


async def enqueue_keys(ctx: Context, keys: list[str], at: float, batch: int = 1) -> dict[str, Any]:
    """A producer inside a worker: at the wall-clock time ``at``, enqueue one
    ``record`` job per key (``batch`` keys per ``enqueue_many`` call, or one
    ``enqueue`` each when ``batch`` is 1) into the queue ``keyed``; return the
    keys this producer won and the ids it got."""
    from werk_trio import EnqueueParams

    assert ctx.app is not None
    await record(ctx)
    await trio.sleep(max(0.0, at - time.time()))
    won: dict[str, str] = {}
    for i in range(0, len(keys), batch):
        chunk = keys[i : i + batch]
        if batch == 1:
            jobs = [await ctx.app.enqueue(record, _key=chunk[0], _queue="keyed")]
        else:
            jobs = await ctx.app.enqueue_many(EnqueueParams(record, key=k, queue="keyed") for k in chunk)
        for key, job in zip(chunk, jobs, strict=True):
            if job is not None:
                won[key] = str(job.id)
    return {"pid": os.getpid(), "won": won}


async def cb_record(ctx: Context) -> None:
    """A callback: record that it ran and what its Context held."""
    await _event(ctx, "cb_record", _describe(ctx))


def cb_record_sync(ctx: Context) -> None:
    """A plain-function callback (run in a thread): records over its own connection."""
    with psycopg.connect(os.environ["WERK_PROC_DSN"], autocommit=True) as conn:
        conn.execute(
            sql.SQL(
                "INSERT INTO {} (job_id, kind, detail, pid) VALUES (%(job)s, %(kind)s, %(detail)s, %(pid)s)"
            ).format(events_table(os.environ.get("WERK_PROC_SCHEMA") or None)),
            {"job": ctx.job.id, "kind": "cb_record_sync", "detail": _describe(ctx), "pid": os.getpid()},
        )


async def cb_slow(ctx: Context) -> None:
    """A callback that records its start and then hangs (it must be cut off)."""
    await _event(ctx, "cb_slow_start", None)
    await trio.sleep(3600)
    await _event(ctx, "cb_slow_end", None)


async def cb_raise(ctx: Context) -> None:
    """A callback that records its run and raises."""
    await _event(ctx, "cb_raise", None)
    raise RuntimeError("callback exploded")


async def fail_first(ctx: Context) -> int:
    """Record the run; the first attempt raises ValueError, later ones return it."""
    await record(ctx)
    if ctx.job.attempts == 1:
        raise ValueError("first attempt fails")
    return ctx.job.attempts


async def noop_job() -> None:
    """Does nothing: the jobs table's own times say when it ran."""
