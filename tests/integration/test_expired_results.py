"""The sweep's delete of finished rows past their result/failure TTL: bounded
statements, each its own transaction, that wait for no other transaction and
read the due rows only; migration 0007's expiry for the rows ended without one."""

from __future__ import annotations

import math
import uuid
from typing import Any

import trio
from psycopg import sql

from werk_trio import EnqueueParams, Werk
from werk_trio._maintenance import EXPIRED_BATCH
from werk_trio.sql import migrations


def echo(value: object) -> object:
    return value


async def finished(
    app: Werk, count: int, *, ttl: float, ago: float, status: str = "complete"
) -> list[object]:
    """``count`` rows ended ``status`` ``ago`` seconds ago with a result/failure TTL
    of ``ttl``, their expires_at set as the statements that end a job set it."""
    column = "result_ttl" if status == "complete" else "failure_ttl"
    ids = []
    for start in range(0, count, 5000):
        jobs = await app.enqueue_many(
            [
                EnqueueParams(f"{__name__}.echo", args=(i,), **{column: ttl})
                for i in range(start, min(count, start + 5000))
            ]
        )
        ids += [job.id for job in jobs]
    async with app.connection() as conn:
        await conn.execute(
            sql.SQL(
                "UPDATE {} SET status = %(status)s, attempts = 1, started_at = now(),"
                " completed_at = now() - make_interval(secs => %(ago)s),"
                " expires_at = CASE WHEN %(status)s IN ('complete', 'failed', 'aborted')"
                " THEN now() - make_interval(secs => %(ago)s) + make_interval(secs => %(ttl)s) END"
                " WHERE id = ANY(%(ids)s)"
            ).format(app.sql.idents["jobs"]),
            {"status": status, "ago": ago, "ttl": ttl, "ids": ids},
        )
    return ids


async def remaining(app: Werk, ids: list[object]) -> int:
    async with app.connection() as conn:
        cur = await conn.execute(
            sql.SQL("SELECT count(*) FROM {} WHERE id = ANY(%s)").format(app.sql.idents["jobs"]), (ids,)
        )
        row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def test_expired_rows_go_in_statements_of_at_most_a_batch_each_its_own_transaction(
    app: Werk, schema: str
) -> None:
    with trio.fail_after(60):
        expired = await finished(app, 2 * EXPIRED_BATCH + 300, ttl=60, ago=3600)
        failed = await finished(app, 200, ttl=60, ago=3600, status="failed")
        young = await finished(app, 50, ttl=3600, ago=60)
        kept = await finished(app, 20, ttl=60, ago=3600, status="queued")  # not finished: stays
        # every DELETE statement on the jobs table: its row count and transaction
        async with app.connection() as conn:
            await conn.execute(
                sql.SQL(
                    "CREATE TABLE {log} (rows bigint, xid xid8);"
                    " CREATE FUNCTION {fn}() RETURNS trigger LANGUAGE plpgsql AS $$"
                    " BEGIN INSERT INTO {log} SELECT count(*), pg_current_xact_id() FROM gone;"
                    " RETURN NULL; END $$;"
                    " CREATE TRIGGER spy AFTER DELETE ON {jobs} REFERENCING OLD TABLE AS gone"
                    " FOR EACH STATEMENT EXECUTE FUNCTION {fn}()"
                ).format(
                    log=sql.Identifier(schema, "delete_log"),
                    fn=sql.Identifier(schema, "log_delete"),
                    jobs=app.sql.idents["jobs"],
                )
            )
        counts = await app.sweep_counts()
        assert counts["deleted"] == len(expired) + len(failed)
        assert await remaining(app, expired + failed) == 0
        assert await remaining(app, young) == len(young)
        assert await remaining(app, kept) == len(kept)
        async with app.connection() as conn:
            cur = await conn.execute(
                sql.SQL("SELECT rows, xid::text FROM {} WHERE rows > 0").format(
                    sql.Identifier(schema, "delete_log")
                )
            )
            log = await cur.fetchall()
        sizes = [rows for rows, _ in log]
        assert sum(sizes) == len(expired) + len(failed)
        assert max(sizes) <= EXPIRED_BATCH, f"one statement deleted {max(sizes)} rows"
        assert len({xid for _, xid in log}) == len(log), "each statement commits on its own"


async def test_a_row_another_transaction_holds_waits_for_the_next_sweep_not_the_sweep_for_it(
    app: Werk,
) -> None:
    with trio.fail_after(30):
        ids = await finished(app, 5, ttl=1, ago=600)
        held = ids[0]
        # a transaction that has the row locked (as a requeue of it would)
        async with app.connection() as other, other.transaction():
            await other.execute(
                sql.SQL("SELECT 1 FROM {} WHERE id = %s FOR UPDATE").format(app.sql.idents["jobs"]),
                (held,),
            )
            with trio.fail_after(10):
                counts = await app.sweep_counts()
            assert counts["deleted"] == 4
            assert await remaining(app, ids) == 1
            assert await remaining(app, [held]) == 1
        assert (await app.sweep_counts())["deleted"] == 1
        assert await remaining(app, ids) == 0


def _rows_read(plan: dict[str, Any], relation: str) -> int:
    """Rows the plan's scans of ``relation`` read: returned plus filtered out."""
    read = 0
    if plan.get("Relation Name") == relation and plan["Node Type"].endswith("Scan"):
        read += plan.get("Actual Rows", 0) * plan.get("Actual Loops", 1)
        read += plan.get("Rows Removed by Filter", 0) + plan.get("Rows Removed by Index Recheck", 0)
    return read + sum(_rows_read(child, relation) for child in plan.get("Plans", []))


async def test_the_sweep_reads_the_due_rows_not_the_ones_kept_for_later(app: Werk) -> None:
    with trio.fail_after(60):
        await finished(app, 5000, ttl=3600, ago=60)  # kept for another 59 minutes
        await finished(app, 2000, ttl=3600, ago=60, status="failed")
        due = await finished(app, 30, ttl=60, ago=600)
        async with app.connection() as conn:
            await conn.execute(sql.SQL("ANALYZE {}").format(app.sql.idents["jobs"]))
            async with conn.transaction(force_rollback=True):
                cur = await conn.execute(
                    "EXPLAIN (ANALYZE, FORMAT JSON) " + app.sql.DELETE_EXPIRED_RESULTS,
                    {"limit": EXPIRED_BATCH},
                )
                row = await cur.fetchone()
        assert row is not None
        plan = row[0][0]["Plan"]
        # the due rows, once to find and lock them and once to delete them by key
        read = _rows_read(plan, f"{app.config.prefix}_jobs")
        assert read <= 2 * len(due), f"the delete read {read} rows of the jobs table for {len(due)} due"
        assert (await app.sweep_counts())["deleted"] == len(due)


async def test_migration_0007_gives_the_rows_that_ended_without_one_their_expiry(
    dsn: str, schema: str
) -> None:
    with trio.fail_after(60):
        async with Werk(dsn, schema=schema, auto_migrate=False) as app:
            jobs = app.sql.idents["jobs"]
            async with app.connection() as conn, conn.transaction():
                await conn.execute(app.sql.CREATE_SCHEMA)
                await conn.execute(app.sql.CREATE_MIGRATIONS)
                for migration in migrations():
                    if migration.version < 7:
                        await conn.execute(app.sql.render(migration.template))
                        await conn.execute(
                            app.sql.RECORD_MIGRATION,
                            {"version": migration.version, "name": migration.name},
                        )
            # finished rows with a TTL and no expires_at: ended before the
            # statements set it, or written past the API
            hour, minute = "now() - interval '1 hour'", "now() - interval '1 minute'"
            rows = {
                "complete, result_ttl 60, ended an hour ago": ("complete", hour, 60, None),
                "complete, result_ttl 3600, ended a minute ago": ("complete", minute, 3600, None),
                "failed, failure_ttl 60, ended an hour ago": ("failed", hour, None, 60),
                "aborted, failure_ttl NaN": ("aborted", hour, None, math.nan),
                "complete with only a failure_ttl": ("complete", hour, None, 1),
                "complete at -infinity": ("complete", "'-infinity'::timestamptz", 1, None),
                "complete at infinity": ("complete", "'infinity'::timestamptz", 1, None),
                "complete in year 200000": ("complete", "'200000-01-01'::timestamptz", 1e12, None),
            }  # fmt: skip
            ids = {label: uuid.uuid4() for label in rows}
            async with app.connection() as conn:
                for label, (status, ended, result_ttl, failure_ttl) in rows.items():
                    await conn.execute(
                        sql.SQL(
                            "INSERT INTO {} (id, function, status, attempts, started_at, completed_at,"
                            " result_ttl, failure_ttl) VALUES (%s, 'f', %s, 1, now(), " + ended + ", %s, %s)"
                        ).format(jobs),
                        (ids[label], status, result_ttl, failure_ttl),
                    )
            assert await app.migrate() == [m.version for m in migrations() if m.version >= 7]
            async with app.connection() as conn:
                cur = await conn.execute(
                    sql.SQL(
                        "SELECT id, expires_at = completed_at + make_interval(secs => %s),"
                        " expires_at IS NULL, expires_at = '-infinity', extract(year FROM expires_at)"
                        " FROM {}"
                    ).format(jobs),
                    (60,),
                )
                got = {row[0]: row[1:] for row in await cur.fetchall()}
            label = {v: k for k, v in ids.items()}
            by = {label[i]: v for i, v in got.items()}
            assert by["complete, result_ttl 60, ended an hour ago"][0] is True
            assert by["failed, failure_ttl 60, ended an hour ago"][0] is True
            assert by["complete with only a failure_ttl"][1] is True, "its status's TTL is not set: no expiry"
            assert by["complete at -infinity"][2] is True
            assert by["complete at infinity"][3] == 9999  # counted from year 9999
            assert by["complete in year 200000"][3] == 10099  # and the TTL at most 100 years
            assert by["aborted, failure_ttl NaN"][3] >= 2100  # NaN counts as 100 years
            assert (await app.sweep_counts())["deleted"] == 3
            async with app.connection() as conn:
                cur = await conn.execute(sql.SQL("SELECT id FROM {}").format(jobs))
                left = {label[row[0]] for row in await cur.fetchall()}
            assert left == set(rows) - {
                "complete, result_ttl 60, ended an hour ago",
                "failed, failure_ttl 60, ended an hour ago",
                "complete at -infinity",
            }
