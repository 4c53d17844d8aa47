"""The introspection API (issue 12): each method against real rows -- jobs
enqueued and run by a real worker -- and the numbers asserted; stopped
workers listed, then gone after their retention; the sweeper's statistics
pass (queue-depth samples, throughput roll-up, finished recount) writing and
pruning.

Where a test needs finished jobs older than the statistics' 5-second margin
it ages the rows' timestamps (``age``): what the roll-up reads is the time a
job finished, and waiting minutes for it would only slow the suite down.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio
from psycopg import sql

from werk_trio import AsyncWorker, ConfigError, EnqueueParams, JobStatus, Werk
from werk_trio.testing import make_worker, running, until, wait_for_status

PGWERK_WORKER_KEYS = {"id", "name", "queue", "status", "metadata", "heartbeat_at", "started_at", "expires_at"}
STAT_KEYS = ("scheduled", "queued", "active", "aborting", "waiting", "complete", "failed", "aborted")


async def ok(n: int) -> int:
    return n


async def boom() -> None:
    raise ValueError("boom")


release = trio.Event()


async def held() -> str:
    await release.wait()
    return "released"


@pytest.fixture
async def stats_app(dsn: str, schema: str) -> AsyncIterator[Werk]:
    """An app whose every sweep runs the statistics pass (no 60 s wait between)."""
    werk = Werk(dsn, schema=schema, task_modules=["tests"], stats_sample_interval=0.001)
    async with werk:
        yield werk


async def drain(app: Werk, *queues: str) -> AsyncWorker:
    worker = make_worker(app, queues=list(queues), burst=True)
    await worker.run()
    return worker  # type: ignore[return-value]


async def age(app: Werk, minutes: float) -> None:
    """Move everything -- the jobs' timestamps and the statistics' (marks,
    roll-ups, samples) -- ``minutes`` into the past, as if it all happened
    that long ago."""
    t = app.sql.idents
    shifts = [
        ("jobs", ("enqueued_at", "scheduled_at", "started_at", "completed_at")),
        ("stats_marks", ("at",)), ("throughput", ("bucket",)), ("finished_counts", ("as_of",)),
        ("queue_samples", ("sampled_at",)), ("finished_removed", ("completed_at",)),
    ]  # fmt: skip
    async with app.connection() as conn:
        for table, columns in shifts:
            sets = sql.SQL(", ").join(
                sql.SQL("{c} = {c} - make_interval(mins => %(m)s)").format(c=sql.Identifier(c))
                for c in columns
            )
            await conn.execute(sql.SQL("UPDATE {} SET ").format(t[table]) + sets, {"m": minutes})


def by_queue(rows: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    return {r["queue"]: {k: r[k] for k in STAT_KEYS if r[k]} for r in rows}


async def listed(app: Werk) -> dict[str, dict[str, int]]:
    """list_queues' counts, by queue (the queues that have jobs)."""
    return {q.name: q.counts for q in await app.list_queues() if q.counts}


def busy(history: list[dict[str, Any]]) -> Counter[tuple[Any, ...]]:
    """The non-empty throughput rows as (time, queue, worker) -> (completed, failed)."""
    out: Counter[tuple[Any, ...]] = Counter()
    for r in history:
        if r["queue"] is not None:
            out[(r["time"], r["queue"], r["worker_id"], "completed")] += r["completed"]
            out[(r["time"], r["queue"], r["worker_id"], "failed")] += r["failed"]
    return +out


def minute_of(ts: dt.datetime) -> dt.datetime:
    return ts.replace(second=0, microsecond=0)


# --- get_queue_stats ------------------------------------------------------------------


async def test_queue_stats_count_real_jobs_live_and_finished(stats_app: Werk) -> None:
    app = stats_app
    with trio.fail_after(30):
        for n in range(3):
            await app.enqueue(ok, n, _queue="a")
        await app.enqueue(boom, _queue="b")
        later = await app.enqueue(ok, 9, _queue="c", _delay=3600)
        assert later
        await app.enqueue(ok, 10, _queue="c", _depends_on=later)
        rows, total, online = await app.get_queue_stats()
        assert by_queue(rows) == {"a": {"queued": 3}, "b": {"queued": 1}, "c": {"scheduled": 1, "waiting": 1}}
        assert (total, online) == (6, 0)
        # pgwerk's keys, and werk_trio's one addition: nothing estimated here
        assert all(set(r) == {"queue", *STAT_KEYS, "estimated"} and r["estimated"] == [] for r in rows)
        # counts are ints, as pgwerk's (a SUM in SQL is numeric: Decimal, until cast)
        assert all(type(r[k]) is int for r in rows for k in STAT_KEYS) and type(total) is int

        await drain(app, "a", "b")
        expected = {"a": {"complete": 3}, "b": {"failed": 1}, "c": {"scheduled": 1, "waiting": 1}}
        rows, total, online = await app.get_queue_stats()
        assert (by_queue(rows), total, online) == (expected, 6, 0)
        assert await listed(app) == expected  # list_queues counts as get_queue_stats does

        # the finished rows move into the sweeper's recount (as of 5 s ago):
        # the same numbers, now from the recount instead of the job rows
        await age(app, 10)
        await app.sweep()
        assert (await app.get_queue_stats())[:2] == (rows, 6)
        # more jobs finish after the recount: the tail adds them
        await app.enqueue(ok, 4, _queue="a")
        await drain(app, "a")
        rows, total, _ = await app.get_queue_stats()
        assert by_queue(rows)["a"] == {"complete": 4} and total == 7
        assert await listed(app) == by_queue(rows)
        # a purge of recounted rows shows from the next recount on (in
        # list_queues too: neither counts every finished row, counts() does)
        assert await app.purge_jobs(["failed"]) == 1
        assert (await listed(app))["b"] == {"failed": 1} and "b" not in await app.counts()
        await app.sweep()
        rows, total, _ = await app.get_queue_stats()
        assert "b" not in by_queue(rows) and total == 6
        assert "b" not in await listed(app)

        # a running worker is online; a stopped one is not
        worker = make_worker(app, queues=["a"])
        async with running(worker):
            assert (await app.get_queue_stats())[2] == 1
        assert (await app.get_queue_stats())[2] == 0


async def exact_finished(app: Werk) -> dict[str, dict[str, int]]:
    """The finished rows counted from the table itself, for comparison."""
    query = sql.SQL(
        "SELECT queue, status, count(*) FROM {} WHERE status IN ('complete', 'failed', 'aborted')"
        " GROUP BY 1, 2").format(app.sql.idents["jobs"])
    out: dict[str, dict[str, int]] = {}
    async with app.connection() as conn:
        for queue, status, n in await (await conn.execute(query)).fetchall():
            out.setdefault(queue, {})[status] = n
    return out


async def test_finished_counts_follow_removals_between_passes(stats_app: Werk) -> None:
    """The pass after the first one adds the rows finished since and subtracts
    the counted ones deleted or requeued since (the removal log of migration
    0005), instead of counting every finished row again; a removed row the
    counts never held is not subtracted."""
    app = stats_app
    removed = app.sql.idents["finished_removed"]

    async def logged() -> int:
        async with app.connection() as conn:
            cur = await conn.execute(sql.SQL("SELECT count(*) FROM {}").format(removed))
            return int((await cur.fetchone())[0])  # type: ignore[index]

    def finished_of(rows: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
        keep = ("complete", "failed", "aborted")
        got = {q: {k: n for k, n in c.items() if k in keep} for q, c in by_queue(rows).items()}
        return {q: c for q, c in got.items() if c}

    with trio.fail_after(60):
        a = await app.enqueue_many([EnqueueParams(ok, (n,), queue="a") for n in range(6)])
        await app.enqueue_many([EnqueueParams(boom, queue="b") for _ in range(2)])
        await drain(app, "a", "b")
        # before any pass there is nothing to subtract from: nothing is logged
        await app.delete_job(a[5].id)
        assert await logged() == 0
        await age(app, 10)
        await app.sweep()  # the first pass: counts every finished row
        assert finished_of((await app.get_queue_stats())[0]) == {"a": {"complete": 5}, "b": {"failed": 2}}
        assert await logged() == 0

        # counted rows leave: a requeue, a delete, a purge
        assert await app.requeue_job(a[0].id)
        await app.delete_job(a[1].id)
        assert await app.purge_jobs(["failed"]) == 2
        assert await logged() == 3  # one row each: the requeue, the delete, the purge's (queue, status)
        # a row finished after the counts' as_of, deleted before the next pass
        late = await app.enqueue(ok, 7, _queue="a")
        assert late
        await drain(app, "a")  # runs the requeued one and the late one
        await app.delete_job(late.id)

        await app.sweep()
        rows, total, _ = await app.get_queue_stats()
        assert finished_of(rows) == await exact_finished(app) == {"a": {"complete": 4}}
        assert total == 4
        assert await logged() == 0
        # and once everything is older than the margin, still exact
        await age(app, 10)
        await app.sweep()
        rows, total, _ = await app.get_queue_stats()
        assert finished_of(rows) == await exact_finished(app) and total == 4


LIVE = ("scheduled", "queued", "active", "aborting", "waiting")


def live_of(counts: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    got = {q: {s: n for s, n in c.items() if s in LIVE and n} for q, c in counts.items()}
    return {q: c for q, c in got.items() if c}


async def test_live_counts_follow_every_change(stats_app: Werk) -> None:
    """get_queue_stats' live numbers equal counts(), which counts every row,
    after each kind of change and after the statistics pass: the guard for
    any cheaper way of counting them (issue 18; benchmarks/README.md,
    bench_scale.py, has the designs measured)."""
    global release
    release = trio.Event()
    app = stats_app
    jobs = app.sql.idents["jobs"]

    async def agree(what: str) -> dict[str, dict[str, int]]:
        exact = live_of(await app.counts())
        assert live_of(by_queue((await app.get_queue_stats())[0])) == exact, what
        assert live_of(await listed(app)) == exact, f"list_queues, {what}"
        return exact

    with trio.fail_after(60):
        await app.enqueue(ok, 1, _queue="a")
        await app.enqueue_many([EnqueueParams(ok, (n,), queue="a") for n in range(300)])  # by COPY
        await app.enqueue_many([EnqueueParams(ok, (n,), queue="b", key=f"k{n}") for n in range(3)])
        later = await app.enqueue(ok, 2, _queue="c", _delay=3600)
        assert later
        await app.enqueue(ok, 3, _queue="c", _depends_on=later)
        enqueued = {"a": {"queued": 301}, "b": {"queued": 3}, "c": {"scheduled": 1, "waiting": 1}}
        assert await agree("enqueued") == enqueued
        await app.sweep()  # the statistics pass
        assert await agree("swept") == enqueued

        # claimed (active), marked for abort (aborting: the worker looks only
        # hourly), then finished (the marked one as aborted)
        holding = [await app.enqueue(held, _queue="h") for _ in range(3)]
        worker = make_worker(app, queues=["h"], abort_interval=3600)
        async with running(worker):
            for job in holding:
                assert job
                await wait_for_status(app, job.id, "active")
            assert (await agree("claimed"))["h"] == {"active": 3}
            assert holding[0] and await app.abort_job(holding[0].id)
            assert (await agree("aborting"))["h"] == {"active": 2, "aborting": 1}
            await app.sweep()
            assert (await agree("swept"))["h"] == {"active": 2, "aborting": 1}
            release.set()
            for job in holding:
                assert job
                await wait_for_status(app, job.id, "complete", "aborted")
        assert "h" not in await agree("finished")

        # completed, retried (failed -> queued -> failed), a dependent resolved
        await app.enqueue(boom, _queue="r", _retry=2)
        await drain(app, "a", "b", "r")
        assert await agree("drained") == {"c": {"scheduled": 1, "waiting": 1}}
        assert await app.cancel_job(later.id)  # the dependent is resolved: it fails with it
        assert await agree("cancelled") == {}

        # requeued (finished -> queued), one at a time and in bulk; deleted; purged
        done = await app.list_jobs(queue="a", status="complete", limit=5)
        assert await app.requeue_job(done[0].id)
        assert await app.bulk_requeue_jobs(queue="r") == 1
        assert await agree("requeued") == {"a": {"queued": 1}, "r": {"queued": 1}}
        await app.delete_job(done[0].id)
        assert await app.purge_jobs(["queued"], queue="r") == 1
        assert await agree("deleted") == {}
        await app.sweep()
        assert await agree("swept") == {}

        # expired by the sweep (a ttl passed), cancelled in bulk
        await app.enqueue(ok, 4, _queue="e", _ttl=3600)
        await app.enqueue(ok, 5, _queue="e")
        async with app.connection() as conn:
            await conn.execute(sql.SQL("UPDATE {} SET expires_at = now() - interval '1 s'"
                                       " WHERE queue = 'e' AND ttl IS NOT NULL").format(jobs))
        await app.sweep()
        assert await agree("expired") == {"e": {"queued": 1}}
        assert await app.bulk_cancel_jobs() == 1
        assert await agree("cancelled in bulk") == {}
        await app.sweep()
        assert await agree("swept") == {}

        # a truncate empties the counts with the table
        await app.enqueue(ok, 6, _queue="t")
        await app.sweep()
        await app.truncate()
        assert await agree("truncated") == {}
        assert await app.get_queue_stats() == ([], 0, 0)


async def test_live_counts_are_exact_up_to_the_limit_then_estimated_and_marked(dsn: str, schema: str) -> None:
    """Issue 18: a queue and live status with at most estimate_limit jobs is
    counted exactly; above it the count is the planner's estimate (exact
    here: ANALYZE reads every row of so small a table) and the status is
    named in the queue's ``estimated``. A small queue beside a big one stays
    exact. Queued and scheduled are per queue; waiting (and running) per
    table. The queue-depth sample takes the same counts."""
    app = Werk(dsn, schema=schema, task_modules=["tests"], stats_sample_interval=0.001, estimate_limit=3)
    with trio.fail_after(60):
        async with app:
            await app.enqueue_many([EnqueueParams(ok, (n,), queue="a") for n in range(3)])
            await app.enqueue(ok, 9, _queue="b")
            await app.vacuum()
            rows, total, _ = await app.get_queue_stats()
            assert by_queue(rows) == {"a": {"queued": 3}, "b": {"queued": 1}} and total == 4
            assert [r["estimated"] for r in rows] == [[], []]  # the limit itself is still exact

            await app.enqueue_many([EnqueueParams(ok, (n,), queue="a") for n in range(3, 8)])
            parent = await app.enqueue(ok, 0, _queue="c", _delay=3600)
            assert parent
            await app.enqueue_many([EnqueueParams(ok, (n,), queue="c", delay=3600) for n in range(4)])
            await app.enqueue_many([EnqueueParams(ok, (n,), queue="c") for n in range(2)])
            await app.enqueue_many([EnqueueParams(ok, (n,), queue="w", depends_on=[parent.id])
                                    for n in range(4)])  # fmt: skip
            await app.vacuum()  # the statistics the estimates come from (autovacuum's ANALYZE)
            exact = await app.counts()
            assert exact == {"a": {"queued": 8}, "b": {"queued": 1}, "c": {"scheduled": 5, "queued": 2},
                             "w": {"waiting": 4}}  # fmt: skip
            rows, total, _ = await app.get_queue_stats()
            assert by_queue(rows) == exact and total == 20
            marks = {r["queue"]: r["estimated"] for r in rows}
            # c: more scheduled jobs than the limit leave its queued ones unknown too
            assert marks == {"a": ["queued"], "b": [], "c": ["scheduled", "queued"], "w": ["waiting"]}
            # list_queues: the same counts and marks (its statuses in name order)
            assert {q.name: (q.counts, q.estimated) for q in await app.list_queues()} == {
                "a": ({"queued": 8}, ("queued",)), "b": ({"queued": 1}, ()),
                "c": ({"queued": 2, "scheduled": 5}, ("queued", "scheduled")),
                "w": ({"waiting": 4}, ("waiting",)),
            }  # fmt: skip

            await app.sweep()  # the statistics pass: a queue-depth sample of the same counts and marks
            depth = {r["queue"]: (r["queued"], r["scheduled"], r["waiting"], r["estimated"])
                     for r in await app.get_queue_depth_history(minutes=5)}  # fmt: skip
            assert depth == {"a": (8, 0, 0, ["queued"]), "b": (1, 0, 0, []),
                             "c": (2, 5, 0, ["queued", "scheduled"]),
                             "w": (0, 0, 4, ["waiting"])}  # fmt: skip

            # drained under the limit again: exact and unmarked
            await drain(app, "a")
            rows, _, _ = await app.get_queue_stats()
            assert {r["queue"]: r["estimated"] for r in rows}["a"] == []
            assert by_queue(rows)["a"] == {"complete": 8}
            await app.sweep()  # a's drop to empty: its zero row, exact
            history = await app.get_queue_depth_history(minutes=5)
            samples = [(r["queued"], r["estimated"]) for r in history if r["queue"] == "a"]
            # (between them, the draining worker's own sweeps may have sampled the drain)
            assert samples[0] == (8, ["queued"]) and samples[-1] == (0, []), samples
            # a bucket is estimated where any of its samples was, in the order
            # queued, scheduled, waiting, active: one day's bucket holds every
            # sample (the drain's running jobs may have been estimated too),
            # unless a day's boundary falls between them
            binned = await app.get_queue_depth_history(minutes=5, queue="a", bucket_secs=86400)
            marked = [s for s in ("queued", "scheduled", "waiting", "active")
                      if any(s in r["estimated"] for r in history if r["queue"] == "a")]  # fmt: skip
            assert "queued" in marked
            if len(binned) == 1:
                assert binned[0]["estimated"] == marked, (binned, samples)
            else:
                assert len(binned) == 2 and "queued" in binned[0]["estimated"]
                assert binned[-1]["estimated"] == []


async def test_queue_stats_of_an_empty_app(app: Werk) -> None:
    with trio.fail_after(10):
        assert await app.get_queue_stats() == ([], 0, 0)


# --- get_throughput_history -----------------------------------------------------------


async def test_throughput_history_buckets_per_queue_and_worker(stats_app: Werk) -> None:
    app = stats_app
    with trio.fail_after(30):
        jobs = [await app.enqueue(ok, n, _queue="a") for n in range(3)]
        failed = await app.enqueue(boom, _queue="b", _retry=2)  # two attempts: one failed job
        worker = await drain(app, "a", "b")
        done = [await app.get_job(j.id) for j in jobs if j]
        assert failed
        failed_row = await app.get_job(failed.id)
        assert failed_row.status is JobStatus.FAILED and failed_row.attempts == 2

        expected: Counter[tuple[Any, ...]] = Counter()
        for j in done:
            assert j.completed_at is not None
            expected[(minute_of(j.completed_at), "a", worker.id, "completed")] += 1
        assert failed_row.completed_at is not None
        expected[(minute_of(failed_row.completed_at), "b", worker.id, "failed")] += 1

        history = await app.get_throughput_history(5)
        times = sorted({r["time"] for r in history})
        assert len(times) == 5, "one bucket per minute, the current one included"
        assert all(b - a == dt.timedelta(minutes=1) for a, b in itertools.pairwise(times))
        assert busy(history) == expected
        assert {r["worker_name"] for r in history if r["queue"]} == {worker.name}
        assert all(r["count"] == r["completed"] for r in history)
        empty = [r for r in history if r["queue"] is None]
        assert all((r["worker_id"], r["completed"], r["failed"]) == (None, 0, 0) for r in empty)

        # three minutes later the minutes are rolled up by the sweeper: the
        # same counts, read from the roll-up; history survives a purge
        await age(app, 3)
        shifted = Counter({(k[0] - dt.timedelta(minutes=3), *k[1:]): v for k, v in expected.items()})
        live = busy(await app.get_throughput_history(10))
        assert live == shifted
        await app.sweep()
        assert busy(await app.get_throughput_history(10)) == shifted
        assert await app.purge_jobs() == 4
        assert busy(await app.get_throughput_history(10)) == shifted

        hourly = await app.get_throughput_history(120, bucket_secs=3600)
        assert len({r["time"] for r in hourly}) == 2
        assert sum(r["completed"] for r in hourly) == 3 and sum(r["failed"] for r in hourly) == 1

        # two hours on, the sweeper has rolled those minutes into an hour row:
        # the hourly history reads it, with the same counts per queue and worker
        await age(app, 120)

        def per_queue(rows: list[dict[str, Any]]) -> Counter[tuple[Any, ...]]:
            out: Counter[tuple[Any, ...]] = Counter()
            for r in rows:
                if r["queue"]:
                    out[(r["queue"], r["worker_id"])] += r["completed"] * 10 + r["failed"]
            return out

        before = per_queue(await app.get_throughput_history(300, bucket_secs=3600))
        await app.sweep()
        async with app.connection() as conn:
            cur = await conn.execute(
                sql.SQL("SELECT level, sum(completed), sum(failed) FROM {} GROUP BY level ORDER BY level")
                .format(app.sql.idents["throughput"])
            )
            levels = await cur.fetchall()
        assert levels == [("hour", 3, 1), ("minute", 3, 1)]
        assert per_queue(await app.get_throughput_history(300, bucket_secs=3600)) == before == Counter(
            {("a", worker.id): 30, ("b", worker.id): 1})
        assert per_queue(await app.get_throughput_history(10080)) == before, "default: hourly beyond 6 hours"


async def test_throughput_history_validates_its_arguments(app: Werk) -> None:
    with trio.fail_after(10):
        for bad in (0, 10081, 1.5, "60", True):
            with pytest.raises(ConfigError, match="minutes"):
                await app.get_throughput_history(bad)  # type: ignore[arg-type]
        with pytest.raises(ConfigError, match="multiple of 60"):
            await app.get_throughput_history(60, bucket_secs=90)
        with pytest.raises(ConfigError, match="per-minute data is kept a day"):
            await app.get_throughput_history(1441, bucket_secs=60)


# --- get_queue_depth_history: the sampler and its pruning -------------------------------


async def test_queue_depth_samples_written_by_the_sweeper_and_pruned(dsn: str, schema: str) -> None:
    app = Werk(dsn, schema=schema, task_modules=["tests"], stats_sample_interval=0.001)
    # the same tables, swept with a retention of one second
    pruner = Werk(dsn, schema=schema, task_modules=["tests"], stats_sample_interval=0.001,
                  stats_retention=1.0)
    async with app, pruner:
        with trio.fail_after(30):
            for n in range(3):
                await app.enqueue(ok, n, _queue="a")
            await app.enqueue(ok, 0, _queue="b", _delay=3600)
            assert await app.get_queue_depth_history(60) == []
            await app.sweep()
            [first_a, first_b] = await app.get_queue_depth_history(60)
            assert {k: first_a[k] for k in ("queue", "queued", "scheduled", "waiting", "active")} == {
                "queue": "a", "queued": 3, "scheduled": 0, "waiting": 0, "active": 0}
            assert (first_b["queue"], first_b["scheduled"]) == ("b", 1)
            assert first_a["time"] == first_b["time"], "one sample: one row per queue"

            # drained by a worker of the default interval: its own sweep finds
            # a sample younger than 54 s and takes none
            async with Werk(dsn, schema=schema, task_modules=["tests"]) as other:
                await drain(other, "a")
            await app.sweep()  # 'a' emptied: recorded once with zeros
            await app.sweep()  # and then no longer sampled
            history = await app.get_queue_depth_history(60)
            assert [(r["queue"], r["queued"]) for r in history if r["queue"] == "a"] == [("a", 3), ("a", 0)]
            assert [r["queue"] for r in history].count("b") == 3
            assert [r["queue"] for r in await app.get_queue_depth_history(60, queue="b")] == ["b"] * 3
            binned = await app.get_queue_depth_history(60, bucket_secs=3600, queue="b")
            assert [(r["queue"], r["scheduled"]) for r in binned] in ([("b", 1)], [("b", 1), ("b", 1)])

            # samples older than stats_retention (1 s) go with a later sweep
            async def pruned() -> bool:
                await pruner.sweep()
                return first_a["time"] not in {r["time"] for r in await app.get_queue_depth_history(60)}

            await until(pruned, interval=0.1)
            left = await app.get_queue_depth_history(60)
            assert left[-1]["queue"] == "b", "the samples of the last second stay"
            assert all(r["time"] > first_a["time"] for r in left)


async def test_one_sample_per_interval_whoever_sweeps(dsn: str, schema: str) -> None:
    one = Werk(dsn, schema=schema, task_modules=["tests"])  # default interval: 60 s
    other = Werk(dsn, schema=schema, task_modules=["tests"])
    async with one, other:
        with trio.fail_after(20):
            await one.enqueue(ok, 1)
            assert (await one.sweep_counts())["sampled_queues"] == 1
            assert (await other.sweep_counts())["sampled_queues"] == 0
            assert (await one.sweep_counts())["sampled_queues"] == 0
            assert len(await other.get_queue_depth_history(60)) == 1


# --- get_server_info ---------------------------------------------------------------------


async def test_server_info_names_the_server_and_this_apps_tables(app: Werk) -> None:
    with trio.fail_after(30):
        await app.enqueue_many([EnqueueParams(ok, (n,)) for n in range(25)])
        await app.vacuum()
        version, size, tables = await app.get_server_info()
        assert version.startswith("PostgreSQL ")
        assert isinstance(size, int) and size > 0
        names = {t["name"] for t in tables}
        assert names == {f"_werk_{t}" for t in (
            "jobs", "executions", "workers", "job_deps", "migrations", "queue_samples", "throughput",
            "finished_counts", "stats_marks", "cron_schedules", "cron_lease", "queues",
            "rate_log", "finished_removed")}  # fmt: skip
        assert all(t["size_bytes"] > 0 for t in tables)
        assert [t["size_bytes"] for t in tables] == sorted((t["size_bytes"] for t in tables), reverse=True)

        # the row estimate is the planner's, exact right after a VACUUM ANALYZE
        assert {t["name"]: t["row_count"] for t in tables}["_werk_jobs"] == 25


# --- workers ----------------------------------------------------------------------------------


async def test_list_workers_keys_stopped_listed_then_gone(dsn: str, schema: str) -> None:
    app = Werk(dsn, schema=schema, task_modules=["tests"], stopped_worker_retention=1.0)
    async with app:
        with trio.fail_after(30):
            worker = make_worker(app, queues=["a", "b"], heartbeat_interval=0.1)
            async with running(worker):
                [row] = await app.list_workers()
                assert set(row) >= PGWERK_WORKER_KEYS
                assert (row["id"], row["name"], row["queue"], row["status"]) == (
                    worker.id, worker.name, "a,b", "running")
                assert row["metadata"]["worker_type"] == "async" and row["metadata"]["concurrency"] == 10
                assert row["expires_at"] is None and row["heartbeat_at"] == row["last_seen"]
                got = await app.get_worker(worker.id)
                assert got and set(got) == set(row)
                assert (got["id"], got["name"], got["status"]) == (worker.id, worker.name, "running")
            [row] = await app.list_workers()
            assert row["status"] == "stopped"
            assert row["expires_at"] - row["stopped_at"] == dt.timedelta(seconds=1)

            # silent for three of its heartbeat intervals, yet not "dead": it stopped
            async def silent() -> bool:
                [r] = await app.list_workers()
                return bool(r["heartbeat_age"] > 0.3)

            await until(silent)
            swept = await app.sweep_counts()
            assert swept["dead_workers"] == 0
            if swept["stopped_workers"] == 0:  # not yet past its retention: still listed
                assert (await app.get_worker(worker.id) or {}).get("status") == "stopped"

            async def gone() -> bool:
                await app.sweep()
                return await app.get_worker(worker.id) is None

            await until(gone, interval=0.1)
            assert await app.list_workers() == []


async def test_a_stopped_worker_that_runs_again_is_running(app: Werk) -> None:
    with trio.fail_after(20):
        worker = make_worker(app)
        async with running(worker):
            pass
        assert (await app.get_worker(worker.id) or {})["status"] == "stopped"
        await worker.register()  # what the heartbeater does when its row was taken
        row = await app.get_worker(worker.id)
        assert row and (row["status"], row["stopped_at"], row["expires_at"]) == ("running", None, None)


async def test_get_worker_and_list_worker_jobs(app: Werk) -> None:
    global release
    release = trio.Event()
    with trio.fail_after(30):
        assert await app.get_worker("00000000-0000-0000-0000-000000000001") is None
        with pytest.raises(ConfigError, match="worker_id"):
            await app.get_worker("not-a-uuid")
        worker = make_worker(app, queues=["a"])
        other = make_worker(app, queues=["b"])
        async with running(worker), running(other):
            finished = []
            for n in range(4):
                job = await app.enqueue(ok, n, _queue="a")
                assert job
                finished.append((await wait_for_status(app, job.id, "complete")).id)
            elsewhere = await app.enqueue(ok, 0, _queue="b")
            assert elsewhere
            await wait_for_status(app, elsewhere.id, "complete")
            holding = await app.enqueue(held, _queue="a")
            assert holding
            await wait_for_status(app, holding.id, "active")

            listed = await app.list_worker_jobs(worker.id)
            assert [j.id for j in listed] == [holding.id, *reversed(finished)], "running first, newest first"
            assert [j.id for j in await app.list_worker_jobs(worker.id, limit=2, offset=1)] == [
                finished[3], finished[2]]
            assert [j.id for j in await app.list_worker_jobs(other.id)] == [elsewhere.id]
            release.set()
            await wait_for_status(app, holding.id, "complete")
        assert [j.id for j in await app.list_worker_jobs(worker.id, limit=1)] == [holding.id]
        for bad in ({"limit": 0}, {"limit": 1001}, {"offset": -1}):
            with pytest.raises(ConfigError):
                await app.list_worker_jobs(worker.id, **bad)


async def test_oldest_claimable_skip_scan_agrees_with_counting_every_due_row(app: Werk) -> None:
    """The metrics gauge's statement reads one head per (queue, priority) of
    the dequeue index; it must give what an aggregate over every due row
    gives: a priority whose head is not due yet hides nothing due behind it,
    a queue with nothing due has no row."""
    jobs = app.sql.idents["jobs"]
    specs = []
    for queue in ["a", "b", "c", "d"]:
        for priority in (-5, 0, 3, 9):
            for n in range(3):
                # d: everything due later; elsewhere job n of a priority is
                # due 10 * (k - priority + n + 10) minutes ago (k: 1 for a,
                # 2 for b...; the lower the priority, the older), except
                # priority 9's, all due later.
                later = queue == "d" or priority == 9
                specs.append(EnqueueParams(ok, (n,), queue=queue, priority=priority,
                                           delay=3600.0 if later else None))
    plain = sql.SQL(
        "SELECT queue, extract(epoch FROM now() - min(scheduled_at))::float8 FROM {}"
        " WHERE status IN ('queued', 'scheduled') AND scheduled_at <= now() GROUP BY queue ORDER BY queue"
    ).format(jobs)
    shift = sql.SQL(
        "UPDATE {} SET scheduled_at = scheduled_at - make_interval(mins => 10 * (ascii(queue) - 96"
        " - priority + (payload::jsonb -> 'args' ->> 0)::int + 10)) WHERE status = 'queued'"
    ).format(jobs)
    with trio.fail_after(30):
        await app.enqueue_many(specs)
        async with app.connection() as conn:
            await conn.execute(shift)
            expected = await (await conn.execute(plain)).fetchall()
        got = await app._fetch(app.sql.OLDEST_CLAIMABLE)
        assert [q for q, _ in got] == ["a", "b", "c"]
        assert [(q, round(age)) for q, age in got] == [(q, round(age)) for q, age in expected]
        # a's oldest is priority -5's last job: behind every other priority's head
        assert round(got[0][1]) == 60 * 10 * (1 + 5 + 2 + 10)
