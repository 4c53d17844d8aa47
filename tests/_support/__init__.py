"""What only this repository's tests need (a user's suite has werk_trio.testing).

Waiting, test workers and "was it enqueued" come from :mod:`werk_trio.testing`,
the same helpers users get; this package holds the rest: raw columns, the
registered-worker set, real worker processes' registration, the side tables
the handlers of ``tests/procapp.py`` and ``tests/reliability/relapp.py`` write. A wait on an
in-process worker's step awaits that actor's pulse (``claims_reach``); the
others poll a condition. The test's ``trio.fail_after`` bounds each.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from psycopg import sql

from tests import procapp
from tests.proctools import Child, describe
from werk_trio import JobNotFound, Werk, Worker
from werk_trio.testing import until

__all__ = [
    "RUN_KEYS", "claims_reach", "column", "gone", "registered_workers", "runs", "side_rows",
    "wait_registered", "worker_ids",
]


async def claims_reach(worker: Worker, n: int) -> None:
    """Until ``worker``'s poller has made ``n`` claims, awaiting its claim
    pulse (the count and the pulse change in one step: no claim is missed)."""
    poller = worker.poller
    while poller.claims < n:
        await poller.on_claim.wait()


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


#: The columns of a handler's side-table row (``tests/procapp.py``'s runs table).
RUN_KEYS = ("job_id", "attempt", "pid", "started_at", "ended_at")


async def side_rows(
    app: Werk, table: sql.Composable, keys: Sequence[str], *, order_by: str, job_id: Any = None
) -> list[dict[str, Any]]:
    """The rows of a side table (all, or one job's) as dicts of the columns
    ``keys``, in ``order_by`` order (its serial: insertion order)."""
    where = sql.SQL("WHERE job_id = %(job)s") if job_id is not None else sql.SQL("")
    query = sql.SQL("SELECT {} FROM {} {} ORDER BY {}").format(
        sql.SQL(", ").join(map(sql.Identifier, keys)), table, where, sql.Identifier(order_by)
    )
    async with app.connection() as conn:
        cur = await conn.execute(query, {"job": job_id})
        rows = await cur.fetchall()
    return [dict(zip(keys, row, strict=True)) for row in rows]


async def runs(app: Werk, job_id: Any = None) -> list[dict[str, Any]]:
    """The runs side table's rows (all, or one job's), in insertion order."""
    table = procapp.runs_table(app.config.schema)
    return await side_rows(app, table, RUN_KEYS, order_by="run_id", job_id=job_id)
