"""The completion write finds its jobs by primary key again soon after the
jobs table outgrew the plan its connection made (issue 18: the first minute
of a soak).

A worker's connections prepare COMPLETE_BATCH after a few runs and then run
the plan Postgres made for it, kept until the table's statistics change. A
worker that starts on an empty table (a fresh install, a truncate) used to
keep a plan that read the whole table for every batch -- the cheaper path
while the table held a few rows -- and went on reading it in full as the
table grew, until autovacuum's ANALYZE replanned it. Now a connection's plans
are made afresh once they are ``PLAN_MAX_AGE`` old. Here the table grows
behind a warmed worker's back (rows in a queue the worker does not serve),
autovacuum is off on it so that nothing else replans, and the rows the
table's scans read while the worker completes more jobs must be about those
jobs', not the table's."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from werk_trio import EnqueueParams, Werk
from werk_trio.actors import completer
from werk_trio.testing import make_worker, running, until, wait_for_status

BIG = 60_000  # rows that the worker's queue does not hold


async def ok(n: int) -> int:
    return n


async def rows_read(app: Werk) -> tuple[int, int]:
    """(rows the jobs table's scans read, rows updated in it), as far as the
    backends have reported them: sequential scans' rows plus the rows index
    scans fetched (a full index scan fetches every row too)."""
    async with app.connection() as conn:
        cur = await conn.execute(
            "SELECT COALESCE(seq_tup_read, 0) + COALESCE(idx_tup_fetch, 0), n_tup_upd"
            " FROM pg_stat_user_tables WHERE relid = %s::regclass",
            [app.sql.render("{jobs}")],
        )
        row = await cur.fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


async def test_a_warm_worker_completes_by_primary_key_on_a_table_grown_since(
    app: Werk, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(completer, "PLAN_MAX_AGE", 0.5)  # the default 10 s, shorter for the test
    async with app.connection() as conn:
        await conn.execute(app.sql.render("ALTER TABLE {jobs} SET (autovacuum_enabled = false)"))
    with trio.fail_after(120):
        worker = make_worker(app, queues=["hot"], concurrency=1)
        async with running(worker):

            async def one_by_one(count: int) -> None:
                for n in range(count):
                    job = await app.enqueue(ok, n, _queue="hot")
                    assert job is not None
                    await wait_for_status(app, job.id, "complete", interval=0.005)

            # well past psycopg's 5 runs to prepare and Postgres's 5 custom
            # plans before the generic one, on every connection of the pool
            await one_by_one(80)
            await app.enqueue_many([EnqueueParams(ok, (n,), queue="cold") for n in range(BIG)])
            # the plans made before the growth are PLAN_MAX_AGE old: the next
            # write on each connection makes its plans afresh
            await trio.sleep(completer.PLAN_MAX_AGE)
            read_before, updated_before = await rows_read(app)
            await one_by_one(20)

            async def reported() -> tuple[int, int] | None:
                read, updated = await rows_read(app)
                # 20 claims and 20 completions: every backend's counts are in
                return (read, updated) if updated >= updated_before + 40 else None

            read, _ = await until(reported, interval=0.05)
    per_job: Any = (read - read_before) / 20
    # by primary key: ~150 rows a job (the write's, the wait's polls, and the
    # claim's short scans that stop at the first row they need); a plan that
    # reads the whole table reads the 60,000 cold rows at every write: 3,000+
    assert per_job < 600, f"{per_job:.0f} rows of the jobs table read per completed job"


async def test_the_completion_write_reads_only_its_jobs_on_a_table_of_twenty_thousand_rows(
    app: Werk,
) -> None:
    """A table of some 20,000 rows is where a plan that reads the whole
    table looked cheapest to Postgres: it prices json_to_recordset at 100
    rows whatever the batch holds, and 100 primary-key probes above a scan of
    such a table, so each write of a drain read every row (689 of a 20,000-job
    drain's 718 writes). The batch's ids as an array the primary key serves
    make the probes the cheaper plan at any size."""
    cold, hot = 20_000, 2_000

    async def scanned() -> tuple[int, int]:
        # the rows sequential scans of the jobs table and scans of its primary
        # key read (a plan reading the whole table reads it one way or the
        # other), and the rows updated; not the other indexes' reads: the
        # worker's first sweep counts the queued rows through the status
        # indexes, and its backend may report that only later
        async with app.connection() as conn:
            cur = await conn.execute(
                "SELECT COALESCE(t.seq_tup_read, 0) + COALESCE(i.idx_tup_read, 0), t.n_tup_upd"
                " FROM pg_stat_user_tables t JOIN pg_stat_user_indexes i ON i.relid = t.relid"
                " JOIN pg_index x ON x.indexrelid = i.indexrelid AND x.indisprimary"
                " WHERE t.relid = %s::regclass", [app.sql.render("{jobs}")],
            )  # fmt: skip
            row = await cur.fetchone()
        assert row is not None
        return int(row[0]), int(row[1])

    async with app.connection() as conn:
        await conn.execute(app.sql.render("ALTER TABLE {jobs} SET (autovacuum_enabled = false)"))
    await app.enqueue_many([EnqueueParams(ok, (n,), queue="cold") for n in range(cold)])
    await app.enqueue_many([EnqueueParams(ok, (n,), queue="hot") for n in range(hot)])
    with trio.fail_after(120):
        read_before, updated_before = await scanned()
        worker = make_worker(app, queues=["hot"], concurrency=50, burst=True)
        await worker.run()
        assert worker.stats.get("complete", 0) == hot

        async def reported() -> tuple[int, int] | None:
            read, updated = await scanned()
            # every claim and completion reported (two updates a job)
            return (read, updated) if updated >= updated_before + 2 * hot else None

        read, _ = await until(reported, interval=0.05)
    per_job: Any = (read - read_before) / hot
    # by primary key: the claim's probe and the write's (the whole table at
    # each write of ~100 outcomes is 200 rows and more per job)
    assert per_job < 20, f"{per_job:.1f} rows of the jobs table read per completed job"
