"""The sweep's delete of finished rows past their result/failure TTL: bounded
statements, each its own transaction, that wait for no other transaction."""

from __future__ import annotations

import trio
from psycopg import sql

from werk_trio import EnqueueParams, Werk
from werk_trio._maintenance import EXPIRED_BATCH


def echo(value: object) -> object:
    return value


async def finished(
    app: Werk, count: int, *, ttl: float, ago: float, status: str = "complete"
) -> list[object]:
    """``count`` rows ended ``status`` ``ago`` seconds ago with a result/failure TTL of ``ttl``."""
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
                "UPDATE {} SET status = %s, attempts = 1, started_at = now(),"
                " completed_at = now() - make_interval(secs => %s) WHERE id = ANY(%s)"
            ).format(app.sql.idents["jobs"]),
            (status, ago, ids),
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
