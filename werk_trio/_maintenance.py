"""Maintenance passes, below both the app (``Werk.sweep``) and the sweeper
actor: :func:`sweep_once` (what each sweep does: see actors/sweeper.py) and
the statistics pass it runs after its commit."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import psycopg

from ._transitions import jobs_ended

if TYPE_CHECKING:
    from .app import Werk

logger = logging.getLogger("werk_trio.worker")

__all__ = ["delete_expired", "sweep_once"]

#: Rows past their result/failure TTL deleted by one statement (one
#: transaction): ~15 ms of the server's time each, where one statement for a
#: busy minute's 100,000 rows held its locks and snapshot for seconds.
EXPIRED_BATCH = 1000


async def sweep_once(
    app: Werk, *, healthy_for: float | None = None, rescued: list[Any] | None = None
) -> dict[str, int]:
    """One maintenance pass; returns what it did (all zeros if another sweep holds the lock).

    ``healthy_for``: seconds the calling worker has reached the database
    without an error; a worker counts as dead only if its three silent
    heartbeat intervals fit in that stretch (None: no such limit).
    ``rescued``: a list that gets the ids of the jobs rescued.
    """
    sql = app.sql
    out = {"dead_workers": 0, "rescued": 0, "expired": 0, "deleted": 0, "resolved": 0,
           "stopped_workers": 0, "sampled_queues": 0}
    async with app.pool.connection() as conn, conn.transaction():
        cur = await conn.execute(sql.SWEEP_LOCK, {"key": sql.lock_key})
        row = await cur.fetchone()
        if not row or not row[0]:
            return out
        cur = await conn.execute(sql.DEAD_WORKERS, {"healthy_for": healthy_for})
        dead = await cur.fetchall()
        out["dead_workers"] = len(dead)
        for wid, name in dead:
            logger.warning("worker %s (%s) is dead: no heartbeat for 3 intervals", name, wid)
        cur = await conn.execute(
            sql.RESCUE_JOBS,
            {"max_active_secs": float(app.config.max_active_secs)},
        )
        lost = await cur.fetchall()
        out["rescued"] = len(lost)
        if lost:
            logger.warning("rescued %d job(s) from dead workers or stuck runs", len(lost))
            if rescued is not None:
                rescued.extend(r[0] for r in lost)
        cur = await conn.execute(sql.EXPIRE_JOBS)
        expired = [r[0] for r in await cur.fetchall()]
        out["expired"] = len(expired)
        cur = await conn.execute(sql.STALE_WAITING)
        stale = [r[0] for r in await cur.fetchall()]
        finished = [r[0] for r in lost if r[1] in ("failed", "aborted")] + expired
        if finished:
            await jobs_ended(conn, sql, finished)
        if stale:
            cur = await conn.execute(sql.RESOLVE_WAITING, {"ids": stale})
            out["resolved"] = len(await cur.fetchall())
        cur = await conn.execute(sql.DELETE_STOPPED_WORKERS)
        out["stopped_workers"] = len(await cur.fetchall())
    out["deleted"] = await delete_expired(app)
    try:
        await _statistics_pass(app, out)
    except psycopg.OperationalError:
        raise  # the connection: the caller's retry and db_trouble apply
    except psycopg.Error:
        # anything else the statistics meet (a lock timeout, a full disk...)
        # costs the dashboards a sample, never the sweep or the worker
        logger.exception("statistics pass failed; next try at the next sweep")
    return out


async def delete_expired(app: Werk, *, batch: int = EXPIRED_BATCH) -> int:
    """Delete the finished rows past their result/failure TTL, ``batch`` rows a
    statement, each statement a transaction of its own, until one finds fewer
    (DELETE_EXPIRED_RESULTS: rows another transaction holds wait for the next
    sweep). Returns how many went. A cancel between two statements keeps the
    ones that committed."""
    deleted = 0
    async with app.pool.connection() as conn:
        while True:
            cur = await conn.execute(app.sql.DELETE_EXPIRED_RESULTS, {"limit": batch})
            n = int((await cur.fetchone() or (0,))[0])
            deleted += n
            if n < batch:
                return deleted


async def _statistics_pass(app: Werk, out: dict[str, int]) -> None:
    """Once per ``stats_sample_interval`` (whichever worker sweeps): a
    queue-depth sample, the throughput roll-up of the minutes since the last
    one, the recount of the finished rows, and the pruning of samples and
    roll-ups past ``stats_retention``. Its own transaction under its own
    try-lock (one writer at a time), after the sweep's commit: the recount
    reads every finished row, and the sweep's locks need not wait for it."""
    sql = app.sql
    cfg = app.config
    async with app.pool.connection() as conn, conn.transaction():
        cur = await conn.execute(sql.SWEEP_LOCK, {"key": sql.lock_key + ":stats"})
        locked = await cur.fetchone()
        if not locked or not locked[0]:
            return
        cur = await conn.execute(sql.STATS_DUE, {"interval": float(cfg.stats_sample_interval)})
        due = await cur.fetchone()
        if not due or not due[0]:
            return
        retention = {"retention": float(cfg.stats_retention)}
        cur = await conn.execute(sql.SAMPLE_QUEUES, {"limit": cfg.estimate_limit})
        out["sampled_queues"] = len(await cur.fetchall())
        await conn.execute(sql.ROLLUP_THROUGHPUT, retention)
        await conn.execute(sql.ROLLUP_THROUGHPUT_HOURS)
        await conn.execute(sql.RECOUNT_FINISHED)
        await conn.execute(sql.PRUNE_STATS, retention)
