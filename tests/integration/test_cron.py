"""Cron in one process and a few helper processes: schedules enqueue at their
ticks and the jobs run on a real worker; pause/resume from another process;
trigger; unregister; registrations written on start; catch-up after downtime.

The jobs' ticks are read from their idempotency keys (``cron:{name}:{tick}``);
times are the database's.
"""

from __future__ import annotations

import sys
from datetime import datetime, timedelta
from itertools import pairwise
from typing import Any

import pytest
import trio
from psycopg import sql

from werk_trio import ConfigError, CronScheduler, JobStatus, Werk
from werk_trio.cron import tick_key
from werk_trio.testing import make_worker, running, until


async def beat(n: int = 0) -> int:
    return n + 1


async def other_beat() -> str:
    return "other"


def _tick(key: str, name: str) -> datetime:
    prefix = f"cron:{name}:"
    assert key.startswith(prefix), key
    return datetime.fromisoformat(key[len(prefix):])


async def cron_jobs(app: Werk, name: str) -> list[Any]:
    jobs = await app.list_jobs(limit=10_000)
    return sorted((j for j in jobs if j.cron_name == name), key=lambda j: j.enqueued_at)


async def db_now(app: Werk) -> datetime:
    async with app.connection() as conn:
        cur = await conn.execute(app.sql.CRON_NOW)
        row = await cur.fetchone()
    assert row is not None
    return row[0]  # type: ignore[no-any-return]


def fast(app: Werk, **kwargs: Any) -> CronScheduler:
    kwargs.setdefault("lease", 2.0)
    kwargs.setdefault("standby_retry_interval", 0.2)
    return CronScheduler(app, **kwargs)


async def test_interval_schedule_enqueues_every_second_and_runs_on_a_worker(app: Werk) -> None:
    """The documented nursery code: scheduler and worker in one process."""
    scheduler = fast(app)
    scheduler.register(beat, interval=1, kwargs={"n": 41}, name="beat", meta={"from": "cron"})
    with trio.fail_after(30):
        async with running(make_worker(app)) as nursery:
            await nursery.start(scheduler.run)
            assert scheduler.role == "leader"

            async def four_done() -> list[Any] | None:
                jobs = await cron_jobs(app, "beat")
                done = [j for j in jobs if j.status is JobStatus.COMPLETE]
                return jobs if len(done) >= 4 else None

            jobs = await until(four_done)
            scheduler.stop()
    ticks = [_tick(j.key, "beat") for j in jobs]
    assert ticks == sorted(ticks)
    # one job per tick, the ticks one second apart
    assert [b - a for a, b in pairwise(ticks)] == [timedelta(seconds=1)] * (len(ticks) - 1)
    for job, tick in zip(jobs, ticks, strict=True):
        assert job.enqueued_at >= tick  # never early (the database's clock)
        assert job.function == "tests.integration.test_cron.beat"
        assert job.meta == {"from": "cron"}
        if job.status is JobStatus.COMPLETE:
            assert job.result == 42
    stats = {s["name"]: s for s in await app.list_cron_stats()}["beat"]
    assert stats["total_runs"] == len(jobs)
    assert stats["schedule"] == "every 1s"
    assert stats["last_run_at"] == ticks[-1]
    assert stats["next_run_at"] == ticks[-1] + timedelta(seconds=1)
    assert stats["paused"] is False and stats["removed"] is False
    # the run gave the lease up: a new scheduler leads at once, no waiting for expiry
    lease = await app._fetch(app.sql.CRON_GET_LEASE)
    assert lease[0][0] is None


async def test_cron_expression_with_seconds_enqueues_on_its_ticks(app: Werk) -> None:
    scheduler = fast(app)
    job = scheduler.register(other_beat, cron="* * * * * */2", name="even")  # seconds field: every 2 s
    with trio.fail_after(30):
        async with running(make_worker(app)) as nursery:
            await nursery.start(scheduler.run)

            async def three() -> list[Any] | None:
                jobs = await cron_jobs(app, "even")
                return jobs if len([j for j in jobs if j.status is JobStatus.COMPLETE]) >= 3 else None

            jobs = await until(three)
            await until(lambda: job.next_run_at is not None and job.last_run_at is not None)
            scheduler.stop()
    ticks = [_tick(j.key, "even") for j in jobs]
    for tick in ticks:
        assert tick.second % 2 == 0 and tick.microsecond == 0
    assert [b - a for a, b in pairwise(ticks)] == [timedelta(seconds=2)] * (len(ticks) - 1)
    assert all(j.result == "other" for j in jobs if j.status is JobStatus.COMPLETE)
    assert job.next_run_at is not None and job.next_run_at.second % 2 == 0


async def test_two_schedulers_started_at_the_same_instant_one_leads(
    app: Werk, dsn: str, schema: str, caplog: pytest.LogCaptureFixture
) -> None:
    # (tests/conftest.py restores werk_trio's logger after every test, so an
    # earlier in-process `werk cron` run cannot stop these records propagating)
    caplog.set_level("INFO", logger="werk_trio.cron")
    other_app = Werk(dsn, schema=schema, task_modules=["tests"])
    with trio.fail_after(30):
        async with other_app:
            pair = [fast(app), fast(other_app)]
            for s in pair:
                s.register(beat, interval=0.25, name="quick")
            async with trio.open_nursery() as outer:
                async with trio.open_nursery() as starting:
                    for s in pair:
                        starting.start_soon(outer.start, s.run)
                assert sorted(s.role or "" for s in pair) == ["leader", "standby"]

                async def eight() -> list[Any] | None:
                    jobs = await cron_jobs(app, "quick")
                    return jobs if len(jobs) >= 8 else None

                jobs = await until(eight)
                assert sorted(s.role or "" for s in pair) == ["leader", "standby"]
                for s in pair:
                    s.stop()
    ticks = sorted(_tick(j.key, "quick") for j in jobs)
    assert [b - a for a, b in pairwise(ticks)] == [timedelta(seconds=0.25)] * (len(ticks) - 1)
    assert "key taken" not in caplog.text
    assert caplog.text.count("leads (lease generation 1)") == 1


CHILD = r"""
import sys, trio
from werk_trio import Werk

async def main():
    app = Werk(sys.argv[1], schema=sys.argv[2])
    async with app:
        if sys.argv[3] == "pause":
            await app.pause_cron(sys.argv[4])
        else:
            await app.resume_cron(sys.argv[4])
        async with app.connection() as conn:
            cur = await conn.execute(app.sql.CRON_NOW)
            print((await cur.fetchone())[0].isoformat(), flush=True)

trio.run(main)
"""


async def _other_process(dsn: str, schema: str, action: str, name: str) -> datetime:
    """Pause or resume ``name`` from a separate Python process; the database
    time just after the change committed."""
    result = await trio.run_process(
        [sys.executable, "-c", CHILD, dsn, schema, action, name], capture_stdout=True, capture_stderr=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()
    return datetime.fromisoformat(result.stdout.decode().strip())


async def test_pause_and_resume_from_another_process(app: Werk, dsn: str, schema: str) -> None:
    scheduler = fast(app)
    job = scheduler.register(beat, interval=0.5, name="beat")
    with trio.fail_after(40):
        async with trio.open_nursery() as nursery:
            await nursery.start(scheduler.run)
            await until(lambda: cron_jobs(app, "beat"))
            paused_at = await _other_process(dsn, schema, "pause", "beat")
            # the leader keeps advancing the paused schedule without enqueueing
            await until(lambda: job.paused and job.next_run_at is not None
                        and job.next_run_at > paused_at + timedelta(seconds=2))
            during = await cron_jobs(app, "beat")
            assert all(_tick(j.key, "beat") <= paused_at for j in during)
            stats = {s["name"]: s for s in await app.list_cron_stats()}["beat"]
            assert stats["paused"] is True
            assert stats["total_runs"] == len(during)
            resumed_at = await _other_process(dsn, schema, "resume", "beat")

            async def new_job() -> list[Any] | None:
                jobs = await cron_jobs(app, "beat")
                return jobs if len(jobs) > len(during) else None

            after = await until(new_job)
            scheduler.stop()
    fresh = [_tick(j.key, "beat") for j in after[len(during):]]
    assert all(t > resumed_at - timedelta(seconds=0.5) for t in fresh)
    assert not job.paused


async def test_pause_and_resume_through_the_scheduler_reach_the_database(app: Werk) -> None:
    scheduler = fast(app)
    scheduler.register(beat, interval=60, name="slow")
    scheduler.pause("slow")  # before run: written at the start
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            await nursery.start(scheduler.run)
            stats = {s["name"]: s for s in await app.list_cron_stats()}
            assert stats["slow"]["paused"] is True
            scheduler.resume("slow")  # while running: written at the next round

            async def unpaused() -> bool:
                return not {s["name"]: s for s in await app.list_cron_stats()}["slow"]["paused"]

            await until(unpaused)
            scheduler.stop()


async def test_trigger_enqueues_one_run_now_even_when_paused(app: Werk) -> None:
    scheduler = fast(app)
    scheduler.register(beat, interval=3600, name="hourly", kwargs={"n": 1}, queue="cronq", paused=True)
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await nursery.start(scheduler.run)
            scheduler.stop()
        job = await app.trigger_cron_job("hourly")
        assert job.cron_name == "hourly" and job.queue == "cronq" and job.key is None
        assert job.kwargs == {"n": 1}
        async with running(make_worker(app, queues=["cronq"])):
            done = await app.wait_for(job.id, timeout=20)
        assert done.result == 2
        stats = {s["name"]: s for s in await app.list_cron_stats()}["hourly"]
        assert stats["total_runs"] == 1
        assert stats["last_job_id"] == job.id
        assert stats["last_status"] is JobStatus.COMPLETE
        assert stats["last_enqueued_at"] == done.enqueued_at
        assert stats["last_completed_at"] == done.completed_at
        assert stats["paused"] is True
        with pytest.raises(ConfigError, match=r"no cron schedule named 'nope'.*hourly"):
            await app.trigger_cron_job("nope")
        with pytest.raises(ConfigError, match="no cron schedule"):
            await app.pause_cron("nope")
        with pytest.raises(ConfigError, match="no cron schedule"):
            await app.resume_cron("nope")


async def test_failed_runs_are_counted(app: Werk) -> None:
    scheduler = fast(app)
    scheduler.register(beat, interval=3600, name="bad", kwargs={"n": "x"})  # n + 1 raises TypeError
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await nursery.start(scheduler.run)
            scheduler.stop()
        jobs = [await app.trigger_cron_job("bad") for _ in range(2)]
        async with running(make_worker(app)):
            for job in jobs:
                assert (await app.wait_for(job.id, timeout=20)).status is JobStatus.FAILED
        stats = {s["name"]: s for s in await app.list_cron_stats()}["bad"]
        assert (stats["total_runs"], stats["failed_runs"]) == (2, 2)
        assert stats["last_status"] is JobStatus.FAILED


async def test_unregister_while_running_stops_the_schedule(app: Werk) -> None:
    scheduler = fast(app)
    scheduler.register(beat, interval=0.5, name="gone")
    scheduler.register(other_beat, interval=3600, name="stays")
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await nursery.start(scheduler.run)
            await until(lambda: cron_jobs(app, "gone"))
            scheduler.unregister("gone")
            assert "gone" not in scheduler and len(scheduler) == 1

            async def removed() -> bool:
                return {s["name"]: s for s in await app.list_cron_stats()}["gone"]["removed"]

            await until(removed)
            marked_at = await db_now(app)
            before = len(await cron_jobs(app, "gone"))
            # two more of its ticks pass: nothing new
            await until(lambda: _later(app, marked_at + timedelta(seconds=1.2)))
            assert len(await cron_jobs(app, "gone")) == before
            scheduler.stop()
        with pytest.raises(ConfigError, match="removed"):
            await app.pause_cron("gone")
        with pytest.raises(ConfigError, match="removed"):
            await app.trigger_cron_job("gone")
        with pytest.raises(ConfigError, match="no cron job named 'gone'"):
            scheduler.unregister("gone")


async def _later(app: Werk, when: datetime) -> bool:
    return await db_now(app) > when


async def test_registrations_update_the_table_on_start(app: Werk) -> None:
    first = fast(app)
    first.register(beat, interval=600, name="a")
    first.register(beat, interval=900, name="b")
    first.register(other_beat, cron="0 9 * * *", name="c")
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await nursery.start(first.run)
            first.stop()
        before = {s["name"]: s for s in await app.list_cron_stats()}
        await app.pause_cron("c")  # an operator's pause survives the redeploy
        # a new deploy: a's interval changed, b left out, c unchanged but for its queue
        second = fast(app)
        second.register(beat, interval=5, name="a")
        second.register(other_beat, cron="0 9 * * *", name="c", queue="reports")
        async with trio.open_nursery() as nursery:
            await nursery.start(second.run)
            second.stop()
        after = {s["name"]: s for s in await app.list_cron_stats()}
    assert after["a"]["schedule"] == "every 5s"
    assert after["a"]["next_run_at"] < before["a"]["next_run_at"]  # re-timed from the new interval
    assert after["b"]["removed"] is True and before["b"]["removed"] is False
    assert after["c"]["next_run_at"] == before["c"]["next_run_at"]  # unchanged timing keeps its place
    assert after["c"]["queue"] == "reports" and after["c"]["paused"] is True
    # b is registered again by a later start: back, with a fresh next run
    third = fast(app)
    for name, interval in (("a", 5), ("b", 900)):
        third.register(beat, interval=interval, name=name)
    third.register(other_beat, cron="0 9 * * *", name="c", queue="reports")
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await nursery.start(third.run)
            third.stop()
        again = {s["name"]: s for s in await app.list_cron_stats()}
    assert again["b"]["removed"] is False


@pytest.mark.parametrize("catch_up", ["one", "none"])
async def test_missed_ticks_give_at_most_one_catch_up_run(app: Werk, catch_up: str) -> None:
    """Every scheduler down across two ticks of a 3 s interval, back 1.45 s
    after the second one: lease 0.3 s + standby retry 0.1 s + a 1 s round make
    the tolerance 1.4 s, so that tick counts as missed."""
    step = timedelta(seconds=3)
    with trio.fail_after(60):
        first = fast(app, lease=0.3, standby_retry_interval=0.1, catch_up=catch_up)
        first.register(beat, interval=3, name="beat")
        async with trio.open_nursery() as nursery:
            await nursery.start(first.run)
            (job0,) = await until(lambda: cron_jobs(app, "beat"))
            first.stop()
        t0 = _tick(job0.key, "beat")
        await until(lambda: _later(app, t0 + 2 * step + timedelta(seconds=1.45)))
        restarted = await db_now(app)
        second = fast(app, lease=0.3, standby_retry_interval=0.1, catch_up=catch_up)
        second.register(beat, interval=3, name="beat")
        async with trio.open_nursery() as nursery:
            await nursery.start(second.run)

            async def regular() -> list[Any] | None:
                jobs = await cron_jobs(app, "beat")
                return jobs if any(_tick(j.key, "beat") > restarted for j in jobs) else None

            jobs = await until(regular)
            second.stop()
    ticks = [_tick(j.key, "beat") for j in jobs]
    assert ticks[0] == t0
    if catch_up == "one":
        # one run for the two missed ticks: the latest of them
        assert ticks[1:] == [t0 + 2 * step, t0 + 3 * step]
    else:
        assert ticks[1:] == [t0 + 3 * step]


async def test_jobs_carry_the_cron_name_option(app: Werk) -> None:
    with trio.fail_after(10):
        job = await app.enqueue(beat, _cron_name="manual")
        assert job is not None and job.cron_name == "manual"
        assert (await app.get_job(job.id)).cron_name == "manual"
        with pytest.raises(ConfigError, match="_cron_name"):
            await app.enqueue(beat, _cron_name="")
        assert tick_key("x", datetime.fromisoformat("2026-01-01T09:00:00+01:00")) == (
            "cron:x:2026-01-01T08:00:00+00:00"
        )


async def test_run_needs_a_connected_app(dsn: str, schema: str) -> None:
    app = Werk(dsn, schema=schema, task_modules=["tests"])
    scheduler = CronScheduler(app)
    scheduler.register(beat, interval=1)
    with trio.fail_after(10), pytest.raises(Exception, match="not connected"):
        await scheduler.run()


def test_the_tables_exist_with_the_prefix(dsn: str, schema: str) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        app = Werk(dsn, schema=schema, prefix="cronp")

        async def go() -> None:
            async with app:
                pass

        trio.run(go)
        rows = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (schema,)
        ).fetchall()
        names = {r[0] for r in rows}
        assert {"cronp_cron_schedules", "cronp_cron_lease"} <= names
        lease = conn.execute(sql.SQL("SELECT id, holder, generation FROM {}").format(
            sql.Identifier(schema, "cronp_cron_lease"))).fetchall()
        assert lease == [(1, None, 0)]
