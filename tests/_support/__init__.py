"""What only this repository's tests need (a user's suite has werk_trio.testing).

Waiting, test workers and "was it enqueued" come from :mod:`werk_trio.testing`,
the same helpers users get; this package holds the rest: raw columns, the
registered-worker set, real worker processes' registration. Every wait polls a
condition; the test's ``trio.fail_after`` bounds it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from psycopg import sql

from tests.proctools import Child, describe
from werk_trio import JobNotFound, Werk
from werk_trio.testing import until

__all__ = ["column", "gone", "registered_workers", "wait_registered", "worker_ids"]


async def gone(app: Werk, job_id: Any) -> bool:
    """Wait until the job row no longer exists."""

    async def check() -> bool:
        try:
            await app.get_job(job_id)
        except JobNotFound:
            return True
        return False

    return bool(await until(check))


async def column(app: Werk, job_id: Any, name: str) -> Any:
    """One raw column of the job row, as stored (no decoding)."""
    query = sql.SQL("SELECT {} FROM {} WHERE id = %s").format(sql.Identifier(name), app.sql.idents["jobs"])
    async with app.connection() as conn:
        cur = await conn.execute(query, (job_id,))
        row = await cur.fetchone()
    assert row is not None, f"no job {job_id}"
    return row[0]


async def registered_workers(app: Werk) -> dict[int, Any]:
    """pid -> worker id of the registered workers (stopped ones stay listed
    for an hour: not registered)."""
    return {w["pid"]: w["id"] for w in await app.list_workers() if w["status"] != "stopped"}


async def worker_ids(app: Werk) -> set[Any]:
    """The ids of the registered workers (as :func:`registered_workers`)."""
    return {w["id"] for w in await app.list_workers() if w["status"] != "stopped"}


async def wait_registered(app: Werk, children: Sequence[Child], *, interval: float = 0.02) -> None:
    """Until every child process's worker is registered (run() started: row
    written, LISTEN about to be issued); AssertionError with the children's
    output if one exits first."""

    async def check() -> bool:
        for child in children:
            if child.returncode is not None:
                raise AssertionError(f"worker exited early ({child.returncode}):\n{describe([child])}")
        pids = await registered_workers(app)
        return all(child.pid in pids for child in children)

    await until(check, interval=interval)
