"""enqueue_many's binary COPY path (werk_trio/_bulk.py) against INSERT_JOBS.

A large batch of plain jobs goes in by COPY; everything else by the INSERT
statement. Both must give the same rows and the same Jobs, follow the caller's
transaction, and wake idle workers.
"""

from __future__ import annotations

import dataclasses
import gc
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
import trio
from psycopg import sql
from psycopg.rows import dict_row

import werk_trio._bulk as bulk
import werk_trio.app as app_module
from tests import procapp
from werk_trio import (
    AsyncWorker,
    Callback,
    ConfigError,
    EnqueueParams,
    Job,
    JobStatus,
    PayloadTooLarge,
    Repeat,
    Retry,
    SerializationError,
    Werk,
)

from .test_flow_control import idle

N = bulk.COPY_MIN_ROWS + 50  # large enough for COPY


def noop(*args: Any, **kwargs: Any) -> None:
    pass


class Copies(list[int]):
    """Rows of each batch that went in by COPY; ``streamed``: those of them streamed."""

    def __init__(self) -> None:
        super().__init__()
        self.streamed: list[int] = []


@pytest.fixture
def copies(monkeypatch: pytest.MonkeyPatch) -> Iterator[Copies]:
    """The number of rows of each batch that went in by COPY, whole (copy_jobs) or
    streamed (stream_jobs, when it did not hand the batch back); the real ones run."""
    seen = Copies()
    real, real_stream = bulk.copy_jobs, bulk.stream_jobs

    async def counting(conn: Any, statements: Any, options: bool, rows: list[Any], queues: list[str]) -> Any:
        seen.append(len(rows))
        return await real(conn, statements, options, rows, queues)

    async def counting_stream(conn: Any, statements: Any, builder: Any, items: Any) -> Any:
        now = await real_stream(conn, statements, builder, items)
        if now is not None:
            seen.append(len(items))
            seen.streamed.append(len(items))
        return now

    monkeypatch.setattr(app_module, "copy_jobs", counting)
    monkeypatch.setattr(app_module, "stream_jobs", counting_stream)
    yield seen


def specs(n: int) -> list[EnqueueParams]:
    """Plain jobs setting every option COPY has a column for, in varying mixes."""
    out = []
    for i in range(n):
        options: dict[str, Any] = {}
        if i % 2:
            options["queue"] = f"q{i % 3}"
        if i % 3 == 0:
            options.update(priority=-i, retry=Retry(3, intervals=[1, 2.5]), timeout=5, heartbeat=2.5)
        if i % 4 == 1:
            options.update(group="g\u00e9", meta={"n": i, "s": "\u00fc"}, result_ttl=0, failure_ttl=60.5)
        if i % 5 == 2:
            options.update(failure_mode="delete", on_success=noop, on_failure=Callback(noop, timeout=3),
                           on_stopped=noop, cron_name="nightly", meta={})
        if i % 7 == 3:
            options.update(repeat=Repeat(2, interval=10) if i % 2 else Repeat(3, intervals=[1, 2]))
        # non-ASCII, quotes, a lone surrogate and a NUL (both stored as JSON escapes)
        odd = "\udcff" if i % 11 == 0 else "\x00" if i % 13 == 0 else ""
        out.append(EnqueueParams(noop, (i, "\u00e9\"\\", odd), {"k": [i]}, **options))
    return out


def rows(dsn: str, app: Werk) -> list[dict[str, Any]]:
    table = sql.Identifier(app.schema or "public", f"{app.config.prefix}_jobs")
    with psycopg.connect(dsn, row_factory=dict_row) as conn:
        return conn.execute(sql.SQL("SELECT * FROM {} ORDER BY id").format(table)).fetchall()


def timeless(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in ("id", "scheduled_at", "enqueued_at")}


_NO_ID, _NO_TIME = uuid.UUID(int=0), datetime(2000, 1, 1, tzinfo=UTC)


def anonymous(job: Job | None) -> Job:
    assert job is not None
    return dataclasses.replace(job, id=_NO_ID, scheduled_at=_NO_TIME, enqueued_at=_NO_TIME)


async def test_copy_and_insert_give_the_same_jobs_and_rows(
    app: Werk, dsn: str, copies: Copies, monkeypatch: pytest.MonkeyPatch
) -> None:
    with trio.fail_after(60):
        by_copy = await app.enqueue_many(specs(N))
        assert copies == [N]
        copied_rows = rows(dsn, app)
        await app.truncate()
        monkeypatch.setattr(bulk, "COPY_MIN_ROWS", N + 1)
        by_insert = await app.enqueue_many(specs(N))
        assert copies == [N], "the second batch went in by INSERT_JOBS"
        inserted_rows = rows(dsn, app)

        assert [anonymous(j) for j in by_copy] == [anonymous(j) for j in by_insert]
        assert len(copied_rows) == len(inserted_rows) == N
        for copied, inserted in zip(copied_rows, inserted_rows, strict=True):
            assert timeless(copied) == timeless(inserted)
            assert copied["scheduled_at"] == copied["enqueued_at"]
        # the returned Jobs are the stored rows, times and ids included
        stored = await app.get_jobs([j.id for j in by_insert if j])
        assert all(stored[j.id] == j for j in by_insert if j)
        await app.truncate()
        monkeypatch.setattr(bulk, "COPY_MIN_ROWS", N)
        by_copy = await app.enqueue_many(specs(N))
        stored = await app.get_jobs([j.id for j in by_copy if j])
        assert all(j is not None and j.status is JobStatus.QUEUED and stored[j.id] == j for j in by_copy)
        assert [r["id"] for r in rows(dsn, app)] == [j.id for j in by_copy if j]


async def test_plain_batch_without_options(app: Werk, dsn: str, copies: Copies) -> None:
    with trio.fail_after(30):
        jobs = await app.enqueue_many([EnqueueParams(noop, (i,)) for i in range(N)])
        assert copies == [N]
        stored = await app.get_jobs([j.id for j in jobs if j])
        assert len(stored) == N and all(j is not None and stored[j.id] == j for j in jobs)
        assert {j.queue for j in stored.values()} == {"default"}
        payloads = [r["payload"] for r in rows(dsn, app)]
        assert payloads[:2] == ['{"args":[0],"kwargs":{}}', '{"args":[1],"kwargs":{}}']


async def test_copy_follows_the_callers_transaction(app: Werk, dsn: str, copies: Copies) -> None:
    with trio.fail_after(30):
        async with app.connection() as conn:
            with pytest.raises(RuntimeError, match="undo"):
                async with conn.transaction():
                    jobs = await app.enqueue_many(specs(N), _conn=conn)
                    assert len(jobs) == N
                    raise RuntimeError("undo")
            assert rows(dsn, app) == []
            async with conn.transaction():
                jobs = await app.enqueue_many(specs(N), _conn=conn)
                assert rows(dsn, app) == [], "not visible before the caller commits"
        assert copies == [N, N]
        assert [r["id"] for r in rows(dsn, app)] == [j.id for j in jobs if j]


async def test_a_batch_with_keys_or_timed_jobs_takes_insert(app: Werk, copies: Copies) -> None:
    with trio.fail_after(30):
        taken = await app.enqueue(noop, _key="taken")
        assert taken is not None
        batch = specs(N)
        batch[7] = EnqueueParams(noop, key="taken")
        batch[8] = EnqueueParams(noop, key="fresh")
        out = await app.enqueue_many(batch)
        assert out[7] is None and out[8] is not None and out[8].key == "fresh"
        assert sum(j is not None for j in out) == N - 1
        later = specs(N)
        later[0] = EnqueueParams(noop, delay=60)
        out = await app.enqueue_many(later)
        assert out[0] is not None and out[0].status is JobStatus.SCHEDULED
        assert copies == []
        stored = await app.get_jobs([j.id for j in out if j])
        assert all(stored[j.id] == j for j in out if j)


async def test_hostile_values_are_refused_before_the_copy(dsn: str, schema: str, copies: Copies) -> None:
    with trio.fail_after(30):
        async with Werk(dsn, schema=schema, max_payload_bytes=1000) as app:
            batch = specs(N)
            batch[-1] = EnqueueParams(noop, group="a\x00b")
            with pytest.raises(ConfigError, match="_group contains a NUL"):
                await app.enqueue_many(batch)
            batch[-1] = EnqueueParams(noop, (object(),))
            with pytest.raises(SerializationError):
                await app.enqueue_many(batch)
            batch[-1] = EnqueueParams(noop, ("y" * 5000,))
            with pytest.raises(PayloadTooLarge, match="max_payload_bytes"):
                await app.enqueue_many(batch)
            assert copies == [] and rows(dsn, app) == []


async def test_a_copied_batch_wakes_an_idle_worker(app: Werk) -> None:
    with trio.fail_after(30):
        worker = AsyncWorker(app, queues=["copied"], poll_interval=30, handle_signals=False)
        async with trio.open_nursery() as nursery:
            await nursery.start(worker.run)
            await idle(worker)
            jobs = await app.enqueue_many(EnqueueParams(procapp.noop_job, queue="copied") for _ in range(N))
            with trio.fail_after(10):  # woken by the batch's NOTIFY, not by the poll 30 s away
                for job in jobs:
                    assert job is not None
                    assert (await app.wait_for(job.id, timeout=10)).status is JobStatus.COMPLETE
            worker.stop(now=True)


async def test_the_garbage_collector_is_paused_only_while_a_large_batch_is_built(app: Werk) -> None:
    with trio.fail_after(30):
        assert gc.isenabled()
        jobs = await app.enqueue_many([EnqueueParams(noop, (i,)) for i in range(2000)])
        assert len(jobs) == 2000 and gc.isenabled()
        bad = [EnqueueParams(noop, (i,)) for i in range(2000)] + [EnqueueParams(noop, queue="")]
        with pytest.raises(ConfigError, match="_queue"):
            await app.enqueue_many(bad)
        assert gc.isenabled(), "a refused batch turns the collector back on"
        gc.disable()
        try:
            await app.enqueue_many([EnqueueParams(noop, (i,)) for i in range(2000)])
            assert not gc.isenabled(), "a collector the caller turned off stays off"
        finally:
            gc.enable()


async def test_copy_on_a_connection_outside_autocommit_waits_for_its_commit(
    app: Werk, dsn: str, copies: Copies
) -> None:
    with trio.fail_after(30):
        async with app.connection() as conn:
            await conn.set_autocommit(False)
            jobs = await app.enqueue_many(specs(N), _conn=conn)
            assert rows(dsn, app) == [], "part of the transaction the connection opened"
            await conn.commit()
            assert [r["id"] for r in rows(dsn, app)] == [j.id for j in jobs if j]
            await app.enqueue_many(specs(N), _conn=conn)
            await conn.rollback()
        assert copies == [N, N] and len(rows(dsn, app)) == N


async def test_a_cancelled_copy_inserts_all_or_nothing(app: Werk, dsn: str) -> None:
    with trio.fail_after(120):
        seen = set()
        for step in range(12):
            await app.truncate()
            batch = [EnqueueParams(noop, (i,)) for i in range(5000)]
            with trio.move_on_after(0.02 * step) as scope:
                await app.enqueue_many(batch)
            count = len(rows(dsn, app))
            assert count in (0, 5000)
            seen.add((scope.cancelled_caught, count))
            # the pool's connections are still usable
            assert await app.enqueue(noop, 1) is not None
        assert (True, 0) in seen and (False, 5000) in seen


async def test_a_streamed_batch_gives_the_rows_insert_gives(
    app: Werk, dsn: str, copies: Copies, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Built and copied in many steps (STREAM_ROWS small): the same rows and Jobs
    as INSERT_JOBS, every step's queues notified (an idle worker of a queue only
    a late step has wakes)."""
    with trio.fail_after(60):
        monkeypatch.setattr(bulk, "STREAM_ROWS", 7)
        batch = specs(N)
        batch[-1] = EnqueueParams(procapp.noop_job, queue="late", priority=1)  # the last step only
        worker = AsyncWorker(app, queues=["late"], poll_interval=30, handle_signals=False)
        async with trio.open_nursery() as nursery:
            await nursery.start(worker.run)
            await idle(worker)
            streamed = await app.enqueue_many(batch)
            assert copies == copies.streamed == [N]
            late = streamed[-1]
            assert late is not None
            assert (await app.wait_for(late.id, timeout=10)).status is JobStatus.COMPLETE
            worker.stop(now=True)
        streamed_rows = [r for r in rows(dsn, app) if r["queue"] != "late"]
        await app.truncate()
        monkeypatch.setattr(bulk, "COPY_MIN_ROWS", N + 1)
        inserted = await app.enqueue_many(batch)
        assert copies == [N], "the second batch went in by INSERT_JOBS"
        inserted_rows = [r for r in rows(dsn, app) if r["queue"] != "late"]
        assert [anonymous(j) for j in streamed[:-1]] == [anonymous(j) for j in inserted[:-1]]
        assert len(streamed_rows) == len(inserted_rows) == N - 1
        for a, b in zip(streamed_rows, inserted_rows, strict=True):
            assert timeless(a) == timeless(b)


async def test_a_streamed_batch_that_needs_other_columns_starts_over(
    app: Werk, dsn: str, copies: Copies, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first step sets no option (three columns), a later one does: the
    streamed COPY is rolled back and the whole batch goes in by one COPY of all
    columns -- each job once, as given."""
    with trio.fail_after(30):
        monkeypatch.setattr(bulk, "STREAM_ROWS", 10)
        batch = [EnqueueParams(noop, (i,)) for i in range(N)]
        batch[-3] = EnqueueParams(noop, ("opt",), queue="other", priority=4)
        jobs = await app.enqueue_many(batch)
        assert copies == [N] and copies.streamed == [], "one whole COPY, the streamed one rolled back"
        stored = rows(dsn, app)
        assert [r["id"] for r in stored] == [j.id for j in jobs if j] and len(stored) == N
        opt = [(r["queue"], r["priority"]) for r in stored if r["payload"].startswith('{"args":["opt"]')]
        assert opt == [("other", 4)]
        got = await app.get_jobs([j.id for j in jobs if j])
        assert all(j is not None and got[j.id] == j for j in jobs)


async def test_a_refusal_in_a_late_step_inserts_nothing(
    dsn: str, schema: str, copies: Copies, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A value refused after the streamed COPY began (its step comes last) ends
    the COPY and rolls it back: the error, nothing inserted, the connection fine."""
    with trio.fail_after(30):
        monkeypatch.setattr(bulk, "STREAM_ROWS", 10)
        async with Werk(dsn, schema=schema, max_payload_bytes=1000) as app:
            for bad, error, match in (
                (EnqueueParams(noop, group="a\x00b"), ConfigError, "_group contains a NUL"),
                (EnqueueParams(noop, (object(),)), SerializationError, "payload of"),
                (EnqueueParams(noop, ("y" * 5000,)), PayloadTooLarge, "max_payload_bytes"),
            ):
                batch = [EnqueueParams(noop, (i,)) for i in range(N)] + [bad]
                with pytest.raises(error, match=match):
                    await app.enqueue_many(batch)
                assert copies == [] and rows(dsn, app) == []
            assert len(await app.enqueue_many([EnqueueParams(noop, (i,)) for i in range(N)])) == N
            assert copies == copies.streamed == [N] and len(rows(dsn, app)) == N
