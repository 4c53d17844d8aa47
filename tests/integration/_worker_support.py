"""Helpers for the in-process worker tests (test_worker*.py).

Tests wait on conditions -- a predicate polled every 20 ms -- inside their own
``trio.fail_after``; nothing here sleeps to make an assertion come true.
"""

import inspect
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import trio
from psycopg import sql

from werk_trio import AsyncWorker, Job, JobNotFound, Werk, Worker


async def until(predicate: Callable[[], Any], *, interval: float = 0.02) -> Any:
    """Poll ``predicate`` (sync or async) until it returns something truthy; return that."""
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        await trio.sleep(interval)


async def job_in(app: Werk, job_id: Any, *statuses: str) -> Job:
    """Wait until the job's status is one of ``statuses``; return the row."""

    async def check() -> Job | None:
        job = await app.get_job(job_id)
        return job if job.status.value in statuses else None

    job: Job = await until(check)
    return job


async def gone(app: Werk, job_id: Any) -> bool:
    """Wait until the job row no longer exists."""

    async def check() -> bool:
        try:
            await app.get_job(job_id)
        except JobNotFound:
            return True
        return False

    return bool(await until(check))


def make_worker(app: Werk, cls: type[Worker] = AsyncWorker, **kwargs: Any) -> Worker:
    """A worker with short intervals for tests (any can be overridden)."""
    kwargs.setdefault("poll_interval", 0.05)
    kwargs.setdefault("abort_interval", 0.05)
    kwargs.setdefault("handle_signals", False)
    return cls(app, **kwargs)


@asynccontextmanager
async def running(worker: Worker) -> AsyncIterator[trio.Nursery]:
    """Run ``worker`` (started: row registered, LISTEN issued) for the block;
    stop it at once on exit."""
    async with trio.open_nursery() as nursery:
        await nursery.start(worker.run)
        try:
            yield nursery
        finally:
            worker.stop(now=True)


async def column(app: Werk, job_id: Any, name: str) -> Any:
    """One raw column of the job row, as stored (no decoding)."""
    query = sql.SQL("SELECT {} FROM {} WHERE id = %s").format(sql.Identifier(name), app.sql.idents["jobs"])
    async with app.connection() as conn:
        cur = await conn.execute(query, (job_id,))
        row = await cur.fetchone()
    assert row is not None, f"no job {job_id}"
    return row[0]


async def worker_ids(app: Werk) -> set[Any]:
    """The registered workers (stopped ones stay listed for an hour: not registered)."""
    return {w["id"] for w in await app.list_workers() if w["status"] != "stopped"}
