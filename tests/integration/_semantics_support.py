"""Helpers for the job-semantics tests (test_semantics*.py).

Workers are real processes (``python -m werk_trio.cli worker tests.procapp:app``)
pointed at the test's schema; what ran is read from the side tables the
handlers and callbacks write in transactions of their own (``tests/procapp.py``).
Every wait polls a condition; the test's ``trio.fail_after`` bounds it.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import trio
from psycopg import sql

from tests import procapp
from tests._support import side_rows, wait_registered
from tests.proctools import Child, child_env, spawn, worker_argv
from werk_trio import Job, JobNotFound, JobStatus, Werk
from werk_trio.testing import until

#: Short intervals for worker processes (each test adds its own).
FAST = ("--heartbeat-interval", "0.5", "--poll-interval", "0.1", "--abort-interval", "0.1")


async def make_tables(dsn: str, schema: str) -> None:
    """The side tables: ``proc_runs`` (handlers) and ``proc_events`` (callbacks)."""
    await trio.to_thread.run_sync(procapp.create_runs_table, dsn, schema)
    await trio.to_thread.run_sync(procapp.create_events_table, dsn, schema)


async def query(app: Werk, text: str, params: dict[str, Any] | None = None, **tables: str) -> list[Any]:
    """Run ``text`` with ``{runs}``, ``{events}``, ``{jobs}``, ``{executions}`` filled in."""
    schema = app.config.schema
    idents = {
        "runs": procapp.runs_table(schema),
        "events": procapp.events_table(schema),
        "jobs": app.sql.idents["jobs"],
        "executions": app.sql.idents["executions"],
        "job_deps": app.sql.idents["job_deps"],
    }
    statement = sql.SQL(text).format(**idents)  # type: ignore[arg-type]
    async with app.connection() as conn:
        cur = await conn.execute(statement, params)
        return await cur.fetchall()


async def ran_ids(app: Werk) -> set[uuid.UUID]:
    return {r[0] for r in await query(app, "SELECT DISTINCT job_id FROM {runs}")}


async def events(app: Werk, job_id: Any = None) -> list[dict[str, Any]]:
    """Callback side-table rows (all, or one job's), in insertion order."""
    keys = ("job_id", "kind", "detail", "pid", "at")
    table = procapp.events_table(app.config.schema)
    return await side_rows(app, table, keys, order_by="event_id", job_id=job_id)


async def status_of(app: Werk, job_id: Any) -> JobStatus | None:
    """The job's status, or None once its row is gone."""
    try:
        return (await app.get_job(job_id)).status
    except JobNotFound:
        return None


async def wait_terminal(app: Werk, job_ids: Sequence[Any]) -> dict[uuid.UUID, Job]:
    """Until every job is complete, failed or aborted; return them by id."""

    async def check() -> dict[uuid.UUID, Job] | None:
        jobs = await app.get_jobs(list(job_ids))
        if len(jobs) == len(set(job_ids)) and all(j.status.terminal for j in jobs.values()):
            return jobs
        return None

    jobs: dict[uuid.UUID, Job] = await until(check)
    return jobs


async def listeners(app: Werk, channel: str) -> int:
    """How many backends are listening on ``channel`` (their last query was its LISTEN)."""
    rows = await query(
        app,
        "SELECT count(*) FROM pg_stat_activity WHERE query = %(q)s",
        {"q": sql.SQL("LISTEN {}").format(sql.Identifier(channel)).as_string(None)},
    )
    return int(rows[0][0])


async def wait_listening(app: Werk, children: Sequence[Child]) -> None:
    """Until every child's worker is registered and LISTENs on the jobs channel."""
    await wait_registered(app, children)

    async def check() -> bool:
        return await listeners(app, app.sql.jobs_channel) >= len(children)

    await until(check)


@asynccontextmanager
async def workers(
    app: Werk,
    dsn: str,
    schema: str,
    tmp_path: Path,
    *args: str,
    count: int = 2,
    name: str = "w",
    per_worker: Sequence[Sequence[str]] | None = None,
) -> AsyncIterator[list[Child]]:
    """``count`` worker processes with ``args`` (plus ``per_worker[i]`` for the
    i-th), started and listening; all killed on exit."""
    env = child_env(dsn, schema)
    async with AsyncExitStack() as stack:
        children = []
        for i in range(count):
            extra = list(per_worker[i]) if per_worker else []
            argv = worker_argv(*FAST, *args, *extra)
            children.append(
                await stack.enter_async_context(spawn(argv, env=env, log_path=tmp_path / f"{name}{i}.log"))
            )
        await wait_listening(app, children)
        yield children


def overlaps(a: tuple[Any, Any], b: tuple[Any, Any]) -> bool:
    """Whether two closed intervals [start, end] share more than an endpoint."""
    return a[0] < b[1] and b[0] < a[1]
